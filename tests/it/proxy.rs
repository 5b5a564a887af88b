//! The OpenAI-compatible endpoints through each provider.

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
