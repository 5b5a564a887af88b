//! The gateway's own HTTP/1.1 loop for the proxied endpoints. A connection starts here;
//! while its requests are plain `POST`s to the three OpenAI routes (HTTP/1.1, a
//! `Content-Length` body within the limit, no `Expect` or `Upgrade`), they are parsed,
//! answered and written here. The first request of any other shape, and everything after
//! it, goes to hyper (with the bytes already read), which serves the rest of the
//! connection: admin API, UI, HTTP/2, chunked bodies, errors in the request itself.
//!
//! Why not hyper for these too: on the benchmark box hyper's server side is about a third
//! of the instructions a proxied request takes (bench/RESULTS.md), most of it generality
//! these requests do not use.

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::providers::CallType;
use crate::state::AppState;

/// A request head longer than this is left to hyper (which refuses it).
const MAX_HEAD: usize = 64 * 1024;
/// More headers than this: left to hyper.
const MAX_HEADERS: usize = 64;
/// The most a body read reserves ahead of the bytes arriving.
const READ_STEP: usize = 64 * 1024;
/// A whole body up to this size is written together with its head.
const COALESCE_BODY: usize = 64 * 1024;

/// How a connection left the loop.
pub enum Next {
    /// Closed, or to be closed: the client went away, asked to close, or the server is
    /// stopping.
    Close,
    /// A request this loop does not serve: hyper takes the connection from here, starting
    /// with these bytes.
    Handover(Bytes),
}

/// A request head this loop serves.
struct Head {
    /// Bytes of the head, the blank line included.
    len: usize,
    call: CallType,
    content_length: usize,
    keep_alive: bool,
    /// Name and value of each header the handler reads (`request::read_by_proxy`), as
    /// offsets into the head: building the map of every header cost more than the rest of
    /// the request's parsing.
    fields: Vec<(Range<usize>, Range<usize>)>,
}

/// Serves requests on `io` until it closes, `stop` is set while no request is under way,
/// or a request needs hyper.
pub async fn serve(io: &mut TcpStream, app: &AppState, stop: &mut watch::Receiver<bool>) -> Next {
    let limit = app.config.general.max_request_size_bytes;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        // A whole head, or the reason to stop.
        let head = loop {
            match parse_head(&buf) {
                Parsed::Complete(head) if head.content_length <= limit => break head,
                Parsed::Partial if buf.len() < MAX_HEAD => {}
                // Another shape, a malformed or oversized head, or a body over the limit:
                // hyper answers it as it answers on any other connection.
                _ => return Next::Handover(buf.freeze()),
            }
            // Stopping: an idle connection, or one whose client has not finished its
            // request, is closed.
            if *stop.borrow() || !read_more(io, &mut buf, stop).await {
                return Next::Close;
            }
        };
        app.busy_poll.touch();
        let head_bytes = buf.split_to(head.len).freeze();
        // A request under way is finished even when the server is stopping.
        while buf.len() < head.content_length {
            // Room for what is still to come, in steps: a declared length alone takes no
            // memory.
            buf.reserve((head.content_length - buf.len()).min(READ_STEP));
            if !matches!(io.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return Next::Close;
            }
        }
        let body = buf.split_to(head.content_length).freeze();
        let headers = header_map(&head_bytes, &head.fields);
        let answer = crate::proxy::completions::serve_parsed(app.clone(), head.call, headers, body);
        tokio::pin!(answer);
        // Waiting for the answer, the connection is still read: bytes are the client's
        // next request (kept), and its end means the client is gone, which drops the
        // answer and so cancels the upstream call, as hyper does.
        let response = loop {
            tokio::select! {
                biased;
                response = &mut answer => break response,
                read = io.read_buf(&mut buf), if buf.len() < MAX_HEAD => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Next::Close;
                    }
                }
            }
        };
        if write_response(io, &mut buf, response, head.keep_alive)
            .await
            .is_err()
            || !head.keep_alive
        {
            return Next::Close;
        }
    }
}

/// Reads more of a request head into `buf`; false when the client has gone or the server
/// is stopping.
async fn read_more(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        read = io.read_buf(buf) => matches!(read, Ok(n) if n > 0),
        _ = stop.changed() => false,
    }
}

enum Parsed {
    Complete(Head),
    Partial,
    /// Not for this loop (or not HTTP at all): hyper decides.
    Other,
}

fn parse_head(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let call = match (req.version, req.method, req.path) {
        (Some(1), Some("POST"), Some(path)) => match crate::proxy::routes::hot_path(path) {
            Some(call) => call,
            None => return Parsed::Other,
        },
        _ => return Parsed::Other,
    };
    let base = buf.as_ptr() as usize;
    let offsets = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let mut content_length = None;
    let mut keep_alive = true;
    let mut fields = Vec::new();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // Digits only (`usize::from_str` would also take a sign).
            let digits = h.value.trim_ascii();
            let n = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(digits).ok()?.parse::<usize>().ok())
                .flatten();
            match (n, content_length) {
                (Some(n), None) => content_length = Some(n),
                // Unreadable or repeated: hyper refuses it properly.
                _ => return Parsed::Other,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Other;
                }
            }
        }
        if crate::proxy::request::read_by_proxy(name) {
            fields.push((offsets(name), offsets(h.value)));
        }
    }
    let Some(content_length) = content_length else {
        return Parsed::Other;
    };
    Parsed::Complete(Head {
        len,
        call,
        content_length,
        keep_alive,
        fields,
    })
}

