//! `model_list` entries → [`Deployment`]s.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{ConfigError, Parser};
use crate::deployment::{provider_spec, Deployment, Source, PROVIDERS};
use crate::providers::Wire;

/// `litellm_params` keys Switchyard reads itself; everything else is a request default.
const KNOWN_PARAMS: &[&str] = &[
    "model",
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "organization",
    "timeout",
    "stream_timeout",
    "max_retries",
    "rpm",
    "tpm",
    "order",
    "weight",
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_second",
    "output_cost_per_second",
    "extra_headers",
    "mock_latency_ms",
];

/// `litellm_params` that only configure LiteLLM itself and are never sent upstream.
const LITELLM_ONLY_PARAMS: &[&str] = &[
    "custom_llm_provider",
    "litellm_credential_name",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
    "region_name",
    "tags",
    "configurable_clientside_auth_params",
    "mock_response",
];

/// Suggests a provider for a model name given without prefix.
fn guess_provider(model: &str) -> &'static str {
    let m = model.to_ascii_lowercase();
    if m.starts_with("claude") {
        "anthropic"
    } else if m.starts_with("gpt")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
        || m.starts_with("text-embedding")
        || m.starts_with("chatgpt")
    {
        "openai"
    } else {
        "hosted_vllm"
    }
}

impl Parser {
    pub(crate) fn model_list(&mut self, v: &Value) -> Result<Vec<Deployment>, ConfigError> {
        let items = match v {
            Value::Array(items) => items,
            Value::Null => return Ok(vec![]),
            _ => {
                return Err(self.err(
                    "model_list",
                    "must be a list",
                    "write `- model_name: ...` entries",
                ))
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.model_entry(item, &format!("model_list[{i}]"), Source::Config))
            .collect()
    }

    pub(crate) fn model_entry(
        &mut self,
        v: &Value,
        path: &str,
        source: Source,
    ) -> Result<Deployment, ConfigError> {
        let entry = self.object(v, path)?;
        let model_name = match entry.get("model_name") {
            Some(v) => self.string(v, &format!("{path}.model_name"))?,
            None => {
                return Err(self.err(
                    &format!("{path}.model_name"),
                    "is missing",
                    "add the alias clients will call, e.g. model_name: gpt-4o",
                ))
            }
        };
        if model_name.trim().is_empty() {
            return Err(self.err(
                &format!("{path}.model_name"),
                "is empty",
                "add the alias clients will call",
            ));
        }
        for k in entry.keys() {
            if !matches!(k.as_str(), "model_name" | "litellm_params" | "model_info") {
                self.ignored.push(format!("{path}.{k}"));
            }
        }
        let pp = format!("{path}.litellm_params");
        let params = match entry.get("litellm_params") {
            Some(v) => self.object(v, &pp)?.clone(),
            None => {
                return Err(self.err(
                    &pp,
                    "is missing",
                    "add litellm_params with at least `model: provider/name`",
                ))
            }
        };
        let model_info = match entry.get("model_info") {
            Some(v) => self.object(v, &format!("{path}.model_info"))?.clone(),
            None => Map::new(),
        };

        let mp = format!("{pp}.model");
        let full_model = match params.get("model") {
            Some(v) => self.string(v, &mp)?,
            None => {
                return Err(self.err(
                    &mp,
                    "is missing",
                    "add `model: provider/name`, e.g. openai/gpt-4o",
                ))
            }
        };
        let explicit_provider = match params.get("custom_llm_provider") {
            Some(v) => Some(self.string(v, &format!("{pp}.custom_llm_provider"))?),
            None => None,
        };
        let (provider, upstream_model) = match (full_model.split_once('/'), explicit_provider) {
            (_, Some(p)) => {
                let rest = full_model
                    .strip_prefix(&format!("{p}/"))
                    .unwrap_or(&full_model)
                    .to_owned();
                (p, rest)
            }
            (Some((p, rest)), None) => (p.to_owned(), rest.to_owned()),
            (None, None) => {
                return Err(self.err(
                    &mp,
                    format!("{full_model:?} has no provider prefix"),
                    format!("use {}/{full_model}", guess_provider(&full_model)),
                ))
            }
        };
        let spec = provider_spec(&provider).ok_or_else(|| {
            let known: Vec<&str> = PROVIDERS.iter().map(|p| p.prefix).collect();
            self.err(
                &mp,
                format!("unknown provider {provider:?}"),
                format!("use one of: {}", known.join(", ")),
            )
        })?;
        if upstream_model.is_empty() {
            return Err(self.err(
                &mp,
                "has no model name after the provider",
                format!("use {provider}/<model>"),
            ));
        }

        let str_param = |p: &Parser, k: &str| -> Result<Option<String>, ConfigError> {
            match params.get(k) {
                Some(v) => p.opt_string(v, &format!("{pp}.{k}")),
                None => Ok(None),
            }
        };
        let num_param = |p: &Parser, k: &str| -> Result<Option<f64>, ConfigError> {
            match params.get(k) {
                Some(Value::Null) | None => Ok(None),
                Some(v) => p.number(v, &format!("{pp}.{k}")).map(Some),
            }
        };

        let env_base = match spec.wire {
            Wire::Azure => self.env.get("AZURE_API_BASE"),
            _ => None,
        };
        let api_base = str_param(self, "api_base")?
            .or(str_param(self, "base_url")?)
            .or(env_base)
            .or(spec.default_api_base.map(str::to_owned));
        let Some(mut api_base) = api_base else {
            return Err(self.err(
                &format!("{pp}.api_base"),
                format!("provider {provider:?} needs an api_base"),
                "add api_base: http://host:port/v1 (the server's OpenAI-compatible base URL)",
            ));
        };
        while api_base.ends_with('/') {
            api_base.pop();
        }
        if matches!(provider.as_str(), "ollama" | "ollama_chat") && !api_base.ends_with("/v1") {
            api_base.push_str("/v1");
        }
        let api_key =
            str_param(self, "api_key")?.or_else(|| spec.key_env.and_then(|e| self.env.get(e)));
        let api_version = str_param(self, "api_version")?.or_else(|| match spec.wire {
            Wire::Azure => self.env.get("AZURE_API_VERSION"),
            _ => None,
        });

        let extra_headers = match params.get("extra_headers") {
            Some(v) => self
                .object(v, &format!("{pp}.extra_headers"))?
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        self.string(v, &format!("{pp}.extra_headers.{k}"))?,
                    ))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            None => vec![],
        };
        let mut default_params = Map::new();
        for (k, v) in &params {
            if !KNOWN_PARAMS.contains(&k.as_str()) && !LITELLM_ONLY_PARAMS.contains(&k.as_str()) {
                default_params.insert(k.clone(), v.clone());
            }
        }

