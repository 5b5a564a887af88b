//! Streaming: chunk order, `[DONE]`, one-burst upstreams, Anthropic translation,
//! `include_usage`, and cancelling the upstream when the client goes away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::upstream::{anthropic_sse, openai_sse};
use crate::support::*;

fn stream_body(model: &str, include_usage: Option<bool>) -> Value {
    let mut b =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(u) = include_usage {
        b["stream_options"] = json!({"include_usage": u});
    }
    b
}

fn chunks(r: &Reply) -> Vec<Value> {
    r.sse_data()
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad chunk {d}: {e}")))
        .collect()
}

fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

#[tokio::test]
async fn an_upstream_that_sends_everything_in_one_burst_is_forwarded_in_order() {
    let up = MockUpstream::openai().await;
    let pieces = ["one", " two", " three", " four", " five"];
    up.enqueue(MockResponse::Sse(openai_sse("gpt-4o", &pieces, true, true)));
    let app = spawn_app(&config_for(&[(
        "gpt",
        "openai/gpt-4o",
        &format!("{}/v1", up.url()),
    )]))
    .await;
    let r = app.chat_body(MASTER_KEY, stream_body("gpt", None)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        data.iter().filter(|d| *d == "[DONE]").count(),
        1,
        "{}",
        r.text
    );
    let cs = chunks(&r);
    assert_eq!(content(&cs), "one two three four five");
    // 5 content chunks + the finish chunk; the usage chunk was not asked for.
    assert_eq!(cs.len(), 6, "{}", r.text);
    assert_eq!(cs[5]["choices"][0]["finish_reason"], "stop");
    app.stop().await;
}

#[tokio::test]
async fn include_usage_gets_a_usage_chunk_only_when_asked() {
    let (_up, app) = spawn_with_openai_gpt().await;
    let r = app
        .chat_body(MASTER_KEY, stream_body("gpt", Some(true)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cs = chunks(&r);
    let usage: Vec<&Value> = cs.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usage.len(), 1, "{}", r.text);
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 10);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 5);
    assert!(
        std::ptr::eq(usage[0], cs.last().expect("chunks")),
        "usage comes last"
    );

    let r = app
        .chat_body(MASTER_KEY, stream_body("gpt", Some(false)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        chunks(&r).iter().all(|c| !c["usage"].is_object()),
        "{}",
        r.text
    );
    assert_eq!(content(&chunks(&r)), "Hello world");
    app.stop().await;
}

#[tokio::test]
async fn anthropic_events_become_openai_chunks() {
    let up = MockUpstream::anthropic().await;
    up.enqueue(MockResponse::Sse(anthropic_sse(
        "claude-3-5-sonnet-20241022",
        &["Bonjour", " le", " monde"],
    )));
    up.enqueue(MockResponse::Sse(anthropic_sse(
        "claude-3-5-sonnet-20241022",
        &["Hi"],
    )));
    let app = spawn_app(&format!(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-3-5-sonnet-20241022\n      api_base: {}\n      api_key: sk-ant\n",
        up.url()
    ))
    .await;
    let r = app.chat_body(MASTER_KEY, stream_body("claude", None)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.last().body["stream"], true);
    assert_eq!(up.last().path, "/v1/messages");
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    let cs = chunks(&r);
    assert!(cs.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(content(&cs), "Bonjour le monde");
    let finish: Vec<&Value> = cs
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")], "{}", r.text);
    assert!(cs.iter().all(|c| !c["usage"].is_object()), "{}", r.text);

    let r = app
        .chat_body(MASTER_KEY, stream_body("claude", Some(true)))
        .await;
    let cs = chunks(&r);
    let usage = cs
        .iter()
        .find(|c| c["usage"].is_object())
        .unwrap_or_else(|| panic!("usage chunk: {}", r.text));
    assert_eq!(usage["usage"]["prompt_tokens"], 12);
    assert_eq!(usage["usage"]["completion_tokens"], 6);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let up = MockUpstream::openai().await;
    let cancelled = Arc::new(AtomicBool::new(false));
    let events: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": format!("w{i} ")}}]})
            )
        })
        .collect();
    up.enqueue(MockResponse::SlowSse {
        events,
        pause: Duration::from_millis(50),
        cancelled: cancelled.clone(),
    });
    let app = spawn_app(&config_for(&[(
        "gpt",
        "openai/gpt-4o",
        &format!("{}/v1", up.url()),
    )]))
    .await;
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(MASTER_KEY)
        .json(&stream_body("gpt", None))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("w0"));
    drop(body);
    let t = Instant::now();
    while !cancelled.load(Ordering::SeqCst) && t.elapsed() < Duration::from_millis(1500) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the upstream stream was not cancelled"
    );
    let dep = &app.state().router.deployments()[0];
    let t = Instant::now();
    while dep.in_flight() > 0 && t.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dep.in_flight(), 0, "the in-flight count is released");
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_silent_mid_stream_for_longer_than_stream_timeout_ends_with_an_error_event() {
    let up = MockUpstream::openai().await;
    let chunk = |c: &str| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": c}}]})
        )
    };
    up.enqueue(MockResponse::SlowSse {
        events: vec![chunk("a"), chunk("b"), "data: [DONE]\n\n".into()],
        pause: Duration::from_millis(800),
        cancelled: Default::default(),
    });
    let app = spawn_app(&config(
        &[deployment(
            "g",
            "d",
            &up.url(),
            &[("stream_timeout", "0.3")],
        )],
        &[],
    ))
    .await;
    let t = Instant::now();
    let r = app.chat_body(MASTER_KEY, stream_body("g", None)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        t.elapsed() < Duration::from_millis(750),
        "{:?}",
        t.elapsed()
    );
    let data = r.sse_data();
    assert!(data[0].contains("\"a\""), "{}", r.text);
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("timed out")),
        "{}",
        r.text
    );
    assert!(!data.iter().any(|d| d == "[DONE]"), "{}", r.text);
    app.stop().await;
}
