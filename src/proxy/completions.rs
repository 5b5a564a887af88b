//! `/chat/completions`, `/completions` and `/embeddings`: the request path.
//!
//! authenticate → parse → admit (reserve budget, rate) → router.run (deployment, retries,
//! fallbacks) → answer (whole or streamed) → settle + queue the spend row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::request::{JsonBody, ProxyRequest};
use super::{stream, ApiError};
use crate::app::AppState;
use crate::governance::{Admission, AdmitRequest, Caller};
use crate::providers::{self, CallContext, CallType, Completion, Usage};
use crate::router::{DeploymentState, RouteRequest, Routed};
use crate::spend::{cost, SpendRow};

/// Completion tokens reserved against budgets when the request sets no `max_tokens`.
const DEFAULT_RESERVED_OUTPUT_TOKENS: u64 = 256;

pub async fn chat(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    handle(app, CallType::Chat, headers, body).await
}

pub async fn completions(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    handle(app, CallType::Completion, headers, body).await
}

pub async fn embeddings(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    handle(app, CallType::Embedding, headers, body).await
}

/// Everything known about a request once it is admitted; shared by both answer paths.
pub(crate) struct Ctx {
    pub app: AppState,
    pub req: ProxyRequest,
    pub caller: Caller,
    pub body: Value,
    pub request_id: String,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub est_prompt_tokens: u64,
    /// Time spent waiting on the upstream in the successful attempt (µs).
    pub upstream_us: std::sync::atomic::AtomicU64,
}

async fn handle(app: AppState, call: CallType, headers: HeaderMap, body: Value) -> Response {
    match admit_and_run(app, call, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn admit_and_run(
    app: AppState,
    call: CallType,
    headers: HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let caller = app
        .governance
        .authenticate(crate::auth::api_key(&headers))?;
    let req = ProxyRequest::parse(call, &body, &headers)?;
    if !app.router.has_group(&req.model) {
        return Err(crate::router::RouteError::UnknownModel {
            model: req.model.clone(),
            available: app.router.group_names().join(", "),
        }
        .into());
    }
    let est_prompt_tokens = providers::estimate_prompt_tokens(&body);
    let reserved_output = if call == CallType::Embedding {
        0
    } else {
        req.max_output_tokens
            .unwrap_or(DEFAULT_RESERVED_OUTPUT_TOKENS)
    };
    let est_cost = app
        .router
        .group(&req.model)
        .iter()
        .filter_map(|d| d.price.as_ref())
        .map(|p| cost::estimate_max_cost(p, est_prompt_tokens, reserved_output))
        .fold(0.0, f64::max);
    let admission = app.governance.admit(
        &caller,
        &AdmitRequest {
            model: &req.model,
            end_user: req.end_user.as_deref(),
            est_cost,
            est_tokens: est_prompt_tokens + reserved_output,
            route: call.openai_path(),
        },
    )?;
    let route = RouteRequest {
        model: req.model.clone(),
        stream: req.stream,
        est_prompt_tokens,
        num_retries: body
            .get("num_retries")
            .and_then(Value::as_u64)
            .map(|n| n as u32),
        fallbacks: body.get("fallbacks").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|f| {
                    f.as_str()
                        .map(str::to_owned)
                        .or_else(|| f.get("model").and_then(Value::as_str).map(str::to_owned))
                })
                .collect()
        }),
        mock_testing_fallbacks: body
            .get("mock_testing_fallbacks")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        mock_testing_rate_limit_error: body
            .get("mock_testing_rate_limit_error")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let ctx = Arc::new(Ctx {
        app,
        req,
        caller,
        body,
        request_id: format!("chatcmpl-{}", uuid::Uuid::new_v4()),
        started,
        started_at,
        est_prompt_tokens,
        upstream_us: Default::default(),
    });
    if ctx.req.stream {
        stream::respond(ctx, route, admission).await
    } else {
        whole(ctx, route, admission).await
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

async fn whole(
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
                let _in_flight = dep.start();
                let call = CallContext {
                    http: &ctx.app.http,
                    deployment: &dep.dep,
                    call: ctx.req.call,
                    body: &ctx.body,
                    timeout: call_timeout(&ctx.app, &dep, false),
                };
                let t = Instant::now();
                let r = providers::call(&call).await;
                if let Ok(c) = &r {
                    ctx.set_upstream_time(t.elapsed());
                    let u = c.usage.unwrap_or_default();
                    dep.record_success(t.elapsed(), None, u.total_tokens(), u.completion_tokens);
                }
                r
            }
        })
        .await;
    match routed {
        Ok(Routed {
            value: Completion { body, usage },
            deployment,
            attempted_retries,
            attempted_fallbacks,
        }) => {
            let usage = usage.unwrap_or_else(|| estimate_usage(&ctx, &body));
            let elapsed = ctx.started.elapsed();
            let spend = deployment
                .price
                .as_ref()
                .map(|p| cost::cost(p, &usage, Some(elapsed)))
                .unwrap_or(0.0);
            let headers = response_headers(
                &ctx,
                &deployment,
                attempted_retries,
                attempted_fallbacks,
                spend,
                &admission,
            );
            admission.settle(spend, usage.total_tokens());
            let mut row = base_row(
                &ctx,
                Some(&deployment),
                attempted_retries,
                attempted_fallbacks,
            );
            fill_usage(&mut row, &usage, spend);
            if ctx.app.config.general.store_prompts_in_spend_logs {
                row.response = Some(body.clone());
            }
            ctx.app.spend.record(row);
            let mut resp = axum::Json(body).into_response();
            apply_headers(&mut resp, headers);
            Ok(resp)
        }
        Err(e) => {
            let err = ApiError::from(e);
            record_failure(&ctx, &err, None, 0, 0);
            drop(admission);
            Err(err)
        }
    }
}

