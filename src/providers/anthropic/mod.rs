//! Anthropic Messages API: translates OpenAI chat requests to `/v1/messages` and the
//! answers (whole or streamed) back to OpenAI's shape.

use serde_json::{json, Map, Value};

mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use response::parse;
use response::str_field;
pub use stream::stream;

use super::{CallContext, CallType, Error, UpstreamRequest};
use crate::deployment::Deployment;

const PROVIDER: &str = "anthropic";
/// The Messages API version this adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; OpenAI clients often leave it out.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Sampling fields Anthropic accepts that the body or the deployment defaults may set.
const SAMPLING_FIELDS: &[&str] = &["temperature", "top_p", "top_k"];

pub fn build(ctx: &CallContext<'_>, stream: bool) -> Result<UpstreamRequest, Error> {
    let what = match ctx.call {
        CallType::Chat => None,
        CallType::Completion => Some("text completions are"),
        CallType::Embedding => Some("embeddings are"),
    };
    if let Some(what) = what {
        return Err(Error::invalid_request(
            PROVIDER,
            format!("{what} not supported by anthropic"),
        ));
    }
    let dep = ctx.deployment;
    let body = messages_body(&ctx.body.to_value(), dep, stream)?;
    let mut req = UpstreamRequest::post(PROVIDER, &messages_url(&dep.api_base));
    if let Some(key) = &dep.api_key {
        req = req.secret_header("x-api-key", key);
    }
    let version_overridden = dep
        .extra_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("anthropic-version"));
    if !version_overridden {
        req = req.header("anthropic-version", ANTHROPIC_VERSION);
    }
    req = super::with_extra_headers(req, dep);
    let bytes = serde_json::to_vec(&body).map_err(|e| Error::invalid_request(PROVIDER, e))?;
    Ok(req.json_body(bytes))
}

/// `{api_base}/v1/messages`, without doubling a `/v1` the base already ends with.
fn messages_url(api_base: &str) -> String {
    let base = api_base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::invalid_request(PROVIDER, what)
}

/// The Anthropic Messages body for an OpenAI chat body.
fn messages_body(body: &Value, dep: &Deployment, stream: bool) -> Result<Value, Error> {
    let src = body
        .as_object()
        .ok_or_else(|| invalid("request body must be a JSON object"))?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(dep.upstream_model.clone()));
    let (system, messages) = translate_messages(src.get("messages"))?;
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), messages);

    let max_keys = ["max_tokens", "max_completion_tokens"];
    let max_tokens = first_u64(src, &max_keys)
        .or_else(|| first_u64(&dep.default_params, &max_keys))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), max_tokens.into());
    for k in SAMPLING_FIELDS {
        let v = present(src, k).or_else(|| present(&dep.default_params, k));
        if let Some(v) = v {
            out.insert((*k).into(), v.clone());
        }
    }
    let stops: Vec<Value> = match src.get("stop") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) => items.clone(),
        _ => vec![],
    };
    // Anthropic rejects whitespace-only stop sequences.
    let stops: Vec<Value> = stops
        .into_iter()
        .filter(|v| v.as_str().is_some_and(|s| !s.trim().is_empty()))
        .collect();
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user) = src.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(thinking) = src.get("thinking").filter(|v| v.is_object()) {
        out.insert("thinking".into(), thinking.clone());
    }

    let tools = match src.get("tools") {
        Some(Value::Array(tools)) => tools.iter().map(translate_tool).collect::<Result<_, _>>()?,
        _ => vec![],
    };
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match src.get("tool_choice") {
        Some(c) if has_tools => translate_tool_choice(c)?,
        _ => None,
    };
    let no_parallel = src.get("parallel_tool_calls") == Some(&Value::Bool(false));
    if no_parallel && has_tools {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if c.get("type").and_then(Value::as_str) != Some("none") {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".into(), choice);
    }
    Ok(Value::Object(out))
}

/// A field's value unless absent or null.
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn first_u64(map: &Map<String, Value>, keys: &[&str]) -> Option<u64> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_u64))
}

