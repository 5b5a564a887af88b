//! Anthropic answers → OpenAI: whole messages, stop reasons, usage, error bodies.

use serde_json::{json, Value};

use super::PROVIDER;
use crate::providers::{CallContext, Completion, Error, Usage};

pub fn parse(ctx: &CallContext<'_>, bytes: &[u8]) -> Result<Completion, Error> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::bad_response(PROVIDER, e))?;
    if str_field(&v, "type") == Some("error") {
        return Err(error_from_body(bytes));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::bad_response(PROVIDER, "message without `content`"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match str_field(b, "type").unwrap_or("") {
            "text" => text.push_str(str_field(b, "text").unwrap_or_default()),
            "thinking" => reasoning.push_str(str_field(b, "thinking").unwrap_or_default()),
            "tool_use" => {
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": str_field(b, "id").unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": str_field(b, "name").unwrap_or_default(),
                        "arguments": input.to_string(),
                    },
                }));
            }
            _ => {}
        }
    }
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({ "role": "assistant", "content": content });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let mut counts = Counts::default();
    if let Some(u) = v.get("usage") {
        counts.merge(u);
    }
    let usage = counts.usage();
    let body = json!({
        "id": str_field(&v, "id").unwrap_or_default(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": str_field(&v, "model").unwrap_or(&ctx.deployment.upstream_model),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(str_field(&v, "stop_reason")),
        }],
        "usage": usage.to_openai(),
    });
    Ok(Completion {
        raw: None,
        body,
        usage: Some(usage),
    })
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// An Anthropic error body (`{"type":"error","error":{"type":…,"message":…}}`), classified
/// by the HTTP status Anthropic uses for that error type.
pub(crate) fn error_from_body(body: &[u8]) -> Error {
    let kind = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/type")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let status = match kind.as_deref() {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    };
    Error::from_status(PROVIDER, status, &Default::default(), body)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Anthropic's token counts; `input_tokens` excludes the cached ones.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub input: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
    pub output: u64,
}

impl Counts {
    /// Takes every count present (non-null) in an Anthropic `usage` object.
    pub fn merge(&mut self, usage: &Value) {
        let read = |k: &str| usage.get(k).and_then(Value::as_u64);
        if let Some(n) = read("input_tokens") {
            self.input = n;
        }
        if let Some(n) = read("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = read("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
        if let Some(n) = read("output_tokens") {
            self.output = n;
        }
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.input + self.cache_read + self.cache_creation,
            completion_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_creation_tokens: self.cache_creation,
            estimated: false,
        }
    }
}

pub(super) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}
