//! The gateway's own HTTP/1.1 loop for the proxied POSTs, byte by byte: pipelining,
//! keep-alive and `Connection: close`, and the requests it hands to hyper (another route
//! on the same connection, `Expect`, chunked bodies, HTTP/1.0, oversized or malformed
//! requests), which must be answered as before.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::keys::new_key;
use crate::support::*;

/// A response read off a raw connection.
struct Raw {
    status_line: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A raw connection to the gateway, with what it has read past the last response.
struct Conn {
    s: TcpStream,
    pending: Vec<u8>,
}

impl Conn {
    async fn open(app: &TestApp) -> Conn {
        let addr = app.url.trim_start_matches("http://");
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            s,
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// Reads one response (a length or a chunked body), keeping what follows it.
    async fn response(&mut self) -> Raw {
        read_response(&mut self.s, &mut self.pending).await
    }

    /// True when the server closes the connection (after what it already sent) within a
    /// second.
    async fn closes(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn chat_request(extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER_KEY}\r\n\
         content-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chat(content: &str) -> String {
    json!({"model": "gpt", "messages": [{"role": "user", "content": content}]}).to_string()
}

async fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> Raw {
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(s, pending).await;
    };
    let head = String::from_utf8(pending.drain(..head_end).collect()).expect("head text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let mut body = Vec::new();
    if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().expect("length");
        while pending.len() < len {
            fill(s, pending).await;
        }
        body = pending.drain(..len).collect();
    } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                fill(s, pending).await;
            };
            let size_text = String::from_utf8(pending.drain(..line_end + 2).collect()).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            while pending.len() < size + 2 {
                fill(s, pending).await;
            }
            body.extend(pending.drain(..size));
            pending.drain(..2);
            if size == 0 {
                break;
            }
        }
    }
    Raw {
        status_line,
        headers,
        body,
    }
}

async fn fill(s: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    assert!(
        n > 0,
        "closed early; had {:?}",
        String::from_utf8_lossy(pending)
    );
    pending.extend_from_slice(&buf[..n]);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (up, app) = spawn_with_openai_gpt().await;
    let mut c = Conn::open(&app).await;
    // Both requests in one write: the second arrives while the first is being answered.
    let mut both = chat_request("", &chat("first"));
    both.extend(chat_request("", &chat("second")));
    c.send(&both).await;
    let first = c.response().await;
    let second = c.response().await;
    for r in [&first, &second] {
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello world");
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers.contains_key("date"), "{:?}", r.headers);
    }
    assert_ne!(
        first.headers["x-litellm-call-id"],
        second.headers["x-litellm-call-id"]
    );
    let sent: Vec<Value> = up
        .requests()
        .iter()
        .map(|r| r.body["messages"][0]["content"].clone())
        .collect();
    assert_eq!(sent, vec![json!("first"), json!("second")]);
    app.stop().await;
}

