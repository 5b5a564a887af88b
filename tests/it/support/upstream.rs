//! Mock upstream servers speaking the OpenAI, Azure and Anthropic wire formats on
//! 127.0.0.1 random ports. They record every request and answer from a queue of
//! one-off responses, else from a default responder.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes as they arrived.
    pub raw: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the mock answers.
#[derive(Clone)]
pub enum MockResponse {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(&'static str, String)>,
    },
    /// The whole SSE body written at once.
    Sse(String),
    /// SSE events written one by one with a pause between them; `cancelled` is set if
    /// the gateway drops the connection before the end.
    SlowSse {
        events: Vec<String>,
        pause: Duration,
        cancelled: Arc<AtomicBool>,
    },
    /// Waits, then answers.
    Delay(Duration, Box<MockResponse>),
    /// Sends headers then breaks the connection.
    Drop,
}

impl MockResponse {
    pub fn json(status: u16, body: Value) -> Self {
        MockResponse::Json {
            status,
            body,
            headers: vec![],
        }
    }

    /// A chat completion saying "ok" (10 prompt and 5 completion tokens), after `delay`.
    pub fn delayed_ok(delay: Duration) -> Self {
        Self::delayed_chat(delay, "ok")
    }

    /// A chat completion saying `content` (10 prompt and 5 completion tokens), after
    /// `delay`.
    pub fn delayed_chat(delay: Duration, content: &str) -> Self {
        MockResponse::Delay(
            delay,
            Box::new(MockResponse::json(
                200,
                json!({
                    "id": "x", "object": "chat.completion", "created": 1, "model": "gpt",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                }),
            )),
        )
    }

    pub fn error(status: u16, message: &str) -> Self {
        MockResponse::json(
            status,
            json!({"error": {"message": message, "type": "api_error", "code": null}}),
        )
    }
}

type Responder = Box<dyn Fn(&Recorded) -> MockResponse + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    queue: Mutex<VecDeque<MockResponse>>,
    responder: Mutex<Responder>,
    hits: AtomicUsize,
}

#[derive(Clone)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockUpstream {
    /// An OpenAI-compatible server (also serves Azure's deployment paths).
    pub async fn openai() -> Self {
        Self::start(Box::new(openai_default)).await
    }

    /// An Anthropic Messages API server.
    pub async fn anthropic() -> Self {
        Self::start(Box::new(anthropic_default)).await
    }

    pub async fn start(responder: Responder) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            queue: Mutex::new(VecDeque::new()),
            responder: Mutex::new(responder),
            hits: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockUpstream { addr, shared }
    }

    /// Base URL, e.g. `http://127.0.0.1:1234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next request with `r` (before the default responder).
    pub fn enqueue(&self, r: MockResponse) {
        self.shared.queue.lock().push_back(r);
    }

    pub fn set_responder(&self, f: impl Fn(&Recorded) -> MockResponse + Send + Sync + 'static) {
        *self.shared.responder.lock() = Box::new(f);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) until `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let t = std::time::Instant::now();
        while self.requests().len() < n {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the upstream got {} of {n} requests",
                self.requests().len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        raw: bytes,
    };
    s.hits.fetch_add(1, Ordering::SeqCst);
    s.requests.lock().push(rec.clone());
    let queued = s.queue.lock().pop_front();
    let r = match queued {
        Some(r) => r,
        None => (s.responder.lock())(&rec),
    };
    render(r).await
}

fn render(
    r: MockResponse,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
    Box::pin(async move {
        match r {
            MockResponse::Json {
                status,
                body,
                headers,
            } => {
                let mut resp = (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    axum::Json(body),
                )
                    .into_response();
                for (k, v) in headers {
                    resp.headers_mut()
                        .insert(k, v.parse().expect("header value"));
                }
                resp
            }
            MockResponse::Sse(text) => {
                ([("content-type", "text/event-stream")], text).into_response()
            }
            MockResponse::SlowSse {
                events,
                pause,
                cancelled,
            } => {
                struct Guard(Arc<AtomicBool>, bool);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        if !self.1 {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                }
                let n = events.len();
                let stream = futures_util::stream::unfold(
                    (0usize, events, Guard(cancelled, false)),
                    move |(i, events, mut g)| async move {
                        if i >= n {
                            g.1 = true;
                            drop(g);
                            return None;
                        }
                        if i > 0 {
                            tokio::time::sleep(pause).await;
                        }
                        let b = Bytes::from(events[i].clone());
                        Some((Ok::<Bytes, Infallible>(b), (i + 1, events, g)))
                    },
                );
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(stream),
                )
                    .into_response()
            }
            MockResponse::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                render(*inner).await
            }
            MockResponse::Drop => {
                let stream = futures_util::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other("dropped"))
                });
                (
                    [("content-type", "application/json")],
                    Body::from_stream(stream),
                )
                    .into_response()
            }
        }
    })
}

/// Usage every default OpenAI answer reports.
pub const OPENAI_USAGE: (u64, u64) = (10, 5);

fn openai_default(r: &Recorded) -> MockResponse {
    let model = r
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let (p, c) = OPENAI_USAGE;
    if r.path.ends_with("/embeddings") {
        return MockResponse::json(
            200,
            json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "usage": {"prompt_tokens": p, "total_tokens": p}}),
        );
    }
    let chat = r.path.ends_with("/chat/completions");
    if r.body.get("stream").and_then(Value::as_bool) == Some(true) {
        return MockResponse::Sse(openai_sse(
            &model,
            &["Hello", " world"],
            r.body.pointer("/stream_options/include_usage") == Some(&json!(true)),
            chat,
        ));
    }
    if chat {
        MockResponse::json(
            200,
            json!({
                "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            }),
        )
    } else {
        MockResponse::json(
            200,
            json!({
                "id": "cmpl-up", "object": "text_completion", "created": 1, "model": model,
                "choices": [{"index": 0, "text": "Hello world", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            }),
        )
    }
}

/// An OpenAI SSE body: one chunk per piece, a finish chunk, an optional usage chunk, [DONE].
pub fn openai_sse(model: &str, pieces: &[&str], with_usage: bool, chat: bool) -> String {
    let mut out = String::new();
    let (p, c) = OPENAI_USAGE;
    for piece in pieces {
        let choice = if chat {
            json!({"index": 0, "delta": {"content": piece}, "finish_reason": null})
        } else {
            json!({"index": 0, "text": piece, "finish_reason": null})
        };
        out += &format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [choice]})
        );
    }
    let last = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": "", "finish_reason": "stop"})
    };
    out += &format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [last]})
    );
    if with_usage {
        out += &format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
        );
    }
    out += "data: [DONE]\n\n";
    out
}

fn anthropic_default(r: &Recorded) -> MockResponse {
    let model = r
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude")
        .to_owned();
    if r.body.get("stream").and_then(Value::as_bool) == Some(true) {
        return MockResponse::Sse(anthropic_sse(&model, &["Hello", " world"]));
    }
    MockResponse::json(
        200,
        json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Hello world"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        }),
    )
}

/// A realistic Anthropic event stream for a text answer (usage: 12 in, 6 out).
pub fn anthropic_sse(model: &str, pieces: &[&str]) -> String {
    let mut out = String::new();
    let mut ev = |name: &str, data: Value| out += &format!("event: {name}\ndata: {data}\n\n");
    ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    );
    ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    ev("ping", json!({"type": "ping"}));
    for p in pieces {
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
        );
    }
    ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 6}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    out
}
