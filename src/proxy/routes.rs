//! Maps the OpenAI-compatible paths (with and without `/v1`) to handlers.

use axum::routing::{get, post};
use axum::Router;

use super::{completions, models};
use crate::providers::CallType;
use crate::state::AppState;

/// The proxied POST endpoints `app::serve` hands to [`completions::serve_hot`] before
/// axum's router sees them. The router keeps the same routes so that other methods on
/// these paths get 405, and anything handed the router alone gets the same answers.
pub fn hot_route(method: &axum::http::Method, path: &str) -> Option<CallType> {
    if method != axum::http::Method::POST {
        return None;
    }
    hot_path(path)
}

/// The call a proxied POST to `path` (without a query string) makes.
pub fn hot_path(path: &str) -> Option<CallType> {
    match path.strip_prefix("/v1").unwrap_or(path) {
        "/chat/completions" => Some(CallType::Chat),
        "/completions" => Some(CallType::Completion),
        "/embeddings" => Some(CallType::Embedding),
        _ => None,
    }
}

pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["", "/v1"] {
        r = r
            .route(
                &format!("{prefix}/chat/completions"),
                post(completions::chat),
            )
            .route(
                &format!("{prefix}/completions"),
                post(completions::completions),
            )
            .route(
                &format!("{prefix}/embeddings"),
                post(completions::embeddings),
            )
            .route(&format!("{prefix}/models"), get(models::list))
            .route(&format!("{prefix}/models/{{model}}"), get(models::one));
    }
    r.route("/health/liveliness", get(models::liveliness))
        .route("/health/liveness", get(models::liveliness))
        .route("/health/readiness", get(models::readiness))
        .route("/health", get(models::health))
}
