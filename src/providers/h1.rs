//! A small HTTP/1.1 client for plain-`http://` upstreams (local vLLM, Ollama, LM Studio,
//! an OpenAI-compatible server on the LAN), with its own keep-alive pool.
//!
//! Why not hyper's pooled client here: the request is written and its answer read in the
//! handler's own task, with one write and usually one read, so a call costs no pool map
//! lookup under a lock, no hand-off to a connection task and back, and no per-request
//! boxing (bench/RESULTS.md measures the difference). HTTPS upstreams keep using hyper
//! (`http.rs`), where ALPN may offer HTTP/2.
//!
//! What it speaks: `POST` with a body of known length; answers framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or the end of the connection; `1xx`
//! interim answers skipped. A connection goes back to the pool only after its answer has
//! been read to the end and when neither side asked to close it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use http::{HeaderMap, StatusCode, Uri};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest status line plus headers accepted from an upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in an upstream answer.
const MAX_HEADERS: usize = 96;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4 * 1024;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_BODY: usize = 64 * 1024;
/// An idle connection older than this is closed rather than reused. Shorter than common
/// servers' keep-alive (uvicorn, which serves vLLM, closes after 5 s), so a reused
/// connection is rarely one the server has just closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Idle connections by `host:port`, most recently used last.
#[derive(Clone)]
pub(super) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    // foldhash: the keys are the config's upstream hosts, looked up twice a request.
    idle: Mutex<HashMap<String, VecDeque<Idle>, foldhash::fast::RandomState>>,
    max_idle_per_host: usize,
    connect_timeout: Duration,
}

struct Idle {
    io: TcpStream,
    since: Instant,
}

/// A connection checked out for one request.
struct Conn {
    io: TcpStream,
    buf: BytesMut,
    reused: bool,
}

impl Pool {
    pub(super) fn new(max_idle_per_host: usize, connect_timeout: Duration) -> Pool {
        Pool {
            inner: Arc::new(PoolInner {
                idle: Mutex::new(HashMap::default()),
                max_idle_per_host,
                connect_timeout,
            }),
        }
    }

    /// Sends one request and reads the answer's head. `head` is the request line and
    /// headers (ending in the blank line); `body` follows it.
    pub(super) async fn send(
        &self,
        authority: &str,
        head: Vec<u8>,
        body: Bytes,
    ) -> io::Result<Response> {
        let message = Message::new(head, body);
        if let Some(conn) = self.checkout(authority) {
            match self.exchange(conn, authority, &message).await {
                Ok(resp) => return Ok(resp),
                // The server closed the idle connection before it saw this request:
                // nothing was answered, so sending again on a new connection is safe.
                Err(Failure::ClosedBeforeAnswer(_)) => {}
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        let conn = self.connect(authority).await?;
        self.exchange(conn, authority, &message)
            .await
            .map_err(Failure::into_io)
    }

    fn checkout(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.inner.idle.lock();
        let list = idle.get_mut(authority)?;
        while let Some(c) = list.pop_back() {
            if c.since.elapsed() >= IDLE_TIMEOUT {
                // The rest are older still.
                list.clear();
                break;
            }
            if quiet_since_last_answer(&c.io) {
                return Some(Conn {
                    io: c.io,
                    buf: BytesMut::new(),
                    reused: true,
                });
            }
        }
        None
    }

    fn give_back(&self, authority: &str, io: TcpStream) {
        let mut idle = self.inner.idle.lock();
        let list = match idle.get_mut(authority) {
            Some(list) => list,
            None => idle.entry(authority.to_owned()).or_default(),
        };
        // One clock read for the expiry check and the new entry's time.
        let now = Instant::now();
        while list
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.since) >= IDLE_TIMEOUT)
        {
            list.pop_front();
        }
        if list.len() < self.inner.max_idle_per_host {
            list.push_back(Idle { io, since: now });
        }
    }

