//! The upstream HTTP client and the request/response types adapters use: plain-`http://`
//! upstreams go through the gateway's own HTTP/1.1 pool (`h1.rs`), HTTPS ones through one
//! pooled hyper client (rustls, HTTP/1.1 and HTTP/2 by ALPN); TCP_NODELAY and no
//! redirects for both.
//!
//! Bare hyper rather than reqwest: on the proxy's hot path reqwest's URL parsing, redirect
//! and retry layers cost several microseconds a request (see bench/RESULTS.md), and the
//! gateway needs none of them: URLs come from the config, providers never redirect, and
//! retries belong to the router.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Error;

const USER_AGENT_VALUE: &str = concat!("switchyard/", env!("CARGO_PKG_VERSION"));

/// The pooled client every upstream call goes through. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    plain: super::h1::Pool,
}

/// Idle connections kept per upstream host.
const MAX_IDLE_PER_HOST: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How upstream TLS certificates are checked (LiteLLM's `ssl_verify` / `SSL_CERT_FILE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM bundles of CAs trusted besides the built-in (Mozilla) roots: a corporate
    /// proxy's or a self-hosted server's.
    pub extra_roots: Vec<PathBuf>,
    /// Accept any certificate (LiteLLM's `ssl_verify: false`). Handshake signatures are
    /// still checked, so only the identity check is given up.
    pub insecure: bool,
}

impl HttpClient {
    /// The client with the built-in roots only (unit tests).
    #[cfg(test)]
    pub fn for_tests() -> HttpClient {
        Self::with_tls(&TlsOptions::default()).unwrap()
    }

    /// The client with `tls` applied; fails when the bundle cannot be read or holds no
    /// certificate.
    pub fn with_tls(tls: &TlsOptions) -> Result<HttpClient, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Without it every request written in two pieces waits for a delayed ACK.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(tls)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(https);
        Ok(HttpClient {
            inner,
            plain: super::h1::Pool::new(MAX_IDLE_PER_HOST, CONNECT_TIMEOUT),
        })
    }

    /// Sends `req`; a transport failure becomes a connection error of its provider.
    pub async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, Error> {
        let provider = req.provider;
        if let Some(e) = req.error {
            return Err(e);
        }
        if req.uri.scheme() == Some(&http::uri::Scheme::HTTP) {
            let authority = super::h1::host_port(&req.uri);
            let head = match &req.plain_lines {
                Some(HeadLines(lines)) => super::h1::finish_head(lines, req.body.len()),
                None => {
                    let mut headers = Arc::unwrap_or_clone(req.headers);
                    default_user_agent(&mut headers);
                    super::h1::request_head(&req.uri, &headers, req.body.len())
                }
            };
            let answer = self
                .plain
                .send(authority, head, req.body)
                .await
                .map_err(|e| Error::connection(provider, &e))?;
            return Ok(UpstreamResponse {
                status: answer.status,
                answer: Answer::Plain(answer),
            });
        }
        let mut headers = Arc::unwrap_or_clone(req.headers);
        default_user_agent(&mut headers);
        let mut builder = hyper::Request::builder().method(Method::POST).uri(req.uri);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| Error::invalid_request(provider, e))?;
        let resp = self
            .inner
            .request(request)
            .await
            .map_err(|e| Error::connection(provider, &e))?;
        let (parts, body) = resp.into_parts();
        Ok(UpstreamResponse {
            status: parts.status,
            answer: Answer::Hyper {
                headers: parts.headers,
                body,
            },
        })
    }
}

fn default_user_agent(headers: &mut HeaderMap) {
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(USER_AGENT_VALUE));
}

