//! Rate limits (rpm/tpm sliding windows) and parallel-request limits.

use std::time::Duration;

use serde_json::json;

use crate::keys::{new_key, setup};
use crate::support::*;

#[tokio::test]
async fn rpm_limit_gives_429_with_retry_after_and_recovers() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"rpm_limit": 2})).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "rate_limit_error");
    let ra: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&ra), "{ra}");
    // The window slides: a minute later the key may call again.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::resume();
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn tpm_limit_counts_real_tokens_after_the_response() {
    let (_up, app) = setup().await;
    // Each call uses 15 real tokens; estimates are released after the response.
    let key = new_key(&app, json!({"tpm_limit": 30})).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.error_message().contains("tpm"), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn team_and_per_model_rpm_limits_apply() {
    let (_up, app) = setup().await;
    app.post(
        "/team/new",
        Some(MASTER_KEY),
        &json!({"team_id": "t", "rpm_limit": 1}),
    )
    .await;
    let k1 = new_key(&app, json!({"team_id": "t"})).await;
    let k2 = new_key(&app, json!({"team_id": "t"})).await;
    assert_eq!(app.chat(&k1, "gpt").await.status, 200);
    assert_eq!(app.chat(&k2, "gpt").await.status, 429);
    let k3 = new_key(&app, json!({"model_rpm_limit": {"gpt": 1}})).await;
    assert_eq!(app.chat(&k3, "gpt").await.status, 200);
    assert_eq!(app.chat(&k3, "gpt").await.status, 429);
    assert_eq!(app.chat(&k3, "other").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn parallel_request_limit_gives_429_while_calls_are_in_flight() {
    let (up, app) = setup().await;
    up.set_responder(|_| MockResponse::delayed_ok(Duration::from_millis(300)));
    let key = new_key(&app, json!({"max_parallel_requests": 2})).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = app.client.clone();
        let url = format!("{}/v1/chat/completions", app.url);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, has_retry) => assert!(has_retry),
            (s, _) => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(
        app.chat(&key, "gpt").await.status,
        200,
        "slots are released"
    );
    app.stop().await;
}
