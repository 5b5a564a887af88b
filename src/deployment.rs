//! One upstream deployment (a `model_list` entry), its wire format, and the table of
//! known provider prefixes. Shared by config, providers, router and spend.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The wire format a deployment speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    /// OpenAI and every OpenAI-compatible server.
    OpenAi,
    /// Azure OpenAI: deployment in the path, `api-version` query, `api-key` header.
    Azure,
    /// Anthropic Messages API.
    Anthropic,
    /// The built-in test provider; answers without any network.
    Mock,
}

/// Where a deployment was declared: config entries are read-only at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Config,
    Runtime,
}

/// A known `provider/` prefix of `litellm_params.model`.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSpec {
    pub prefix: &'static str,
    pub wire: Wire,
    /// Used when `api_base` is not given; `None` means `api_base` is required.
    pub default_api_base: Option<&'static str>,
    /// Environment variable read for the key when `api_key` is not given (as LiteLLM does).
    pub key_env: Option<&'static str>,
}

const fn spec(
    prefix: &'static str,
    wire: Wire,
    default_api_base: Option<&'static str>,
    key_env: Option<&'static str>,
) -> ProviderSpec {
    ProviderSpec {
        prefix,
        wire,
        default_api_base,
        key_env,
    }
}

/// Every provider prefix Switchyard understands.
pub const PROVIDERS: &[ProviderSpec] = &[
    spec(
        "openai",
        Wire::OpenAi,
        Some("https://api.openai.com/v1"),
        Some("OPENAI_API_KEY"),
    ),
    spec(
        "text-completion-openai",
        Wire::OpenAi,
        Some("https://api.openai.com/v1"),
        Some("OPENAI_API_KEY"),
    ),
    spec("custom_openai", Wire::OpenAi, None, Some("OPENAI_API_KEY")),
    spec("openai_like", Wire::OpenAi, None, None),
    spec(
        "hosted_vllm",
        Wire::OpenAi,
        None,
        Some("HOSTED_VLLM_API_KEY"),
    ),
    spec(
        "ollama_chat",
        Wire::OpenAi,
        Some("http://localhost:11434/v1"),
        None,
    ),
    spec(
        "ollama",
        Wire::OpenAi,
        Some("http://localhost:11434/v1"),
        None,
    ),
    spec(
        "lm_studio",
        Wire::OpenAi,
        Some("http://localhost:1234/v1"),
        Some("LM_STUDIO_API_KEY"),
    ),
    spec(
        "groq",
        Wire::OpenAi,
        Some("https://api.groq.com/openai/v1"),
        Some("GROQ_API_KEY"),
    ),
    spec(
        "deepseek",
        Wire::OpenAi,
        Some("https://api.deepseek.com/v1"),
        Some("DEEPSEEK_API_KEY"),
    ),
    spec(
        "mistral",
        Wire::OpenAi,
        Some("https://api.mistral.ai/v1"),
        Some("MISTRAL_API_KEY"),
    ),
    spec(
        "together_ai",
        Wire::OpenAi,
        Some("https://api.together.xyz/v1"),
        Some("TOGETHERAI_API_KEY"),
    ),
    spec(
        "openrouter",
        Wire::OpenAi,
        Some("https://openrouter.ai/api/v1"),
        Some("OPENROUTER_API_KEY"),
    ),
    spec(
        "fireworks_ai",
        Wire::OpenAi,
        Some("https://api.fireworks.ai/inference/v1"),
        Some("FIREWORKS_AI_API_KEY"),
    ),
    spec(
        "xai",
        Wire::OpenAi,
        Some("https://api.x.ai/v1"),
        Some("XAI_API_KEY"),
    ),
    spec(
        "perplexity",
        Wire::OpenAi,
        Some("https://api.perplexity.ai"),
        Some("PERPLEXITYAI_API_KEY"),
    ),
    spec("azure", Wire::Azure, None, Some("AZURE_API_KEY")),
    spec(
        "anthropic",
        Wire::Anthropic,
        Some("https://api.anthropic.com"),
        Some("ANTHROPIC_API_KEY"),
    ),
    spec("mock", Wire::Mock, Some("mock://local"), None),
];

pub fn provider_spec(prefix: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.prefix == prefix)
}

/// A deployment: where and how to call one upstream model, plus its routing hints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// `model_info.id`, or a stable hash of the entry when none is given.
    pub id: String,
    /// The alias clients ask for (`model_name`); deployments sharing it form a group.
    pub model_name: String,
    /// The provider prefix, e.g. `openai`, `groq`, `anthropic`.
    pub provider: String,
    pub wire: Wire,
    /// The model name sent upstream (after the prefix; for Azure the deployment name).
    pub upstream_model: String,
    /// Base URL without a trailing slash.
    pub api_base: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    pub api_version: Option<String>,
    pub organization: Option<String>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub order: Option<u32>,
    pub weight: Option<f64>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub input_cost_per_second: Option<f64>,
    pub output_cost_per_second: Option<f64>,
    pub extra_headers: Vec<(String, String)>,
    /// Other `litellm_params` (e.g. `temperature`) sent as request defaults.
    pub default_params: Map<String, Value>,
    pub model_info: Map<String, Value>,
    /// Only for the `mock/` provider: delay before answering.
    pub mock_latency_ms: Option<u64>,
    pub source: Source,
}

impl Deployment {
    /// The provider name as a static string, for errors and logs.
    pub fn provider_name(&self) -> &'static str {
        provider_spec(&self.provider)
            .map(|p| p.prefix)
            .unwrap_or("openai")
    }

    /// `api_base` as safe to show (no credentials in userinfo or query).
    pub fn public_api_base(&self) -> String {
        let base = self.api_base.split('?').next().unwrap_or_default();
        match base.split_once("://") {
            Some((scheme, rest)) => {
                let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
                format!("{scheme}://{rest}")
            }
            None => base.to_owned(),
        }
    }

    /// Context window from `model_info.max_input_tokens` (or `max_tokens`), if set.
    pub fn context_window_override(&self) -> Option<u64> {
        self.model_info
            .get("max_input_tokens")
            .or_else(|| self.model_info.get("max_tokens"))
            .and_then(Value::as_u64)
    }
}

/// A minimal deployment for unit tests.
#[cfg(test)]
pub fn test_deployment(id: &str, group: &str, wire: Wire) -> Deployment {
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
        source: Source::Config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_api_base_hides_credentials_and_query() {
        let mut d = crate::deployment::test_deployment("d1", "g", Wire::OpenAi);
        d.api_base = "https://user:pw@example.com/v1?key=secret".into();
        assert_eq!(d.public_api_base(), "https://example.com/v1");
    }
}
