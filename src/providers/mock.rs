//! The built-in `mock/` provider, FOR TESTS AND DEMOS ONLY: answers deterministically
//! without any network, so the gateway can be tried on a machine with no provider keys.
//!
//! `mock/echo` answers "echo: <last user message>". A `mock_response` field in the body
//! is answered verbatim (as LiteLLM does). `mock_latency_ms` in `litellm_params` delays
//! the answer. Any model name containing `error` fails with a 500.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    estimate_prompt_tokens, estimate_tokens, CallContext, CallType, ChunkStream, Completion, Error,
    ErrorClass, StreamItem, Usage,
};

fn answer_text(body: &Value) -> String {
    if let Some(s) = body.get("mock_response").and_then(Value::as_str) {
        return s.to_owned();
    }
    let last_user = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .map(|c| match c {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .or_else(|| {
            body.get("prompt")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    format!("echo: {last_user}")
}

async fn prepare(ctx: &CallContext<'_>) -> Result<(String, Usage), Error> {
    if let Some(ms) = ctx.deployment.mock_latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if ctx.deployment.upstream_model.contains("error") {
        return Err(Error::new(
            ErrorClass::InternalServer,
            500,
            "mock",
            "mock provider error (model name contains 'error')".into(),
        ));
    }
    let text = answer_text(&ctx.body.to_value());
    let usage = Usage {
        prompt_tokens: estimate_prompt_tokens(ctx.body),
        completion_tokens: estimate_tokens(text.len()),
        ..Usage::default()
    };
    Ok((text, usage))
}

fn id() -> String {
    format!("chatcmpl-mock-{}", uuid::Uuid::new_v4().simple())
}

pub async fn call(ctx: &CallContext<'_>) -> Result<Completion, Error> {
    let (text, usage) = prepare(ctx).await?;
    let model = &ctx.deployment.upstream_model;
    let created = chrono::Utc::now().timestamp();
    let body = match ctx.call {
        CallType::Chat => json!({
            "id": id(), "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage.to_openai(),
        }),
        CallType::Completion => json!({
            "id": id(), "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
            "usage": usage.to_openai(),
        }),
        CallType::Embedding => {
            let inputs = ctx.body.array_len("input").unwrap_or(1).max(1);
            let data: Vec<Value> = (0..inputs)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0, 0.5, 1.0]}))
                .collect();
            let usage = Usage {
                completion_tokens: 0,
                ..usage
            };
            return Ok(Completion {
                raw: None,
                body: json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}}),
                usage: Some(usage),
            });
        }
    };
    Ok(Completion {
        raw: None,
        body,
        usage: Some(usage),
    })
}

pub async fn call_stream(ctx: &CallContext<'_>) -> Result<ChunkStream, Error> {
    let (text, usage) = prepare(ctx).await?;
    let model = ctx.deployment.upstream_model.clone();
    let created = chrono::Utc::now().timestamp();
    let id = id();
    let chat = ctx.call == CallType::Chat;
    let chunk = |choice: Value, usage: Option<Value>| -> Bytes {
        let mut c = json!({
            "id": id, "object": if chat { "chat.completion.chunk" } else { "text_completion" },
            "created": created, "model": model, "choices": if choice.is_null() { json!([]) } else { json!([choice]) },
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(c.to_string())
    };
    let mut items = Vec::new();
    if chat {
        items.push(StreamItem::Chunk(chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
            None,
        )));
    }
    for (i, word) in text.split(' ').enumerate() {
        let piece = if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        let choice = if chat {
            json!({"index": 0, "delta": {"content": piece}, "finish_reason": null})
        } else {
            json!({"index": 0, "text": piece, "finish_reason": null})
        };
        items.push(StreamItem::Chunk(chunk(choice, None)));
    }
    let last = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": "", "finish_reason": "stop"})
    };
    items.push(StreamItem::Chunk(chunk(last, None)));
    items.push(StreamItem::Usage {
        usage,
        chunk: chunk(Value::Null, Some(usage.to_openai())),
    });
    Ok(Box::pin(futures_util::stream::iter(
        items.into_iter().map(Ok),
    )))
}
