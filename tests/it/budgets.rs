//! Budgets: key, user, team and end-user limits, periodic resets and exactness under
//! concurrency.

use std::time::Duration;

use serde_json::{json, Value};

use crate::keys::{new_key, setup};
use crate::support::*;

/// Sends chats until one is refused; returns (successes, the refusal).
async fn chat_until_refused(app: &TestApp, key: &str, body: &Value) -> (usize, Reply) {
    for n in 0..50 {
        let r = app.chat_body(key, body.clone()).await;
        if r.status != 200 {
            return (n, r);
        }
    }
    panic!("never refused");
}

fn hi() -> Value {
    json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn key_budget_is_enforced_with_a_message_naming_it() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"max_budget": 0.05, "soft_budget": 0.03})).await;
    let (ok, r) = chat_until_refused(&app, &key, &hi()).await;
    assert_eq!(ok, 3, "0.00, 0.02, 0.04 are under 0.05");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "budget_exceeded");
    let msg = r.error_message();
    assert!(
        msg.contains("Key") && msg.contains("0.05") && msg.contains("0.06"),
        "{msg}"
    );
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert!(
        info.body["info"]["soft_budget_crossed_at"].is_string(),
        "{}",
        info.text
    );
    app.stop().await;
}

#[tokio::test]
async fn a_team_budget_is_shared_by_two_keys() {
    let (_up, app) = setup().await;
    app.post(
        "/team/new",
        Some(MASTER_KEY),
        &json!({"team_id": "t", "max_budget": 0.05}),
    )
    .await;
    let k1 = new_key(&app, json!({"team_id": "t"})).await;
    let k2 = new_key(&app, json!({"team_id": "t"})).await;
    assert_eq!(app.chat(&k1, "gpt").await.status, 200);
    assert_eq!(app.chat(&k2, "gpt").await.status, 200);
    assert_eq!(app.chat(&k1, "gpt").await.status, 200);
    let r = app.chat(&k2, "gpt").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_message().contains("Team"), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn a_user_budget_applies_across_the_users_keys() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/user/new",
            Some(MASTER_KEY),
            &json!({"user_id": "u", "max_budget": 0.03}),
        )
        .await;
    assert_eq!(r.status, 200);
    let k1 = r.body["key"].as_str().unwrap().to_owned();
    let k2 = new_key(&app, json!({"user_id": "u"})).await;
    assert_eq!(app.chat(&k1, "gpt").await.status, 200);
    assert_eq!(app.chat(&k2, "gpt").await.status, 200);
    let r = app.chat(&k1, "gpt").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_message().contains("User"), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn an_end_user_budget_is_enforced() {
    let (_up, app) = setup().await;
    app.post(
        "/customer/new",
        Some(MASTER_KEY),
        &json!({"user_id": "cust", "max_budget": 0.01}),
    )
    .await;
    let key = new_key(&app, json!({})).await;
    let body =
        json!({"model": "gpt", "user": "cust", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.chat_body(&key, body.clone()).await.status, 200);
    let r = app.chat_body(&key, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_message().contains("End user"), "{}", r.text);
    assert_eq!(
        app.chat(&key, "gpt").await.status,
        200,
        "other end users are unaffected"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_per_model_key_budget_only_limits_that_model() {
    let (_up, app) = setup().await;
    let key = new_key(
        &app,
        json!({"model_max_budget": {"gpt": {"budget_limit": 0.01, "time_period": "1d"}}}),
    )
    .await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    assert_eq!(app.chat(&key, "gpt").await.status, 400);
    assert_eq!(app.chat(&key, "other").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn budget_duration_resets_spend_at_the_period_boundary() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"max_budget": 0.01, "budget_duration": "2s"})).await;
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert!(
        info.body["info"]["budget_reset_at"].is_string(),
        "{}",
        info.text
    );
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    assert_eq!(app.chat(&key, "gpt").await.status, 400);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200, "spend was reset");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_requests_never_overspend_and_every_success_is_charged() {
    let up = MockUpstream::openai().await;
    // Only prompt tokens are priced: a call costs 10 × 0.001 = 0.01 and the gateway's
    // estimate (a long prompt) is higher, so reservations are an upper bound.
    let yaml = format!(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt\n      api_base: {}/v1\n      api_key: sk-up\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.0\n",
        up.url()
    );
    up.set_responder(|_| MockResponse::delayed_ok(Duration::from_millis(30)));
    let app = spawn_app(&yaml).await;
    let budget = 0.1;
    let key = new_key(&app, json!({"max_budget": budget})).await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "x".repeat(60)}]});
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = app.client.clone();
        let url = format!("{}/v1/chat/completions", app.url);
        let (key, body) = (key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1);
    // Then sequentially until refused: about ten calls fit in total.
    let (more, r) = chat_until_refused(&app, &key, &body).await;
    assert_eq!(r.status, 400);
    let total = ok + more;
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    let spend = info.body["info"]["spend"].as_f64().unwrap();
    assert!(
        (spend - total as f64 * 0.01).abs() < 1e-9,
        "spend {spend} for {total} successes"
    );
    assert!(spend <= budget + 0.01 + 1e-9, "spend {spend} over budget");
    assert!((10..=11).contains(&total), "{total} calls fit a 0.1 budget");
    app.stop().await;
}
