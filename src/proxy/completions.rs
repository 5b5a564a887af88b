//! `/chat/completions`, `/completions` and `/embeddings`: the request path.
//!
//! authenticate → parse → admit (reserve budget, rate) → router.run (deployment, retries,
//! fallbacks) → answer (whole or streamed) → settle + queue the spend row.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::context::{apply_headers, base_row, fill_usage, record_failure, response_headers, Ctx};
use super::request::{ProxyBody, ProxyRequest};
use super::{stream, ApiError};
use crate::governance::{Admission, AdmitRequest};
use crate::providers::{self, CallType, RequestBody, Usage};
use crate::router::{RouteRequest, Routed};
use crate::spend::cost;
use crate::state::AppState;

/// Completion tokens reserved against budgets when the request sets no `max_tokens`.
const DEFAULT_RESERVED_OUTPUT_TOKENS: u64 = 256;

pub async fn chat(
    State(app): State<AppState>,
    headers: HeaderMap,
    ProxyBody(body): ProxyBody,
) -> Response {
    handle(app, CallType::Chat, headers, body).await
}

pub async fn completions(
    State(app): State<AppState>,
    headers: HeaderMap,
    ProxyBody(body): ProxyBody,
) -> Response {
    handle(app, CallType::Completion, headers, body).await
}

pub async fn embeddings(
    State(app): State<AppState>,
    headers: HeaderMap,
    ProxyBody(body): ProxyBody,
) -> Response {
    handle(app, CallType::Embedding, headers, body).await
}

/// The same endpoints straight from hyper, ahead of axum's router: the server loop
/// (`app::serve`) sends the three OpenAI POST routes here, which spares every proxied
/// request the router, the boxed body and the extractors.
pub async fn serve_hot(
    app: AppState,
    call: CallType,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Response {
    let limit = app.config.general.max_request_size_bytes;
    let (parts, body) = req.into_parts();
    match super::request::read_body(body, limit).await {
        Ok(body) => handle(app, call, parts.headers, body).await,
        Err(e) => e.into_response(),
    }
}

/// The same, for a request the gateway's own HTTP/1.1 loop (`proxy::server`) has read;
/// `headers` holds those the proxied path reads (`request::read_by_proxy`).
pub async fn serve_parsed(
    app: AppState,
    call: CallType,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    match super::request::proxy_body(body) {
        Ok(body) => handle(app, call, headers, body).await,
        Err(e) => e.into_response(),
    }
}

async fn handle(app: AppState, call: CallType, headers: HeaderMap, body: RequestBody) -> Response {
    match admit_and_run(app, call, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn admit_and_run(
    app: AppState,
    call: CallType,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let caller = app
        .governance
        .authenticate(crate::auth::api_key(&headers))?;
    let req = ProxyRequest::parse(call, &body, &headers)?;
    let Some(group) = app.router.group(&req.model) else {
        return Err(crate::router::RouteError::UnknownModel {
            model: req.model.clone(),
            available: app.router.group_names().join(", "),
        }
        .into());
    };
    let est_prompt_tokens = providers::estimate_prompt_tokens(&body);
    let reserved_output = if call == CallType::Embedding {
        0
    } else {
        req.max_output_tokens
            .unwrap_or(DEFAULT_RESERVED_OUTPUT_TOKENS)
    };
    let est_cost = group
        .iter()
        .filter_map(|d| d.price.as_ref())
        .map(|p| cost::estimate_max_cost(p, est_prompt_tokens, reserved_output))
        .fold(0.0, f64::max);
    // The router picks from its current groups; this copy is not kept across the call.
    drop(group);
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
        num_retries: body.u64("num_retries").map(|n| n as u32),
        fallbacks: body
            .value("fallbacks")
            .as_ref()
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| {
                        f.as_str()
                            .map(str::to_owned)
                            .or_else(|| f.get("model").and_then(Value::as_str).map(str::to_owned))
                    })
                    .collect()
            }),
        mock_testing_fallbacks: body.bool("mock_testing_fallbacks").unwrap_or(false),
        mock_testing_rate_limit_error: body.bool("mock_testing_rate_limit_error").unwrap_or(false),
    };
    let ctx = Arc::new(Ctx {
        app,
        req,
        caller,
        body,
        request_id: new_request_id(),
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
                let call = ctx.call_context(&dep, false);
                let t = Instant::now();
                let r = providers::call(&call).await;
                if let Ok(c) = &r {
                    let upstream = t.elapsed();
                    ctx.set_upstream_time(upstream);
                    let u = c.usage.unwrap_or_default();
                    dep.record_success(upstream, None, u.total_tokens(), u.completion_tokens);
                }
                r
            }
        })
        .await;
    match routed {
        Ok(Routed {
            value: answer,
            deployment,
            attempted_retries,
            attempted_fallbacks,
        }) => {
            let usage = answer
                .usage
                .unwrap_or_else(|| estimate_usage(&ctx, &answer.json()));
            // One clock read for the answer's cost, headers and spend row.
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(ctx.started);
            let spend = deployment
                .price
                .as_ref()
                .map(|p| cost::cost(p, &usage, Some(elapsed)))
                .unwrap_or(0.0);
            let headers = response_headers(
                &ctx,
                &deployment,
                (attempted_retries, attempted_fallbacks),
                spend,
                &admission,
                now,
            );
            admission.settle(spend, usage.total_tokens());
            let mut row = base_row(
                &ctx,
                Some(&deployment),
                attempted_retries,
                attempted_fallbacks,
                now,
            );
            fill_usage(&mut row, &usage, spend);
            if ctx.app.config.general.store_prompts_in_spend_logs {
                row.response = Some(answer.json());
            }
            ctx.app.spend.record(row);
            let resp = match answer.raw {
                Some(raw) => {
                    // `headers` carries the JSON content type.
                    let mut resp = Response::new(axum::body::Body::from(raw));
                    *resp.headers_mut() = headers;
                    resp
                }
                None => {
                    let mut resp = axum::Json(answer.body).into_response();
                    apply_headers(&mut resp, headers);
                    resp
                }
            };
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

/// `chatcmpl-<uuid v4>`, LiteLLM's call id, without the formatting machinery.
fn new_request_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    let uuid = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    let mut id = String::with_capacity(9 + uuid.len());
    id.push_str("chatcmpl-");
    id.push_str(uuid);
    id
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