    async fn connect(&self, authority: &str) -> io::Result<Conn> {
        let addr = if authority.contains(':') && !authority.ends_with(']') {
            std::borrow::Cow::Borrowed(authority)
        } else {
            std::borrow::Cow::Owned(format!("{authority}:80"))
        };
        let io = tokio::time::timeout(self.inner.connect_timeout, TcpStream::connect(&*addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        // Without it every request written in two pieces waits for a delayed ACK.
        io.set_nodelay(true)?;
        Ok(Conn {
            io,
            buf: BytesMut::new(),
            reused: false,
        })
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        authority: &str,
        message: &Message,
    ) -> Result<Response, Failure> {
        let reused = conn.reused;
        let closed = |e: io::Error| {
            if reused && is_closed(&e) {
                Failure::ClosedBeforeAnswer(e)
            } else {
                Failure::Other(e)
            }
        };
        if let Err(e) = message.write_to(&mut conn.io).await {
            if !is_closed(&e) {
                return Err(Failure::Other(e));
            }
            // An upstream that refuses a request early (413 for a large body) answers and
            // closes while the body is still going out. Its answer is then already in the
            // socket's buffer, and it is what the caller should see, not the broken pipe.
            return match final_head(&mut conn).await {
                Ok(Some(head)) => Ok(self.response(conn, authority, head, false)),
                _ => Err(closed(e)),
            };
        }
        let head = match final_head(&mut conn).await {
            Ok(Some(head)) => head,
            Ok(None) => {
                return Err(closed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before answering",
                )))
            }
            Err(e) if conn.buf.is_empty() => return Err(closed(e)),
            Err(e) => return Err(Failure::Other(e)),
        };
        Ok(self.response(conn, authority, head, true))
    }

    /// The answer whose head is `head`, its body still on `conn`; `reusable` is false when
    /// the connection must not carry another request whatever the head says.
    fn response(&self, conn: Conn, authority: &str, head: Head, reusable: bool) -> Response {
        let framing =
            if head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
                Framing::Length(0)
            } else {
                head.framing
            };
        let reusable = reusable && head.keep_alive && !matches!(framing, Framing::UntilClose);
        Response {
            status: head.status,
            head: head.raw,
            body: Body {
                conn: Some(conn),
                framing,
                reusable,
                pool: self.clone(),
                authority: authority.to_owned(),
            },
        }
    }
}

/// The first answer head that is not informational (`1xx` are skipped).
async fn final_head(conn: &mut Conn) -> io::Result<Option<Head>> {
    loop {
        match read_head(conn).await? {
            Some(head) if head.status.is_informational() => continue,
            other => return Ok(other),
        }
    }
}

/// Whether nothing arrived on an idle connection since its last answer: neither the
/// server closing it nor an unsolicited answer (a `408` before closing), which would
/// otherwise be read as the answer to the next request. Free in the common case: the
/// reactor's readiness says nothing arrived, and only otherwise is the socket read.
fn quiet_since_last_answer(io: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match io.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => true,
        std::task::Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
        std::task::Poll::Ready(Err(_)) => false,
    }
}

/// The request bytes, written in one piece when the body is small.
struct Message {
    head: Vec<u8>,
    body: Bytes,
}

impl Message {
    fn new(mut head: Vec<u8>, body: Bytes) -> Message {
        if body.len() <= COALESCE_BODY {
            head.extend_from_slice(&body);
            Message {
                head,
                body: Bytes::new(),
            }
        } else {
            Message { head, body }
        }
    }

    async fn write_to(&self, io: &mut TcpStream) -> io::Result<()> {
        io.write_all(&self.head).await?;
        if !self.body.is_empty() {
            io.write_all(&self.body).await?;
        }
        Ok(())
    }
}

enum Failure {
    /// A reused connection turned out closed before any byte of an answer.
    ClosedBeforeAnswer(io::Error),
    Other(io::Error),
}

impl Failure {
    fn into_io(self) -> io::Error {
        match self {
            Failure::ClosedBeforeAnswer(e) | Failure::Other(e) => e,
        }
    }
}

fn is_closed(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// `host[:port]` of `uri`: its authority without credentials (`user:pass@`), which are
/// neither part of the address nor to be sent in `Host`.
pub(super) fn host_port(uri: &Uri) -> &str {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// Writes the request line and headers for a POST of `body_len` bytes to `uri`, with
/// room for a body that [`Message`] will append.
pub(super) fn request_head(uri: &Uri, headers: &HeaderMap, body_len: usize) -> Vec<u8> {
    let mut head = head_lines(uri, headers, 40 + body_len.min(COALESCE_BODY));
    push_length(&mut head, body_len);
    head
}

/// The request line and `headers` of a POST to `uri`, without the length, with `spare`
/// bytes of capacity to add. A prepared request keeps these, and only [`finish_head`]
/// runs per request.
pub(super) fn head_lines(uri: &Uri, headers: &HeaderMap, spare: usize) -> Vec<u8> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = host_port(uri);
    let mut head = Vec::with_capacity(256 + path.len() + spare);
    head.extend_from_slice(b"POST ");
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == HOST || name == CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head
}

/// The head of a POST of `body_len` bytes from its `lines` (see [`head_lines`]).
pub(super) fn finish_head(lines: &[u8], body_len: usize) -> Vec<u8> {
    let mut head = Vec::with_capacity(lines.len() + 40 + body_len.min(COALESCE_BODY));
    head.extend_from_slice(lines);
    push_length(&mut head, body_len);
    head
}

fn push_length(head: &mut Vec<u8>, body_len: usize) {
    head.extend_from_slice(b"content-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
}

struct Head {
    status: StatusCode,
    raw: Bytes,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Reads until one answer head is complete; `None` if the connection ended first.
async fn read_head(conn: &mut Conn) -> io::Result<Option<Head>> {
    loop {
        if !conn.buf.is_empty() {
            if let Some(head) = parse_head(&mut conn.buf)? {
                return Ok(Some(head));
            }
            if conn.buf.len() > MAX_HEAD {
                return Err(invalid("the upstream's answer head is too large"));
            }
        }
        conn.buf.reserve(READ_SIZE);
        if conn.io.read_buf(&mut conn.buf).await? == 0 {
            return if conn.buf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection in the middle of its answer",
                ))
            };
        }
    }
}