/// Local estimate when an upstream reports no usage (documented: ~4 characters a token).
fn estimate_usage(ctx: &Ctx, body: &Value) -> Usage {
    let completion_chars: usize = body
        .get("choices")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    c.pointer("/message/content")
                        .or_else(|| c.get("text"))
                        .and_then(Value::as_str)
                        .map(str::len)
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0);
    Usage {
        prompt_tokens: ctx.est_prompt_tokens,
        completion_tokens: providers::estimate_tokens(completion_chars),
        estimated: true,
        ..Usage::default()
    }
}

/// A spend row with everything but usage and outcome filled in.
pub(crate) fn base_row(
    ctx: &Ctx,
    dep: Option<&Arc<DeploymentState>>,
    retries: u32,
    fallbacks: u32,
) -> SpendRow {
    let now = chrono::Utc::now();
    SpendRow {
        request_id: ctx.request_id.clone(),
        call_type: ctx.req.call.litellm_name().into(),
        api_key: ctx.caller.token_hash.clone().unwrap_or_default(),
        key_alias: ctx.caller.key_alias.clone(),
        user: ctx.caller.user_id.clone(),
        team_id: ctx.caller.team_id.clone(),
        end_user: ctx.req.end_user.clone(),
        model: ctx.req.model.clone(),
        model_group: dep
            .map(|d| d.dep.model_name.clone())
            .unwrap_or_else(|| ctx.req.model.clone()),
        model_id: dep.map(|d| d.dep.id.clone()).unwrap_or_default(),
        api_base: dep.map(|d| d.dep.public_api_base()).unwrap_or_default(),
        custom_llm_provider: dep.map(|d| d.dep.provider.clone()).unwrap_or_default(),
        start_time: ctx
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        end_time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms: ctx.started.elapsed().as_millis() as u64,
        status: "success".into(),
        http_status: 200,
        request_tags: ctx.req.tags.clone(),
        metadata: ctx.req.metadata.clone(),
        attempted_retries: retries,
        attempted_fallbacks: fallbacks,
        stream: ctx.req.stream,
        messages: ctx
            .app
            .config
            .general
            .store_prompts_in_spend_logs
            .then(|| {
                ctx.body
                    .get("messages")
                    .or_else(|| ctx.body.get("prompt"))
                    .or_else(|| ctx.body.get("input"))
                    .cloned()
            })
            .flatten(),
        ..SpendRow::default()
    }
}

pub(crate) fn fill_usage(row: &mut SpendRow, usage: &Usage, spend: f64) {
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
    let mut row = base_row(ctx, dep, retries, fallbacks);
    row.status = "failure".into();
    row.http_status = err.status.as_u16();
    row.error_class = Some(err.kind.to_owned());
    row.error_message = Some(err.message.chars().take(2000).collect());
    ctx.app.spend.record(row);
}

/// LiteLLM's response headers for a routed call.
pub(crate) fn response_headers(
    ctx: &Ctx,
    dep: &DeploymentState,
    retries: u32,
    fallbacks: u32,
    cost: f64,
    admission: &Admission,
) -> Vec<(HeaderName, String)> {
    let total_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
    let mut h: Vec<(HeaderName, String)> = vec![
        (
            HeaderName::from_static("x-litellm-call-id"),
            ctx.request_id.clone(),
        ),
        (
            HeaderName::from_static("x-litellm-response-cost"),
            format!("{cost}"),
        ),
        (
            HeaderName::from_static("x-litellm-model-id"),
            dep.dep.id.clone(),
        ),
        (
            HeaderName::from_static("x-litellm-model-api-base"),
            dep.dep.public_api_base(),
        ),
        (
            HeaderName::from_static("x-litellm-model-group"),
            dep.dep.model_name.clone(),
        ),
        (
            HeaderName::from_static("x-litellm-attempted-retries"),
            retries.to_string(),
        ),
        (
            HeaderName::from_static("x-litellm-attempted-fallbacks"),
            fallbacks.to_string(),
        ),
        (
            HeaderName::from_static("x-litellm-response-duration-ms"),
            format!("{total_ms:.3}"),
        ),
        (
            HeaderName::from_static("x-litellm-version"),
            env!("CARGO_PKG_VERSION").into(),
        ),
    ];
    h.push((
        HeaderName::from_static("x-litellm-overhead-duration-ms"),
        format!("{:.3}", ctx.overhead_ms()),
    ));
    for (k, v) in admission.headers() {
        h.push((HeaderName::from_static(k), v.clone()));
    }
    h
}

impl Ctx {
    pub(crate) fn set_upstream_time(&self, d: Duration) {
        self.upstream_us
            .store(d.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time the gateway added on top of the upstream (auth, limits, routing, retries).
    fn overhead_ms(&self) -> f64 {
        let upstream = self.upstream_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
        (self.started.elapsed().as_secs_f64() * 1000.0 - upstream).max(0.0)
    }
}

pub(crate) fn apply_headers(resp: &mut Response, headers: Vec<(HeaderName, String)>) {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
}
