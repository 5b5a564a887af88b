//! OpenAI and every OpenAI-compatible server (and Azure, which differs only in URL and
//! auth header): the client body passes through with `model` rewritten.

use bytes::Bytes;
use serde_json::Map;
use serde_json::Value;

use super::scan::top_level_values;
use super::stream::{from_sse, Translator};
use super::{
    azure, sse::Event, CallContext, CallType, ChunkStream, Completion, Error, StreamItem,
    UpstreamRequest, UpstreamResponse, Usage, Wire,
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

/// The upstream body, copied from the client's bytes member by member (no JSON tree):
/// gateway-only fields dropped, `model` rewritten, deployment defaults filled in, and on
/// streams usage requested so spend is exact (the proxy strips the usage chunk again
/// when the client did not ask for it).
pub fn upstream_body(ctx: &CallContext<'_>, stream: bool) -> Result<Vec<u8>, serde_json::Error> {
    let body = ctx.body;
    let dep = ctx.deployment;
    let want_usage = stream && ctx.call != CallType::Embedding;
    // Fields this function writes itself.
    let ours = |k: &[u8]| {
        k == b"model"
            || GATEWAY_ONLY_FIELDS.iter().any(|f| f.as_bytes() == k)
            || (stream && k == b"stream")
            || (want_usage && k == b"stream_options")
    };
    let mut out = Vec::with_capacity(body.bytes().len() + dep.upstream_model.len() + 64);
    out.push(b'{');
    for (_, raw_key, value) in body.members().filter(|(k, _, _)| !ours(k)) {
        out.push(b'"');
        out.extend_from_slice(raw_key);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value);
        out.push(b',');
    }
    out.extend_from_slice(b"\"model\":");
    serde_json::to_writer(&mut out, &dep.upstream_model)?;
    for (k, v) in &dep.default_params {
        if !ours(k.as_bytes()) && !body.contains_key(k) {
            out.push(b',');
            serde_json::to_writer(&mut out, k)?;
            out.push(b':');
            serde_json::to_writer(&mut out, v)?;
        }
    }
    if stream {
        out.extend_from_slice(b",\"stream\":true");
    }
    if want_usage {
        let mut opts = body
            .get::<Map<String, Value>>("stream_options")
            .unwrap_or_default();
        opts.insert("include_usage".into(), Value::Bool(true));
        out.extend_from_slice(b",\"stream_options\":");
        serde_json::to_writer(&mut out, &opts)?;
    }
    out.push(b'}');
    Ok(out)
}

pub fn build(ctx: &CallContext<'_>, stream: bool) -> Result<UpstreamRequest, Error> {
    let dep = ctx.deployment;
    let req = match ctx.prepared.and_then(|p| p.head(ctx.call)) {
        Some(req) => req,
        None => head(dep, ctx.call)?,
    };
    let bytes =
        upstream_body(ctx, stream).map_err(|e| Error::invalid_request(dep.provider_name(), e))?;
    Ok(req.json_body(bytes))
}

/// The request without its body: URL, key and the deployment's fixed headers.
pub(super) fn head(dep: &super::Deployment, call: CallType) -> Result<UpstreamRequest, Error> {
    let provider = dep.provider_name();
    let req = match dep.wire {
        Wire::Azure => {
            let url = azure::url(dep, call)?;
            let mut r = UpstreamRequest::post(provider, &url);
            if let Some(key) = &dep.api_key {
                r = r.secret_header("api-key", key);
            }
            r
        }
        _ => {
            let mut url = String::with_capacity(dep.api_base.len() + 20);
            url.push_str(&dep.api_base);
            url.push('/');
            url.push_str(call.openai_path());
            let mut r = UpstreamRequest::post(provider, &url);
            if let Some(key) = &dep.api_key {
                r = r.bearer_auth(key);
            }
            if let Some(org) = &dep.organization {
                r = r.header("OpenAI-Organization", org);
            }
            r
        }
    };
    Ok(super::with_extra_headers(req, dep))
}

