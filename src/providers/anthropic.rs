//! Anthropic Messages API: translates OpenAI chat requests to `/v1/messages` and the
//! answers (whole or streamed) back to OpenAI's shape.

use serde_json::{json, Map, Value};

use super::anthropic_stream::AnthropicStream;
use super::{CallContext, CallType, ChunkStream, Completion, Error, Usage};
use crate::deployment::Deployment;

const PROVIDER: &str = "anthropic";
/// The Messages API version this adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; OpenAI clients often leave it out.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Sampling fields Anthropic accepts that the body or the deployment defaults may set.
const SAMPLING_FIELDS: &[&str] = &["temperature", "top_p", "top_k"];

pub fn build(ctx: &CallContext<'_>, stream: bool) -> Result<reqwest::RequestBuilder, Error> {
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
    let body = messages_body(ctx.body, dep, stream)?;
    let mut req = ctx.http.post(messages_url(&dep.api_base));
    if let Some(key) = &dep.api_key {
        req = req.header("x-api-key", key);
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
    Ok(req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes))
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

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
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
        body,
        usage: Some(usage),
    })
}

pub fn stream(ctx: &CallContext<'_>, resp: reqwest::Response) -> ChunkStream {
    super::stream::from_sse(
        PROVIDER,
        resp,
        AnthropicStream::new(&ctx.deployment.upstream_model),
    )
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::providers::Wire;

    fn deployment() -> Deployment {
        let mut d = crate::deployment::test_deployment("a1", "claude", Wire::Anthropic);
        d.provider = "anthropic".into();
        d.upstream_model = "claude-sonnet-4-5".into();
        d.api_base = "https://api.anthropic.com".into();
        d.api_key = Some("sk-ant-test".into());
        d
    }

    fn with_ctx<R>(
        dep: &Deployment,
        call: CallType,
        body: &Value,
        f: impl FnOnce(&CallContext<'_>) -> R,
    ) -> R {
        let http = reqwest::Client::new();
        let timeout = Duration::from_secs(5);
        f(&CallContext {
            http: &http,
            deployment: dep,
            call,
            body,
            timeout,
        })
    }

    fn build_with(dep: &Deployment, call: CallType, body: Value, stream: bool) -> reqwest::Request {
        with_ctx(dep, call, &body, |c| {
            build(c, stream).unwrap().build().unwrap()
        })
    }

    fn sent_body(req: &reqwest::Request) -> Value {
        serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap()
    }

    fn translate(body: Value) -> Value {
        sent_body(&build_with(&deployment(), CallType::Chat, body, false))
    }

    fn try_parse(bytes: &[u8]) -> Result<Completion, Error> {
        with_ctx(&deployment(), CallType::Chat, &json!({}), |c| {
            parse(c, bytes)
        })
    }

    fn parse_json(body: Value) -> Completion {
        try_parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn request_goes_to_v1_messages_with_anthropic_headers() {
        let mut dep = deployment();
        dep.extra_headers = vec![("anthropic-beta".into(), "prompt-caching".into())];
        let body = json!({"model":"claude","messages":[{"role":"user","content":"hi"}]});
        let req = build_with(&dep, CallType::Chat, body.clone(), true);
        assert_eq!(req.url().as_str(), "https://api.anthropic.com/v1/messages");
        let h = req.headers();
        assert_eq!(h["x-api-key"], "sk-ant-test");
        assert_eq!(h["anthropic-version"], "2023-06-01");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["anthropic-beta"], "prompt-caching");
        assert_eq!(sent_body(&req)["stream"], true);

        dep.api_base = "https://proxy.example.com/anthropic/v1".into();
        let req = build_with(&dep, CallType::Chat, body, false);
        assert_eq!(
            req.url().as_str(),
            "https://proxy.example.com/anthropic/v1/messages"
        );
    }

    #[test]
    fn embeddings_and_text_completions_are_rejected() {
        for call in [CallType::Embedding, CallType::Completion] {
            let err = with_ctx(&deployment(), call, &json!({"input":"x"}), |c| {
                build(c, false)
            })
            .unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains("not supported by anthropic"));
        }
    }

    #[test]
    fn system_messages_are_lifted_and_defaults_filled() {
        let sent = translate(json!({
            "model": "claude",
            "messages": [
                {"role":"system","content":"Be brief."},
                {"role":"developer","content":[{"type":"text","text":"Use French."}]},
                {"role":"user","content":"hi"}
            ],
            "stop": "END",
            "temperature": 0.2,
            "user": "u-42",
            "n": 1,
            "presence_penalty": 0.5,
            "response_format": {"type":"json_object"},
            "metadata": {"tag":"x"},
            "mock_response": "x"
        }));
        assert_eq!(
            sent,
            json!({
                "model": "claude-sonnet-4-5",
                "system": "Be brief.\nUse French.",
                "messages": [{"role":"user","content":"hi"}],
                "max_tokens": 4096,
                "temperature": 0.2,
                "stop_sequences": ["END"],
                "metadata": {"user_id":"u-42"}
            })
        );
    }

    #[test]
    fn max_completion_tokens_and_deployment_defaults_are_used() {
        let mut dep = deployment();
        dep.default_params.insert("temperature".into(), json!(0.7));
        dep.default_params.insert("top_k".into(), json!(5));
        dep.default_params
            .insert("frequency_penalty".into(), json!(1));
        let body = json!({"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":100,"temperature":0,"stop":["a","\n","b"]});
        let req = build_with(&dep, CallType::Chat, body, false);
        let sent = sent_body(&req);
        assert_eq!(sent["max_tokens"], 100);
        assert_eq!(sent["temperature"], 0);
        assert_eq!(sent["top_k"], 5);
        assert_eq!(sent["stop_sequences"], json!(["a", "b"]));
        assert!(sent.get("frequency_penalty").is_none());
    }

    #[test]
    fn cached_system_parts_stay_blocks() {
        let sent = translate(json!({"messages":[
            {"role":"system","content":[{"type":"text","text":"long doc","cache_control":{"type":"ephemeral"}}]},
            {"role":"system","content":"short"},
            {"role":"user","content":"q"}
        ]}));
        assert_eq!(
            sent["system"],
            json!([
                {"type":"text","text":"long doc","cache_control":{"type":"ephemeral"}},
                {"type":"text","text":"short"}
            ])
        );
    }

    #[test]
    fn tools_and_tool_choice_are_translated() {
        let tools = json!([{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]);
        let base = |choice: Value, parallel: Value| {
            translate(
                json!({"messages":[{"role":"user","content":"hi"}],"tools":tools,"tool_choice":choice,"parallel_tool_calls":parallel}),
            )
        };
        let sent = base(json!("auto"), Value::Null);
        assert_eq!(
            sent["tools"],
            json!([{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}])
        );
        assert_eq!(sent["tool_choice"], json!({"type":"auto"}));
        assert_eq!(
            base(json!("required"), Value::Null)["tool_choice"],
            json!({"type":"any"})
        );
        assert_eq!(
            base(json!("none"), Value::Null)["tool_choice"],
            json!({"type":"none"})
        );
        assert_eq!(
            base(
                json!({"type":"function","function":{"name":"get_weather"}}),
                json!(false)
            )["tool_choice"],
            json!({"type":"tool","name":"get_weather","disable_parallel_tool_use":true})
        );
        assert_eq!(
            base(Value::Null, json!(false))["tool_choice"],
            json!({"type":"auto","disable_parallel_tool_use":true})
        );
    }

    #[test]
    fn tool_calls_and_consecutive_tool_results_round_trip() {
        let sent = translate(json!({"messages":[
            {"role":"user","content":"weather in Paris and Rome?"},
            {"role":"assistant","content":"Checking.","tool_calls":[
                {"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                {"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":""}}
            ]},
            {"role":"tool","tool_call_id":"toolu_1","content":"sunny"},
            {"role":"tool","tool_call_id":"toolu_2","content":[{"type":"text","text":"rain"}]},
            {"role":"user","content":"thanks"}
        ]}));
        assert_eq!(
            sent["messages"],
            json!([
                {"role":"user","content":"weather in Paris and Rome?"},
                {"role":"assistant","content":[
                    {"type":"text","text":"Checking."},
                    {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},
                    {"type":"tool_use","id":"toolu_2","name":"get_weather","input":{}}
                ]},
                {"role":"user","content":[
                    {"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},
                    {"type":"tool_result","tool_use_id":"toolu_2","content":"rain"},
                    {"type":"text","text":"thanks"}
                ]}
            ])
        );
    }

    #[test]
    fn image_parts_become_base64_or_url_sources() {
        let sent = translate(json!({"messages":[{"role":"user","content":[
            {"type":"text","text":"what is this?","cache_control":{"type":"ephemeral"}},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
            {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}}
        ]}]}));
        assert_eq!(
            sent["messages"][0]["content"],
            json!([
                {"type":"text","text":"what is this?","cache_control":{"type":"ephemeral"}},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
                {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}
            ])
        );
    }

    #[test]
    fn consecutive_user_messages_are_merged() {
        let sent = translate(json!({"messages":[
            {"role":"user","content":"one"},
            {"role":"user","content":"two"},
            {"role":"assistant","content":"ok"}
        ]}));
        assert_eq!(
            sent["messages"],
            json!([
                {"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]},
                {"role":"assistant","content":"ok"}
            ])
        );
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let c = parse_json(json!({
            "id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}],
            "stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":12,"output_tokens":3}
        }));
        let b = &c.body;
        assert_eq!(b["id"], "msg_01");
        assert_eq!(b["object"], "chat.completion");
        assert!(b["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(b["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(
            b["choices"],
            json!([{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}])
        );
        assert_eq!(
            b["usage"],
            json!({"prompt_tokens":12,"completion_tokens":3,"total_tokens":15})
        );
        assert_eq!(c.usage.unwrap().prompt_tokens, 12);
    }

    #[test]
    fn a_tool_use_answer_becomes_tool_calls() {
        let c = parse_json(json!({
            "id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":20,"output_tokens":8}
        }));
        assert_eq!(
            c.body["choices"][0],
            json!({"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,
                "tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}})
        );
    }

    #[test]
    fn cache_tokens_count_as_prompt_tokens() {
        let c = parse_json(json!({
            "id":"msg_03","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[{"type":"text","text":"ok"}],"stop_reason":"max_tokens",
            "usage":{"input_tokens":100,"cache_read_input_tokens":50,"cache_creation_input_tokens":25,"output_tokens":10}
        }));
        let u = c.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens()),
            (175, 10, 185)
        );
        assert_eq!((u.cache_read_tokens, u.cache_creation_tokens), (50, 25));
        assert_eq!(c.body["usage"]["total_tokens"], 185);
        assert_eq!(
            c.body["usage"]["prompt_tokens_details"]["cached_tokens"],
            50
        );
        assert_eq!(c.body["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn malformed_answers_are_bad_responses() {
        assert_eq!(try_parse(b"not json").unwrap_err().status, 502);
        assert_eq!(try_parse(b"{\"id\":\"x\"}").unwrap_err().status, 502);
        let overloaded =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(try_parse(overloaded).unwrap_err().status, 529);
    }
}
