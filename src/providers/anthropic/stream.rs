//! Anthropic streaming: Messages API SSE events → OpenAI `chat.completion.chunk` objects.

use bytes::Bytes;
use serde_json::{json, Value};

use super::response::{error_from_body, finish_reason, unix_now, Counts};
use super::PROVIDER;
use crate::providers::sse::Event;
use crate::providers::stream::{from_sse, Translator};
use crate::providers::{CallContext, ChunkStream, Error, StreamItem};

pub fn stream(ctx: &CallContext<'_>, resp: super::super::UpstreamResponse) -> ChunkStream {
    super::stream::from_sse(
        PROVIDER,
        resp,
        AnthropicStream::new(&ctx.deployment.upstream_model),
    )
}

/// Translator state for one streamed Anthropic message.
pub struct AnthropicStream {
    id: String,
    model: String,
    created: u64,
    counts: Counts,
    /// (Anthropic content block index, OpenAI tool call index) of every tool_use block.
    tools: Vec<(u64, usize)>,
    saw_message_delta: bool,
    usage_sent: bool,
}

impl AnthropicStream {
    /// `model` is used until `message_start` names the upstream's model.
    pub fn new(model: &str) -> Self {
        AnthropicStream {
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            counts: Counts::default(),
            tools: Vec::new(),
            saw_message_delta: false,
            usage_sent: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> StreamItem {
        let v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        });
        StreamItem::Chunk(Bytes::from(v.to_string()))
    }