fn tls_config(tls: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if tls.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in &tls.extra_roots {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read CA bundle {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot read CA bundle {shown}: {e}"))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("CA bundle {shown} holds no usable certificate"));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any server certificate but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A POST to an upstream, built by an adapter. A bad URL or header value is kept and
/// reported by [`HttpClient::send`], so building reads as one chain. `Debug` shows
/// secret headers as `Sensitive`.
#[derive(Debug)]
pub struct UpstreamRequest {
    provider: &'static str,
    uri: Uri,
    /// Shared by a prepared request's copies until one of them changes its headers.
    headers: Arc<HeaderMap>,
    body: Bytes,
    error: Option<Error>,
    /// `headers` already carry the JSON content type `json_body` sets.
    json_typed: bool,
    /// The plain-HTTP request line and headers, written once for a prepared request
    /// (see [`UpstreamRequest::prepared`]) and shared by its copies. Any header change
    /// drops them.
    plain_lines: Option<HeadLines>,
}

/// A written-out request head. It holds the upstream key as text, so `Debug` shows
/// only its length.
#[derive(Clone, PartialEq)]
struct HeadLines(Bytes);

impl std::fmt::Debug for HeadLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadLines({} bytes)", self.0.len())
    }
}

impl UpstreamRequest {
    pub fn post(provider: &'static str, url: &str) -> UpstreamRequest {
        let (uri, error) = match Uri::try_from(url) {
            Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => (uri, None),
            // Never echo the URL: some providers carry a secret in its query.
            _ => (
                Uri::default(),
                Some(Error::invalid_request(
                    provider,
                    "the deployment's api_base is not a valid http(s) URL",
                )),
            ),
        };
        UpstreamRequest {
            provider,
            uri,
            headers: Arc::default(),
            body: Bytes::new(),
            error,
            json_typed: false,
            plain_lines: None,
        }
    }

    /// This request made ready to be kept and copied for a JSON body (see
    /// [`Self::duplicate`]): typed as JSON, and for a plain-HTTP upstream its head
    /// written out, so that a copy only adds the body and its length.
    pub fn prepared(mut self) -> UpstreamRequest {
        self.type_json();
        if self.error.is_none() && self.uri.scheme() == Some(&http::uri::Scheme::HTTP) {
            let mut headers = HeaderMap::clone(&self.headers);
            default_user_agent(&mut headers);
            let lines = super::h1::head_lines(&self.uri, &headers, 0);
            self.plain_lines = Some(HeadLines(lines.into()));
        }
        self
    }

    /// A copy without the body, for a prepared head; `None` if building it failed (the
    /// failure is then reported by building again per request).
    pub fn duplicate(&self) -> Option<UpstreamRequest> {
        if self.error.is_some() {
            return None;
        }
        Some(UpstreamRequest {
            provider: self.provider,
            uri: self.uri.clone(),
            headers: self.headers.clone(),
            body: Bytes::new(),
            error: None,
            json_typed: self.json_typed,
            plain_lines: self.plain_lines.clone(),
        })
    }

    /// Adds a header (appends, like reqwest: repeated names are all sent).
    pub fn header(self, name: &str, value: &str) -> UpstreamRequest {
        self.header_inner(name, value, false)
    }

    /// Adds a header that carries a secret: marked sensitive so it is never logged.
    pub fn secret_header(self, name: &str, value: &str) -> UpstreamRequest {
        self.header_inner(name, value, true)
    }

    pub fn bearer_auth(self, key: &str) -> UpstreamRequest {
        let mut value = String::with_capacity(key.len() + 7);
        value.push_str("Bearer ");
        value.push_str(key);
        self.header_inner(AUTHORIZATION.as_str(), &value, true)
    }

    /// Sets a JSON body and its content type.
    pub fn json_body(mut self, body: Vec<u8>) -> UpstreamRequest {
        self.type_json();
        self.body = Bytes::from(body);
        self
    }

    fn type_json(&mut self) {
        if !self.json_typed {
            Arc::make_mut(&mut self.headers)
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            self.json_typed = true;
            self.plain_lines = None;
        }
    }

    fn header_inner(mut self, name: &str, value: &str, sensitive: bool) -> UpstreamRequest {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(sensitive);
                Arc::make_mut(&mut self.headers).append(name, value);
                // A content type added after the JSON one would otherwise be sent too.
                self.json_typed = false;
                self.plain_lines = None;
            }
            _ => {
                // Name the header, never the value (it may be a key).
                self.error.get_or_insert(Error::invalid_request(
                    self.provider,
                    format!("header {name:?} has a name or value that HTTP cannot carry"),
                ));
            }
        }
        self
    }

    #[cfg(test)]
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    #[cfg(test)]
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    #[cfg(test)]
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// An upstream's answer: status and headers read, body still on the wire.
pub struct UpstreamResponse {
    pub status: StatusCode,
    answer: Answer,
}

