//! Routing strategies over HTTP with two mock upstreams, `order`, pre-call checks,
//! timeouts and LiteLLM's response headers.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// How many replies each model id served.
fn served(replies: &[Reply], id: &str) -> usize {
    replies
        .iter()
        .filter(|r| r.status == 200 && r.header("x-litellm-model-id") == Some(id))
        .count()
}

#[tokio::test]
async fn simple_shuffle_follows_the_weights() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment("g", "a", &a.url(), &[("weight", "9")]),
            deployment("g", "b", &b.url(), &[("weight", "1")]),
        ],
        &[("routing_strategy", "simple-shuffle")],
    ))
    .await;
    let replies = app.chat_many("g", 400).await;
    assert!(replies.iter().all(|r| r.status == 200));
    let (na, nb) = (served(&replies, "a"), served(&replies, "b"));
    assert_eq!(na + nb, 400);
    assert_eq!((a.hits(), b.hits()), (na, nb));
    // Expected 360:40 (sd 6); a wide band keeps this from flaking.
    assert!((310..=390).contains(&na), "a={na} b={nb}");
    app.stop().await;
}

#[tokio::test]
async fn least_busy_spreads_concurrent_requests_evenly() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    for up in [&a, &b] {
        up.set_responder(|_| {
            MockResponse::Delay(
                Duration::from_millis(700),
                Box::new(MockResponse::json(
                    200,
                    json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
                )),
            )
        });
    }
    let app = spawn_app(&config(
        &[
            deployment("g", "a", &a.url(), &[]),
            deployment("g", "b", &b.url(), &[]),
        ],
        &[("routing_strategy", "least-busy")],
    ))
    .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/v1/chat/completions", app.url);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(MASTER_KEY)
                .json(&chat_json("g"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        // Each request starts while the earlier ones are still in flight.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("send"), 200);
    }
    assert_eq!(a.hits() + b.hits(), 8);
    assert!(
        (3..=5).contains(&a.hits()),
        "least-busy keeps both equally loaded: a={} b={}",
        a.hits(),
        b.hits()
    );
    app.stop().await;
}

#[tokio::test]
async fn usage_based_routing_never_exceeds_rpm_and_answers_429_when_all_are_full() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment("g", "a", &a.url(), &[("rpm", "3")]),
            deployment("g", "b", &b.url(), &[("rpm", "2")]),
        ],
        &[("routing_strategy", "usage-based-routing-v2")],
    ))
    .await;
    for i in 0..5 {
        let r = app.chat(MASTER_KEY, "g").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    assert_eq!((a.hits(), b.hits()), (3, 2));
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_error_shape(&r);
    assert!(
        r.error_message().contains("No deployments available"),
        "{}",
        r.text
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(a.hits() + b.hits(), 5, "no deployment went over its rpm");
    app.stop().await;
}

#[tokio::test]
async fn latency_based_routing_sends_most_traffic_to_the_faster_upstream() {
    let slow = MockUpstream::openai().await;
    let fast = MockUpstream::openai().await;
    slow.set_responder(|_| {
        MockResponse::Delay(
            Duration::from_millis(150),
            Box::new(MockResponse::json(
                200,
                json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
            )),
        )
    });
    let app = spawn_app(&config(
        &[
            deployment("g", "slow", &slow.url(), &[]),
            deployment("g", "fast", &fast.url(), &[]),
        ],
        &[("routing_strategy", "latency-based-routing")],
    ))
    .await;
    let mut replies = Vec::new();
    for _ in 0..20 {
        replies.push(app.chat(MASTER_KEY, "g").await);
    }
    assert!(replies.iter().all(|r| r.status == 200));
    // Warm-up measures each once; after that the fast one wins.
    assert!(
        slow.hits() <= 2,
        "slow={} fast={}",
        slow.hits(),
        fast.hits()
    );
    assert!(served(&replies[5..], "fast") == 15);
    app.stop().await;
}

#[tokio::test]
async fn cost_based_routing_picks_the_cheaper_deployment() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment(
                "g",
                "pricey",
                &a.url(),
                &[("input_cost_per_token", "0.00001")],
            ),
            deployment(
                "g",
                "cheap",
                &b.url(),
                &[("input_cost_per_token", "0.000001")],
            ),
        ],
        &[("routing_strategy", "cost-based-routing")],
    ))
    .await;
    let replies = app.chat_many("g", 20).await;
    assert_eq!(served(&replies, "cheap"), 20);
    assert_eq!(a.hits(), 0);
    app.stop().await;
}

