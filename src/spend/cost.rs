//! Per-request cost in USD from a model price, the token usage and the call duration.

use std::time::Duration;

use crate::providers::Usage;
use crate::spend::prices::ModelPrice;

/// The cost of one call in USD.
///
/// Prompt tokens are split into uncached, cache-read and cache-write tokens (both cache
/// counts are included in `prompt_tokens`); cache tokens without their own price cost the
/// input price. When a per-second price is set and the duration is known, that side
/// (input or output) is priced by time instead of by tokens, as LiteLLM does.
pub fn cost(price: &ModelPrice, usage: &Usage, duration: Option<Duration>) -> f64 {
    let seconds = duration.map(|d| d.as_secs_f64());
    let input_cost = match (per_second(price.input_cost_per_second), seconds) {
        (Some(per_second), Some(seconds)) => per_second * seconds,
        _ => prompt_token_cost(price, usage),
    };
    let output_cost = match (per_second(price.output_cost_per_second), seconds) {
        (Some(per_second), Some(seconds)) => per_second * seconds,
        _ => usage.completion_tokens as f64 * price.output_cost_per_token,
    };
    input_cost + output_cost
}

/// The most a call can cost: every prompt token at the dearest prompt price (input or cache
/// write) and `max_output_tokens` completion tokens. Used to reserve budget before a call.
pub fn estimate_max_cost(price: &ModelPrice, prompt_tokens: u64, max_output_tokens: u64) -> f64 {
    let prompt_price = price
        .input_cost_per_token
        .max(price.cache_creation_input_token_cost.unwrap_or(0.0));
    prompt_tokens as f64 * prompt_price + max_output_tokens as f64 * price.output_cost_per_token
}

fn per_second(price: Option<f64>) -> Option<f64> {
    price.filter(|p| *p > 0.0)
}