/// OpenAI `{type:"function", function:{…}}` → Anthropic `{name, description, input_schema}`.
/// Tools already in Anthropic's shape (e.g. server tools) pass through.
fn translate_tool(tool: &Value) -> Result<Value, Error> {
    let Some(f) = tool.get("function") else {
        return Ok(tool.clone());
    };
    let name = str_field(f, "name").ok_or_else(|| invalid("tool function without a name"))?;
    let mut out = json!({
        "name": name,
        "input_schema": f
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
    });
    if let Some(d) = f.get("description").filter(|d| d.is_string()) {
        out["description"] = d.clone();
    }
    if let Some(cc) = tool.get("cache_control") {
        out["cache_control"] = cc.clone();
    }
    Ok(out)
}

fn translate_tool_choice(choice: &Value) -> Result<Option<Value>, Error> {
    let kind = match choice {
        Value::Null => return Ok(None),
        Value::String(s) => s.as_str(),
        Value::Object(_) => match str_field(choice, "type") {
            Some("function") => {
                let name = choice
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("tool_choice function without a name"))?;
                return Ok(Some(json!({ "type": "tool", "name": name })));
            }
            // Already Anthropic's shape.
            Some("auto" | "any" | "tool" | "none") => return Ok(Some(choice.clone())),
            _ => "",
        },
        _ => "",
    };
    let kind = match kind {
        "auto" => "auto",
        "required" | "any" => "any",
        "none" => "none",
        _ => return Err(invalid(format!("unsupported tool_choice {choice}"))),
    };
    Ok(Some(json!({ "type": kind })))
}

/// Splits OpenAI messages into Anthropic's top-level `system` and alternating messages.
fn translate_messages(messages: Option<&Value>) -> Result<(Option<Value>, Value), Error> {
    let list = messages
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`messages` must be an array"))?;
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in list {
        match str_field(m, "role").unwrap_or("") {
            "system" | "developer" => system.extend(system_blocks(m)?),
            "user" => push_message(&mut out, "user", user_content(m)?),
            "assistant" => push_message(&mut out, "assistant", assistant_content(m)?),
            "tool" => push_message(&mut out, "user", Value::Array(vec![tool_result(m)?])),
            other => return Err(invalid(format!("unsupported message role `{other}`"))),
        }
    }
    let system = if system.is_empty() {
        None
    } else if system.iter().any(|b| b.get("cache_control").is_some()) {
        Some(Value::Array(system))
    } else {
        let texts: Vec<&str> = system.iter().filter_map(|b| str_field(b, "text")).collect();
        Some(Value::String(texts.join("\n")))
    };
    Ok((system, Value::Array(out)))
}

/// Appends a message, merging it into the previous one when the role repeats (Anthropic
/// requires alternating roles). Empty messages are dropped.
fn push_message(out: &mut Vec<Value>, role: &str, content: Value) {
    if is_empty_content(&content) {
        return;
    }
    if let Some(last) = out.last_mut() {
        if str_field(last, "role") == Some(role) {
            let mut blocks = into_blocks(last["content"].take());
            blocks.extend(into_blocks(content));
            last["content"] = Value::Array(blocks);
            return;
        }
    }
    out.push(json!({ "role": role, "content": content }));
}

fn is_empty_content(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

fn into_blocks(content: Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => vec![],
        Value::String(s) => vec![json!({ "type": "text", "text": s })],
        Value::Array(a) => a,
        Value::Null => vec![],
        other => vec![other],
    }
}

/// Text blocks of a system message, keeping `cache_control` (on parts or the message).
fn system_blocks(m: &Value) -> Result<Vec<Value>, Error> {
    let mut blocks = Vec::new();
    match m.get("content") {
        Some(Value::String(s)) => blocks.push(json!({ "type": "text", "text": s })),
        Some(Value::Array(parts)) => {
            for p in parts {
                match convert_part(p)? {
                    Some(b) if str_field(&b, "type") == Some("text") => blocks.push(b),
                    Some(_) => return Err(invalid("system messages may only contain text")),
                    None => {}
                }
            }
        }
        _ => {}
    }
    attach_message_cache_control(m, &mut blocks);
    Ok(blocks)
}

/// A message-level `cache_control` (LiteLLM's shorthand) goes on its last block.
fn attach_message_cache_control(m: &Value, blocks: &mut [Value]) {
    if let (Some(cc), Some(last)) = (m.get("cache_control"), blocks.last_mut()) {
        last["cache_control"] = cc.clone();
    }
}