#[tokio::test]
async fn order_2_is_used_only_while_order_1_fails_or_cools_down() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment("g", "first", &a.url(), &[("order", "1")]),
            deployment("g", "second", &b.url(), &[("order", "2")]),
        ],
        &[
            ("num_retries", "1"),
            ("allowed_fails", "0"),
            ("cooldown_time", "30"),
        ],
    ))
    .await;
    let replies = app.chat_many("g", 10).await;
    assert_eq!(served(&replies, "first"), 10);
    assert_eq!(b.hits(), 0);
    a.set_responder(|_| MockResponse::error(500, "down"));
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-id"), Some("second"));
    assert_eq!(r.header("x-litellm-attempted-retries"), Some("1"));
    let hits_a = a.hits();
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.header("x-litellm-model-id"), Some("second"));
    assert_eq!(a.hits(), hits_a, "order 1 is cooling down and skipped");
    app.stop().await;
}

#[tokio::test]
async fn pre_call_checks_skip_a_deployment_whose_context_window_is_too_small() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let yaml = format!(
        "{}    model_info:\n      id: small\n      max_input_tokens: 20\n{}router_settings:\n  enable_pre_call_checks: true\n",
        format_args!(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/small\n      api_base: {}/v1\n",
            a.url()
        ),
        deployment("g", "large", &b.url(), &[]),
    );
    let app = spawn_app(&yaml).await;
    let long = "word ".repeat(100);
    for _ in 0..10 {
        let r = app
            .chat_body(
                MASTER_KEY,
                json!({"model": "g", "messages": [{"role": "user", "content": long}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-litellm-model-id"), Some("large"));
    }
    assert_eq!(a.hits(), 0);
    // Short prompts may still use the small one.
    let replies = app.chat_many("g", 30).await;
    assert!(served(&replies, "small") > 0);
    app.stop().await;
}

#[tokio::test]
async fn responses_carry_litellm_headers_whole_and_streamed() {
    let up = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[deployment(
            "g",
            "dep-1",
            &up.url(),
            &[
                ("input_cost_per_token", "0.001"),
                ("output_cost_per_token", "0.002"),
            ],
        )],
        &[],
    ))
    .await;
    for stream in [false, true] {
        let r = app
            .chat_body(
                MASTER_KEY,
                json!({"model": "g", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-litellm-model-id"), Some("dep-1"));
        assert_eq!(
            r.header("x-litellm-model-api-base"),
            Some(format!("{}/v1", up.url()).as_str())
        );
        assert_eq!(r.header("x-litellm-model-group"), Some("g"));
        assert_eq!(r.header("x-litellm-attempted-retries"), Some("0"));
        assert_eq!(r.header("x-litellm-attempted-fallbacks"), Some("0"));
        for h in [
            "x-litellm-overhead-duration-ms",
            "x-litellm-response-duration-ms",
            "x-litellm-response-cost",
        ] {
            let v: f64 = r
                .header(h)
                .unwrap_or_else(|| panic!("{h} missing"))
                .parse()
                .unwrap_or_else(|_| panic!("{h} is not a number"));
            assert!(v >= 0.0, "{h}={v}");
        }
        if !stream {
            // 10 prompt tokens * 0.001 + 5 completion tokens * 0.002
            let cost: f64 = r
                .header("x-litellm-response-cost")
                .unwrap()
                .parse()
                .unwrap();
            assert!((cost - 0.02).abs() < 1e-9, "cost={cost}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn per_deployment_timeout_and_stream_timeout_are_enforced() {
    let up = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[deployment(
            "g",
            "d",
            &up.url(),
            &[("timeout", "5"), ("stream_timeout", "0.2")],
        )],
        &[("num_retries", "0")],
    ))
    .await;
    // A non-stream call may take longer than stream_timeout.
    up.enqueue(MockResponse::Delay(
        Duration::from_millis(400),
        Box::new(MockResponse::json(
            200,
            json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "late"}, "finish_reason": "stop"}]}),
        )),
    ));
    let r = app.chat(MASTER_KEY, "g").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The first chunk of a stream must come within stream_timeout: here the headers come
    // at once but the first event only after 600 ms.
    up.enqueue(MockResponse::SlowSse {
        events: vec![
            ": keep-alive\n\n".into(),
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n".into(),
            "data: [DONE]\n\n".into(),
        ],
        pause: Duration::from_millis(600),
        cancelled: Default::default(),
    });
    let t = Instant::now();
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 408, "{}", r.text);
    assert_error_shape(&r);
    assert!(
        t.elapsed() < Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_based_routing_holds_rpm_limits_under_concurrent_requests() {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let app = spawn_app(&config(
        &[
            deployment("g", "a", &a.url(), &[("rpm", "3")]),
            deployment("g", "b", &b.url(), &[("rpm", "2")]),
        ],
        &[
            ("routing_strategy", "usage-based-routing"),
            ("num_retries", "0"),
        ],
    ))
    .await;
    let replies = app.chat_many("g", 20).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5, "exactly the 5 rpm slots are used");
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 429));
    assert!(
        a.hits() <= 3 && b.hits() <= 2,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
    app.stop().await;
}
