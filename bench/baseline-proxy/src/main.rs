//! baseline-proxy: the cheapest HTTP/1.1 reverse proxy hyper allows, as a yardstick.
//!
//! Usage: baseline-proxy --port N --upstream 127.0.0.1:PORT [--litellm-headers]
//!
//! Every request is forwarded to the upstream with the same method, path, headers
//! and body (pooled keep-alive client, TCP_NODELAY both sides) and the answer is
//! streamed back. No auth, no JSON, no routing, no logging: what it costs is what
//! any proxy on this machine pays for sockets and HTTP framing alone, so
//! `bench/run.sh` can show the gateway's overhead against it (`BENCH_BASELINE=1`).

use std::{convert::Infallible, net::SocketAddr};

use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

static BURN_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static LITELLM_HEADERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With `--litellm-headers`: the response headers a LiteLLM-compatible gateway adds to a
/// chat answer (names as LiteLLM sends them, values as long as the gateway's for the
/// benchmark's request), so the client parses the same head through either proxy.
const LITELLM_RESPONSE_HEADERS: [(&str, &str); 10] = [
    (
        "x-litellm-call-id",
        "chatcmpl-a5a468b8-527b-4db4-9a54-32ad7907b972",
    ),
    ("x-litellm-response-cost", "0.000023"),
    ("x-litellm-attempted-retries", "0"),
    ("x-litellm-attempted-fallbacks", "0"),
    ("x-litellm-response-duration-ms", "0.084"),
    ("x-litellm-overhead-duration-ms", "0.005"),
    ("x-litellm-model-id", "d72d47445d6d4f30"),
    ("x-litellm-model-api-base", "http://127.0.0.1:19000/v1"),
    ("x-litellm-model-group", "bench"),
    ("x-litellm-version", "0.1.0"),
];

type Upstream = Client<HttpConnector, Incoming>;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn forward(
    client: Upstream,
    authority: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, Infallible> {
    let burn = BURN_US.load(std::sync::atomic::Ordering::Relaxed);
    if burn > 0 {
        let t = std::time::Instant::now();
        while t.elapsed().as_micros() < burn as u128 {
            std::hint::spin_loop();
        }
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: Uri = format!("http://{authority}{path}")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("http://127.0.0.1/"));
    *req.uri_mut() = uri;
    match client.request(req).await {
        Ok(mut resp) => {
            if LITELLM_HEADERS.load(std::sync::atomic::Ordering::Relaxed) {
                let headers = resp.headers_mut();
                for (name, value) in LITELLM_RESPONSE_HEADERS {
                    headers.append(
                        hyper::header::HeaderName::from_static(name),
                        hyper::header::HeaderValue::from_static(value),
                    );
                }
            }
            Ok(resp)
        }
        Err(e) => {
            eprintln!("upstream error: {e}");
            std::process::exit(1);
        }
    }
}

#[tokio::main]
async fn main() {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(9100);
    let upstream: &'static str = Box::leak(
        arg("--upstream")
            .unwrap_or_else(|| "127.0.0.1:9000".into())
            .into_boxed_str(),
    );
    if let Some(b) = arg("--burn-us").and_then(|b| b.parse().ok()) {
        BURN_US.store(b, std::sync::atomic::Ordering::Relaxed);
    }
    if std::env::args().any(|a| a == "--litellm-headers") {
        LITELLM_HEADERS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| forward(client.clone(), upstream, req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