    fn push_usage(&mut self, out: &mut Vec<StreamItem>) {
        if self.usage_sent {
            return;
        }
        self.usage_sent = true;
        let usage = self.counts.usage();
        let v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage.to_openai(),
        });
        out.push(StreamItem::Usage {
            usage,
            chunk: Bytes::from(v.to_string()),
        });
    }

    fn tool_index(&self, block: u64) -> Option<usize> {
        self.tools
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Translator for AnthropicStream {
    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamItem>) -> Result<bool, Error> {
        let data = event.data.trim_ascii();
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value =
            serde_json::from_slice(data).map_err(|e| Error::bad_response("anthropic", e))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => {
                let msg = v.get("message").unwrap_or(&Value::Null);
                if let Some(id) = msg.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                if let Some(model) = msg.get("model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                if let Some(u) = msg.get("usage") {
                    self.counts.merge(u);
                }
                out.push(self.chunk(json!({ "role": "assistant", "content": "" }), None));
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match str_at(block, "/type") {
                    "text" => {
                        let text = str_at(block, "/text");
                        if !text.is_empty() {
                            out.push(self.chunk(json!({ "content": text }), None));
                        }
                    }
                    "tool_use" => {
                        let index = self.tools.len();
                        let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        self.tools.push((block_index, index));
                        let delta = json!({ "tool_calls": [{
                            "index": index,
                            "id": str_at(block, "/id"),
                            "type": "function",
                            "function": { "name": str_at(block, "/name"), "arguments": "" },
                        }]});
                        out.push(self.chunk(delta, None));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match str_at(delta, "/type") {
                    "text_delta" => {
                        let text = str_at(delta, "/text");
                        if !text.is_empty() {
                            out.push(self.chunk(json!({ "content": text }), None));
                        }
                    }
                    "input_json_delta" => {
                        let partial = str_at(delta, "/partial_json");
                        let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let (false, Some(index)) =
                            (partial.is_empty(), self.tool_index(block_index))
                        {
                            let delta = json!({ "tool_calls": [{
                                "index": index,
                                "function": { "arguments": partial },
                            }]});
                            out.push(self.chunk(delta, None));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.saw_message_delta = true;
                if let Some(u) = v.get("usage") {
                    self.counts.merge(u);
                }
                let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                if let Some(stop) = stop {
                    out.push(self.chunk(json!({}), Some(finish_reason(Some(stop)))));
                }
            }
            "message_stop" => {
                self.push_usage(out);
                return Ok(true);
            }
            "error" => return Err(error_from_body(data)),
            _ => {} // ping, content_block_stop, unknown future events
        }
        Ok(false)
    }

    fn on_end(&mut self, out: &mut Vec<StreamItem>) -> Result<(), Error> {
        if self.saw_message_delta {
            self.push_usage(out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorClass;

    fn ev(name: &str, data: Value) -> Event {
        Event {
            event: Some(name.into()),
            data: data.to_string().into(),
        }
    }

    fn full_sequence() -> Vec<Event> {
        vec![
            ev(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":20,"cache_read_input_tokens":100,"output_tokens":2}}}),
            ),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            ev("ping", json!({"type":"ping"})),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather."}}),
            ),
            ev(
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"Paris\"}"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type":"content_block_stop","index":1}),
            ),
            ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}),
            ),
            ev("message_stop", json!({"type":"message_stop"})),
        ]
    }

    fn chunk(delta: Value, finish: Value) -> Value {
        json!({"id":"msg_01","object":"chat.completion.chunk","created":1700000000,"model":"claude-sonnet-4-5",
               "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    }

    fn translator() -> AnthropicStream {
        let mut t = AnthropicStream::new("fallback-model");
        t.created = 1_700_000_000;
        t
    }

    fn as_json(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn a_full_text_and_tool_call_stream_becomes_openai_chunks_and_usage() {
        let mut t = translator();
        let mut out = Vec::new();
        let events = full_sequence();
        let (last, rest) = events.split_last().unwrap();
        for e in rest {
            assert!(!t.on_event(e, &mut out).unwrap());
        }
        assert!(t.on_event(last, &mut out).unwrap());
        t.on_end(&mut out).unwrap();

        let (usage_item, chunks) = out.split_last().unwrap();
        let chunks: Vec<Value> = chunks
            .iter()
            .map(|c| match c {
                StreamItem::Chunk(b) => as_json(b),
                other => panic!("expected a chunk, got {other:?}"),
            })
            .collect();
        let expected = vec![
            chunk(json!({"role":"assistant","content":""}), Value::Null),
            chunk(json!({"content":"Let me check"}), Value::Null),
            chunk(json!({"content":" the weather."}), Value::Null),
            chunk(
                json!({"tool_calls":[{"index":0,"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":" \"Paris\"}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ];
        assert_eq!(chunks, expected);

        match usage_item {
            StreamItem::Usage { usage, chunk } => {
                assert_eq!(usage.prompt_tokens, 592);
                assert_eq!(usage.completion_tokens, 89);
                assert_eq!(usage.cache_read_tokens, 100);
                assert_eq!(usage.cache_creation_tokens, 20);
                assert_eq!(
                    as_json(chunk),
                    json!({"id":"msg_01","object":"chat.completion.chunk","created":1700000000,
                           "model":"claude-sonnet-4-5","choices":[],
                           "usage":{"prompt_tokens":592,"completion_tokens":89,"total_tokens":681,
                                    "prompt_tokens_details":{"cached_tokens":100},
                                    "cache_creation_input_tokens":20,"cache_read_input_tokens":100}})
                );
            }
            other => panic!("expected usage, got {other:?}"),
        }
    }

    #[test]
    fn a_stream_cut_after_message_delta_still_reports_usage_once() {
        let mut t = translator();
        let mut out = Vec::new();
        let events = full_sequence();
        for e in &events[..events.len() - 1] {
            t.on_event(e, &mut out).unwrap();
        }
        t.on_end(&mut out).unwrap();
        t.on_end(&mut out).unwrap();
        let usages: Vec<_> = out
            .iter()
            .filter_map(|i| match i {
                StreamItem::Usage { usage, .. } => Some(*usage),
                _ => None,
            })
            .collect();
        assert_eq!(usages.len(), 1);
        assert_eq!(usages[0].total_tokens(), 681);
    }

    #[test]
    fn a_stream_without_message_delta_reports_no_usage() {
        let mut t = translator();
        let mut out = Vec::new();
        t.on_event(&full_sequence()[0], &mut out).unwrap();
        t.on_end(&mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], StreamItem::Chunk(_)));
    }

    #[test]
    fn max_tokens_stop_becomes_length() {
        let mut t = translator();
        let mut out = Vec::new();
        let e = ev(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":5}}),
        );
        t.on_event(&e, &mut out).unwrap();
        match &out[0] {
            StreamItem::Chunk(b) => assert_eq!(as_json(b)["choices"][0]["finish_reason"], "length"),
            other => panic!("expected a chunk, got {other:?}"),
        }
    }

    #[test]
    fn overloaded_error_event_is_a_retryable_529() {
        let mut t = translator();
        let e = ev(
            "error",
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        );
        let err = t.on_event(&e, &mut Vec::new()).unwrap_err();
        assert_eq!(err.status, 529);
        assert_eq!(err.class, ErrorClass::InternalServer);
        assert_eq!(err.message, "Overloaded");
        let e = ev(
            "error",
            json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}),
        );
        let err = t.on_event(&e, &mut Vec::new()).unwrap_err();
        assert_eq!(err.class, ErrorClass::RateLimit);
    }
}
