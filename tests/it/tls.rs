//! HTTPS upstreams: certificate checks (built-in roots, `ssl_verify` CA bundle, `ssl_verify:
//! false`) and HTTP/2 by ALPN, against a TLS mock with a throwaway CA.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio_rustls::rustls;

use crate::support::{chat_json, spawn_app, MASTER_KEY};

const ANSWER: &str = r#"{"id":"chatcmpl-tls","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"over tls"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// A TLS upstream on 127.0.0.1 whose certificate (for `localhost` and 127.0.0.1) is
/// signed by a CA written to `ca_pem`. Records each request's HTTP version and auth.
struct TlsUpstream {
    port: u16,
    ca_pem: tempfile::NamedTempFile,
    seen: Arc<Mutex<Vec<(hyper::Version, String)>>>,
}

async fn tls_upstream() -> TlsUpstream {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let ca_pem = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(ca_pem.path(), ca.pem()).expect("write ca");

    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Arc<Mutex<Vec<(hyper::Version, String)>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: not an error here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    log.lock().push((req.version(), auth));
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsUpstream { port, ca_pem, seen }
}

fn config(port: u16, ssl_verify: Option<&str>) -> String {
    let mut y = format!(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: https://localhost:{port}/v1\n      api_key: sk-upstream-tls\n"
    );
    if let Some(v) = ssl_verify {
        y += &format!("litellm_settings:\n  ssl_verify: {v}\n");
    }
    y
}

#[tokio::test]
async fn a_ca_bundle_from_ssl_verify_is_trusted_and_http2_is_negotiated() {
    let up = tls_upstream().await;
    let ca = up.ca_pem.path().display().to_string();
    let app = spawn_app(&config(up.port, Some(&ca))).await;
    let r = app.chat(MASTER_KEY, "gpt").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"][0]["message"]["content"], "over tls");
    let seen = up.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, hyper::Version::HTTP_2, "h2 chosen by ALPN");
    assert_eq!(seen[0].1, "Bearer sk-upstream-tls");
}

#[tokio::test]
async fn an_unknown_ca_is_refused_and_nothing_reaches_the_upstream() {
    let up = tls_upstream().await;
    let app = spawn_app(&config(up.port, None)).await;
    let r = app
        .post("/v1/chat/completions", Some(MASTER_KEY), &{
            let mut b = chat_json("gpt");
            b["num_retries"] = 0.into();
            b
        })
        .await;
    assert!(r.status >= 500, "{} {}", r.status, r.text);
    let msg = r.error_message().to_lowercase();
    assert!(msg.contains("certificate"), "{msg}");
    assert!(
        up.seen.lock().is_empty(),
        "no request went over an unverified link"
    );
}

#[tokio::test]
async fn ssl_verify_false_accepts_any_certificate() {
    let up = tls_upstream().await;
    let app = spawn_app(&config(up.port, Some("false"))).await;
    let r = app.chat(MASTER_KEY, "gpt").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.seen.lock().len(), 1);
}

#[test]
fn an_unreadable_ca_bundle_stops_startup_naming_the_field() {
    let e =
        switchyard::config::Config::from_yaml("test.yaml", &config(1, Some("/nonexistent/ca.pem")))
            .map(|_| ())
            .expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("litellm_settings.ssl_verify"), "{text}");
    assert!(text.contains("PEM"), "{text}");
}
