//! Model prices: the built-in table (`config/prices.yaml`), LiteLLM price files, and the price of a deployment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::deployment::{provider_spec, Deployment};
use crate::providers::Wire;

const BUILTIN_PRICES_YAML: &str = include_str!("../../config/prices.yaml");
const BUILTIN_PRICES_NAME: &str = "config/prices.yaml (built in)";
const TOKENS_PER_MILLION: f64 = 1_000_000.0;

/// What kind of call a model serves, which decides how its tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceMode {
    #[default]
    Chat,
    Completion,
    Embedding,
}

impl PriceMode {
    /// Maps LiteLLM's `mode`; modes that are not priced per token (images, audio, ...) give `None`.
    fn from_litellm(mode: Option<&str>) -> Option<PriceMode> {
        match mode {
            None | Some("chat") | Some("responses") => Some(PriceMode::Chat),
            Some("completion") => Some(PriceMode::Completion),
            Some("embedding") => Some(PriceMode::Embedding),
            Some(_) => None,
        }
    }
}

/// The price of one model, in USD per token (or per second of the call).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    /// Prompt tokens read from the provider's cache; `None` means the input price.
    pub cache_read_input_token_cost: Option<f64>,
    /// Prompt tokens written to the provider's cache; `None` means the input price.
    pub cache_creation_input_token_cost: Option<f64>,
    pub input_cost_per_second: Option<f64>,
    pub output_cost_per_second: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub mode: PriceMode,
}

impl ModelPrice {
    /// Every cost must be a finite, non-negative number.
    fn check(&self) -> Result<(), String> {
        let costs = [
            ("input cost", Some(self.input_cost_per_token)),
            ("output cost", Some(self.output_cost_per_token)),
            ("cache read cost", self.cache_read_input_token_cost),
            ("cache write cost", self.cache_creation_input_token_cost),
            ("input cost per second", self.input_cost_per_second),
            ("output cost per second", self.output_cost_per_second),
        ];
        for (name, cost) in costs {
            if let Some(cost) = cost {
                if !cost.is_finite() || cost < 0.0 {
                    return Err(format!("{name} must be a non-negative number, got {cost}"));
                }
            }
        }
        Ok(())
    }
}

/// Why a price table could not be loaded; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read price file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("price file {file} is not valid: {message}")]
    Parse { file: String, message: String },
    #[error("price file {file}, model {model}: {problem}")]
    InvalidEntry {
        file: String,
        model: String,
        problem: String,
    },
}

/// One row of `config/prices.yaml`: USD per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceRow {
    input: Option<f64>,
    #[serde(default)]
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    input_per_second: Option<f64>,
    output_per_second: Option<f64>,
    context: Option<u64>,
    max_output: Option<u64>,
    #[serde(default)]
    mode: PriceMode,
}

impl PriceRow {
    fn into_price(self) -> Result<ModelPrice, String> {
        if self.input.is_none()
            && self.input_per_second.is_none()
            && self.output_per_second.is_none()
        {
            return Err("no input price (input, input_per_second or output_per_second)".into());
        }
        let per_token = |per_million: f64| per_million / TOKENS_PER_MILLION;
        Ok(ModelPrice {
            input_cost_per_token: per_token(self.input.unwrap_or(0.0)),
            output_cost_per_token: per_token(self.output),
            cache_read_input_token_cost: self.cache_read.map(per_token),
            cache_creation_input_token_cost: self.cache_write.map(per_token),
            input_cost_per_second: self.input_per_second,
            output_cost_per_second: self.output_per_second,
            max_input_tokens: self.context,
            max_output_tokens: self.max_output,
            mode: self.mode,
        })
    }
}

#[derive(Debug, Clone)]
struct PriceEntry {
    provider: String,
    model: String,
    price: ModelPrice,
}

/// Which providers may share prices for the same model name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireFamily {
    /// OpenAI, Azure and every OpenAI-compatible host.
    OpenAiCompatible,
    Anthropic,
    /// The mock provider borrows the price of any provider.
    Any,
}

