//! `/models` listings and the health endpoints.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::providers::{self, CallContext, CallType, RequestBody};
use crate::state::AppState;

fn model_object(id: &str, created: i64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "openai"})
}

pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = app
        .governance
        .authenticate(crate::auth::api_key(&headers))?;
    let created = app.started_at.timestamp();
    let data: Vec<Value> = app
        .router
        .group_names()
        .iter()
        .filter(|m| app.governance.can_use_model(&caller, m))
        .map(|m| model_object(m, created))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn one(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = app
        .governance
        .authenticate(crate::auth::api_key(&headers))?;
    if !app.router.has_group(&model) || !app.governance.can_use_model(&caller, &model) {
        return Err(ApiError {
            param: Some("model".into()),
            code: Some("model_not_found".into()),
            ..ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{model}` does not exist"),
            )
        });
    }
    Ok(Json(model_object(&model, app.started_at.timestamp())))
}

pub async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

pub async fn readiness(State(app): State<AppState>) -> Response {
    let db = match app.store.ping() {
        Ok(()) => "connected".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    let healthy = db == "connected";
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "db": db,
        "model_count": app.router.deployments().len(),
        "model_groups": app.router.group_names().len(),
        "litellm_version": env!("CARGO_PKG_VERSION"),
        "switchyard_version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
    });
    let status = if healthy {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Probes every deployment with a tiny call, like LiteLLM's `/health`.
pub async fn health(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = app
        .governance
        .authenticate(crate::auth::api_key(&headers))?;
    if !caller.is_admin() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "auth_error",
            "Only the proxy admin may call /health",
        ));
    }
    let deployments = app.router.deployments();
    let probes = deployments.iter().map(|d| {
        let app = app.clone();
        let d = d.clone();
        async move {
            let embedding = d.dep.model_info.get("mode").and_then(Value::as_str) == Some("embedding");
            let (call, body) = if embedding {
                (CallType::Embedding, json!({"model": d.dep.model_name, "input": "ping"}))
            } else {
                (CallType::Chat, json!({"model": d.dep.model_name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}))
            };
            let body = RequestBody::from_value(&body);
            let ctx = CallContext {
                http: &app.http,
                deployment: &d.dep,
                call,
                body: &body,
                timeout: std::time::Duration::from_secs(30).min(super::context::call_timeout(&app, &d, false)),
                prepared: Some(&d.prepared),
            };
            let t = Instant::now();
            let r = providers::call(&ctx).await;
            let mut info = json!({
                "model": format!("{}/{}", d.dep.provider, d.dep.upstream_model),
                "model_name": d.dep.model_name,
                "model_id": d.dep.id,
                "api_base": d.public_api_base,
                "latency_ms": t.elapsed().as_millis() as u64,
                "state": d.snapshot(),
            });
            match r {
                Ok(_) => (true, info),
                Err(e) => {
                    info["error"] = json!(e.to_string());
                    (false, info)
                }
            }
        }
    });
    let results = futures_util::future::join_all(probes).await;
    let (ok, bad): (Vec<_>, Vec<_>) = results.into_iter().partition(|(h, _)| *h);
    let ok: Vec<Value> = ok.into_iter().map(|(_, v)| v).collect();
    let bad: Vec<Value> = bad.into_iter().map(|(_, v)| v).collect();
    Ok(Json(json!({
        "healthy_endpoints": ok,
        "unhealthy_endpoints": bad,
        "healthy_count": ok.len(),
        "unhealthy_count": bad.len(),
    })))
}
