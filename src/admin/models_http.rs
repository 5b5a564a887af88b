//! HTTP handlers for runtime model management; the logic is in `admin::models`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::models::{self, ModelError};
use crate::proxy::request::JsonBody;
use crate::proxy::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/model/new", post(add))
        .route("/model/update", post(update))
        .route("/model/delete", post(delete))
        .route("/model/info", get(info))
        .route("/v1/model/info", get(info))
}

/// The master key or an admin user.
pub(crate) fn require_admin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let caller = app.governance.authenticate(crate::auth::api_key(headers))?;
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::unauthorized(super::common::admin_only_message(
            &caller,
        )))
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        let status = match &e {
            ModelError::Invalid(_) | ModelError::Secret(_) => StatusCode::BAD_REQUEST,
            ModelError::NotFound(_) => StatusCode::NOT_FOUND,
            ModelError::ReadOnly(_) => StatusCode::FORBIDDEN,
            ModelError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "model management failed");
        }
        ApiError::new(status, "invalid_request_error", e.to_string())
    }
}

async fn add(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    require_admin(&app, &headers)?;
    Ok(Json(models::add(&app, &body)?))
}

async fn update(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    require_admin(&app, &headers)?;
    Ok(Json(models::update(&app, &body)?))
}

async fn delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    require_admin(&app, &headers)?;
    Ok(Json(models::delete(&app, &body)?))
}

#[derive(Deserialize)]
struct InfoQuery {
    litellm_model_id: Option<String>,
}

async fn info(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    // Like LiteLLM, any key may ask; it sees only the models it may call.
    let caller = app
        .governance
        .authenticate(crate::auth::api_key(&headers))?;
    let visible = |m: &str| caller.is_admin() || app.governance.can_use_model(&caller, m);
    let mut out = models::info(&app, q.litellm_model_id.as_deref(), &visible);
    if !caller.is_admin() {
        // Where a deployment lives is for admins only.
        for d in out["data"].as_array_mut().into_iter().flatten() {
            if let Some(p) = d.get_mut("litellm_params").and_then(Value::as_object_mut) {
                p.remove("api_base");
            }
        }
    }
    Ok(Json(out))
}