impl WireFamily {
    fn of(provider: &str) -> Option<WireFamily> {
        provider_spec(provider).map(|spec| match spec.wire {
            Wire::OpenAi | Wire::Azure => WireFamily::OpenAiCompatible,
            Wire::Anthropic => WireFamily::Anthropic,
            Wire::Mock => WireFamily::Any,
        })
    }

    fn includes(self, provider: &str) -> bool {
        match self {
            WireFamily::Any => true,
            family => WireFamily::of(provider) == Some(family),
        }
    }
}

/// Model prices keyed by `provider/model`, with an index by plain model name.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// `provider/model` → entry.
    entries: BTreeMap<String, PriceEntry>,
    /// Plain model name → the providers that price it.
    providers_by_model: HashMap<String, BTreeSet<String>>,
    /// LiteLLM key (`gpt-4o`, `azure/eu/gpt-4o`, ...) → `provider/model`, for LiteLLM-loaded tables.
    litellm_keys: HashMap<String, String>,
}

impl PriceTable {
    /// The table shipped in the binary (`config/prices.yaml`).
    pub fn builtin() -> Result<PriceTable, PriceError> {
        PriceTable::from_yaml_str(BUILTIN_PRICES_YAML, BUILTIN_PRICES_NAME)
    }

    /// Parses a table in Switchyard's own format (provider → model → USD per million tokens).
    pub fn from_yaml_str(text: &str, file: &str) -> Result<PriceTable, PriceError> {
        let rows: BTreeMap<String, BTreeMap<String, PriceRow>> = serde_norway::from_str(text)
            .map_err(|e| PriceError::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
        let mut table = PriceTable::default();
        for (provider, models) in rows {
            for (model, row) in models {
                let invalid = |problem: String| PriceError::InvalidEntry {
                    file: file.to_owned(),
                    model: format!("{provider}/{model}"),
                    problem,
                };
                let price = row.into_price().map_err(invalid)?;
                price.check().map_err(invalid)?;
                table.insert(&provider, &model, price);
            }
        }
        Ok(table)
    }

    /// Loads LiteLLM's public `model_prices_and_context_window.json`. Entries that are not
    /// priced per token or per second (images, audio, the `sample_spec` example) are skipped.
    pub fn load_litellm_json(path: &Path) -> Result<PriceTable, PriceError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Read {
            path: path.to_owned(),
            source,
        })?;
        PriceTable::from_litellm_json_str(&text, &path.display().to_string())
    }

    /// Parses LiteLLM's JSON price format; `file` names the source in errors.
    pub fn from_litellm_json_str(text: &str, file: &str) -> Result<PriceTable, PriceError> {
        let parse_error = |message: String| PriceError::Parse {
            file: file.to_owned(),
            message,
        };
        let root: Value = serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let Value::Object(models) = root else {
            return Err(parse_error("the top level must be an object".into()));
        };
        let mut priced = Vec::new();
        for (key, entry) in &models {
            if key == "sample_spec" {
                continue;
            }
            let price = litellm_entry_price(entry).map_err(|problem| PriceError::InvalidEntry {
                file: file.to_owned(),
                model: key.clone(),
                problem,
            })?;
            if let Some((provider, price)) = price {
                let model = key
                    .strip_prefix(provider.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(str::to_owned);
                priced.push((key, provider, model, price));
            }
        }
        // Where LiteLLM has both `model` and `provider/model`, the prefixed key wins, as in
        // LiteLLM's own lookup: insert plain keys first.
        priced.sort_by_key(|(_, _, prefixed_model, _)| prefixed_model.is_some());
        let mut table = PriceTable::default();
        for (key, provider, prefixed_model, price) in priced {
            let model = prefixed_model.as_deref().unwrap_or(key);
            let table_key = table.insert(&provider, model, price);
            table.litellm_keys.insert(key.clone(), table_key);
        }
        Ok(table)
    }

    /// Adds `other`'s prices; where both price a model, `other` wins.
    pub fn extend(&mut self, other: PriceTable) {
        for entry in other.entries.into_values() {
            self.insert(&entry.provider, &entry.model, entry.price);
        }
        self.litellm_keys.extend(other.litellm_keys);
    }

    /// The price of `model` at `provider`: the exact entry, else the same model at a provider
    /// of the same wire family (OpenAI first), else the exact LiteLLM key, else the model
    /// without a trailing date (`gpt-4o-2024-08-06` → `gpt-4o`).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        self.lookup_model(provider, model)
            .or_else(|| self.lookup_litellm_key(provider, model))
            .or_else(|| {
                let undated = strip_date_suffix(model)?;
                self.lookup_model(provider, undated)
                    .or_else(|| self.lookup_litellm_key(provider, undated))
            })
    }

    /// The price for calls to this deployment: the table's price of its model (for Azure,
    /// of `model_info.base_model` when set), with the deployment's own prices applied on top
    /// (`litellm_params` win over `model_info`). `None` when nothing prices the model.
    pub fn for_deployment(&self, deployment: &Deployment) -> Option<ModelPrice> {
        let known = self.deployment_base_price(deployment).cloned();
        let info = &deployment.model_info;
        let info_cost = |key: &str| json_number(info.get(key)).filter(|v| *v >= 0.0);

        let input = deployment
            .input_cost_per_token
            .or_else(|| info_cost("input_cost_per_token"));
        let output = deployment
            .output_cost_per_token
            .or_else(|| info_cost("output_cost_per_token"));
        let input_per_second = deployment
            .input_cost_per_second
            .or_else(|| info_cost("input_cost_per_second"));
        let output_per_second = deployment
            .output_cost_per_second
            .or_else(|| info_cost("output_cost_per_second"));
        let cache_read = info_cost("cache_read_input_token_cost");
        let cache_write = info_cost("cache_creation_input_token_cost");
        let has_override = [
            input,
            output,
            input_per_second,
            output_per_second,
            cache_read,
            cache_write,
        ]
        .iter()
        .any(Option::is_some);
        if known.is_none() && !has_override {
            return None;
        }

        let mut price = known.unwrap_or_default();
        if let Some(v) = input {
            price.input_cost_per_token = v;
        }
        if let Some(v) = output {
            price.output_cost_per_token = v;
        }
        price.input_cost_per_second = input_per_second.or(price.input_cost_per_second);
        price.output_cost_per_second = output_per_second.or(price.output_cost_per_second);
        price.cache_read_input_token_cost = cache_read.or(price.cache_read_input_token_cost);
        price.cache_creation_input_token_cost =
            cache_write.or(price.cache_creation_input_token_cost);
        price.max_input_tokens =
            json_count(info.get("max_input_tokens")).or(price.max_input_tokens);
        price.max_output_tokens =
            json_count(info.get("max_output_tokens")).or(price.max_output_tokens);
        if let Some(mode) = info
            .get("mode")
            .and_then(Value::as_str)
            .and_then(|mode| PriceMode::from_litellm(Some(mode)))
        {
            price.mode = mode;
        }
        Some(price)
    }

    /// Number of priced `provider/model` entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry as `(provider, model, price)`, ordered by `provider/model`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &ModelPrice)> {
        self.entries
            .values()
            .map(|e| (e.provider.as_str(), e.model.as_str(), &e.price))
    }

    /// Adds one entry and returns its `provider/model` key.
    fn insert(&mut self, provider: &str, model: &str, price: ModelPrice) -> String {
        let key = format!("{provider}/{model}");
        self.providers_by_model
            .entry(model.to_owned())
            .or_default()
            .insert(provider.to_owned());
        self.entries.insert(
            key.clone(),
            PriceEntry {
                provider: provider.to_owned(),
                model: model.to_owned(),
                price,
            },
        );
        key
    }

    /// The exact entry, else the same model name at a provider of the same wire family.
    fn lookup_model(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        if let Some(entry) = self.entries.get(&format!("{provider}/{model}")) {
            return Some(&entry.price);
        }
        let family = WireFamily::of(provider)?;
        let providers = self.providers_by_model.get(model)?;
        let preferred = ["openai", "anthropic"]
            .into_iter()
            .filter(|p| providers.contains(*p));
        let others = providers.iter().map(String::as_str);
        preferred
            .chain(others)
            .find(|p| family.includes(p))
            .and_then(|p| self.entries.get(&format!("{p}/{model}")))
            .map(|entry| &entry.price)
    }

    fn lookup_litellm_key(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        let table_key = self
            .litellm_keys
            .get(&format!("{provider}/{model}"))
            .or_else(|| self.litellm_keys.get(model))?;
        self.entries.get(table_key).map(|entry| &entry.price)
    }

    /// The table's price for the deployment's model, before its own overrides.
    fn deployment_base_price(&self, deployment: &Deployment) -> Option<&ModelPrice> {
        let base_model = deployment
            .model_info
            .get("base_model")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty());
        if let Some(base_model) = base_model {
            // `base_model` may carry a provider prefix, e.g. `azure/gpt-4o`.
            let by_prefix = base_model
                .split_once('/')
                .filter(|(prefix, _)| provider_spec(prefix).is_some())
                .and_then(|(prefix, model)| self.lookup(prefix, model));
            let found = self.lookup(&deployment.provider, base_model).or(by_prefix);
            if found.is_some() {
                return found;
            }
        }
        self.lookup(&deployment.provider, &deployment.upstream_model)
    }
}