/// Parses one head off the front of `buf`, if it is all there.
fn parse_head(buf: &mut BytesMut) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("invalid HTTP answer from upstream: {e}"))),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid("invalid HTTP status from upstream"))?;
    let mut keep_alive = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid("invalid Content-Length from upstream"))?;
            if length.is_some_and(|m| m != n) {
                return Err(invalid("conflicting Content-Length from upstream"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_coded = true;
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // Chunked wins over a length; any other transfer coding runs to the end of the
    // connection (RFC 9112 §6.3).
    let framing = match (chunked, transfer_coded, length) {
        (true, _, _) => Framing::Chunked(Chunk::Size),
        (false, true, _) => Framing::UntilClose,
        (false, false, Some(n)) => Framing::Length(n),
        (false, false, None) => Framing::UntilClose,
    };
    Ok(Some(Head {
        status,
        raw: buf.split_to(len).freeze(),
        framing,
        keep_alive,
    }))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// An answer whose head has been read.
pub(super) struct Response {
    pub status: StatusCode,
    head: Bytes,
    pub body: Body,
}

impl Response {
    /// The answer's headers (built on demand: successful answers never need them).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let mut map = HeaderMap::new();
        if resp.parse(&self.head).is_err() {
            return map;
        }
        for h in resp.headers.iter() {
            let value = self.head.slice_ref(h.value);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_maybe_shared(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}

/// The rest of an answer, read as it arrives. Dropping it before the end closes the
/// connection (which is how a cancelled stream reaches the upstream).
pub(super) struct Body {
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    pool: Pool,
    authority: String,
}

impl Body {
    /// The next piece of the body, `None` at its end.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(piece) = self.take_buffered()? {
                if self.framing == Framing::Done {
                    // Back in the pool before the caller asks for the end.
                    self.finish();
                }
                return Ok(Some(piece));
            }
            if self.framing == Framing::Done {
                self.finish();
                return Ok(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Ok(None);
            };
            conn.buf.reserve(READ_SIZE);
            let read = conn.io.read_buf(&mut conn.buf).await;
            match read {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Done;
                    self.conn = None;
                    return Ok(None);
                }
                Ok(0) => {
                    self.conn = None;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection in the middle of its answer",
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }

    /// Reads the whole (remaining) body.
    pub async fn collect(mut self) -> io::Result<Bytes> {
        let first = match self.next().await? {
            Some(b) => b,
            None => return Ok(Bytes::new()),
        };
        let Some(second) = self.next().await? else {
            return Ok(first);
        };
        let mut all = BytesMut::with_capacity(first.len() + second.len());
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(more) = self.next().await? {
            all.extend_from_slice(&more);
        }
        Ok(all.freeze())
    }

    /// Takes what the framing allows out of the read buffer, advancing the framing.
    fn take_buffered(&mut self) -> io::Result<Option<Bytes>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let buf = &mut conn.buf;
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(0) => self.framing = Framing::Done,
                Framing::Length(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (n.min(buf.len() as u64)) as usize;
                    self.framing = match n - take as u64 {
                        0 => Framing::Done,
                        left => Framing::Length(left),
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                Framing::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(buf.split().freeze()));
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    let digits = line[..].split(|&b| b == b';').next().unwrap_or(&[]);
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| u64::from_str_radix(d.trim(), 16).ok())
                        .ok_or_else(|| invalid("invalid chunk size from upstream"))?;
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::Data(n)) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (n.min(buf.len() as u64)) as usize;
                    self.framing = Framing::Chunked(match n - take as u64 {
                        0 => Chunk::DataEnd,
                        left => Chunk::Data(left),
                    });
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("a chunk from upstream does not end in CRLF"));
                    }
                    buf.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.framing = Framing::Done;
                    }
                }
            }
        }
    }

    /// The body has ended: the connection goes back to the pool if it can carry another
    /// request.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buf.is_empty() {
                self.pool.give_back(&self.authority, conn.io);
            }
        }
    }
}

