//! The management API (LiteLLM-compatible): thin JSON handlers over `admin::service`.

use axum::Router;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
