//! Switchyard: a self-hosted, LiteLLM-compatible LLM gateway in one binary.

pub mod providers;
pub mod router;
pub mod spend;
