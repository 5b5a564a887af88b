//! Spend tracking end to end: per-request cost for each provider's usage shape (cached
//! tokens, embeddings, price files), streaming usage and estimates, privacy, shutdown flush.

use std::path::Path;

use serde_json::{json, Value};
use switchyard::store::Store;

use crate::support::upstream::openai_sse;
use crate::support::*;

/// $0.001 per prompt token, $0.002 per completion token (mock OpenAI usage 10/5 = $0.02,
/// mock Anthropic 12/6 = $0.024); cache reads $0.0005 (OpenAI) / $0.0001 (Anthropic),
/// Anthropic cache writes $0.00125.
pub fn priced_config(openai: &MockUpstream, anthropic: &MockUpstream, extra: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o
      api_base: {}/v1
      api_key: sk-up-openai
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
    model_info:
      cache_read_input_token_cost: 0.0005
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {}
      api_key: sk-up-anthropic
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
    model_info:
      cache_read_input_token_cost: 0.0001
      cache_creation_input_token_cost: 0.00125
{extra}",
        openai.url(),
        anthropic.url()
    )
}

/// The OpenAI and Anthropic mocks that `priced_config` points at.
pub async fn priced_upstreams() -> (MockUpstream, MockUpstream) {
    (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    )
}

/// A `general_settings` block with the test master key and `setting` (`name: value`).
pub fn general_with(setting: &str) -> String {
    format!("general_settings:\n  master_key: {MASTER_KEY}\n  {setting}\n")
}

pub async fn setup(extra: &str) -> (TestApp, MockUpstream, MockUpstream) {
    let (o, a) = priced_upstreams().await;
    let app = spawn_app(&priced_config(&o, &a, extra)).await;
    (app, o, a)
}

pub fn assert_usd(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "cost {actual} != expected {expected}"
    );
}

pub fn header_cost(r: &Reply) -> f64 {
    r.header("x-litellm-response-cost")
        .expect("x-litellm-response-cost header")
        .parse()
        .expect("cost is a number")
}

pub fn msg(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The logged row of a request, by its `x-litellm-call-id`.
pub async fn row_of(app: &TestApp, r: &Reply) -> Value {
    app.flush_spend().await;
    let id = r.header("x-litellm-call-id").expect("call id");
    let logs = app
        .get(&format!("/spend/logs?request_id={id}"), Some(MASTER_KEY))
        .await;
    assert_eq!(logs.status, 200, "{}", logs.text);
    let rows = logs.body.as_array().expect("a list of rows");
    assert_eq!(rows.len(), 1, "{}", logs.text);
    rows[0].clone()
}

pub fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

pub async fn all_logs(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/spend/logs?page_size=10000&{query}"),
            Some(MASTER_KEY),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body.as_array().expect("rows").clone()
}

#[tokio::test]
async fn openai_and_anthropic_usage_are_charged_at_the_configured_prices() {
    let (app, _o, _a) = setup("").await;
    let r = app.chat_body(MASTER_KEY, msg("gpt")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 10 × 0.001 + 5 × 0.002
    assert_usd(header_cost(&r), 0.02);
    let row = row_of(&app, &r).await;
    assert_usd(f(&row, "spend"), 0.02);
    assert_eq!(
        (
            row["prompt_tokens"].as_u64(),
            row["completion_tokens"].as_u64()
        ),
        (Some(10), Some(5))
    );
    assert_eq!(row["usage_estimated"], false);
    assert_eq!(row["startTime"], row["start_time"]);
    assert_eq!(row["status"], "success");

    let r = app.chat_body(MASTER_KEY, msg("claude")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 12 × 0.001 + 6 × 0.002
    assert_usd(header_cost(&r), 0.024);
    assert_usd(f(&row_of(&app, &r).await, "spend"), 0.024);
    app.stop().await;
}

#[tokio::test]
async fn cached_prompt_tokens_are_charged_at_the_cache_prices() {
    let (app, o, a) = setup("").await;
    o.enqueue(MockResponse::json(
        200,
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
                      "prompt_tokens_details": {"cached_tokens": 40}}}),
    ));
    let r = app.chat_body(MASTER_KEY, msg("gpt")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 60 × 0.001 + 40 × 0.0005 + 10 × 0.002
    assert_usd(header_cost(&r), 0.1);
    let row = row_of(&app, &r).await;
    assert_eq!(row["cache_read_tokens"], 40);
    assert_usd(f(&row, "spend"), 0.1);

    a.enqueue(MockResponse::json(
        200,
        json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 4, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 10}}),
    ));
    let r = app.chat_body(MASTER_KEY, msg("claude")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 20 × 0.001 + 30 × 0.0001 + 10 × 0.00125 + 4 × 0.002
    assert_usd(header_cost(&r), 0.0435);
    let row = row_of(&app, &r).await;
    assert_eq!(row["prompt_tokens"], 60);
    assert_eq!(
        (
            row["cache_read_tokens"].as_u64(),
            row["cache_creation_tokens"].as_u64()
        ),
        (Some(30), Some(10))
    );
    assert_usd(f(&row, "spend"), 0.0435);
    app.stop().await;
}

