//! Retries (counted at the mock), `retry_policy`, `Retry-After`, and cooldowns.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn num_retries_from_router_settings_and_from_the_body_are_counted_at_the_upstream() {
    let up = MockUpstream::openai().await;
    up.set_responder(|_| MockResponse::error(500, "boom"));
    let app = spawn_app(&config(
        &[deployment("g", "d", &up.url(), &[])],
        &[("num_retries", "3"), ("allowed_fails", "100")],
    ))
    .await;
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_error_shape(&r);
    assert_eq!(up.hits(), 4, "1 call + 3 retries");
    assert_eq!(
        r.header("x-litellm-attempted-retries"),
        Some("3"),
        "a failed call reports its retries too"
    );
    assert_eq!(r.header("x-litellm-attempted-fallbacks"), Some("0"));

    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"model": "g", "num_retries": 1, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(up.hits(), 6, "the body's num_retries wins");
    assert!(
        up.requests()
            .iter()
            .all(|r| r.body.get("num_retries").is_none()),
        "gateway fields are not sent upstream"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_that_succeeds_reports_the_attempts_in_headers() {
    let up = MockUpstream::openai().await;
    up.enqueue(MockResponse::error(500, "transient"));
    up.enqueue(MockResponse::error(503, "transient"));
    let app = spawn_app(&config(
        &[deployment("g", "d", &up.url(), &[])],
        &[("num_retries", "2"), ("allowed_fails", "100")],
    ))
    .await;
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.hits(), 3);
    assert_eq!(r.header("x-litellm-attempted-retries"), Some("2"));
    app.stop().await;
}

#[tokio::test]
async fn retry_policy_sets_retries_per_error_class() {
    let limited = MockUpstream::openai().await;
    limited.set_responder(|_| MockResponse::error(429, "slow down"));
    let denied = MockUpstream::openai().await;
    denied.set_responder(|_| MockResponse::error(401, "bad key"));
    let yaml = format!(
        "{}  retry_policy:\n    RateLimitErrorRetries: 2\n    AuthenticationErrorRetries: 0\n",
        config(
            &[
                deployment("rl", "rl", &limited.url(), &[]),
                deployment("auth", "auth", &denied.url(), &[]),
            ],
            &[("num_retries", "5"), ("allowed_fails", "100")],
        )
    );
    let app = spawn_app(&yaml).await;
    let r = app.chat(MASTER_KEY, "rl").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(limited.hits(), 3, "RateLimitErrorRetries: 2");
    let r = app.chat(MASTER_KEY, "auth").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(denied.hits(), 1, "AuthenticationErrorRetries: 0");
    app.stop().await;
}

#[tokio::test]
async fn retry_after_ms_from_the_upstream_is_waited_before_retrying() {
    let up = MockUpstream::openai().await;
    up.enqueue(MockResponse::Json {
        status: 429,
        body: json!({"error": {"message": "rate limited", "type": "rate_limit_error", "code": null}}),
        headers: vec![("retry-after-ms", "300".into())],
    });
    let app = spawn_app(&config(
        &[deployment("g", "d", &up.url(), &[])],
        &[("num_retries", "1"), ("allowed_fails", "100")],
    ))
    .await;
    let t = Instant::now();
    let r = app.chat(MASTER_KEY, "g").await;
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.hits(), 2);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_retry_goes_to_another_deployment_when_there_is_one() {
    let bad = MockUpstream::openai().await;
    bad.set_responder(|_| MockResponse::error(500, "down"));
    let good = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment("g", "bad", &bad.url(), &[("order", "1")]),
            deployment("g", "good", &good.url(), &[("order", "2")]),
        ],
        &[("num_retries", "1"), ("allowed_fails", "100")],
    ))
    .await;
    for _ in 0..5 {
        let r = app.chat(MASTER_KEY, "g").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-litellm-model-id"), Some("good"));
        assert_eq!(r.header("x-litellm-attempted-retries"), Some("1"));
    }
    assert_eq!((bad.hits(), good.hits()), (5, 5));
    app.stop().await;
}

#[tokio::test]
async fn a_failing_deployment_cools_down_and_is_used_again_afterwards() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    a.enqueue(MockResponse::error(500, "hiccup"));
    let app = spawn_app(&config(
        &[
            deployment("g", "a", &a.url(), &[("order", "1")]),
            deployment("g", "b", &b.url(), &[("order", "2")]),
        ],
        &[
            ("num_retries", "1"),
            ("allowed_fails", "0"),
            ("cooldown_time", "1"),
        ],
    ))
    .await;
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-id"), Some("b"));
    for _ in 0..3 {
        let r = app.chat(MASTER_KEY, "g").await;
        assert_eq!(r.header("x-litellm-model-id"), Some("b"), "a is cooling");
    }
    assert_eq!(a.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("x-litellm-model-id"),
        Some("a"),
        "cooldown is over"
    );
    assert_eq!(a.hits(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_whole_group_cooling_down_is_429_with_retry_after_unless_a_fallback_answers() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let k = MockUpstream::openai().await;
    let h = MockUpstream::openai().await;
    for up in [&a, &b, &k] {
        up.set_responder(|_| MockResponse::error(500, "down"));
    }
    let app = spawn_app(&config(
        &[
            deployment("g", "a", &a.url(), &[]),
            deployment("g", "b", &b.url(), &[]),
            deployment("k", "k1", &k.url(), &[]),
            deployment("h", "h1", &h.url(), &[]),
        ],
        &[
            ("num_retries", "1"),
            ("allowed_fails", "0"),
            ("cooldown_time", "5"),
            ("fallbacks", "[{\"k\": [\"h\"]}]"),
        ],
    ))
    .await;
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!((a.hits(), b.hits()), (1, 1), "each tried once");
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_error_shape(&r);
    let m = r.error_message();
    assert!(m.contains("model=g") && m.contains("cooling down"), "{m}");
    let ra: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=5).contains(&ra), "retry-after={ra}");
    assert_eq!(a.hits() + b.hits(), 2, "cooling deployments are not called");

    // With a fallback configured, the fallback answers while the group cools.
    for _ in 0..2 {
        let r = app.chat(MASTER_KEY, "k").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-litellm-model-group"), Some("h"));
        assert_eq!(r.header("x-litellm-attempted-fallbacks"), Some("1"));
    }
    assert_eq!(k.hits(), 1, "k1 cooled down after its first failure");
    app.stop().await;
}
