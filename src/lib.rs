//! Switchyard: a self-hosted, LiteLLM-compatible LLM gateway in one binary.

pub mod config;
pub mod providers;
pub mod router;
pub mod spend;
pub mod store;