fn user_content(m: &Value) -> Result<Value, Error> {
    match m.get("content") {
        Some(Value::String(s)) if m.get("cache_control").is_none() => Ok(Value::String(s.clone())),
        Some(Value::String(s)) => {
            let mut blocks = into_blocks(Value::String(s.clone()));
            attach_message_cache_control(m, &mut blocks);
            Ok(Value::Array(blocks))
        }
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for p in parts {
                blocks.extend(convert_part(p)?);
            }
            attach_message_cache_control(m, &mut blocks);
            Ok(Value::Array(blocks))
        }
        Some(Value::Null) | None => Ok(Value::Null),
        Some(other) => Err(invalid(format!("unsupported message content {other}"))),
    }
}

fn assistant_content(m: &Value) -> Result<Value, Error> {
    let calls = match m.get("tool_calls") {
        Some(Value::Array(calls)) if !calls.is_empty() => calls,
        _ => return user_content(m),
    };
    let mut blocks = into_blocks(user_content(m)?);
    for call in calls {
        let f = call
            .get("function")
            .ok_or_else(|| invalid("tool call without a function"))?;
        let input = match f.get("arguments") {
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| invalid(format!("tool call arguments are not valid JSON: {e}")))?,
            Some(Value::Null) | None => json!({}),
            Some(other) => other.clone(),
        };
        blocks.push(json!({
            "type": "tool_use",
            "id": str_field(call, "id").unwrap_or_default(),
            "name": str_field(f, "name").unwrap_or_default(),
            "input": input,
        }));
    }
    Ok(Value::Array(blocks))
}

/// A `role:"tool"` message → a `tool_result` block (sent in a user message).
fn tool_result(m: &Value) -> Result<Value, Error> {
    let id =
        str_field(m, "tool_call_id").ok_or_else(|| invalid("tool message without tool_call_id"))?;
    let content = match m.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for p in parts {
                blocks.extend(convert_part(p)?);
            }
            let all_text = blocks.iter().all(|b| str_field(b, "type") == Some("text"));
            if all_text && blocks.iter().all(|b| b.get("cache_control").is_none()) {
                let texts: Vec<&str> = blocks.iter().filter_map(|b| str_field(b, "text")).collect();
                Value::String(texts.concat())
            } else {
                Value::Array(blocks)
            }
        }
        _ => Value::String(String::new()),
    };
    let mut block = json!({ "type": "tool_result", "tool_use_id": id, "content": content });
    if let Some(cc) = m.get("cache_control") {
        block["cache_control"] = cc.clone();
    }
    Ok(block)
}

/// One OpenAI content part → one Anthropic content block (`None` to drop it).
fn convert_part(p: &Value) -> Result<Option<Value>, Error> {
    let mut block = match str_field(p, "type").unwrap_or("") {
        "text" => {
            let text = str_field(p, "text").unwrap_or_default();
            if text.is_empty() {
                return Ok(None);
            }
            json!({ "type": "text", "text": text })
        }
        "image_url" => {
            let url = p
                .get("image_url")
                .and_then(|i| i.as_str().or_else(|| str_field(i, "url")))
                .ok_or_else(|| invalid("image_url part without a url"))?;
            json!({ "type": "image", "source": media_source(url)? })
        }
        "file" => {
            let data = p
                .pointer("/file/file_data")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("only inline file_data files are supported by anthropic"))?;
            json!({ "type": "document", "source": media_source(data)? })
        }
        "refusal" => return Ok(None),
        "input_audio" => return Err(invalid("audio input is not supported by anthropic")),
        // Already Anthropic's shape (image, document, tool_result, …).
        _ => return Ok(Some(p.clone())),
    };
    if let Some(cc) = p.get("cache_control") {
        block["cache_control"] = cc.clone();
    }
    Ok(Some(block))
}

/// A `data:<media type>;base64,<data>` URL → a base64 source; an http(s) URL → a url source.
fn media_source(url: &str) -> Result<Value, Error> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("malformed data URL"))?;
        let media_type = header
            .strip_suffix(";base64")
            .ok_or_else(|| invalid("data URLs must be base64-encoded"))?;
        return Ok(json!({ "type": "base64", "media_type": media_type, "data": data }));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(json!({ "type": "url", "url": url }));
    }
    Err(invalid("image urls must be data: or http(s) URLs"))
}