        let id = match model_info.get("id") {
            Some(v) => self.string(v, &format!("{path}.model_info.id"))?,
            None => stable_id(&model_name, &params),
        };
        let secs = |n: Option<f64>| n.map(std::time::Duration::from_secs_f64);
        Ok(Deployment {
            id,
            model_name,
            provider: spec.prefix.to_owned(),
            wire: spec.wire,
            upstream_model,
            api_base,
            api_key,
            api_version,
            organization: str_param(self, "organization")?,
            timeout: secs(num_param(self, "timeout")?),
            stream_timeout: secs(num_param(self, "stream_timeout")?),
            max_retries: num_param(self, "max_retries")?.map(|n| n as u32),
            rpm: num_param(self, "rpm")?.map(|n| n as u64),
            tpm: num_param(self, "tpm")?.map(|n| n as u64),
            order: num_param(self, "order")?.map(|n| n as u32),
            weight: num_param(self, "weight")?,
            input_cost_per_token: num_param(self, "input_cost_per_token")?,
            output_cost_per_token: num_param(self, "output_cost_per_token")?,
            input_cost_per_second: num_param(self, "input_cost_per_second")?,
            output_cost_per_second: num_param(self, "output_cost_per_second")?,
            extra_headers,
            default_params,
            model_info,
            mock_latency_ms: num_param(self, "mock_latency_ms")?.map(|n| n as u64),
            source,
        })
    }
}

/// A deployment id derived from its definition, stable across restarts.
fn stable_id(model_name: &str, params: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(model_name.as_bytes());
    h.update(Value::Object(params.clone()).to_string().as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Parses one runtime deployment (from `/model/new`) with the config rules.
pub fn parse_runtime_deployment(v: &Value) -> Result<Deployment, ConfigError> {
    let mut p = Parser {
        file: "(request body)".into(),
        env: Default::default(),
        ignored: Vec::new(),
    };
    let mut v = v.clone();
    p.resolve_env(&mut v, "body")?;
    p.model_entry(&v, "body", Source::Runtime)
}
