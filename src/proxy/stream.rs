//! Streaming answers: open the upstream stream and read its first event before answering
//! 200 (so a failing upstream can still be retried or fall back), then forward each chunk
//! as it arrives. Dropping the body (client gone) drops the upstream stream, which
//! cancels the upstream request; spend is settled when the stream ends either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};

use super::context::{base_row, fill_failure, fill_usage, record_failure, response_headers, Ctx};
use super::ApiError;
use crate::governance::Admission;
use crate::providers::{self, ChunkStream, Error as ProviderError, StreamItem, Usage};
use crate::router::{DeploymentState, InFlight, RouteRequest};
use crate::spend::cost;

/// An upstream stream whose first item has arrived.
struct Opened {
    first: StreamItem,
    rest: ChunkStream,
    in_flight: InFlight,
    upstream_started: Instant,
    ttft: Duration,
    /// The call's timeout, reused as the longest silence allowed between chunks.
    idle: Duration,
}

pub(crate) async fn respond(
    ctx: Arc<Ctx>,
    route: RouteRequest,
    admission: Admission,
) -> Result<Response, ApiError> {
    let routed = ctx
        .app
        .router
        .run(&route, |dep| {
            let ctx = ctx.clone();
            async move {
                let in_flight = dep.start();
                let call = ctx.call_context(&dep, true);
                let timeout = call.timeout;
                let t = Instant::now();
                let mut rest = providers::call_stream(&call).await?;
                let provider = dep.dep.provider_name();
                let remaining = timeout.saturating_sub(t.elapsed());
                let first = match tokio::time::timeout(remaining, rest.next()).await {
                    Err(_) => return Err(ProviderError::timeout(provider, timeout)),
                    Ok(None) => {
                        return Err(ProviderError::bad_response(
                            provider,
                            "stream ended before any data",
                        ))
                    }
                    Ok(Some(Err(e))) => return Err(e),
                    Ok(Some(Ok(item))) => item,
                };
                Ok(Opened {
                    first,
                    rest,
                    in_flight,
                    upstream_started: t,
                    ttft: t.elapsed(),
                    idle: timeout,
                })
            }
        })
        .await;
    let routed = match routed {
        Ok(r) => r,
        Err(e) => {
            let err = ApiError::from(e);
            record_failure(&ctx, &err, None, 0, 0);
            return Err(err);
        }
    };
    let dep = routed.deployment;
    let est_cost = dep
        .price
        .as_ref()
        .map(|p| {
            cost::cost(
                p,
                &Usage {
                    prompt_tokens: ctx.est_prompt_tokens,
                    ..Usage::default()
                },
                None,
            )
        })
        .unwrap_or(0.0);
    let mut headers = response_headers(
        &ctx,
        &dep,
        (routed.attempted_retries, routed.attempted_fallbacks),
        est_cost,
        &admission,
        Instant::now(),
    );
    let Opened {
        first,
        rest,
        in_flight,
        upstream_started,
        ttft,
        idle,
    } = routed.value;
    let state = Forward {
        ctx,
        dep,
        pending: Some(first),
        rest,
        _in_flight: in_flight,
        admission: Some(admission),
        usage: None,
        generated_bytes: 0,
        done: false,
        settled: false,
        failure: None,
        upstream_started,
        ttft,
        idle,
        retries: routed.attempted_retries,
        fallbacks: routed.attempted_fallbacks,
    };
    let body = Body::from_stream(futures_util::stream::unfold(state, |mut st| async move {
        st.next_frame()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), st))
    }));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// Tells nginx-style proxies in front not to buffer the stream.
const X_ACCEL_BUFFERING: header::HeaderName = header::HeaderName::from_static("x-accel-buffering");

/// The state of one forwarded stream.
struct Forward {
    ctx: Arc<Ctx>,
    dep: Arc<DeploymentState>,
    pending: Option<StreamItem>,
    rest: ChunkStream,
    _in_flight: InFlight,
    admission: Option<Admission>,
    usage: Option<Usage>,
    /// Bytes of generated text forwarded (content, text, tool arguments): the basis of
    /// the completion-token estimate when the upstream reports no usage.
    generated_bytes: usize,
    done: bool,
    settled: bool,
    failure: Option<ApiError>,
    upstream_started: Instant,
    ttft: Duration,
    /// Longest wait for the next upstream chunk before the stream fails with a timeout.
    idle: Duration,
    retries: u32,
    fallbacks: u32,
}

