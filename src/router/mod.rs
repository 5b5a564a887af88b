//! Model groups and deployment choice: strategies, retries, cooldowns and fallbacks.

pub mod deployment;

pub use deployment::{provider_spec, Deployment, ProviderSpec, Source, PROVIDERS};

/// A minimal deployment for unit tests.
#[cfg(test)]
pub fn test_deployment(id: &str, group: &str, wire: crate::providers::Wire) -> Deployment {
    Deployment {
        id: id.into(),
        model_name: group.into(),
        provider: "openai".into(),
        wire,
        upstream_model: group.into(),
        api_base: "http://127.0.0.1:1".into(),
        api_key: None,
        api_version: None,
        organization: None,
        timeout: None,
        stream_timeout: None,
        max_retries: None,
        rpm: None,
        tpm: None,
        order: None,
        weight: None,
        input_cost_per_token: None,
        output_cost_per_token: None,
        input_cost_per_second: None,
        output_cost_per_second: None,
        extra_headers: vec![],
        default_params: Default::default(),
        model_info: Default::default(),
        mock_latency_ms: None,
        source: deployment::Source::Config,
    }
}