fn prompt_token_cost(price: &ModelPrice, usage: &Usage) -> f64 {
    let uncached = usage
        .prompt_tokens
        .saturating_sub(usage.cache_read_tokens)
        .saturating_sub(usage.cache_creation_tokens);
    let input = price.input_cost_per_token;
    let cache_read = price.cache_read_input_token_cost.unwrap_or(input);
    let cache_write = price.cache_creation_input_token_cost.unwrap_or(input);
    uncached as f64 * input
        + usage.cache_read_tokens as f64 * cache_read
        + usage.cache_creation_tokens as f64 * cache_write
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Wire;
    use crate::spend::prices::{PriceMode, PriceTable};
    use serde_json::json;

    fn assert_usd(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "cost {actual} != expected {expected}"
        );
    }

    fn usage(prompt: u64, completion: u64, cache_read: u64, cache_creation: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cache_read_tokens: cache_read,
            cache_creation_tokens: cache_creation,
            estimated: false,
        }
    }

    fn builtin_price(provider: &str, model: &str) -> ModelPrice {
        PriceTable::builtin()
            .unwrap()
            .lookup(provider, model)
            .unwrap()
            .clone()
    }

    #[test]
    fn openai_cached_tokens_cost_the_cache_read_price() {
        // gpt-4o: $2.50 input, $1.25 cached, $10 output per million.
        let price = builtin_price("openai", "gpt-4o");
        // 600 × 2.5e-6 + 400 × 1.25e-6 + 200 × 1e-5 = 0.0015 + 0.0005 + 0.002
        assert_usd(cost(&price, &usage(1000, 200, 400, 0), None), 0.004);
        // Without a cache price, cached tokens cost the input price.
        let uncached_price = ModelPrice {
            cache_read_input_token_cost: None,
            ..price
        };
        assert_usd(
            cost(&uncached_price, &usage(1000, 200, 400, 0), None),
            0.0045,
        );
    }

    #[test]
    fn anthropic_cache_read_and_creation_have_their_own_prices() {
        // claude-sonnet-4-5: $3 input, $0.30 read, $3.75 write, $15 output per million.
        let price = builtin_price("anthropic", "claude-sonnet-4-5");
        // 2000 × 3e-6 + 5000 × 3e-7 + 3000 × 3.75e-6 + 500 × 1.5e-5
        // = 0.006 + 0.0015 + 0.01125 + 0.0075
        assert_usd(cost(&price, &usage(10_000, 500, 5000, 3000), None), 0.02625);
    }

    #[test]
    fn cache_counts_larger_than_the_prompt_do_not_underflow() {
        let price = builtin_price("anthropic", "claude-sonnet-4-5");
        // uncached saturates at 0: 100 × 3e-7 + 50 × 3.75e-6
        assert_usd(cost(&price, &usage(10, 0, 100, 50), None), 0.0002175);
    }

    #[test]
    fn embeddings_cost_only_prompt_tokens() {
        let price = builtin_price("openai", "text-embedding-3-small");
        assert_eq!(price.mode, PriceMode::Embedding);
        // 5000 × 2e-8
        assert_usd(cost(&price, &usage(5000, 0, 0, 0), None), 0.0001);
    }

    #[test]
    fn per_second_prices_replace_token_prices_when_the_duration_is_known() {
        let price = ModelPrice {
            input_cost_per_second: Some(0.0005),
            output_cost_per_second: Some(0.001),
            ..ModelPrice::default()
        };
        let tokens = usage(1000, 1000, 0, 0);
        // 2.5 s × (0.0005 + 0.001)
        assert_usd(
            cost(&price, &tokens, Some(Duration::from_millis(2500))),
            0.00375,
        );
        // Without a duration the (zero) token prices apply.
        assert_usd(cost(&price, &tokens, None), 0.0);
        // Only the input side priced by time: output still by tokens.
        let mixed = ModelPrice {
            input_cost_per_second: Some(0.002),
            output_cost_per_token: 1e-6,
            ..ModelPrice::default()
        };
        // 2 s × 0.002 + 1000 × 1e-6
        assert_usd(cost(&mixed, &tokens, Some(Duration::from_secs(2))), 0.005);
    }

    #[test]
    fn estimate_max_cost_uses_the_dearest_prompt_price() {
        let gpt4o = builtin_price("openai", "gpt-4o");
        // 1000 × 2.5e-6 + 4096 × 1e-5
        assert_usd(estimate_max_cost(&gpt4o, 1000, 4096), 0.04346);
        let sonnet = builtin_price("anthropic", "claude-sonnet-4-5");
        // 1000 × 3.75e-6 + 100 × 1.5e-5
        assert_usd(estimate_max_cost(&sonnet, 1000, 100), 0.00525);
    }

    #[test]
    fn deployment_overrides_take_precedence_over_the_table() {
        let table = PriceTable::builtin().unwrap();
        let mut deployment = crate::deployment::test_deployment("d1", "gpt-4o", Wire::OpenAi);
        let table_price = table.for_deployment(&deployment).unwrap();
        assert_eq!(&table_price, table.lookup("openai", "gpt-4o").unwrap());

        deployment
            .model_info
            .insert("input_cost_per_token".into(), json!(1e-6));
        // YAML 1.1 reads `2e-6` as a string; it still counts.
        deployment
            .model_info
            .insert("output_cost_per_token".into(), json!("2e-6"));
        deployment
            .model_info
            .insert("cache_read_input_token_cost".into(), json!(5e-7));
        deployment
            .model_info
            .insert("max_input_tokens".into(), json!(1000));
        deployment.input_cost_per_token = Some(3e-6);
        let price = table.for_deployment(&deployment).unwrap();
        // litellm_params beat model_info, model_info beats the table.
        assert_eq!(price.input_cost_per_token, 3e-6);
        assert_eq!(price.output_cost_per_token, 2e-6);
        assert_eq!(price.cache_read_input_token_cost, Some(5e-7));
        assert_eq!(price.max_input_tokens, Some(1000));
        assert_eq!(price.max_output_tokens, Some(16_384));
        // 600 × 3e-6 + 400 × 5e-7 + 100 × 2e-6
        assert_usd(cost(&price, &usage(1000, 100, 400, 0), None), 0.0022);
    }

    #[test]
    fn unknown_models_are_priced_only_by_their_overrides() {
        let table = PriceTable::builtin().unwrap();
        let mut deployment = crate::deployment::test_deployment("d1", "my-local-llm", Wire::OpenAi);
        assert_eq!(table.for_deployment(&deployment), None);
        deployment.output_cost_per_second = Some(0.01);
        let price = table.for_deployment(&deployment).unwrap();
        assert_eq!(price.input_cost_per_token, 0.0);
        assert_usd(
            cost(&price, &usage(10, 10, 0, 0), Some(Duration::from_secs(3))),
            0.03,
        );
    }

    #[test]
    fn azure_deployments_are_priced_by_their_base_model() {
        let table = PriceTable::builtin().unwrap();
        let mut deployment = crate::deployment::test_deployment("d1", "prod-chat", Wire::Azure);
        deployment.provider = "azure".into();
        assert_eq!(table.for_deployment(&deployment), None);
        deployment
            .model_info
            .insert("base_model".into(), json!("azure/gpt-4o-mini"));
        let price = table.for_deployment(&deployment).unwrap();
        assert_eq!(&price, table.lookup("azure", "gpt-4o-mini").unwrap());
        deployment
            .model_info
            .insert("base_model".into(), json!("gpt-4-turbo"));
        let price = table.for_deployment(&deployment).unwrap();
        assert_eq!(&price, table.lookup("openai", "gpt-4-turbo").unwrap());
    }
}