/// Appends `data` as one SSE event.
fn put_frame(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

type Item = Option<Result<StreamItem, ProviderError>>;

/// A frame stops taking more ready items at this size, so a fast upstream's long burst
/// still reaches the client in pieces while the rest is being read.
const MAX_FRAME_BYTES: usize = 16 * 1024;

impl Forward {
    /// The next piece of the response: the next upstream item, waited for, plus every item
    /// the upstream has already delivered behind it. A burst (a whole answer in one read)
    /// goes out as one body frame instead of one per chunk; nothing waits for more.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        while !self.done {
            let item = match self.pending.take() {
                Some(i) => Some(Ok(i)),
                None if out.is_empty() => {
                    match tokio::time::timeout(self.idle, self.rest.next()).await {
                        Ok(next) => next,
                        // An upstream that goes silent mid-stream must not hold the client
                        // forever.
                        Err(_) => Some(Err(ProviderError::timeout(
                            self.dep.dep.provider_name(),
                            self.idle,
                        ))),
                    }
                }
                None if out.len() >= MAX_FRAME_BYTES => break,
                None => match self.rest.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                },
            };
            self.add(item, &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Adds what the client sees of `item` to `out`; the end of the stream or an error
    /// settles it.
    fn add(&mut self, item: Item, out: &mut BytesMut) {
        match item {
            Some(Ok(StreamItem::Chunk(b))) => {
                if self.usage.is_none() {
                    self.generated_bytes += generated_text_len(&b);
                }
                put_frame(out, &b);
            }
            Some(Ok(StreamItem::Usage { usage, chunk })) => {
                self.usage = Some(usage);
                if self.ctx.req.include_usage && !chunk.is_empty() {
                    put_frame(out, &chunk);
                }
            }
            Some(Err(e)) => {
                // After the first byte there is no retry: end with an SSE error event.
                self.ctx.app.router.report_failure(&self.dep, &e);
                let err = ApiError::from(&e);
                put_frame(out, err.body().to_string().as_bytes());
                self.failure = Some(err);
                self.done = true;
                self.settle();
            }
            None => {
                self.done = true;
                self.settle();
                out.put_slice(b"data: [DONE]\n\n");
            }
        }
    }

    /// Charges the usage, records deployment latency and queues the spend row. Runs once.
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let ctx = &self.ctx;
        // No usage from the upstream: estimate locally and mark the row `usage_estimated`.
        // Prompt tokens come from the request text, completion tokens from the generated
        // text forwarded, both at ~4 bytes a token (`providers::estimate_tokens`).
        let usage = self.usage.unwrap_or(Usage {
            prompt_tokens: ctx.est_prompt_tokens,
            completion_tokens: providers::estimate_tokens(self.generated_bytes),
            estimated: true,
            ..Usage::default()
        });
        let now = Instant::now();
        let total = now.saturating_duration_since(self.upstream_started);
        ctx.set_upstream_time(total);
        let elapsed = now.saturating_duration_since(ctx.started);
        let spend = self
            .dep
            .price
            .as_ref()
            .map(|p| cost::cost(p, &usage, Some(elapsed)))
            .unwrap_or(0.0);
        if let Some(a) = self.admission.take() {
            a.settle(spend, usage.total_tokens());
        }
        let mut row = base_row(ctx, Some(&self.dep), self.retries, self.fallbacks, now);
        fill_usage(&mut row, &usage, spend);
        row.ttft_ms = Some(self.ttft.as_millis() as u64);
        match (&self.failure, self.done) {
            (Some(err), _) => fill_failure(&mut row, err),
            (None, true) => self.dep.record_success(
                total,
                Some(self.ttft),
                usage.total_tokens(),
                usage.completion_tokens,
            ),
            (None, false) => {
                row.status = "failure".into();
                row.http_status = 499;
                row.error_class = Some("client_disconnected".into());
                row.error_message = Some("client closed the stream before it ended".into());
            }
        }
        ctx.app.spend.record(row);
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        // The client went away mid-stream: the upstream is cancelled by dropping `rest`;
        // what was produced so far is still charged.
        self.settle();
    }
}

/// Bytes of generated text in one OpenAI-shaped chunk: the string values of `content`,
/// `text`, `reasoning_content` and tool-call `arguments` keys, found by a single pass over
/// the JSON tokens (no parse, no allocation). Escapes count as their escaped length.
fn generated_text_len(chunk: &[u8]) -> usize {
    const KEYS: [&[u8]; 4] = [b"content", b"text", b"reasoning_content", b"arguments"];
    /// End (index of the closing quote) of the string starting at `i`, or the end.
    fn string_end(b: &[u8], i: usize) -> usize {
        crate::providers::scan::string_end(b, i).unwrap_or(b.len())
    }
    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }
    let mut total = 0;
    let mut i = 0;
    while i < chunk.len() {
        if chunk[i] != b'"' {
            i += 1;
            continue;
        }
        let end = string_end(chunk, i + 1);
        let key = &chunk[i + 1..end];
        i = skip_ws(chunk, end + 1);
        if i >= chunk.len() || chunk[i] != b':' || !KEYS.contains(&key) {
            continue;
        }
        i = skip_ws(chunk, i + 1);
        if i < chunk.len() && chunk[i] == b'"' {
            let value_end = string_end(chunk, i + 1);
            total += value_end - (i + 1);
            i = value_end + 1;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::generated_text_len;

    #[test]
    fn generated_text_is_measured_from_content_text_and_arguments() {
        let chunk =
            br#"{"id":"x","choices":[{"delta":{"role":"assistant","content":"Hello \"you\""}}]}"#;
        assert_eq!(generated_text_len(chunk), "Hello \\\"you\\\"".len());
        let spaced = br#"{"choices": [{"text" : "abc"}, {"delta": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]}"#;
        assert_eq!(generated_text_len(spaced), 5);
        // A key named in a value is not a key.
        assert_eq!(
            generated_text_len(br#"{"model":"content","content":null}"#),
            0
        );
        assert_eq!(generated_text_len(b"{\"content\":\"unterminated"), 12);
    }
}