/// Takes one CRLF-terminated line (without the CRLF) off the front of `buf`.
fn take_line(buf: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(at) => {
            let line = buf.split_to(at);
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(invalid("a chunk line from upstream is too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// What the scripted server does with one request on a connection.
    #[derive(Clone)]
    struct Reply {
        /// Written in these pieces, with a short pause between them.
        pieces: Vec<&'static [u8]>,
        /// Close the connection after answering.
        close: bool,
    }

    fn reply(pieces: &[&'static [u8]]) -> Reply {
        Reply {
            pieces: pieces.to_vec(),
            close: false,
        }
    }

    struct Server {
        authority: String,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    /// Answers the n-th request it receives (over all connections) with `replies[n]`.
    async fn server(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut io, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (r, replies) = (r.clone(), replies.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(request) = read_request(&mut io, &mut buf).await else {
                            return;
                        };
                        r.lock().push(request);
                        let Some(answer) = replies.lock().pop_front() else {
                            return;
                        };
                        for piece in answer.pieces {
                            if io.write_all(piece).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if answer.close {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            authority,
            connections,
            requests,
        }
    }

    /// One request (head and Content-Length body) off `io`.
    async fn read_request(io: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return Some(buf.drain(..end + 4 + len).collect());
                }
            }
            let mut chunk = [0u8; 4096];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn post(pool: &Pool, s: &Server, body: &'static [u8]) -> io::Result<(u16, Bytes)> {
        let uri: Uri = format!("http://{}/v1/chat?x=1", s.authority)
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-up"));
        let head = request_head(&uri, &headers, body.len());
        let resp = pool
            .send(&s.authority, head, Bytes::from_static(body))
            .await?;
        let status = resp.status.as_u16();
        Ok((status, resp.body.collect().await?))
    }

    fn pool() -> Pool {
        Pool::new(8, Duration::from_secs(2))
    }

    #[tokio::test]
    async fn sends_one_well_formed_request_and_reuses_the_connection() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        let s = server(vec![reply(&[ok]), reply(&[ok])]).await;
        let pool = pool();
        assert_eq!(
            post(&pool, &s, b"{\"a\":1}").await.unwrap(),
            (200, "hello".into())
        );
        assert_eq!(post(&pool, &s, b"{}").await.unwrap(), (200, "hello".into()));
        assert_eq!(s.connections.load(Ordering::SeqCst), 1, "keep-alive");
        let first = String::from_utf8(s.requests.lock()[0].clone()).unwrap();
        assert_eq!(
            first,
            format!(
                "POST /v1/chat?x=1 HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer sk-up\r\n\
                 content-length: 7\r\n\r\n{{\"a\":1}}",
                s.authority
            )
        );
    }

    #[tokio::test]
    async fn a_body_too_large_to_coalesce_is_sent_whole_after_the_head() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let s = server(vec![reply(&[ok])]).await;
        let body: &'static [u8] = Box::leak(vec![b'x'; 3 * COALESCE_BODY + 7].into_boxed_slice());
        assert_eq!(post(&pool(), &s, body).await.unwrap().1, "ok");
        let got = s.requests.lock()[0].clone();
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(String::from_utf8_lossy(&got[..head_end])
            .contains(&format!("content-length: {}\r\n", body.len())));
        assert_eq!(&got[head_end..], body);
    }

    #[tokio::test]
    async fn an_early_refusal_of_a_large_body_is_the_answer_not_a_broken_pipe() {
        // Reads the head only, refuses, and closes with the body unread (a reset).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut io, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = io.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            io.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo large")
                .await
                .unwrap();
        });
        let s = Server {
            authority,
            connections: Arc::default(),
            requests: Arc::default(),
        };
        // Far more than the socket buffers hold, so the write is still going on.
        let body: &'static [u8] = Box::leak(vec![b'x'; 32 << 20].into_boxed_slice());
        assert_eq!(
            post(&pool(), &s, body).await.unwrap(),
            (413, "too large".into())
        );
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_neither_dialled_nor_sent_as_host() {
        let s = server(vec![reply(&[
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ])])
        .await;
        let uri: Uri = format!("http://user:pw@{}/v1", s.authority)
            .parse()
            .unwrap();
        assert_eq!(host_port(&uri), s.authority);
        let head = request_head(&uri, &HeaderMap::new(), 0);
        let resp = pool()
            .send(host_port(&uri), head, Bytes::new())
            .await
            .unwrap();
        assert_eq!(resp.body.collect().await.unwrap(), "ok");
        let got = String::from_utf8(s.requests.lock()[0].clone()).unwrap();
        assert!(
            got.contains(&format!("\r\nhost: {}\r\n", s.authority)),
            "{got}"
        );
        assert!(!got.contains("pw"), "{got}");
        let bare: Uri = "http://example.test/v1".parse().unwrap();
        assert_eq!(host_port(&bare), "example.test");
    }

    #[tokio::test]
    async fn chunked_answers_split_anywhere_are_joined_and_the_connection_reused() {
        let s = server(vec![
            reply(&[
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n",
                b"6\r\n wor",
                b"ld\r\n0\r\nx-trailer: 1\r\n",
                b"\r\n",
            ]),
            reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
        ])
        .await;
        let pool = pool();
        let (status, body) = post(&pool, &s, b"{}").await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"hello world"[..]));
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "ok");
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_no_content_has_no_body() {
        let s = server(vec![
            reply(&[
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\n!",
            ]),
            reply(&[b"HTTP/1.1 204 No Content\r\n\r\n"]),
            reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n?"]),
        ])
        .await;
        let pool = pool();
        assert_eq!(post(&pool, &s, b"{}").await.unwrap(), (201, "!".into()));
        assert_eq!(post(&pool, &s, b"{}").await.unwrap(), (204, Bytes::new()));
        assert_eq!(post(&pool, &s, b"{}").await.unwrap(), (200, "?".into()));
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn close_delimited_and_connection_close_answers_are_not_reused() {
        let s = server(vec![
            Reply {
                pieces: vec![b"HTTP/1.1 200 OK\r\n\r\nuntil", b" the end"],
                close: true,
            },
            Reply {
                pieces: vec![
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                ],
                close: true,
            },
            reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
        ])
        .await;
        let pool = pool();
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "until the end");
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "ok");
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "ok");
        assert_eq!(s.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_replaced_without_an_error() {
        let s = server(vec![
            Reply {
                // Says keep-alive, then closes anyway (a server's idle timeout).
                pieces: vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"],
                close: true,
            },
            reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"]),
        ])
        .await;
        let pool = pool();
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "b");
        assert_eq!(s.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            s.requests.lock().len(),
            2,
            "the server saw each request once"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_with_an_unsolicited_answer_is_not_reused() {
        let s = server(vec![
            reply(&[
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
                // Sent while the connection sits idle in the pool.
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n",
            ]),
            reply(&[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"]),
        ])
        .await;
        let pool = pool();
        assert_eq!(post(&pool, &s, b"{}").await.unwrap().1, "a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(post(&pool, &s, b"{}").await.unwrap(), (200, "b".into()));
        assert_eq!(s.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_broken_or_cut_answer_is_an_error() {
        let s = server(vec![
            reply(&[b"HTTP/1.1 two hundred\r\n\r\n"]),
            Reply {
                pieces: vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"],
                close: true,
            },
            reply(&[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"]),
        ])
        .await;
        let pool = pool();
        let e = post(&pool, &s, b"{}").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let e = post(&pool, &s, b"{}").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let e = post(&pool, &s, b"{}").await.unwrap_err();
        assert!(e.to_string().contains("chunk size"), "{e}");
    }

    #[test]
    fn headers_are_read_from_the_head_on_demand() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 429 Too Many\r\nretry-after: 3\r\nx-a: 1\r\nx-a: 2\r\n\r\nbody"[..],
        );
        let head = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"body");
        let resp = Response {
            status: head.status,
            head: head.raw,
            body: Body {
                conn: None,
                framing: Framing::Done,
                reusable: false,
                pool: pool(),
                authority: String::new(),
            },
        };
        let h = resp.headers();
        assert_eq!(resp.status, 429);
        assert_eq!(h["retry-after"], "3");
        assert_eq!(h.get_all("x-a").iter().count(), 2);

        let framing = |head: &[u8]| {
            parse_head(&mut BytesMut::from(head))
                .unwrap()
                .unwrap()
                .framing
        };
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n"
            ),
            Framing::Chunked(Chunk::Size)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 3\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"),
            Framing::Length(3)
        );
    }
}