/// Reads one LiteLLM entry: `Ok(None)` when it is not a priced chat, completion or embedding model.
fn litellm_entry_price(entry: &Value) -> Result<Option<(String, ModelPrice)>, String> {
    let Value::Object(fields) = entry else {
        return Ok(None);
    };
    let Some(provider) = fields.get("litellm_provider").and_then(Value::as_str) else {
        return Ok(None);
    };
    let Some(mode) = PriceMode::from_litellm(fields.get("mode").and_then(Value::as_str)) else {
        return Ok(None);
    };
    let input = litellm_cost(fields, "input_cost_per_token")?;
    let output = litellm_cost(fields, "output_cost_per_token")?;
    let input_per_second = litellm_cost(fields, "input_cost_per_second")?;
    let output_per_second = litellm_cost(fields, "output_cost_per_second")?;
    if [input, output, input_per_second, output_per_second]
        .iter()
        .all(Option::is_none)
    {
        return Ok(None);
    }
    let price = ModelPrice {
        input_cost_per_token: input.unwrap_or(0.0),
        output_cost_per_token: output.unwrap_or(0.0),
        cache_read_input_token_cost: litellm_cost(fields, "cache_read_input_token_cost")?,
        cache_creation_input_token_cost: litellm_cost(fields, "cache_creation_input_token_cost")?,
        input_cost_per_second: input_per_second,
        output_cost_per_second: output_per_second,
        max_input_tokens: json_count(fields.get("max_input_tokens")),
        max_output_tokens: json_count(fields.get("max_output_tokens")),
        mode,
    };
    price.check()?;
    Ok(Some((provider.to_owned(), price)))
}

