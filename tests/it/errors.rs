//! Client and upstream errors: status codes, messages that say what is wrong, and
//! OpenAI's error shape on every one.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

async fn gpt_app(up: &MockUpstream, extra: &[(&str, &str)]) -> TestApp {
    spawn_app(&config(
        &[deployment("gpt", "gpt-4o", &up.url(), extra)],
        &[("num_retries", "0")],
    ))
    .await
}

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let up = MockUpstream::openai().await;
    let app = gpt_app(&up, &[]).await;
    let req = app
        .client
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt\", \"messages\": [");
    let r = app.send(req).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_error_shape(&r);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert_eq!(
        r.error_message(),
        "Invalid JSON in request body: EOF while parsing a list at line 1 column 31"
    );
    // Each other way a body can be wrong gets its own words, and nothing goes upstream.
    for (body, says) in [
        (&b"[1, 2]"[..], "Request body must be a JSON object"),
        (b" \n", "Request body is empty; expected a JSON object"),
        (
            b"{\"model\": \"gpt\", \"x\": \"\xff\"}",
            "invalid unicode code point at line 1 column 24",
        ),
        (
            b"{\"model\": \"gpt\"} {}",
            "trailing characters at line 1 column 18",
        ),
    ] {
        let req = app
            .client
            .post(format!("{}/v1/chat/completions", app.url))
            .bearer_auth(MASTER_KEY)
            .header("content-type", "application/json")
            .body(body.to_vec());
        let r = app.send(req).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_error_shape(&r);
        assert!(r.error_message().ends_with(says), "{}", r.text);
    }
    assert_eq!(up.hits(), 0);
    app.stop().await;
}

#[tokio::test]
async fn missing_model_or_messages_is_400_naming_the_field() {
    let up = MockUpstream::openai().await;
    let app = gpt_app(&up, &[]).await;
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_error_shape(&r);
    assert_eq!(r.body["error"]["param"], "model");
    assert!(r.error_message().contains("model"), "{}", r.text);

    let r = app.chat_body(MASTER_KEY, json!({"model": "gpt"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_error_shape(&r);
    assert_eq!(r.body["error"]["param"], "messages");
    assert!(r.error_message().contains("messages"), "{}", r.text);

    let r = app
        .post("/v1/embeddings", Some(MASTER_KEY), &json!({"model": "gpt"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_message().contains("input"), "{}", r.text);
    assert_eq!(up.hits(), 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_model_is_400_naming_it_and_listing_available_aliases() {
    let up = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment("gpt", "gpt-4o", &up.url(), &[]),
            deployment("mini", "gpt-4o-mini", &up.url(), &[]),
        ],
        &[],
    ))
    .await;
    let r = app.chat(MASTER_KEY, "gpt-5-turbo").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_error_shape(&r);
    let m = r.error_message();
    assert!(m.contains("gpt-5-turbo"), "{m}");
    assert!(m.contains("gpt") && m.contains("mini"), "{m}");
    assert_eq!(up.hits(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_max_request_size_is_413() {
    let up = MockUpstream::openai().await;
    let yaml = format!(
        "{}general_settings:\n  master_key: {MASTER_KEY}\n  max_request_size_mb: 0.001\n",
        config(&[deployment("gpt", "gpt-4o", &up.url(), &[])], &[])
    );
    let app = spawn_app(&yaml).await;
    let big = "x".repeat(4000);
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"model": "gpt", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_error_shape(&r);
    assert_eq!(up.hits(), 0);
    let r = app.chat(MASTER_KEY, "gpt").await;
    assert_eq!(r.status, 200, "a small body still passes: {}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_name_the_provider() {
    let up = MockUpstream::openai().await;
    let app = gpt_app(&up, &[]).await;
    for (status, msg, kind) in [
        (400, "Unsupported parameter: 'foo'", "invalid_request_error"),
        (429, "Rate limit reached for gpt-4o", "rate_limit_error"),
        (503, "The server is overloaded", "api_error"),
        // Last: an authentication failure cools the deployment down at once.
        (401, "Incorrect API key provided", "authentication_error"),
    ] {
        up.enqueue(MockResponse::error(status, msg));
        let r = app.chat(MASTER_KEY, "gpt").await;
        assert_eq!(r.status, status, "{}", r.text);
        assert_error_shape(&r);
        assert_eq!(r.body["error"]["type"], kind, "{}", r.text);
        let m = r.error_message();
        assert!(m.contains(msg), "{m}");
        assert!(m.contains("openai"), "message names the provider: {m}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_slower_than_the_deployment_timeout_is_408() {
    let up = MockUpstream::openai().await;
    up.set_responder(|_| {
        MockResponse::Delay(
            Duration::from_secs(2),
            Box::new(MockResponse::error(500, "too late")),
        )
    });
    let app = gpt_app(&up, &[("timeout", "0.2")]).await;
    let t = Instant::now();
    let r = app.chat(MASTER_KEY, "gpt").await;
    assert_eq!(r.status, 408, "{}", r.text);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert_error_shape(&r);
    assert!(r.error_message().contains("timed out"), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_an_openai_shaped_error_not_a_hang() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let app = spawn_app(&config(
        &[deployment(
            "gpt",
            "gpt-4o",
            &format!("http://127.0.0.1:{port}"),
            &[],
        )],
        &[("num_retries", "0")],
    ))
    .await;
    let r = app.chat(MASTER_KEY, "gpt").await;
    assert!(r.status >= 500, "{}", r.text);
    assert_error_shape(&r);
    assert!(r.error_message().contains("openai"), "{}", r.text);
    app.stop().await;
}