enum Answer {
    Hyper { headers: HeaderMap, body: Incoming },
    Plain(super::h1::Response),
}

impl UpstreamResponse {
    /// The answer's headers.
    pub fn headers(&self) -> HeaderMap {
        match &self.answer {
            Answer::Hyper { headers, .. } => headers.clone(),
            Answer::Plain(answer) => answer.headers(),
        }
    }

    /// Reads the whole body.
    pub async fn bytes(self, provider: &'static str) -> Result<Bytes, Error> {
        match self.answer {
            Answer::Hyper { body, .. } => body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| Error::connection(provider, &e)),
            Answer::Plain(answer) => answer
                .body
                .collect()
                .await
                .map_err(|e| Error::connection(provider, &e)),
        }
    }

    /// The body as it arrives. Dropping the stream closes the upstream connection.
    pub fn bytes_stream(self) -> BodyStream {
        match self.answer {
            Answer::Hyper { body, .. } => Box::pin(
                body.into_data_stream()
                    .map(|piece| piece.map_err(std::io::Error::other)),
            ),
            Answer::Plain(answer) => Box::pin(futures_util::stream::unfold(
                answer.body,
                |mut body| async move {
                    match body.next().await {
                        Ok(Some(piece)) => Some((Ok(piece), body)),
                        Ok(None) => None,
                        Err(e) => Some((Err(e), body)),
                    }
                },
            )),
        }
    }
}

