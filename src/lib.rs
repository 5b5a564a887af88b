//! Switchyard: a self-hosted, LiteLLM-compatible LLM gateway in one binary.

pub mod admin;
pub mod app;
pub mod auth;
pub mod busy_poll;
pub mod config;
pub mod deployment;
pub mod governance;
pub mod providers;
pub mod proxy;
pub mod router;
pub mod spend;
pub mod state;
pub mod store;