#[tokio::test]
async fn embeddings_are_charged_for_prompt_tokens_only() {
    let (app, _o, _a) = setup("").await;
    let r = app
        .post(
            "/v1/embeddings",
            Some(MASTER_KEY),
            &json!({"model": "gpt", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_usd(header_cost(&r), 0.01);
    let row = row_of(&app, &r).await;
    assert_eq!(row["call_type"], "aembedding");
    assert_usd(f(&row, "spend"), 0.01);
    app.stop().await;
}

#[tokio::test]
async fn streaming_is_charged_the_same_as_non_streaming_for_the_same_usage() {
    let (app, o, _a) = setup("").await;
    for model in ["gpt", "claude"] {
        let whole = app.chat_body(MASTER_KEY, msg(model)).await;
        let mut body = msg(model);
        body["stream"] = json!(true);
        let streamed = app.chat_body(MASTER_KEY, body).await;
        assert_eq!(streamed.status, 200, "{}", streamed.text);
        assert!(
            streamed.header("x-litellm-response-cost").is_some(),
            "estimate header"
        );
        let (w, s) = (row_of(&app, &whole).await, row_of(&app, &streamed).await);
        assert_eq!(s["stream"], true);
        assert_eq!(s["usage_estimated"], false, "{s}");
        assert_eq!(w["total_tokens"], s["total_tokens"], "{model}");
        assert_usd(f(&s, "spend"), f(&w, "spend"));
        assert!(f(&s, "spend") > 0.0);
    }
    // The gateway asked the OpenAI upstream for usage.
    assert_eq!(o.last().body["stream_options"]["include_usage"], true);
    app.stop().await;
}

#[tokio::test]
async fn the_usage_chunk_reaches_the_client_only_when_it_asked_for_it() {
    let (app, _o, _a) = setup("").await;
    let usage_chunks = |r: &Reply| {
        r.sse_data()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|v| v.get("usage").is_some_and(|u| !u.is_null()))
            .count()
    };
    for model in ["gpt", "claude"] {
        let mut body = msg(model);
        body["stream"] = json!(true);
        let r = app.chat_body(MASTER_KEY, body.clone()).await;
        assert_eq!(usage_chunks(&r), 0, "{model}: {}", r.text);
        body["stream_options"] = json!({"include_usage": true});
        let r = app.chat_body(MASTER_KEY, body).await;
        assert_eq!(usage_chunks(&r), 1, "{model}: {}", r.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stream_without_upstream_usage_is_estimated_and_marked() {
    let (app, o, _a) = setup("").await;
    o.enqueue(MockResponse::Sse(openai_sse(
        "gpt-4o",
        &["Hello", " world, this is", " an answer"],
        false,
        true,
    )));
    let mut body = msg("gpt");
    body["stream"] = json!(true);
    let r = app.chat_body(MASTER_KEY, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let row = row_of(&app, &r).await;
    assert_eq!(row["usage_estimated"], true, "{row}");
    // 30 bytes of generated text at ~4 bytes a token.
    assert_eq!(row["completion_tokens"], 8, "{row}");
    let prompt = row["prompt_tokens"].as_u64().expect("prompt tokens");
    assert!(prompt > 0, "{row}");
    assert_usd(f(&row, "spend"), prompt as f64 * 0.001 + 8.0 * 0.002);
    app.stop().await;
}

#[tokio::test]
async fn failures_are_logged_without_charge() {
    let (app, o, _a) = setup("").await;
    o.enqueue(MockResponse::error(400, "bad things"));
    let r = app.chat_body(MASTER_KEY, msg("gpt")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    app.flush_spend().await;
    let rows = all_logs(&app, "").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "failure");
    assert_eq!(rows[0]["http_status"], 400);
    assert_eq!(rows[0]["spend"], 0.0);
    app.stop().await;
}

/// Opens the store once the previous server has released it (its writer task ends
/// asynchronously after `stop`).
pub async fn wait_for_store(dir: &Path) -> Store {
    for _ in 0..200 {
        if let Ok(s) = Store::open(&dir.join("switchyard.redb")) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the store was not released after stop");
}

#[tokio::test]
async fn prompts_are_stored_in_spend_logs_only_when_enabled() {
    let (app, _o, _a) = setup("").await;
    let r = app.chat_body(MASTER_KEY, msg("gpt")).await;
    let row = row_of(&app, &r).await;
    assert!(row.get("messages").is_none(), "{row}");
    assert!(row.get("response").is_none(), "{row}");
    app.stop().await;

    let (app, _o, _a) = setup(&general_with("store_prompts_in_spend_logs: true")).await;
    let r = app.chat_body(MASTER_KEY, msg("gpt")).await;
    let row = row_of(&app, &r).await;
    assert_eq!(row["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(
        row["response"]["choices"][0]["message"]["content"],
        "Hello world"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_litellm_price_file_from_the_config_prices_an_unknown_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.json");
    std::fs::write(
        &file,
        r#"{"my-house-model": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 0.003, "output_cost_per_token": 0.004}}"#,
    )
    .unwrap();
    let up = MockUpstream::openai().await;
    let yaml = format!(
        "{}litellm_settings:\n  model_cost_map_path: {}\n",
        config_for(&[(
            "house",
            "openai/my-house-model",
            &format!("{}/v1", up.url())
        )]),
        file.display()
    );
    let app = spawn_app(&yaml).await;
    let r = app.chat_body(MASTER_KEY, msg("house")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 10 × 0.003 + 5 × 0.004
    assert_usd(header_cost(&r), 0.05);
    assert_usd(f(&row_of(&app, &r).await, "spend"), 0.05);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_flushes_every_pending_row_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (o, a) = priced_upstreams().await;
    // A long flush interval: rows are only committed by the shutdown flush.
    let yaml = priced_config(&o, &a, &general_with("spend_flush_interval_ms: 60000"));
    let app = spawn_app_in(&yaml, dir.path()).await;
    let n = 200;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, url) = (app.client.clone(), app.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut body = msg(if i % 2 == 0 { "gpt" } else { "claude" });
            if i % 3 == 0 {
                body["stream"] = json!(true);
            }
            let r = client
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(MASTER_KEY)
                .json(&body)
                .send()
                .await
                .expect("send");
            let ok = r.status().is_success();
            let _ = r.bytes().await;
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap() as u64;
    }
    assert_eq!(ok, n);
    app.stop().await;
    let store = wait_for_store(dir.path()).await;
    assert_eq!(store.spend_row_count().unwrap(), n);
}
