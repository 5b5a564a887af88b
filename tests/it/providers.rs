//! Endpoints, auth and each provider adapter: what the upstream received and what the
//! client got back.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn every_endpoint_answers_with_and_without_the_v1_prefix() {
    let (up, app) = spawn_with_openai_gpt().await;
    for prefix in ["", "/v1"] {
        let r = app
            .post(
                &format!("{prefix}/chat/completions"),
                Some(MASTER_KEY),
                &chat_json("gpt"),
            )
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text);
        assert_eq!(up.last().path, "/v1/chat/completions");

        let r = app
            .post(
                &format!("{prefix}/completions"),
                Some(MASTER_KEY),
                &json!({"model": "gpt", "prompt": "say hi"}),
            )
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text);
        assert_eq!(r.body["choices"][0]["text"], "Hello world");
        assert_eq!(up.last().path, "/v1/completions");
        assert_eq!(up.last().body["prompt"], "say hi");

        let r = app
            .post(
                &format!("{prefix}/embeddings"),
                Some(MASTER_KEY),
                &json!({"model": "gpt", "input": "abc"}),
            )
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text);
        assert_eq!(r.body["data"][0]["embedding"], json!([0.1, 0.2]));
        assert_eq!(up.last().path, "/v1/embeddings");

        let r = app.get(&format!("{prefix}/models"), Some(MASTER_KEY)).await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text);
        assert_eq!(r.body["object"], "list");

        let r = app
            .get(&format!("{prefix}/models/gpt"), Some(MASTER_KEY))
            .await;
        assert_eq!(r.status, 200, "{prefix}: {}", r.text);
        assert_eq!(r.body["id"], "gpt");
    }
    app.stop().await;
}

