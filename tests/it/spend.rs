//! Spend tracking end to end: per-request cost for each provider's usage shape, streaming
//! usage, spend logs and their filters, aggregates and reports, retention, privacy, shutdown.

use std::path::Path;

use serde_json::{json, Value};
use switchyard::spend::SpendRow;
use switchyard::store::Store;

use crate::support::upstream::openai_sse;
use crate::support::*;

/// $0.001 per prompt token, $0.002 per completion token (mock OpenAI usage 10/5 = $0.02,
/// mock Anthropic 12/6 = $0.024); cache reads $0.0005 (OpenAI) / $0.0001 (Anthropic),
/// Anthropic cache writes $0.00125.
fn priced_config(openai: &MockUpstream, anthropic: &MockUpstream, extra: &str) -> String {
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

async fn setup(extra: &str) -> (TestApp, MockUpstream, MockUpstream) {
    let (o, a) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    let app = spawn_app(&priced_config(&o, &a, extra)).await;
    (app, o, a)
}

pub fn assert_usd(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "cost {actual} != expected {expected}"
    );
}

fn header_cost(r: &Reply) -> f64 {
    r.header("x-litellm-response-cost")
        .expect("x-litellm-response-cost header")
        .parse()
        .expect("cost is a number")
}

fn msg(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The logged row of a request, by its `x-litellm-call-id`.
async fn row_of(app: &TestApp, r: &Reply) -> Value {
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

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

async fn all_logs(app: &TestApp, query: &str) -> Vec<Value> {
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

/// A row recorded straight into the writer.
pub fn row(i: usize, key: &str, day: &str, tags: &[&str]) -> SpendRow {
    SpendRow {
        request_id: format!("req-{i}"),
        call_type: "acompletion".into(),
        api_key: key.into(),
        user: Some(format!("user-{}", i % 2)),
        team_id: Some(format!("team-{}", i % 3)),
        end_user: (i % 4 == 0).then(|| "customer-a".to_string()),
        model: if i % 2 == 0 { "gpt" } else { "claude" }.into(),
        model_group: "g".into(),
        spend: 0.001 * (i as f64 + 1.0),
        prompt_tokens: 10,
        completion_tokens: i as u64,
        total_tokens: 10 + i as u64,
        start_time: format!("{day}T10:00:{:02}.000Z", i % 60),
        end_time: format!("{day}T10:00:{:02}.500Z", i % 60),
        status: if i % 5 == 0 { "failure" } else { "success" }.into(),
        http_status: 200,
        request_tags: tags.iter().map(|s| s.to_string()).collect(),
        metadata: json!({"i": i}),
        ..Default::default()
    }
}

#[tokio::test]
async fn spend_logs_filter_by_key_user_team_model_tags_and_dates_and_page() {
    let (app, _o, _a) = setup("").await;
    for i in 0..30 {
        let day = if i < 10 { "2026-03-01" } else { "2026-03-02" };
        let key = if i % 2 == 0 { "hash-a" } else { "hash-b" };
        let tags: &[&str] = if i % 3 == 0 { &["batch"] } else { &[] };
        app.state().spend.record(row(i, key, day, tags));
    }
    app.flush_spend().await;
    let ids = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let all = all_logs(&app, "").await;
    assert_eq!(all.len(), 30);
    assert_eq!(all[0]["request_id"], "req-29", "newest first");
    assert_eq!(all_logs(&app, "api_key=hash-a").await.len(), 15);
    assert_eq!(all_logs(&app, "user_id=user-1").await.len(), 15);
    assert_eq!(all_logs(&app, "team_id=team-0").await.len(), 10);
    assert_eq!(all_logs(&app, "model=claude").await.len(), 15);
    assert_eq!(all_logs(&app, "tags=batch").await.len(), 10);
    assert_eq!(all_logs(&app, "start_date=2026-03-02").await.len(), 20);
    assert_eq!(
        all_logs(&app, "start_date=2026-03-01&end_date=2026-03-01")
            .await
            .len(),
        10
    );
    assert_eq!(
        all_logs(
            &app,
            "start_date=2026-03-02T00:00:00Z&end_date=2026-03-02T10:00:12Z&api_key=hash-a"
        )
        .await
        .len(),
        2,
        "req-10 and req-12"
    );
    let page2 = app
        .get("/spend/logs?page=2&page_size=7", Some(MASTER_KEY))
        .await;
    assert_eq!(ids(page2.body.as_array().unwrap()), ids(&all[7..14]));
    let bad = app
        .get("/spend/logs?start_date=soon", Some(MASTER_KEY))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.error_message().contains("start_date"));
    let bad = app.get("/spend/logs?page=x", Some(MASTER_KEY)).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    app.stop().await;
}

#[tokio::test]
async fn spend_reports_need_the_master_key() {
    let (app, _o, _a) = setup("").await;
    for path in [
        "/spend/logs",
        "/spend/logs/csv",
        "/spend/tags",
        "/global/spend",
        "/global/spend/keys",
        "/global/spend/models",
        "/global/spend/teams",
        "/global/spend/report",
        "/global/spend/report/csv",
    ] {
        assert_eq!(app.get(path, None).await.status, 401, "{path}");
        let r = app.get(path, Some("sk-wrong-key-123")).await;
        assert_eq!(r.status, 401, "{path}");
        assert!(r.body["error"]["message"].is_string(), "{path}: {}", r.text);
        assert_eq!(app.get(path, Some(MASTER_KEY)).await.status, 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_spend_of_a_key_equals_the_sum_of_its_logs() {
    let (app, _o, _a) = setup("").await;
    for _ in 0..3 {
        app.chat_body(MASTER_KEY, msg("gpt")).await;
        app.chat_body(MASTER_KEY, msg("claude")).await;
    }
    for i in 0..20 {
        let key = if i % 2 == 0 { "hash-a" } else { "hash-b" };
        app.state().spend.record(row(i, key, "2026-03-01", &[]));
    }
    app.flush_spend().await;
    let keys = app.get("/global/spend/keys", Some(MASTER_KEY)).await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    let keys = keys.body.as_array().expect("list").clone();
    assert_eq!(keys.len(), 3, "master (empty hash), hash-a, hash-b");
    let rows = all_logs(&app, "").await;
    for k in &keys {
        let key = k["api_key"].as_str().expect("api_key");
        let (sum, _) = sum_rows(&rows, |r| r["api_key"] == key);
        assert_usd(f(k, "total_spend"), sum);
        if !key.is_empty() {
            let (filtered, n) =
                sum_rows(&all_logs(&app, &format!("api_key={key}")).await, |_| true);
            assert_eq!(n, 10);
            assert_usd(filtered, sum);
        }
    }
    // The master key's requests: 3 × (0.02 + 0.024).
    let master = keys
        .iter()
        .find(|k| k["api_key"] == "")
        .expect("master key row");
    assert_usd(f(master, "total_spend"), 0.132);
    let models = app
        .get("/global/spend/models?limit=1", Some(MASTER_KEY))
        .await;
    assert_eq!(
        models.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        models.text
    );
    app.stop().await;
}

fn sum_rows(rows: &[Value], pick: impl Fn(&Value) -> bool) -> (f64, u64) {
    rows.iter()
        .filter(|r| pick(r))
        .fold((0.0, 0), |(s, n), r| (s + f(r, "spend"), n + 1))
}

/// Opens the store once the previous server has released it (its writer task ends
/// asynchronously after `stop`).
async fn wait_for_store(dir: &Path) -> Store {
    for _ in 0..200 {
        if let Ok(s) = Store::open(&dir.join("switchyard.redb")) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the store was not released after stop");
}

#[tokio::test]
async fn aggregates_equal_the_sum_of_raw_rows_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (o, a) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    let yaml = priced_config(&o, &a, "");
    let app = spawn_app_in(&yaml, dir.path()).await;
    for i in 0..4 {
        let mut body = msg(if i % 2 == 0 { "gpt" } else { "claude" });
        body["metadata"] = json!({"tags": ["t-a", format!("t-{i}")]});
        body["user"] = json!(format!("cust-{}", i % 2));
        assert_eq!(app.chat_body(MASTER_KEY, body).await.status, 200);
    }
    for i in 0..10 {
        app.state()
            .spend
            .record(row(i, "hash-a", "2026-03-01", &["t-a"]));
    }
    app.stop().await;
    drop(wait_for_store(dir.path()).await);
    let app = spawn_app_in(&yaml, dir.path()).await;
    let mut body = msg("gpt");
    body["metadata"] = json!({"tags": ["t-a"]});
    assert_eq!(app.chat_body(MASTER_KEY, body).await.status, 200);
    app.flush_spend().await;

    let rows = all_logs(&app, "").await;
    assert_eq!(rows.len(), 15);
    let (total, n) = sum_rows(&rows, |_| true);
    let global = app.get("/global/spend", Some(MASTER_KEY)).await;
    assert_usd(f(&global.body, "spend"), total);
    assert_eq!(global.body["requests"], n);

    let tags = app.get("/spend/tags", Some(MASTER_KEY)).await;
    for t in tags.body.as_array().expect("tags") {
        let tag = t["individual_request_tag"].as_str().unwrap();
        let (s, n) = sum_rows(&rows, |r| {
            r["request_tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == tag)
        });
        assert_usd(f(t, "total_spend"), s);
        assert_eq!(t["log_count"], n, "{tag}");
    }
    assert_eq!(tags.body.as_array().unwrap().len(), 5, "t-a, t-0..t-3");

    let by_customer = app
        .get("/global/spend/report?group_by=customer", Some(MASTER_KEY))
        .await;
    assert_eq!(by_customer.status, 200, "{}", by_customer.text);
    for day in by_customer.body.as_array().expect("days") {
        let d = day["group_by_day"].as_str().unwrap();
        for c in day["customers"].as_array().unwrap() {
            let cust = c["customer"].as_str().unwrap();
            let (s, _) = sum_rows(&rows, |r| {
                r["start_time"].as_str().unwrap().starts_with(d)
                    && r["end_user"].as_str().unwrap_or("") == cust
            });
            assert_usd(f(c, "total_spend"), s);
        }
    }
    let by_key = app
        .get(
            "/global/spend/report?group_by=api_key&start_date=2026-03-01&end_date=2026-03-01",
            Some(MASTER_KEY),
        )
        .await;
    let by_key = by_key.body.as_array().expect("keys");
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0]["api_key"], "hash-a");
    assert_usd(
        f(&by_key[0], "total_cost"),
        sum_rows(&rows, |r| r["api_key"] == "hash-a").0,
    );
    let teams = app.get("/global/spend/teams", Some(MASTER_KEY)).await;
    let per_team = teams.body["total_spend_per_team"]
        .as_array()
        .expect("teams");
    let team_total: f64 = per_team.iter().map(|t| f(t, "total_spend")).sum();
    assert_usd(team_total, total);
    let bad = app
        .get("/global/spend/report?group_by=planet", Some(MASTER_KEY))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    app.stop().await;
}

#[tokio::test]
async fn retention_prunes_old_raw_rows_but_keeps_their_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let (o, a) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    let app = spawn_app_in(&priced_config(&o, &a, ""), dir.path()).await;
    for i in 0..5 {
        app.state()
            .spend
            .record(row(i, "hash-old", "2020-01-01", &[]));
    }
    app.stop().await;
    drop(wait_for_store(dir.path()).await);
    let yaml = priced_config(
        &o,
        &a,
        &format!("general_settings:\n  master_key: {MASTER_KEY}\n  maximum_spend_logs_retention_period: 30d\n"),
    );
    let app = spawn_app_in(&yaml, dir.path()).await;
    assert_eq!(app.chat_body(MASTER_KEY, msg("gpt")).await.status, 200);
    app.flush_spend().await;
    let rows = all_logs(&app, "").await;
    assert_eq!(rows.len(), 1, "only the fresh row is kept");
    let global = app.get("/global/spend", Some(MASTER_KEY)).await;
    // 0.001 + 0.002 + ... + 0.005 (old, from aggregates) + 0.02 (fresh)
    assert_usd(f(&global.body, "spend"), 0.035);
    app.stop().await;
}

#[tokio::test]
async fn prompts_are_stored_in_spend_logs_only_when_enabled() {
    let (app, _o, _a) = setup("").await;
    let r = app.chat_body(MASTER_KEY, msg("gpt")).await;
    let row = row_of(&app, &r).await;
    assert!(row.get("messages").is_none(), "{row}");
    assert!(row.get("response").is_none(), "{row}");
    app.stop().await;

    let (app, _o, _a) = setup(&format!(
        "general_settings:\n  master_key: {MASTER_KEY}\n  store_prompts_in_spend_logs: true\n"
    ))
    .await;
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
    let (o, a) = (
        MockUpstream::openai().await,
        MockUpstream::anthropic().await,
    );
    // A long flush interval: rows are only committed by the shutdown flush.
    let yaml = priced_config(
        &o,
        &a,
        &format!(
            "general_settings:\n  master_key: {MASTER_KEY}\n  spend_flush_interval_ms: 60000\n"
        ),
    );
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