/// Checks the answer is one JSON object, reads its top-level `usage`, and keeps the bytes
/// to forward. Only `usage` is parsed: the rest is scanned for structure, not decoded,
/// because every answer passes here and a full parse costs more than the scan.
pub fn parse(_call: CallType, bytes: Bytes) -> Result<Completion, Error> {
    let usage = match top_level_values(&bytes, [b"usage"]) {
        Ok([Some(raw)]) => {
            Usage::from_openai_json(raw).map_err(|e| Error::bad_response("openai", e))?
        }
        Ok([None]) => None,
        Err(what) => return Err(Error::bad_response("openai", what)),
    };
    Ok(Completion {
        body: Value::Null,
        raw: Some(bytes),
        usage,
    })
}

pub fn stream(resp: UpstreamResponse) -> ChunkStream {
    from_sse("openai", resp, PassThrough)
}

/// Forwards OpenAI chunks untouched; lifts usage out of them.
pub struct PassThrough;

impl Translator for PassThrough {
    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamItem>) -> Result<bool, Error> {
        let data = event.data.trim_ascii();
        if data == b"[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        // The chunk as received, shared rather than copied.
        let raw = event.data.slice_ref(data);
        // Every chunk is scanned (one object, balanced, strings closed) so garbage is
        // never forwarded; only a top-level `usage` is parsed, and only when present.
        let [usage, error, choices] = top_level_values(data, [b"usage", b"error", b"choices"])
            .map_err(|e| Error::bad_response("openai", format!("invalid stream chunk: {e}")))?;
        if error.is_some() && choices.is_none() {
            return Err(Error::from_status("openai", 500, &Default::default(), data));
        }
        let usage = match usage {
            Some(raw) => {
                Usage::from_openai_json(raw).map_err(|e| Error::bad_response("openai", e))?
            }
            None => None,
        };
        let has_choices = choices.is_some_and(|c| {
            let c = c.trim_ascii();
            c.starts_with(b"[") && !c[1..].trim_ascii_start().starts_with(b"]")
        });
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
    use crate::providers::RequestBody;

    fn chat_context<'a>(
        http: &'a crate::providers::HttpClient,
        dep: &'a crate::deployment::Deployment,
        body: &'a RequestBody,
    ) -> CallContext<'a> {
        CallContext {
            http,
            deployment: dep,
            call: CallType::Chat,
            body,
            timeout: std::time::Duration::from_secs(1),
            prepared: None,
        }
    }

    #[test]
    fn upstream_body_drops_gateway_fields_rewrites_model_and_asks_for_usage() {
        let mut dep = crate::deployment::test_deployment("d", "alias", Wire::OpenAi);
        dep.upstream_model = "gpt-4o".into();
        dep.default_params
            .insert("temperature".into(), serde_json::json!(0.2));
        dep.default_params
            .insert("top_p".into(), serde_json::json!(0.9));
        let body = RequestBody::from_value(&serde_json::json!({
            "model": "alias", "messages": [], "top_p": 0.5, "metadata": {"tags": ["t"]},
            "fallbacks": ["x"], "stream": true, "stream_options": {"other": 1}, "custom": {"a": 1}
        }));
        let http = crate::providers::HttpClient::for_tests();
        let ctx = chat_context(&http, &dep, &body);
        let out: Value = serde_json::from_slice(&upstream_body(&ctx, true).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "model": "gpt-4o", "messages": [], "top_p": 0.5, "temperature": 0.2, "custom": {"a": 1},
                "stream": true, "stream_options": {"other": 1, "include_usage": true}
            })
        );
        let out: Value = serde_json::from_slice(&upstream_body(&ctx, false).unwrap()).unwrap();
        assert_eq!(
            out["stream"], true,
            "a non-stream call passes the client's fields as they are"
        );
        assert!(out.get("metadata").is_none());
    }

    #[test]
    fn upstream_body_copies_the_clients_members_byte_for_byte() {
        let mut dep = crate::deployment::test_deployment("d", "alias", Wire::OpenAi);
        dep.upstream_model = "gpt-\"4o".into();
        let body = RequestBody::parse(Bytes::from_static(
            br#"{"temperature": 1.0, "model":"alias", "logit_bias":{"50256": -1e2},
                "seed":18446744073709551615, "x\u0079": "caf\u00e9", "metadata": {}}"#,
        ))
        .unwrap();
        let http = crate::providers::HttpClient::for_tests();
        let ctx = chat_context(&http, &dep, &body);
        let out = String::from_utf8(upstream_body(&ctx, false).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"temperature":1.0,"logit_bias":{"50256": -1e2},"seed":18446744073709551615,"x\u0079":"caf\u00e9","model":"gpt-\"4o"}"#
        );
    }

    #[test]
    fn a_prepared_head_builds_the_same_request_for_each_call_and_wire() {
        let http = crate::providers::HttpClient::for_tests();
        let body = RequestBody::from_value(
            &serde_json::json!({"model": "alias", "messages": [], "input": "x"}),
        );
        for wire in [Wire::OpenAi, Wire::Azure] {
            let mut dep = crate::deployment::test_deployment("d", "alias", wire);
            dep.api_base = "http://127.0.0.1:9/v1".into();
            dep.api_key = Some("sk-up".into());
            dep.organization = Some("org-1".into());
            dep.extra_headers = vec![("x-extra".into(), "1".into())];
            let prepared = super::super::Prepared::for_deployment(&dep);
            for call in [CallType::Chat, CallType::Completion, CallType::Embedding] {
                let ctx = |prepared| CallContext {
                    http: &http,
                    deployment: &dep,
                    call,
                    body: &body,
                    timeout: std::time::Duration::from_secs(1),
                    prepared,
                };
                let fresh = build(&ctx(None), false).unwrap();
                let ready = build(&ctx(Some(&prepared)), false).unwrap();
                assert!(
                    prepared.head(call).is_some(),
                    "{wire:?} {call:?} is prepared"
                );
                assert_eq!(ready.uri(), fresh.uri(), "{wire:?} {call:?}");
                assert_eq!(ready.headers(), fresh.headers(), "{wire:?} {call:?}");
                assert!(ready.headers().values().any(|v| v.is_sensitive()));
                assert_eq!(ready.body(), fresh.body());
            }
        }
    }

    #[test]
    fn answer_scan_reads_top_level_usage_only_and_refuses_broken_json() {
        let usage_of =
            |doc: &str| parse(CallType::Chat, Bytes::from(doc.to_owned())).map(|c| c.usage);
        let u = usage_of(
            r#" {"id":"x","choices":[{"message":{"content":"a \"usage\": {} } ]","usage":{"prompt_tokens":99}}}],
               "usage" : {"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}, "z":[1,{"a":"}"}]} "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3));
        let u = usage_of(r#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#)
            .unwrap()
            .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (1, 2));
        assert_eq!(usage_of(r#"{"id":"x","choices":[]}"#).unwrap(), None);
        assert_eq!(usage_of(r#"{"usage":null}"#).unwrap(), None);
        assert_eq!(usage_of(r#"{"usage":"n/a"}"#).unwrap(), None);
        let u = usage_of(
            r#"{"usage":{"prompt_tokens":4.0,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":2},"cache_creation_input_tokens":1,"extra":{"x":[1]}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cache_read_tokens,
                u.cache_creation_tokens
            ),
            (4, 5, 2, 1),
            "floats, embeddings-style totals, cache details and unknown fields"
        );
        for bad in [
            "",
            "not json",
            "[1,2]",
            r#"{"id":"x","#,
            r#"{"id":"x"}}"#,
            r#"{"id":"x"} trailing"#,
            r#"{"id":"unterminated}"#,
            r#"{"id":"ends on an escape\"#,
            r#"{"usage":{"prompt_tokens":}}"#,
            r#"{"id" 1}"#,
        ] {
            let e = usage_of(bad).unwrap_err();
            assert_eq!(e.status, 502, "{bad:?} must be refused");
        }
    }

    fn ev(data: &str) -> Event {
        Event {
            event: None,
            data: Bytes::copy_from_slice(data.as_bytes()),
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
        for garbage in [
            "{not json",
            r#"{"choices":[}"#,
            r#"{"id":"x"} extra"#,
            r#""a string""#,
            r#"{"id":"unterminated}"#,
        ] {
            let e = PassThrough.on_event(&ev(garbage), &mut out).unwrap_err();
            assert_eq!(
                e.class,
                crate::providers::ErrorClass::InternalServer,
                "{garbage}"
            );
        }
        let e = PassThrough
            .on_event(&ev(r#"{"error":{"message":"overloaded"}}"#), &mut out)
            .unwrap_err();
        assert!(e.message.contains("overloaded"), "{e}");
        assert!(out.is_empty());
    }
}
