//! The OpenAI-compatible face: `/v1/*` handlers, SSE streaming, health probes.

pub mod completions;
mod context;
mod error;
pub mod models;
pub mod request;
pub mod routes;
pub mod server;
mod stream;

pub use error::ApiError;