/// The headers kept from the request; values share the head's bytes.
fn header_map(head: &Bytes, fields: &[(Range<usize>, Range<usize>)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        // httparse checked both by the rules `http` applies, so neither fails here.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&head[name.clone()]),
            HeaderValue::from_maybe_shared(head.slice(value.clone())),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Writes `response`: a body of known length in one piece with its head, any other
/// chunked, as its pieces come (those ready together in one write). While a body
/// streams, the client's end stops it.
async fn write_response(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    response: Response<Body>,
    keep_alive: bool,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // The framing is this loop's to write, as hyper's is.
        if [CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION].contains(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&http_date());
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        let whole = body.collect().await.map_err(io::Error::other)?.to_bytes();
        // One write for head and body, unless the body is large enough that copying it
        // costs more than a second write.
        if whole.len() <= COALESCE_BODY {
            out.extend_from_slice(&whole);
            return io.write_all(&out).await;
        }
        io.write_all(&out).await?;
        return io.write_all(&whole).await;
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    // Every piece ready at once goes in one write (with the head, the first time): an
    // upstream that sends its whole answer in one burst gets one write, not one a chunk.
    loop {
        let ended = loop {
            match body.frame().now_or_never() {
                None => break false,
                Some(frame) => {
                    if push_frame(&mut out, frame)? {
                        break true;
                    }
                }
            }
        };
        if !out.is_empty() {
            io.write_all(&out).await?;
            out.clear();
        }
        if ended {
            return Ok(());
        }
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            read = io.read_buf(buf), if buf.len() < MAX_HEAD => match read {
                Ok(n) if n > 0 => continue,
                _ => return Err(io::ErrorKind::ConnectionAborted.into()),
            },
        };
        if push_frame(&mut out, frame)? {
            io.write_all(&out).await?;
            return Ok(());
        }
    }
}

/// Adds a body frame to `out` as a chunk (the last chunk when the body has ended, which
/// it returns true for). Trailers are not sent.
fn push_frame(
    out: &mut Vec<u8>,
    frame: Option<Result<hyper::body::Frame<Bytes>, axum::Error>>,
) -> io::Result<bool> {
    match frame {
        None => {
            out.extend_from_slice(b"0\r\n\r\n");
            Ok(true)
        }
        Some(Err(e)) => Err(io::Error::other(e)),
        Some(Ok(frame)) => {
            if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                push_hex(out, data.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Ok(false)
        }
    }
}

/// `n` in lowercase hex, as a chunk size is written.
fn push_hex(out: &mut Vec<u8>, n: usize) {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(n >> (i * 4)) & 0xf]);
    }
}

/// `Date` header text for now, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 29])> = const { std::cell::Cell::new((-1, [0; 29])) };
    }
    let now = chrono::Utc::now();
    let second = now.timestamp();
    LAST.with(|last| {
        let (cached, text) = last.get();
        if cached == second {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if formatted.len() == text.len() {
            text.copy_from_slice(formatted.as_bytes());
        }
        last.set((second, text));
        text
    })
}

/// A connection handed to hyper: the bytes this loop read first, then the socket.
pub struct Rewind {
    pre: Bytes,
    io: TcpStream,
}

impl Rewind {
    pub fn new(pre: Bytes, io: TcpStream) -> Rewind {
        Rewind { pre, io }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(out.remaining());
            out.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for n in [
            0usize,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            4096,
            65535,
            1 << 40,
            usize::MAX,
        ] {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{n:x}"));
        }
    }

    #[test]
    fn only_plain_proxied_posts_stay_in_the_loop() {
        let post = |extra: &str| {
            format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{extra}\r\n{{}}")
        };
        let complete = |req: &str| match parse_head(req.as_bytes()) {
            Parsed::Complete(head) => Some((head.content_length, head.keep_alive)),
            Parsed::Partial => panic!("partial: {req}"),
            Parsed::Other => None,
        };
        assert_eq!(complete(&post("content-length: 2\r\n")), Some((2, true)));
        assert_eq!(
            complete(&post(
                "content-length: 2\r\nconnection: keep-alive, close\r\n"
            )),
            Some((2, false))
        );
        for other in [
            post(""),
            post("content-length: 2\r\ncontent-length: 2\r\n"),
            post("content-length: x\r\n"),
            post("content-length: +2\r\n"),
            post("content-length: \r\n"),
            post("transfer-encoding: chunked\r\n"),
            post("content-length: 2\r\nexpect: 100-continue\r\n"),
            post("content-length: 2\r\nconnection: upgrade\r\n"),
            post("content-length: 2\r\n").replace("HTTP/1.1", "HTTP/1.0"),
            post("content-length: 2\r\n").replace("POST", "GET"),
            post("content-length: 2\r\n").replace("/v1/chat/completions", "/key/generate"),
            post("content-length: 2\r\n").replace("completions", "completions?x=1"),
        ] {
            assert_eq!(complete(&other), None, "{other}");
        }
        assert!(matches!(
            parse_head(b"POST /v1/chat/compl"),
            Parsed::Partial
        ));
        assert!(matches!(parse_head(b"\x16\x03\x01 tls"), Parsed::Other));
    }
}