/// A cost field of a LiteLLM entry: missing or null is `None`, anything but a number is an error.
fn litellm_cost(fields: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => json_number(Some(value))
            .map(Some)
            .ok_or_else(|| format!("{key} must be a number, got {value}")),
    }
}

/// A number, also when written as a string (YAML reads `1e-6` as a string).
fn json_number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// A token count: a non-negative whole number (also `128000.0` or `"128000"`).
fn json_count(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    json_number(Some(value))
        .filter(|v| *v >= 0.0 && v.fract() == 0.0 && *v <= u64::MAX as f64)
        .map(|v| v as u64)
}

/// `gpt-4o-2024-08-06` → `gpt-4o`, `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`.
fn strip_date_suffix(model: &str) -> Option<&str> {
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (rest, last) = model.rsplit_once('-')?;
    if last.len() == 8 && last.starts_with("20") && is_digits(last) && !rest.is_empty() {
        return Some(rest);
    }
    // `-YYYY-MM-DD`
    let (rest, month) = rest.rsplit_once('-')?;
    let (rest, year) = rest.rsplit_once('-')?;
    let dated = last.len() == 2
        && month.len() == 2
        && year.len() == 4
        && [last, month, year].iter().all(|part| is_digits(part));
    (dated && !rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> PriceTable {
        PriceTable::builtin().unwrap()
    }

    #[test]
    fn builtin_table_parses_and_converts_per_million_prices() {
        let table = builtin();
        assert!(table.len() > 100, "only {} models", table.len());
        let gpt4o = table.lookup("openai", "gpt-4o").unwrap();
        assert!((gpt4o.input_cost_per_token - 2.5e-6).abs() < 1e-15);
        assert!((gpt4o.output_cost_per_token - 1e-5).abs() < 1e-15);
        assert_eq!(gpt4o.max_input_tokens, Some(128_000));
        let embedding = table.lookup("openai", "text-embedding-3-small").unwrap();
        assert_eq!(embedding.mode, PriceMode::Embedding);
        assert_eq!(embedding.output_cost_per_token, 0.0);
    }

    #[test]
    fn lookup_falls_back_within_the_wire_family() {
        let table = builtin();
        let openai = table.lookup("openai", "gpt-4-turbo").unwrap();
        assert_eq!(table.lookup("azure", "gpt-4-turbo"), Some(openai));
        assert_eq!(table.lookup("hosted_vllm", "gpt-4-turbo"), Some(openai));
        assert_eq!(table.lookup("mock", "gpt-4-turbo"), Some(openai));
        // Azure's own entry wins over OpenAI's.
        let azure = table.lookup("azure", "text-embedding-3-small").unwrap();
        assert!((azure.input_cost_per_token - 2.2e-8).abs() < 1e-18);
        // Anthropic does not borrow OpenAI prices, nor the other way round.
        assert!(table.lookup("anthropic", "gpt-4o").is_none());
        assert!(table.lookup("openai", "claude-sonnet-4-5").is_none());
        assert!(table.lookup("openai", "no-such-model").is_none());
    }

    #[test]
    fn lookup_strips_a_date_suffix_only_when_the_dated_model_is_unknown() {
        let table = builtin();
        let gpt4o = table.lookup("openai", "gpt-4o").unwrap();
        assert_eq!(table.lookup("openai", "gpt-4o-2099-01-01"), Some(gpt4o));
        let sonnet = table.lookup("anthropic", "claude-sonnet-4-5").unwrap();
        assert_eq!(
            table.lookup("anthropic", "claude-sonnet-4-5-20991231"),
            Some(sonnet)
        );
        // A known dated model keeps its own price.
        let may = table.lookup("openai", "gpt-4o-2024-05-13").unwrap();
        assert!((may.input_cost_per_token - 5e-6).abs() < 1e-15);
        assert_eq!(strip_date_suffix("gpt-4o"), None);
        assert_eq!(strip_date_suffix("gpt-3.5-turbo-0125"), None);
        assert_eq!(strip_date_suffix("o3-mini-2025-01-31"), Some("o3-mini"));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let missing = PriceTable::load_litellm_json(Path::new("/nonexistent/prices.json"));
        let message = missing.unwrap_err().to_string();
        assert!(message.contains("/nonexistent/prices.json"), "{message}");

        let bad = PriceTable::from_litellm_json_str(
            r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": "cheap"}}"#,
            "bad.json",
        );
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("bad.json") && message.contains("input_cost_per_token"));

        let negative = PriceTable::from_yaml_str("openai:\n  m: {input: -1}\n", "my.yaml");
        let message = negative.unwrap_err().to_string();
        assert!(
            message.contains("my.yaml") && message.contains("openai/m"),
            "{message}"
        );

        let unknown_field = PriceTable::from_yaml_str("openai:\n  m: {inptu: 1}\n", "my.yaml");
        assert!(unknown_field.unwrap_err().to_string().contains("my.yaml"));
    }
}
