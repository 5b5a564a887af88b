//! The context of one admitted request and what both answer paths (whole and
//! streamed) share: timeouts, LiteLLM response headers, spend rows.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;

use super::request::ProxyRequest;
use super::ApiError;
use crate::governance::{float_header, Admission, Caller};
use crate::providers::{CallContext, RequestBody, Usage};
use crate::router::DeploymentState;
use crate::spend::{rfc3339_millis, SpendRow};
use crate::state::AppState;

/// Everything known about a request once it is admitted; shared by both answer paths.
pub(crate) struct Ctx {
    pub app: AppState,
    pub req: ProxyRequest,
    pub caller: Caller,
    pub body: RequestBody,
    pub request_id: String,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub est_prompt_tokens: u64,
    /// Time spent waiting on the upstream in the successful attempt (µs).
    pub upstream_us: std::sync::atomic::AtomicU64,
}

impl Drop for Ctx {
    /// The request is over (answered, streamed to the end, failed or abandoned): the
    /// client's next request is likely close behind (`busy_poll`).
    fn drop(&mut self) {
        self.app.busy_poll.touch();
    }
}

/// Time allowed for a call: the deployment's, else the router's.
pub(crate) fn call_timeout(app: &AppState, d: &DeploymentState, stream: bool) -> Duration {
    let s = app.router.settings();
    let stream_t = if stream {
        d.dep.stream_timeout.or(s.stream_timeout)
    } else {
        None
    };
    stream_t.or(d.dep.timeout).unwrap_or(s.timeout)
}

/// A spend row with everything but usage and outcome filled in, ending at `now`.
pub(crate) fn base_row<'a>(
    ctx: &'a Ctx,
    dep: Option<&'a Arc<DeploymentState>>,
    retries: u32,
    fallbacks: u32,
    now: Instant,
) -> SpendRow<'a> {
    let duration = now.saturating_duration_since(ctx.started);
    // The end as wall-clock time, from the start's: one clock read fewer a request.
    let ended_at = ctx.started_at
        + chrono::Duration::from_std(duration).unwrap_or_else(|_| chrono::Duration::zero());
    let borrowed = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
    SpendRow {
        request_id: Cow::Borrowed(&ctx.request_id),
        call_type: Cow::Borrowed(ctx.req.call.litellm_name()),
        api_key: Cow::Borrowed(ctx.caller.token_hash.as_deref().unwrap_or_default()),
        key_alias: borrowed(&ctx.caller.key_alias),
        user: borrowed(&ctx.caller.user_id),
        team_id: borrowed(&ctx.caller.team_id),
        end_user: borrowed(&ctx.req.end_user),
        model: Cow::Borrowed(&ctx.req.model),
        model_group: Cow::Borrowed(dep.map_or(&ctx.req.model, |d| &d.dep.model_name)),
        model_id: Cow::Borrowed(dep.map_or("", |d| &d.dep.id)),
        api_base: Cow::Borrowed(dep.map_or("", |d| &d.public_api_base)),
        custom_llm_provider: Cow::Borrowed(dep.map_or("", |d| &d.dep.provider)),
        start_time: rfc3339_millis(ctx.started_at),
        end_time: rfc3339_millis(ended_at),
        duration_ms: duration.as_millis() as u64,
        status: Cow::Borrowed("success"),
        http_status: 200,
        request_tags: Cow::Borrowed(&ctx.req.tags),
        metadata: Cow::Borrowed(&ctx.req.metadata),
        attempted_retries: retries,
        attempted_fallbacks: fallbacks,
        stream: ctx.req.stream,
        messages: ctx
            .app
            .config
            .general
            .store_prompts_in_spend_logs
            .then(|| {
                ["messages", "prompt", "input"]
                    .iter()
                    .find_map(|k| ctx.body.value(k))
            })
            .flatten(),
        ..SpendRow::default()
    }
}

