//! Maps the OpenAI-compatible paths (with and without `/v1`) to handlers.

use axum::routing::{get, post};
use axum::Router;

use super::{completions, models};
use crate::state::AppState;

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
