//! Checks the built-in price table against LiteLLM's public price table kept in `../shared/reference`,
//! and reading LiteLLM-format price files.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use switchyard::spend::prices::{ModelPrice, PriceMode, PriceTable};

const PRICE_TOLERANCE_PER_TOKEN: f64 = 1e-12;

fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/litellm-model-prices.json")
}

fn load_reference() -> Map<String, Value> {
    let path = reference_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the LiteLLM reference price table is missing at {}: {e}; \
             the built-in prices cannot be checked without it",
            path.display()
        )
    });
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => map,
        other => panic!("{} is not a JSON object: {other:?}", path.display()),
    }
}

/// The reference entry for a built-in model: keyed `provider/model` (preferred, as LiteLLM
/// looks it up) or `model`, of the same provider.
fn reference_entry<'a>(
    reference: &'a Map<String, Value>,
    provider: &str,
    model: &str,
) -> Option<&'a Map<String, Value>> {
    [format!("{provider}/{model}"), model.to_owned()]
        .iter()
        .filter_map(|key| reference.get(key).and_then(Value::as_object))
        .find(|entry| entry.get("litellm_provider").and_then(Value::as_str) == Some(provider))
}

fn compare_cost(
    problems: &mut Vec<String>,
    name: &str,
    field: &str,
    ours: Option<f64>,
    theirs: Option<f64>,
) {
    let agree = match (ours, theirs) {
        (Some(a), Some(b)) => (a - b).abs() <= PRICE_TOLERANCE_PER_TOKEN,
        (None, None) => true,
        _ => false,
    };
    if !agree {
        problems.push(format!("{name}: {field} is {ours:?}, reference {theirs:?}"));
    }
}

fn compare_entry(
    problems: &mut Vec<String>,
    name: &str,
    price: &ModelPrice,
    entry: &Map<String, Value>,
) {
    let number = |key: &str| entry.get(key).and_then(Value::as_f64);
    let count = |key: &str| entry.get(key).and_then(Value::as_u64);
    compare_cost(
        problems,
        name,
        "input_cost_per_token",
        Some(price.input_cost_per_token),
        Some(number("input_cost_per_token").unwrap_or(0.0)),
    );
    compare_cost(
        problems,
        name,
        "output_cost_per_token",
        Some(price.output_cost_per_token),
        Some(number("output_cost_per_token").unwrap_or(0.0)),
    );
    for (field, ours) in [
        (
            "cache_read_input_token_cost",
            price.cache_read_input_token_cost,
        ),
        (
            "cache_creation_input_token_cost",
            price.cache_creation_input_token_cost,
        ),
        ("input_cost_per_second", price.input_cost_per_second),
        ("output_cost_per_second", price.output_cost_per_second),
    ] {
        compare_cost(problems, name, field, ours, number(field));
    }
    for (field, ours) in [
        ("max_input_tokens", price.max_input_tokens),
        ("max_output_tokens", price.max_output_tokens),
    ] {
        if ours != count(field) {
            problems.push(format!(
                "{name}: {field} is {ours:?}, reference {:?}",
                count(field)
            ));
        }
    }
    let reference_mode = match entry.get("mode").and_then(Value::as_str) {
        Some("completion") => PriceMode::Completion,
        Some("embedding") => PriceMode::Embedding,
        _ => PriceMode::Chat,
    };
    if price.mode != reference_mode {
        problems.push(format!(
            "{name}: mode is {:?}, reference {reference_mode:?}",
            price.mode
        ));
    }
}

#[test]
fn builtin_prices_match_the_litellm_reference_for_every_model() {
    let reference = load_reference();
    let table = PriceTable::builtin().unwrap();
    assert!(!table.is_empty());
    let mut problems = Vec::new();
    for (provider, model, price) in table.iter() {
        let name = format!("{provider}/{model}");
        match reference_entry(&reference, provider, model) {
            Some(entry) => compare_entry(&mut problems, &name, price, entry),
            None => problems.push(format!("{name}: not in the reference")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} built-in models disagree with {}:\n{}",
        problems.len(),
        table.len(),
        reference_path().display(),
        problems.join("\n")
    );
}

#[test]
fn the_litellm_reference_loads_and_agrees_with_the_builtin_table() {
    let path = reference_path();
    assert!(
        path.exists(),
        "the LiteLLM reference price table is missing at {}",
        path.display()
    );
    let litellm = PriceTable::load_litellm_json(&path).unwrap();
    assert!(litellm.len() > 1000, "only {} models loaded", litellm.len());
    let builtin = PriceTable::builtin().unwrap();
    for (provider, model) in [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5"),
        ("azure", "gpt-4o-mini"),
        ("groq", "openai/gpt-oss-120b"),
    ] {
        let ours = builtin.lookup(provider, model).unwrap();
        let theirs = litellm.lookup(provider, model).unwrap();
        assert!(
            (ours.input_cost_per_token - theirs.input_cost_per_token).abs() < 1e-12,
            "{provider}/{model}"
        );
        assert_eq!(ours.max_input_tokens, theirs.max_input_tokens);
    }
}

const LITELLM_SAMPLE: &str = r#"{
    "sample_spec": {"input_cost_per_token": 0.0, "max_input_tokens": "max input tokens"},
    "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-6,
               "output_cost_per_token": 2e-6, "max_input_tokens": 1000},
    "azure/eu/gpt-4o": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 3e-6},
    "anthropic.claude-x-v1:0": {"litellm_provider": "bedrock", "input_cost_per_token": 4e-6},
    "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_token": 1.0},
    "whisper": {"litellm_provider": "openai", "mode": "chat"}
}"#;

#[test]
fn litellm_json_is_keyed_by_provider_and_by_litellm_key() {
    let table = PriceTable::from_litellm_json_str(LITELLM_SAMPLE, "sample.json").unwrap();
    assert_eq!(table.len(), 3);
    let gpt4o = table.lookup("openai", "gpt-4o").unwrap();
    assert_eq!(gpt4o.output_cost_per_token, 2e-6);
    assert_eq!(gpt4o.max_input_tokens, Some(1000));
    assert!(table.lookup("azure", "eu/gpt-4o").is_some());
    // The exact LiteLLM key finds a model of a provider outside the family.
    let bedrock = table
        .lookup("openai_like", "anthropic.claude-x-v1:0")
        .unwrap();
    assert_eq!(bedrock.input_cost_per_token, 4e-6);
}

#[test]
fn litellm_prefixed_keys_win_over_plain_keys_of_the_same_provider() {
    let json = r#"{
        "deepseek/deepseek-chat": {"litellm_provider": "deepseek", "input_cost_per_token": 2e-6},
        "deepseek-chat": {"litellm_provider": "deepseek", "input_cost_per_token": 1e-6}
    }"#;
    let table = PriceTable::from_litellm_json_str(json, "sample.json").unwrap();
    assert_eq!(table.len(), 1);
    let price = table.lookup("deepseek", "deepseek-chat").unwrap();
    assert_eq!(price.input_cost_per_token, 2e-6);
}

#[test]
fn extend_lets_the_other_table_win() {
    let mut table = PriceTable::builtin().unwrap();
    let before = table.len();
    let litellm = PriceTable::from_litellm_json_str(LITELLM_SAMPLE, "sample.json").unwrap();
    table.extend(litellm);
    assert_eq!(table.len(), before + 2);
    let gpt4o = table.lookup("openai", "gpt-4o").unwrap();
    assert_eq!(gpt4o.input_cost_per_token, 1e-6);
}
