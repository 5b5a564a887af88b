//! The management API (LiteLLM-compatible): thin JSON handlers (`http`, `*_http`) over
//! per-noun services (`keys`, `users`, `teams`, `customers`, `models`) that have no HTTP
//! dependency, so a future UI can call the same functions.

pub mod common;
pub mod customers;
pub mod error;
pub mod fields;
mod http;
pub mod keys;
pub mod models;
mod models_http;
mod spend_http;
pub mod teams;
pub mod users;

use axum::Router;

pub use error::Error;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    http::routes()
        .merge(models_http::routes())
        .merge(spend_http::routes())
}
