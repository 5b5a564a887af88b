//! mock-upstream: a minimal, fast OpenAI-compatible upstream for benchmarking.
//!
//! Usage: mock-upstream [--port N] [--host ADDR]   (defaults: 127.0.0.1:9000)
//!
//! `POST /v1/chat/completions` and `POST /chat/completions`:
//! * body without `"stream":true` -> a fixed small `chat.completion` JSON with usage;
//! * body with `"stream":true`    -> a complete SSE body (content chunks, a usage
//!   chunk and `data: [DONE]`) sent as one buffer, `text/event-stream`.
//!
//! Also answers `GET /health` and `GET /v1/models` for convenience.

use axum::{
    body::{Body, Bytes},
    http::{header, HeaderValue, StatusCode},
    response::Response,
    routing::{get, post},
    serve::ListenerExt,
    Router,
};

const COMPLETION: &str = concat!(
    r#"{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"bench","#,
    r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock upstream."},"#,
    r#""finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#
);

const STREAM: &str = concat!(
    r#"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"content":" from the"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{"content":" mock upstream."},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#,
    "\n\n",
    "data: [DONE]\n\n"
);

const MODELS: &str =
    r#"{"object":"list","data":[{"id":"bench","object":"model","created":1700000000,"owned_by":"mock"}]}"#;

/// True when the JSON body asks for streaming (`"stream": true`, any spacing).
fn wants_stream(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"stream\"";
    let mut i = 0;
    while i + KEY.len() <= body.len() {
        if &body[i..i + KEY.len()] == KEY {
            let rest = &body[i + KEY.len()..];
            let rest = trim_start(rest);
            if let Some(rest) = rest.strip_prefix(b":") {
                return trim_start(rest).starts_with(b"true");
            }
        }
        i += 1;
    }
    false
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn fixed(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = Response::new(Body::from(Bytes::from_static(body.as_bytes())));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn chat(body: Bytes) -> Response {
    if wants_stream(&body) {
        let mut resp = fixed("text/event-stream", STREAM);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    } else {
        fixed("application/json", COMPLETION)
    }
}

async fn health() -> Response {
    fixed("application/json", r#"{"status":"ok"}"#)
}

async fn models() -> Response {
    fixed("application/json", MODELS)
}

async fn not_found() -> Response {
    let mut resp = fixed("application/json", r#"{"error":{"message":"not found"}}"#);
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

fn parse_args() -> (String, u16) {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 9000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" | "-p" => {
                port = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("--port needs a number"))
            }
            "--host" => host = args.next().unwrap_or_else(|| usage("--host needs a value")),
            "-h" | "--help" => usage(""),
            other => {
                if let Some(v) = other.strip_prefix("--port=") {
                    port = v.parse().unwrap_or_else(|_| usage("--port needs a number"));
                } else if let Some(v) = other.strip_prefix("--host=") {
                    host = v.to_string();
                } else {
                    usage(&format!("unknown argument: {other}"));
                }
            }
        }
    }
    (host, port)
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("mock-upstream: {msg}");
    }
    eprintln!("usage: mock-upstream [--port N] [--host ADDR]");
    std::process::exit(if msg.is_empty() { 0 } else { 2 })
}

fn main() {
    let (host, port) = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/health", get(health))
            .route("/v1/models", get(models))
            .route("/models", get(models))
            .fallback(not_found);
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .unwrap_or_else(|e| {
                eprintln!("mock-upstream: cannot bind {host}:{port}: {e}");
                std::process::exit(1)
            });
        eprintln!("mock-upstream listening on {}", listener.local_addr().unwrap());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.expect("serve");
    });
}
