//! OpenAI and every OpenAI-compatible server (and Azure, which differs only in URL and
//! auth header): the client body passes through with `model` rewritten.

use bytes::Bytes;
use serde_json::Value;

use super::stream::{from_sse, Translator};
use super::{
    azure, sse::Event, CallContext, CallType, ChunkStream, Completion, Error, StreamItem, Usage,
    Wire,
};

/// Request fields that belong to the gateway (LiteLLM extensions), never sent upstream.
pub const GATEWAY_ONLY_FIELDS: &[&str] = &[
    "metadata",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "num_retries",
    "mock_testing_fallbacks",
    "mock_testing_rate_limit_error",
    "mock_response",
    "caching",
    "tags",
    "litellm_metadata",
    "timeout",
];

/// The upstream body: the client's fields minus gateway-only ones, `model` rewritten,
/// deployment defaults filled in, usage requested on streams.
pub fn upstream_body(ctx: &CallContext<'_>, stream: bool) -> Value {
    let mut body = ctx.body.clone();
    if let Some(obj) = body.as_object_mut() {
        for k in GATEWAY_ONLY_FIELDS {
            obj.remove(*k);
        }
        obj.insert(
            "model".into(),
            Value::String(ctx.deployment.upstream_model.clone()),
        );
        for (k, v) in &ctx.deployment.default_params {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if stream {
            obj.insert("stream".into(), Value::Bool(true));
            if ctx.call != CallType::Embedding {
                // Always ask for usage so spend is exact; the proxy strips the usage chunk
                // again when the client did not ask for it.
                let opts = obj
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(o) = opts.as_object_mut() {
                    o.insert("include_usage".into(), Value::Bool(true));
                }
            }
        }
    }
    body
}

pub fn build(ctx: &CallContext<'_>, stream: bool) -> Result<reqwest::RequestBuilder, Error> {
    let dep = ctx.deployment;
    let body = upstream_body(ctx, stream);
    let mut req = match dep.wire {
        Wire::Azure => {
            let url = azure::url(dep, ctx.call)?;
            let mut r = ctx.http.post(url);
            if let Some(key) = &dep.api_key {
                r = r.header("api-key", key);
            }
            r
        }
        _ => {
            let url = format!("{}/{}", dep.api_base, ctx.call.openai_path());
            let mut r = ctx.http.post(url);
            if let Some(key) = &dep.api_key {
                r = r.bearer_auth(key);
            }
            if let Some(org) = &dep.organization {
                r = r.header("OpenAI-Organization", org);
            }
            r
        }
    };
    req = super::with_extra_headers(req, dep);
    let bytes =
        serde_json::to_vec(&body).map_err(|e| Error::invalid_request(dep.provider_name(), e))?;
    Ok(req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes))
}

/// Only what the gateway needs from an OpenAI answer; the rest is skipped unparsed.
#[derive(serde::Deserialize)]
struct AnswerHead {
    #[serde(default)]
    usage: Option<Value>,
}

/// Checks the answer is a JSON object, reads its usage, and keeps the bytes to forward.
pub fn parse(_call: CallType, bytes: Bytes) -> Result<Completion, Error> {
    let head: AnswerHead =
        serde_json::from_slice(&bytes).map_err(|e| Error::bad_response("openai", e))?;
    let usage = head.usage.as_ref().and_then(Usage::from_openai);
    Ok(Completion {
        body: Value::Null,
        raw: Some(bytes),
        usage,
    })
}

pub fn stream(resp: reqwest::Response) -> ChunkStream {
    from_sse("openai", resp, PassThrough)
}

/// Forwards OpenAI chunks untouched; lifts usage out of them.
pub struct PassThrough;

impl Translator for PassThrough {
    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamItem>) -> Result<bool, Error> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let raw = Bytes::copy_from_slice(data.as_bytes());
        // Parse only chunks that may carry usage or an error; content chunks are only
        // validated (no allocation) so garbage is never forwarded as a chunk.
        if !data.contains("\"usage\"") && !data.contains("\"error\"") {
            serde_json::from_str::<serde::de::IgnoredAny>(data)
                .map_err(|e| Error::bad_response("openai", format!("invalid stream chunk: {e}")))?;
            out.push(StreamItem::Chunk(raw));
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| Error::bad_response("openai", e))?;
        if v.get("error").is_some() && v.get("choices").is_none() {
            return Err(Error::from_status(
                "openai",
                500,
                &Default::default(),
                data.as_bytes(),
            ));
        }
        let usage = v.get("usage").and_then(Usage::from_openai);
        let has_choices = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        match (usage, has_choices) {
            (Some(usage), false) => out.push(StreamItem::Usage { usage, chunk: raw }),
            (Some(usage), true) => {
                out.push(StreamItem::Chunk(raw));
                out.push(StreamItem::Usage {
                    usage,
                    chunk: Bytes::new(),
                });
            }
            (None, _) => out.push(StreamItem::Chunk(raw)),
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> Event {
        Event {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn usage_only_chunk_is_lifted_and_content_passes_untouched() {
        let mut t = PassThrough;
        let mut out = Vec::new();
        let content = r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
        assert!(!t.on_event(&ev(content), &mut out).unwrap());
        let usage = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert!(!t.on_event(&ev(usage), &mut out).unwrap());
        assert!(t.on_event(&ev("[DONE]"), &mut out).unwrap());
        assert_eq!(out.len(), 2);
        match &out[0] {
            StreamItem::Chunk(b) => assert_eq!(b.as_ref(), content.as_bytes()),
            other => panic!("expected chunk, got {other:?}"),
        }
        match &out[1] {
            StreamItem::Usage { usage, chunk } => {
                assert_eq!(usage.prompt_tokens, 5);
                assert_eq!(usage.completion_tokens, 2);
                assert_eq!(chunk.as_ref(), r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#.as_bytes());
            }
            other => panic!("expected usage, got {other:?}"),
        }
    }

    #[test]
    fn usage_null_chunks_are_plain_chunks() {
        let mut out = Vec::new();
        PassThrough
            .on_event(&ev(r#"{"choices":[{"delta":{}}],"usage":null}"#), &mut out)
            .unwrap();
        assert!(matches!(out[0], StreamItem::Chunk(_)));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn garbage_and_error_events_fail_the_stream_instead_of_being_forwarded() {
        let mut out = Vec::new();
        let e = PassThrough
            .on_event(&ev("{not json"), &mut out)
            .unwrap_err();
        assert_eq!(e.class, crate::providers::ErrorClass::InternalServer);
        let e = PassThrough
            .on_event(&ev(r#"{"error":{"message":"overloaded"}}"#), &mut out)
            .unwrap_err();
        assert!(e.message.contains("overloaded"), "{e}");
        assert!(out.is_empty());
    }
}
