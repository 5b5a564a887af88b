//! The management API (LiteLLM-compatible): thin JSON handlers (`http`) over per-noun
//! services (`keys`, `users`, `teams`, `customers`) that have no HTTP dependency.

pub mod common;
pub mod customers;
pub mod error;
pub mod fields;
mod http;
pub mod keys;
pub mod teams;
pub mod users;

use axum::Router;

pub use error::Error;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    http::routes()
}
