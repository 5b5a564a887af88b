//! The management API (LiteLLM-compatible): thin JSON handlers over `admin::service`.

pub mod spend_http;

use axum::Router;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().merge(spend_http::routes())
}
