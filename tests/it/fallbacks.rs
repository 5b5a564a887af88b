//! Each fallback kind, the testing switches, and failures of streams before and after
//! their first byte.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn context_error() -> MockResponse {
    MockResponse::json(
        400,
        json!({"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
    )
}

fn content_error() -> MockResponse {
    MockResponse::json(
        400,
        json!({"error": {"message": "The response was filtered", "type": "invalid_request_error", "param": "prompt", "code": "content_filter"}}),
    )
}

/// Three groups `a`, `b`, `c` on their own upstreams, with `router` settings.
async fn three_groups(router: &[(&str, &str)]) -> (TestApp, [MockUpstream; 3]) {
    let ups = [
        MockUpstream::openai().await,
        MockUpstream::openai().await,
        MockUpstream::openai().await,
    ];
    let mut settings = vec![("num_retries", "0"), ("allowed_fails", "100")];
    settings.extend_from_slice(router);
    let app = spawn_app(&config(
        &[
            deployment("a", "a1", &ups[0].url(), &[]),
            deployment("b", "b1", &ups[1].url(), &[]),
            deployment("c", "c1", &ups[2].url(), &[]),
        ],
        &settings,
    ))
    .await;
    (app, ups)
}

#[tokio::test]
async fn fallbacks_answer_from_the_next_group_after_a_failure() {
    let (app, [a, b, _]) = three_groups(&[("fallbacks", r#"[{"a": ["b"]}]"#)]).await;
    a.set_responder(|_| MockResponse::error(500, "down"));
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!(r.header("x-litellm-model-id"), Some("b1"));
    assert_eq!(r.header("x-litellm-attempted-fallbacks"), Some("1"));
    assert_eq!((a.hits(), b.hits()), (1, 1));
    assert_eq!(
        b.last().body["model"],
        "b1",
        "the fallback's own model is sent"
    );
    app.stop().await;
}

#[tokio::test]
async fn context_window_errors_use_context_window_fallbacks_not_general_ones() {
    let (app, [a, b, c]) = three_groups(&[
        ("fallbacks", r#"[{"a": ["c"]}]"#),
        ("context_window_fallbacks", r#"[{"a": ["b"]}]"#),
    ])
    .await;
    a.enqueue(context_error());
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!((b.hits(), c.hits()), (1, 0));
    app.stop().await;
}

#[tokio::test]
async fn content_filter_errors_use_content_policy_fallbacks() {
    let (app, [a, b, c]) = three_groups(&[
        ("fallbacks", r#"[{"a": ["c"]}]"#),
        ("content_policy_fallbacks", r#"[{"a": ["b"]}]"#),
    ])
    .await;
    a.enqueue(content_error());
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!((b.hits(), c.hits()), (1, 0));
    app.stop().await;
}

#[tokio::test]
async fn default_fallbacks_catch_failures_but_not_context_window_errors() {
    let (app, [a, b, _]) = three_groups(&[("default_fallbacks", r#"["b"]"#)]).await;
    a.enqueue(MockResponse::error(500, "down"));
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!(b.hits(), 1);

    a.enqueue(context_error());
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_error_shape(&r);
    assert!(
        r.error_message().contains("ContextWindowExceeded"),
        "{}",
        r.text
    );
    assert_eq!(
        b.hits(),
        1,
        "no default fallback for a context window error"
    );
    app.stop().await;
}

#[tokio::test]
async fn fallbacks_in_the_request_body_are_used() {
    let (app, [a, _, c]) = three_groups(&[]).await;
    a.set_responder(|_| MockResponse::error(500, "down"));
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"model": "a", "fallbacks": ["c"], "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("c"));
    assert!(c.last().body.get("fallbacks").is_none());
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(
        r.status, 500,
        "without fallbacks the error stands: {}",
        r.text
    );
    app.stop().await;
}

#[tokio::test]
async fn mock_testing_switches_fail_the_first_group_on_purpose() {
    let (app, [a, b, c]) = three_groups(&[("fallbacks", r#"[{"a": ["b"]}]"#)]).await;
    let with = |flag: &str, model: &str| {
        let mut body = chat_json(model);
        body[flag] = Value::Bool(true);
        body
    };
    let r = app
        .chat_body(MASTER_KEY, with("mock_testing_fallbacks", "a"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!(r.header("x-litellm-attempted-fallbacks"), Some("1"));
    let r = app
        .chat_body(MASTER_KEY, with("mock_testing_rate_limit_error", "a"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!(a.hits(), 0, "the failing group is never called");
    assert_eq!(b.hits(), 2);
    assert!(b.last().body.get("mock_testing_rate_limit_error").is_none());

    // Without a fallback the mock error reaches the client.
    let r = app
        .chat_body(MASTER_KEY, with("mock_testing_rate_limit_error", "c"))
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_error_shape(&r);
    assert_eq!(c.hits(), 0);
    app.stop().await;
}

fn stream_body(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_stream_failing_before_its_first_byte_falls_back_cleanly() {
    let (app, [a, b, _]) = three_groups(&[("fallbacks", r#"[{"a": ["b"]}]"#)]).await;
    a.set_responder(|_| MockResponse::error(503, "overloaded"));
    let r = app.chat_body(MASTER_KEY, stream_body("a")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert!(!r.text.contains("error"), "{}", r.text);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(b.hits(), 1);

    // A connection dropped before any event is retried on the same group.
    let up = MockUpstream::openai().await;
    up.enqueue(MockResponse::Drop);
    let app2 = spawn_app(&config(
        &[deployment("g", "g1", &up.url(), &[])],
        &[("num_retries", "1"), ("allowed_fails", "100")],
    ))
    .await;
    let r = app2.chat_body(MASTER_KEY, stream_body("g")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-attempted-retries"), Some("1"));
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    app2.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_stream_failing_after_its_first_byte_ends_with_an_sse_error_event() {
    let up = MockUpstream::openai().await;
    up.enqueue(MockResponse::SlowSse {
        events: vec![
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n".into(),
            "data: {not json\n\n".into(),
            "data: [DONE]\n\n".into(),
        ],
        pause: Duration::from_millis(30),
        cancelled: Default::default(),
    });
    let app = spawn_app(&config(
        &[deployment("g", "g1", &up.url(), &[])],
        &[("num_retries", "2")],
    ))
    .await;
    let r = app.chat_body(MASTER_KEY, stream_body("g")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.sse_data();
    assert!(data[0].contains("Hel"), "{}", r.text);
    let last: Value = serde_json::from_str(data.last().expect("events"))
        .unwrap_or_else(|e| panic!("the last event is JSON ({e}): {}", r.text));
    assert!(last["error"]["message"].is_string(), "{}", r.text);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "a failed stream does not claim success: {}",
        r.text
    );
    assert!(
        data.iter()
            .all(|d| serde_json::from_str::<Value>(d).is_ok()),
        "garbage is never forwarded: {}",
        r.text
    );
    assert_eq!(up.hits(), 1, "no retry after the first byte");
    app.stop().await;
}

#[tokio::test]
async fn the_fallback_kind_follows_the_real_error_even_when_a_retry_finds_no_deployment() {
    let ups = [
        MockUpstream::openai().await,
        MockUpstream::openai().await,
        MockUpstream::openai().await,
    ];
    ups[0].set_responder(|_| content_error());
    let yaml = format!(
        "{}  retry_policy:\n    ContentPolicyViolationErrorRetries: 1\n",
        config(
            &[
                // rpm 1: the retry finds the only deployment full.
                deployment("a", "a1", &ups[0].url(), &[("rpm", "1")]),
                deployment("b", "b1", &ups[1].url(), &[]),
                deployment("c", "c1", &ups[2].url(), &[]),
            ],
            &[
                ("routing_strategy", "usage-based-routing"),
                ("fallbacks", r#"[{"a": ["c"]}]"#),
                ("content_policy_fallbacks", r#"[{"a": ["b"]}]"#),
            ],
        )
    );
    let app = spawn_app(&yaml).await;
    let r = app.chat(MASTER_KEY, "a").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-group"), Some("b"));
    assert_eq!(ups[0].hits(), 1);
    assert_eq!(ups[2].hits(), 0, "not the generic fallback");
    app.stop().await;
}