pub(crate) fn fill_usage(row: &mut SpendRow<'_>, usage: &Usage, spend: f64) {
    row.spend = spend;
    row.prompt_tokens = usage.prompt_tokens;
    row.completion_tokens = usage.completion_tokens;
    row.total_tokens = usage.total_tokens();
    row.cache_read_tokens = usage.cache_read_tokens;
    row.cache_creation_tokens = usage.cache_creation_tokens;
    row.usage_estimated = usage.estimated;
}

/// Queues a failure row (no charge).
pub(crate) fn record_failure(
    ctx: &Ctx,
    err: &ApiError,
    dep: Option<&Arc<DeploymentState>>,
    retries: u32,
    fallbacks: u32,
) {
    let mut row = base_row(ctx, dep, retries, fallbacks, Instant::now());
    fill_failure(&mut row, err);
    ctx.app.spend.record(row);
}

/// Characters of an error message a spend row keeps.
const MAX_ROW_ERROR_CHARS: usize = 2000;

/// Marks `row` failed with `err`: status, class, and the message's first
/// `MAX_ROW_ERROR_CHARS` characters (borrowed, not copied).
pub(crate) fn fill_failure<'a>(row: &mut SpendRow<'a>, err: &'a ApiError) {
    row.status = Cow::Borrowed("failure");
    row.http_status = err.status.as_u16();
    row.error_class = Some(Cow::Borrowed(err.kind));
    let kept = match err.message.char_indices().nth(MAX_ROW_ERROR_CHARS) {
        Some((cut, _)) => &err.message[..cut],
        None => &err.message,
    };
    row.error_message = Some(Cow::Borrowed(kept));
}

// Built at compile time: `from_static` validates the name, which costs per request when
// it runs at run time.
const CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");
const RESPONSE_COST: HeaderName = HeaderName::from_static("x-litellm-response-cost");
const MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
const MODEL_API_BASE: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
const MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
const ATTEMPTED_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
const ATTEMPTED_FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
const RESPONSE_DURATION_MS: HeaderName = HeaderName::from_static("x-litellm-response-duration-ms");
const VERSION: HeaderName = HeaderName::from_static("x-litellm-version");
const OVERHEAD_DURATION_MS: HeaderName = HeaderName::from_static("x-litellm-overhead-duration-ms");

/// A small count as a header value; the usual ones (no retries, no fallbacks) without
/// allocating.
fn count_header(n: u32) -> HeaderValue {
    static SMALL: [HeaderValue; 4] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
    ];
    match SMALL.get(n as usize) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

/// The per-request headers, first in every template and in this order, so they are set
/// by position rather than looked up by name (five hashed lookups a request).
const PER_REQUEST: [HeaderName; 6] = [
    CALL_ID,
    RESPONSE_COST,
    ATTEMPTED_RETRIES,
    ATTEMPTED_FALLBACKS,
    RESPONSE_DURATION_MS,
    OVERHEAD_DURATION_MS,
];