#[tokio::test]
async fn another_route_on_the_same_connection_is_served_and_proxying_goes_on_after_it() {
    let (up, app) = spawn_with_openai_gpt().await;
    let mut c = Conn::open(&app).await;
    c.send(&chat_request("", &chat("one"))).await;
    assert_eq!(c.response().await.status(), 200);
    c.send(b"GET /health/liveliness HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await;
    let health = c.response().await;
    assert_eq!(
        health.status(),
        200,
        "{}",
        String::from_utf8_lossy(&health.body)
    );
    c.send(&chat_request("", &chat("two"))).await;
    let again = c.response().await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers["x-litellm-model-group"], "gpt");
    assert_eq!(up.hits(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_streamed_answer_is_chunked_and_the_connection_is_reused() {
    let (_up, app) = spawn_with_openai_gpt().await;
    let mut c = Conn::open(&app).await;
    let body =
        json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    c.send(&chat_request("", &body.to_string())).await;
    let streamed = c.response().await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(streamed.headers["transfer-encoding"], "chunked");
    assert_eq!(streamed.headers["content-type"], "text/event-stream");
    let text = String::from_utf8(streamed.body).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    c.send(&chat_request("", &chat("after"))).await;
    assert_eq!(c.response().await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn connection_close_is_answered_then_closed() {
    let (_up, app) = spawn_with_openai_gpt().await;
    let mut c = Conn::open(&app).await;
    c.send(&chat_request("connection: close\r\n", &chat("bye")))
        .await;
    let r = c.response().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers["connection"], "close");
    assert!(c.closes().await, "the server kept the connection open");
    app.stop().await;
}

#[tokio::test]
async fn expect_continue_chunked_bodies_and_http_1_0_are_answered() {
    let (up, app) = spawn_with_openai_gpt().await;
    let body = chat("hi");

    // Expect: 100-continue: the interim answer first, then the real one.
    let mut c = Conn::open(&app).await;
    let mut head = chat_request("expect: 100-continue\r\n", "");
    head.truncate(head.len() - "content-length: 0\r\n\r\n".len());
    head.extend(format!("content-length: {}\r\n\r\n", body.len()).into_bytes());
    c.send(&head).await;
    let interim = c.response().await;
    assert_eq!(interim.status(), 100);
    c.send(body.as_bytes()).await;
    assert_eq!(c.response().await.status(), 200);

    // A chunked body.
    let mut c = Conn::open(&app).await;
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "POST /chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER_KEY}\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    c.send(chunked.as_bytes()).await;
    assert_eq!(c.response().await.status(), 200);

    // HTTP/1.0: answered, then closed.
    let mut c = Conn::open(&app).await;
    let mut old = chat_request("", &body);
    old.splice(
        0.."POST /v1/chat/completions HTTP/1.1".len(),
        *b"POST /v1/chat/completions HTTP/1.0",
    );
    c.send(&old).await;
    assert_eq!(c.response().await.status(), 200);
    assert!(c.closes().await);

    assert_eq!(up.hits(), 3);
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_body_and_a_malformed_head_get_the_usual_errors() {
    let up = MockUpstream::openai().await;
    let base = format!("{}/v1", up.url());
    let app = spawn_app(&format!(
        "{}general_settings:\n  master_key: {MASTER_KEY}\n  max_request_size_mb: 0.001\n",
        config_for(&[("gpt", "openai/gpt-4o", &base)])
    ))
    .await;
    let mut c = Conn::open(&app).await;
    c.send(&chat_request("", &chat(&"x".repeat(4000)))).await;
    let big = c.response().await;
    assert_eq!(big.status(), 413);
    assert!(
        big.json()["error"]["message"].is_string(),
        "{:?}",
        big.json()
    );

    let mut c = Conn::open(&app).await;
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nbad header line\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status(), 400);
    assert_eq!(up.hits(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_client_gone_before_the_answer_releases_what_its_request_held() {
    let (up, app) = spawn_with_openai_gpt().await;
    up.set_responder(|_| MockResponse::delayed_ok(Duration::from_millis(1500)));
    // One request at a time for this key: a second one gets through only once the first
    // has let go of its slot.
    let key = new_key(&app, json!({"max_parallel_requests": 1})).await;
    let request = |content: &str| {
        let body = chat(content);
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut c = Conn::open(&app).await;
    c.send(request("abandoned").as_bytes()).await;
    up.wait_for_requests(1).await;
    drop(c);
    // Well before the upstream would have answered the first one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Conn::open(&app).await;
    c.send(request("next").as_bytes()).await;
    let next = c.response().await;
    assert_eq!(
        next.status(),
        200,
        "the abandoned request still held the key's slot: {}",
        String::from_utf8_lossy(&next.body)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_headers_the_proxied_path_reads_reach_it() {
    let (up, app) = spawn_with_openai_gpt().await;
    let mut c = Conn::open(&app).await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"tags": ["from-body"]}})
    .to_string();
    let request = format!(
        "POST /chat/completions HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {MASTER_KEY}\r\n\
         X-LiteLLM-Tags: from-header, from-body\r\nX-Unread: 1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.send(request.as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(up.hits(), 1);
    app.flush_spend().await;
    let rows = crate::spend::all_logs(&app, "").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["request_tags"], json!(["from-body", "from-header"]));
    app.stop().await;
}

#[tokio::test]
async fn a_large_body_arrives_whole_through_the_loop() {
    let (up, app) = spawn_with_openai_gpt().await;
    let mut c = Conn::open(&app).await;
    let content = "y".repeat(300_000);
    c.send(&chat_request("", &chat(&content))).await;
    let r = c.response().await;
    assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(up.last().body["messages"][0]["content"], json!(content));
    app.stop().await;
}
