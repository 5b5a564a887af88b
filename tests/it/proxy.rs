//! The OpenAI-compatible endpoints through each provider.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn chat_through_openai_rewrites_model_and_sends_bearer_key() {
    let (up, app) = spawn_with_openai_gpt().await;
    let r = app.chat_body(MASTER_KEY, json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "custom_field": {"x": 1}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hello world");
    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.header("authorization"), Some("Bearer sk-upstream-gpt"));
    assert_eq!(got.body["model"], "gpt-4o");
    assert_eq!(
        got.body["custom_field"],
        json!({"x": 1}),
        "unknown fields pass through"
    );
    assert_eq!(r.header("x-litellm-model-group"), Some("gpt"));
    app.stop().await;
}

#[tokio::test]
async fn client_fields_reach_the_upstream_as_written() {
    let (up, app) = spawn_with_openai_gpt().await;
    // Numbers a JSON tree would round or reformat, a key with an escape, the client's
    // order and spacing inside values.
    let sent = r#"{"seed": 18446744073709551616, "model": "gpt", "temperature": 1.0,
        "logit_bias": {"50256": -1e2}, "x\u0079": "caf\u00e9",
        "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": ["t"]}}"#;
    let r = app
        .send(
            app.client
                .post(format!("{}/v1/chat/completions", app.url))
                .bearer_auth(MASTER_KEY)
                .header("content-type", "application/json")
                .body(sent),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = String::from_utf8(up.last().raw.to_vec()).unwrap();
    assert_eq!(
        got,
        r#"{"seed":18446744073709551616,"temperature":1.0,"logit_bias":{"50256": -1e2},"x\u0079":"caf\u00e9","messages":[{"role": "user", "content": "hi"}],"model":"gpt-4o"}"#
    );
    app.stop().await;
}

#[tokio::test]
async fn streaming_forwards_chunks_in_order_and_ends_with_done() {
    let (up, app) = spawn_with_openai_gpt().await;
    let r = app.chat_body(MASTER_KEY, json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let content: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "Hello world");
    // The gateway asked for usage, but the client did not: no usage chunk reaches it.
    assert_eq!(up.last().body["stream_options"]["include_usage"], true);
    assert!(
        !r.text.contains("\"usage\":{"),
        "usage chunk must be stripped: {}",
        r.text
    );
    app.stop().await;
}

#[tokio::test]
async fn stopping_lets_a_request_in_flight_finish_records_it_and_refuses_new_ones() {
    let up = MockUpstream::openai().await;
    up.enqueue(MockResponse::delayed_chat(
        Duration::from_millis(300),
        "late",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let base = format!("{}/v1", up.url());
    let app = spawn_app_in(&config_for(&[("gpt", "openai/gpt-4o", &base)]), dir.path()).await;
    let url = format!("{}/v1/chat/completions", app.url);
    let client = app.client.clone();
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            client
                .post(url)
                .bearer_auth(MASTER_KEY)
                .json(&chat_json("gpt"))
                .send()
                .await
        }
    });
    // The request is at the upstream (which answers after 300 ms) when the stop begins.
    up.wait_for_requests(1).await;
    app.stop().await;
    let resp = in_flight
        .await
        .expect("task")
        .expect("drained, not cut off");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["choices"][0]["message"]["content"], "late");
    assert!(
        reqwest::Client::new()
            .post(&url)
            .json(&chat_json("gpt"))
            .send()
            .await
            .is_err(),
        "the listener is closed after stop"
    );
    let store =
        switchyard::store::Store::open(&dir.path().join("switchyard.redb")).expect("reopen");
    let rows = store.spend_rows_before(u64::MAX, 10).expect("rows");
    assert_eq!(rows.len(), 1, "the drained request's spend row was flushed");
}

/// Polls `what` every 10 ms for up to 10 s.
async fn eventually(what: impl Fn() -> bool) -> bool {
    for _ in 0..1000 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn the_serving_thread_polls_after_a_request_and_sleeps_when_idle() {
    let up = MockUpstream::openai().await;
    let yaml = format!(
        "{}general_settings:\n  master_key: {MASTER_KEY}\n  busy_poll_us: 1500000\n",
        config_for(&[("gpt", "openai/gpt-4o", &format!("{}/v1", up.url()))])
    );
    let app = spawn_app(&yaml).await;
    let poll = &app.state().busy_poll;
    assert!(eventually(|| poll.is_parked()).await, "idle: asleep");
    let r = app.chat(MASTER_KEY, "gpt").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!poll.is_parked(), "a request wakes it for the window");
    assert!(
        eventually(|| poll.is_parked()).await,
        "asleep again after it"
    );
    app.stop().await;
}
