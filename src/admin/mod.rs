//! The management API (LiteLLM-compatible): thin JSON handlers over service functions
//! that never import axum, so the future UI can call the same functions.

pub mod models;
mod models_http;
mod spend_http;

use axum::Router;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(models_http::routes())
        .merge(spend_http::routes())
}