/// An answer's body as it arrives.
pub type BodyStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_or_header_fails_at_send_without_echoing_url_or_value() {
        let client = HttpClient::for_tests();
        let req = UpstreamRequest::post("openai", "not a url?key=sk-secret-in-query");
        let e = client.send(req).await.err().unwrap();
        assert_eq!(e.status, 400);
        assert!(!e.message.contains("sk-secret"), "{}", e.message);

        let req = UpstreamRequest::post("openai", "http://127.0.0.1:9/v1")
            .header("x-extra", "line\nbreak-sk-secret");
        let e = client.send(req).await.err().unwrap();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("x-extra"), "{}", e.message);
        assert!(!e.message.contains("sk-secret"), "{}", e.message);
    }

    #[test]
    fn keys_are_sensitive_headers_and_repeated_names_are_all_kept() {
        let req = UpstreamRequest::post("openai", "https://api.openai.com/v1/chat/completions")
            .bearer_auth("sk-live")
            .secret_header("api-key", "sk-azure")
            .header("x-tag", "a")
            .header("x-tag", "b")
            .json_body(b"{}".to_vec());
        let h = req.headers();
        assert_eq!(h["authorization"], "Bearer sk-live");
        assert!(h["authorization"].is_sensitive() && h["api-key"].is_sensitive());
        assert!(!h["x-tag"].is_sensitive());
        assert_eq!(h.get_all("x-tag").iter().count(), 2);
        assert_eq!(h["content-type"], "application/json");
        let debug = format!("{req:?}");
        assert!(
            !debug.contains("sk-live") && !debug.contains("sk-azure"),
            "{debug}"
        );
    }

    /// The bytes an upstream at `url` receives for the request `build` makes.
    async fn received(build: impl FnOnce(&str) -> UpstreamRequest) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}/v1/chat/completions");
        let server = tokio::spawn(async move {
            let (mut io, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // The test bodies are empty or "{}".
            while !got.ends_with(b"\r\n\r\n{}") && !got.ends_with(b"length: 0\r\n\r\n") {
                let n = io.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early: {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            io.write_all(ok).await.unwrap();
            // Each call has its own port: the host line is checked here, once.
            let got = String::from_utf8(got).unwrap();
            let host = format!("\r\nhost: {addr}\r\n");
            assert!(got.contains(&host), "{got}");
            got.replace(&host, "\r\nhost: upstream\r\n")
        });
        let resp = HttpClient::for_tests().send(build(&url)).await.unwrap();
        assert_eq!(resp.bytes("openai").await.unwrap(), "ok");
        server.await.unwrap()
    }

    #[tokio::test]
    async fn a_prepared_request_sends_what_building_it_each_time_sends() {
        let head = |url: &str| {
            UpstreamRequest::post("openai", url)
                .bearer_auth("sk-up")
                .header("x-tag", "a")
                .header("content-type", "text/plain")
        };
        let built = received(|url| head(url).json_body(b"{}".to_vec())).await;
        let copied = received(|url| {
            let kept = head(url).prepared();
            assert!(kept.plain_lines.is_some());
            kept.duplicate().unwrap().json_body(b"{}".to_vec())
        })
        .await;
        assert_eq!(copied, built);
        assert_eq!(built.matches("content-type").count(), 1, "{built}");
        assert!(
            built.contains("content-type: application/json\r\n"),
            "{built}"
        );
        assert!(built.contains("user-agent: switchyard/"), "{built}");
        assert!(built.ends_with("content-length: 2\r\n\r\n{}"), "{built}");

        // A header added to a copy is sent; so is a content type, which the JSON one
        // then replaces, as when building each time.
        let added = received(|url| {
            let copy = head(url).prepared().duplicate().unwrap();
            copy.header("x-late", "1")
        })
        .await;
        assert!(added.contains("x-late: 1\r\n"), "{added}");
        // Copies share the kept headers; a change stays with the copy it was made to.
        let kept = head("http://127.0.0.1:9/v1").prepared();
        let shown = format!("{kept:?}");
        assert!(!shown.contains("sk-up"), "{shown}");
        let changed = kept.duplicate().unwrap().header("x-late", "1");
        let other = kept.duplicate().unwrap();
        assert_eq!(changed.headers()["x-late"], "1");
        assert!(!other.headers().contains_key("x-late"));
        assert!(!kept.headers().contains_key("x-late"));
        assert_eq!(other.plain_lines, kept.plain_lines);
        let retyped = received(|url| {
            let copy = head(url).prepared().duplicate().unwrap();
            copy.header("content-type", "text/csv")
                .json_body(b"{}".to_vec())
        })
        .await;
        assert_eq!(retyped, built);
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused_naming_it() {
        let empty = tempfile::NamedTempFile::new().unwrap();
        let tls = TlsOptions {
            extra_roots: vec![empty.path().to_path_buf()],
            insecure: false,
        };
        let e = HttpClient::with_tls(&tls).err().unwrap();
        assert!(e.contains("no usable certificate"), "{e}");
        assert!(e.contains(&empty.path().display().to_string()), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_error_naming_the_cause() {
        // Bind then drop: the port is closed, so the connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let req = UpstreamRequest::post("openai", &format!("http://127.0.0.1:{port}/v1"));
        let e = HttpClient::for_tests().send(req).await.err().unwrap();
        assert_eq!(e.class, crate::providers::ErrorClass::Connection);
        assert!(e.message.starts_with("Connection error"), "{}", e.message);
        assert!(
            e.message.to_lowercase().contains("refused"),
            "{}",
            e.message
        );
    }
}