#[tokio::test]
async fn models_lists_aliases_in_openai_list_shape_and_unknown_model_is_404() {
    let up = MockUpstream::openai().await;
    let base = format!("{}/v1", up.url());
    let app = spawn_app(&config_for(&[
        ("gpt", "openai/gpt-4o", &base),
        ("gpt", "openai/gpt-4o-mini", &base),
        ("fast", "groq/llama-3", &base),
    ]))
    .await;
    let r = app.get("/v1/models", Some(MASTER_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["object"], "list");
    let data = r.body["data"].as_array().expect("data array");
    let ids: Vec<&str> = data.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, vec!["gpt", "fast"], "one entry per alias");
    for m in data {
        assert_eq!(m["object"], "model");
        assert!(m["created"].is_i64(), "{m}");
        assert!(m["owned_by"].is_string(), "{m}");
    }
    let r = app.get("/v1/models/nope", Some(MASTER_KEY)).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_error_shape(&r);
    assert!(r.error_message().contains("nope"), "{}", r.text);
    let r = app.get("/v1/models", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn liveliness_and_readiness_need_no_key_and_report_db_models_and_version() {
    let app = spawn_app(
        "model_list:\n  - model_name: echo\n    litellm_params:\n      model: mock/echo\n  - model_name: echo2\n    litellm_params:\n      model: mock/echo\n      mock_latency_ms: 1\n",
    )
    .await;
    let r = app.get("/health/liveliness", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("alive"), "{}", r.text);
    let r = app.get("/health/readiness", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "healthy");
    assert_eq!(r.body["db"], "connected");
    assert_eq!(r.body["model_count"], 2);
    assert_eq!(r.body["litellm_version"], env!("CARGO_PKG_VERSION"));
    app.stop().await;
}

#[tokio::test]
async fn health_needs_a_key_and_probes_every_deployment() {
    let good = MockUpstream::openai().await;
    let bad = MockUpstream::openai().await;
    bad.set_responder(|_| MockResponse::error(500, "upstream is down"));
    let app = spawn_app(&config(
        &[
            deployment("g", "good", &good.url(), &[]),
            deployment("g", "bad", &bad.url(), &[]),
        ],
        &[],
    ))
    .await;
    let r = app.get("/health", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = app.get("/health", Some(MASTER_KEY)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["healthy_count"], 1, "{}", r.text);
    assert_eq!(r.body["unhealthy_count"], 1, "{}", r.text);
    assert_eq!(r.body["healthy_endpoints"][0]["model_id"], "good");
    assert_eq!(r.body["unhealthy_endpoints"][0]["model_id"], "bad");
    assert!(
        r.body["unhealthy_endpoints"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("upstream is down")),
        "{}",
        r.text
    );
    assert!(good.hits() >= 1 && bad.hits() >= 1);
    app.stop().await;
}

#[tokio::test]
async fn openai_compatible_prefixes_use_their_api_base_and_bearer_key() {
    let up = MockUpstream::openai().await;
    let base = format!("{}/v1", up.url());
    let app = spawn_app(&config_for(&[
        ("fast", "groq/llama-3.1-8b-instant", &base),
        ("local", "hosted_vllm/meta-llama/Llama-3-8B", &base),
    ]))
    .await;
    let r = app.chat(MASTER_KEY, "fast").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.query, None);
    assert_eq!(got.header("authorization"), Some("Bearer sk-upstream-fast"));
    assert_eq!(got.body["model"], "llama-3.1-8b-instant");

    let r = app.chat(MASTER_KEY, "local").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body["model"], "meta-llama/Llama-3-8B");
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(r.body["usage"]["total_tokens"], 15);
    app.stop().await;
}

#[tokio::test]
async fn azure_puts_the_deployment_in_the_path_with_api_version_and_api_key_header() {
    let up = MockUpstream::openai().await;
    let yaml = format!(
        "model_list:\n  - model_name: az\n    litellm_params:\n      model: azure/my-gpt4o\n      api_base: {}\n      api_key: az-secret\n      api_version: 2024-06-01\n",
        up.url()
    );
    let app = spawn_app(&yaml).await;
    let r = app.chat(MASTER_KEY, "az").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hello world");
    let got = up.last();
    assert_eq!(got.path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(got.query.as_deref(), Some("api-version=2024-06-01"));
    assert_eq!(got.header("api-key"), Some("az-secret"));
    assert_eq!(got.header("authorization"), None);
    let r = app
        .post(
            "/v1/embeddings",
            Some(MASTER_KEY),
            &json!({"model": "az", "input": "x"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        up.last().path,
        "/openai/deployments/my-gpt4o/embeddings",
        "embeddings use the same deployment path"
    );
    app.stop().await;
}

fn anthropic_app_yaml(base: &str) -> String {
    format!(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-3-5-sonnet-20241022\n      api_base: {base}\n      api_key: sk-ant-test\n"
    )
}

#[tokio::test]
async fn anthropic_request_is_translated_to_the_messages_api() {
    let up = MockUpstream::anthropic().await;
    let app = spawn_app(&anthropic_app_yaml(&up.url())).await;
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({
                "model": "claude",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"}
                ],
                "stop": ["END"],
                "temperature": 0.2,
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = up.last();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.body["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(got.body["system"], "Be brief.");
    assert_eq!(
        got.body["messages"],
        json!([{"role": "user", "content": "Weather in Paris?"}])
    );
    assert_eq!(got.body["max_tokens"], 4096, "max_tokens defaulted");
    assert_eq!(got.body["stop_sequences"], json!(["END"]));
    assert!(got.body.get("stop").is_none());
    assert_eq!(got.body["temperature"], 0.2);
    assert_eq!(got.body["tools"][0]["name"], "get_weather");
    assert_eq!(got.body["tools"][0]["description"], "Weather by city");
    assert_eq!(got.body["tools"][0]["input_schema"]["type"], "object");
    app.stop().await;
}

#[tokio::test]
async fn anthropic_answers_become_openai_completions_with_usage_and_tool_calls() {
    let up = MockUpstream::anthropic().await;
    let app = spawn_app(&anthropic_app_yaml(&up.url())).await;
    let r = app.chat(MASTER_KEY, "claude").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(r.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r.body["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18})
    );

    up.enqueue(MockResponse::json(
        200,
        json!({
            "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20241022",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 20, "output_tokens": 10}
        }),
    ));
    let r = app.chat(MASTER_KEY, "claude").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let choice = &r.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_1");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("string args"))
            .expect("json args");
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(r.body["usage"]["total_tokens"], 30);
    app.stop().await;
}

#[tokio::test]
async fn anthropic_errors_are_passed_through_with_their_status() {
    let up = MockUpstream::anthropic().await;
    up.set_responder(|_| {
        MockResponse::json(
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "messages: bad role"}}),
        )
    });
    let app = spawn_app(&anthropic_app_yaml(&up.url())).await;
    let r = app.chat(MASTER_KEY, "claude").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_error_shape(&r);
    assert!(r.error_message().contains("anthropic"), "{}", r.text);
    assert!(
        r.error_message().contains("messages: bad role"),
        "{}",
        r.text
    );
    app.stop().await;
}

#[tokio::test]
async fn mock_echo_answers_without_any_network() {
    let app = spawn_app(
        "model_list:\n  - model_name: echo\n    litellm_params:\n      model: mock/echo\n",
    )
    .await;
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"model": "echo", "messages": [{"role": "user", "content": "ping pong"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "echo: ping pong"
    );
    assert!(r.body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    let r = app
        .chat_body(
            MASTER_KEY,
            json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": "a b"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    app.stop().await;
}

#[tokio::test]
async fn every_litellm_key_header_is_accepted() {
    let app = spawn_app(
        "model_list:\n  - model_name: echo\n    litellm_params:\n      model: mock/echo\n",
    )
    .await;
    for (h, v) in [
        ("authorization", format!("Bearer {MASTER_KEY}")),
        ("x-litellm-api-key", MASTER_KEY.to_owned()),
        ("api-key", MASTER_KEY.to_owned()),
        ("x-api-key", MASTER_KEY.to_owned()),
    ] {
        let req = app
            .client
            .post(format!("{}/v1/chat/completions", app.url))
            .header(h, v)
            .json(&chat_json("echo"));
        let r = app.send(req).await;
        assert_eq!(r.status, 200, "{h}: {}", r.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_missing_or_invalid_key_is_401_in_openai_error_shape() {
    let up = MockUpstream::openai().await;
    let app = spawn_app(&config_for(&[("gpt", "openai/gpt-4o", &up.url())])).await;
    let r = app
        .post("/v1/chat/completions", None, &chat_json("gpt"))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_error_shape(&r);
    let r = app
        .post("/v1/chat/completions", Some("sk-wrong"), &chat_json("gpt"))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_error_shape(&r);
    assert!(
        !r.text.contains(MASTER_KEY),
        "never echo the real key: {}",
        r.text
    );
    assert_eq!(
        up.hits(),
        0,
        "unauthenticated calls never reach the upstream"
    );
    app.stop().await;
}