/// The headers every answer from `dep` starts with: the per-request ones with their
/// usual values (to be overwritten), then its fixed LiteLLM headers and the JSON content
/// type.
fn header_template(dep: &DeploymentState) -> &HeaderMap {
    dep.response_headers.get_or_init(|| {
        let mut h = HeaderMap::with_capacity(16);
        let zero = HeaderValue::from_static("0");
        for name in PER_REQUEST {
            h.insert(name, zero.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, text) in [
            (MODEL_ID, dep.dep.id.as_str()),
            (MODEL_API_BASE, dep.public_api_base.as_str()),
            (MODEL_GROUP, dep.dep.model_name.as_str()),
        ] {
            // Text that cannot be a header value leaves the header out.
            if let Ok(v) = HeaderValue::from_str(text) {
                h.insert(name, v);
            }
        }
        h.insert(VERSION, HeaderValue::from_static(env!("CARGO_PKG_VERSION")));
        h
    })
}

/// LiteLLM's response headers for a routed call answered at `now`, with
/// `content-type: application/json` (a streamed answer replaces it).
pub(crate) fn response_headers(
    ctx: &Ctx,
    dep: &DeploymentState,
    (retries, fallbacks): (u32, u32),
    cost: f64,
    admission: &Admission,
    now: Instant,
) -> HeaderMap {
    let total_ms = now.saturating_duration_since(ctx.started).as_secs_f64() * 1000.0;
    let upstream_ms = ctx.upstream_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
    // In `PER_REQUEST` order; `None` keeps the template's "0".
    let values = [
        HeaderValue::from_str(&ctx.request_id).ok(),
        (cost != 0.0).then(|| float_header(cost, None)),
        (retries != 0).then(|| count_header(retries)),
        (fallbacks != 0).then(|| count_header(fallbacks)),
        Some(float_header(total_ms, Some(3))),
        // The time the gateway added on top of the upstream (auth, limits, routing, retries).
        Some(float_header((total_ms - upstream_ms).max(0.0), Some(3))),
    ];
    let mut h = header_template(dep).clone();
    // A template's values come in insertion order, `PER_REQUEST` first.
    for (slot, value) in h.values_mut().zip(values) {
        if let Some(value) = value {
            *slot = value;
        }
    }
    for (name, value) in admission.headers() {
        h.insert(name.clone(), value.clone());
    }
    h
}

impl Ctx {
    /// What a provider adapter needs to call `dep` for this request.
    pub(crate) fn call_context<'a>(
        &'a self,
        dep: &'a DeploymentState,
        stream: bool,
    ) -> CallContext<'a> {
        CallContext {
            http: &self.app.http,
            deployment: &dep.dep,
            call: self.req.call,
            body: &self.body,
            timeout: call_timeout(&self.app, dep, stream),
            prepared: Some(&dep.prepared),
        }
    }

    pub(crate) fn set_upstream_time(&self, d: Duration) {
        self.upstream_us
            .store(d.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Puts `headers` on `resp`; the response's own headers (its content type) win.
pub(crate) fn apply_headers(resp: &mut Response, mut headers: HeaderMap) {
    let own = std::mem::take(resp.headers_mut());
    let mut last = None;
    for (name, value) in own {
        // A name is given once, before its further values.
        if let Some(name) = name {
            headers.remove(&name);
            last = Some(name);
        }
        if let Some(name) = &last {
            headers.append(name.clone(), value);
        }
    }
    *resp.headers_mut() = headers;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::test_deployment;
    use crate::providers::Wire;

    #[test]
    fn a_failure_row_keeps_the_first_two_thousand_characters_of_the_message() {
        let long = ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "api_error",
            "é".repeat(2500),
        );
        let mut row = SpendRow::default();
        fill_failure(&mut row, &long);
        let kept = row.error_message.as_deref().unwrap();
        assert_eq!(kept.chars().count(), MAX_ROW_ERROR_CHARS);
        assert!(long.message.starts_with(kept));
        assert_eq!(
            (&*row.status, row.http_status, row.error_class.as_deref()),
            ("failure", 502, Some("api_error"))
        );
        let short = ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream said no",
        );
        fill_failure(&mut row, &short);
        assert_eq!(row.error_message.as_deref(), Some("upstream said no"));
    }

    #[test]
    fn the_template_starts_with_the_per_request_headers_in_order() {
        let mut d = test_deployment("dep-1", "gpt", Wire::OpenAi);
        d.id = "bad\nid".into(); // not a header value: left out, and nothing shifts
        let state = DeploymentState::new(d, None);
        let h = header_template(&state);
        let names: Vec<&HeaderName> = h.keys().collect();
        assert_eq!(
            names[..PER_REQUEST.len()],
            PER_REQUEST.iter().collect::<Vec<_>>()
        );
        assert!(h.get(MODEL_ID).is_none());
        assert_eq!(h[MODEL_GROUP], "gpt");
        assert_eq!(h[CONTENT_TYPE], "application/json");
        // One value a name, so values line up with names.
        assert_eq!(h.len(), h.keys_len());
    }
}
