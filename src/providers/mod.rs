//! Upstream providers: one adapter per wire format behind one calling convention.
//!
//! Every adapter takes the client's OpenAI-shaped JSON body and a [`Deployment`], builds
//! the upstream HTTP request, and turns the upstream answer back into OpenAI's shape
//! (a whole response, or a stream of `chat.completion.chunk` objects).

pub mod anthropic;
pub mod azure;
pub mod body;
pub mod error;
mod h1;
pub mod http;
pub mod mock;
pub mod openai;
pub mod scan;
pub mod sse;
pub mod stream;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use body::RequestBody;
pub use error::{Error, ErrorClass};
pub use http::{HttpClient, TlsOptions, UpstreamRequest, UpstreamResponse};
pub use stream::{ChunkStream, StreamItem};

use crate::deployment::Deployment;
pub use crate::deployment::Wire;

/// Which OpenAI endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    Chat,
    Completion,
    Embedding,
}

impl CallType {
    /// The name LiteLLM uses in spend logs.
    pub fn litellm_name(self) -> &'static str {
        match self {
            CallType::Chat => "acompletion",
            CallType::Completion => "atext_completion",
            CallType::Embedding => "aembedding",
        }
    }

    /// The OpenAI path suffix, e.g. `chat/completions`.
    pub fn openai_path(self) -> &'static str {
        match self {
            CallType::Chat => "chat/completions",
            CallType::Completion => "completions",
            CallType::Embedding => "embeddings",
        }
    }
}

/// Token counts of one request, as the upstream reported them (or as estimated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache (OpenAI `cached_tokens`,
    /// Anthropic `cache_read_input_tokens`). Included in `prompt_tokens`.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic `cache_creation_input_tokens`).
    /// Included in `prompt_tokens`.
    pub cache_creation_tokens: u64,
    /// True when no upstream usage was seen and the counts were estimated locally.
    pub estimated: bool,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Reads OpenAI's `usage` object (also used by every OpenAI-compatible server).
    pub fn from_openai(v: &Value) -> Option<Usage> {
        let obj = v.as_object()?;
        let get = |k: &str| obj.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cached = obj
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let prompt = get("prompt_tokens");
        let completion = match obj.get("completion_tokens").and_then(Value::as_u64) {
            Some(c) => c,
            // Embeddings report only prompt and total tokens.
            None => get("total_tokens").saturating_sub(prompt),
        };
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cache_read_tokens: cached,
            cache_creation_tokens: obj
                .get("cache_creation_input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            estimated: false,
        })
    }

    /// Reads OpenAI's `usage` object from its JSON text without building a JSON tree
    /// (the whole-answer path reads one per request), as leniently as [`Self::from_openai`]:
    /// `null` or a value of another shape is no usage, a count that is not a whole number is
    /// rounded down. Only text that is not JSON at all is an error.
    pub fn from_openai_json(text: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        match Usage::from_plain_openai_json(text) {
            Some(usage) => Ok(Some(usage)),
            None => Usage::from_openai_json_by_serde(text),
        }
    }

    /// The usual `usage` object, read by scanning: every count a plain whole number (or
    /// null, or absent). Anything else is left to the full reader.
    fn from_plain_openai_json(text: &[u8]) -> Option<Usage> {
        /// `Some(None)` for absent or null, `Some(Some(n))` for a plain count.
        fn plain(raw: Option<&[u8]>) -> Option<Option<u64>> {
            let raw = match raw.map(<[u8]>::trim_ascii) {
                None | Some(b"null") => return Some(None),
                Some(raw) => raw,
            };
            let leading_zero = raw.len() > 1 && raw[0] == b'0';
            if raw.is_empty() || leading_zero {
                return None;
            }
            // Digit by digit: `str::parse` costs several times this on every answer.
            raw.iter()
                .try_fold(0u64, |n, &b| {
                    let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
                    n.checked_mul(10)?.checked_add(u64::from(digit))
                })
                .map(Some)
        }
        let [prompt, completion, total, details, creation] = scan::top_level_values(
            text,
            [
                b"prompt_tokens",
                b"completion_tokens",
                b"total_tokens",
                b"prompt_tokens_details",
                b"cache_creation_input_tokens",
            ],
        )
        .ok()?;
        let cached = match details.map(<[u8]>::trim_ascii) {
            None | Some(b"null") => None,
            Some(d) => plain(scan::top_level_values(d, [b"cached_tokens"]).ok()?[0])?,
        };
        let prompt = plain(prompt)?.unwrap_or(0);
        let total = plain(total)?;
        Some(Usage {
            prompt_tokens: prompt,
            // Embeddings report only prompt and total tokens.
            completion_tokens: plain(completion)?
                .unwrap_or_else(|| total.unwrap_or(0).saturating_sub(prompt)),
            cache_read_tokens: cached.unwrap_or(0),
            cache_creation_tokens: plain(creation)?.unwrap_or(0),
            estimated: false,
        })
    }

    fn from_openai_json_by_serde(text: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        use serde_json::Number;
        #[derive(Deserialize)]
        struct Details {
            #[serde(default)]
            cached_tokens: Option<Number>,
        }
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            prompt_tokens: Option<Number>,
            #[serde(default)]
            completion_tokens: Option<Number>,
            #[serde(default)]
            total_tokens: Option<Number>,
            #[serde(default)]
            prompt_tokens_details: Option<Details>,
            #[serde(default)]
            cache_creation_input_tokens: Option<Number>,
        }
        fn count(n: Option<Number>) -> Option<u64> {
            let n = n?;
            n.as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        }
        let w = match serde_json::from_slice::<Option<Wire>>(text) {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(None),
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                // Well-formed JSON of another shape: fall back to the slow, lenient reader.
                let v: Value = serde_json::from_slice(text)?;
                return Ok(Usage::from_openai(&v));
            }
            Err(e) => return Err(e),
        };
        let prompt = count(w.prompt_tokens).unwrap_or(0);
        let total = count(w.total_tokens);
        Ok(Some(Usage {
            prompt_tokens: prompt,
            // Embeddings report only prompt and total tokens.
            completion_tokens: count(w.completion_tokens)
                .unwrap_or_else(|| total.unwrap_or(0).saturating_sub(prompt)),
            cache_read_tokens: w
                .prompt_tokens_details
                .and_then(|d| count(d.cached_tokens))
                .unwrap_or(0),
            cache_creation_tokens: count(w.cache_creation_input_tokens).unwrap_or(0),
            estimated: false,
        }))
    }

    /// OpenAI's `usage` object for this usage.
    pub fn to_openai(&self) -> Value {
        let mut usage = serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens(),
        });
        if self.cache_read_tokens > 0 || self.cache_creation_tokens > 0 {
            usage["prompt_tokens_details"] =
                serde_json::json!({ "cached_tokens": self.cache_read_tokens });
        }
        if self.cache_creation_tokens > 0 {
            usage["cache_creation_input_tokens"] = self.cache_creation_tokens.into();
            usage["cache_read_input_tokens"] = self.cache_read_tokens.into();
        }
        usage
    }
}

/// A complete (non-streaming) answer, already in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The answer as JSON; `Null` when `raw` carries it.
    pub body: Value,
    /// The upstream's bytes when they already are OpenAI's shape: forwarded untouched,
    /// which spares parsing and re-serializing every answer.
    pub raw: Option<Bytes>,
    pub usage: Option<Usage>,
}

impl Completion {
    /// The answer as a JSON value (parses `raw` when that is where it is).
    pub fn json(&self) -> Value {
        match &self.raw {
            Some(raw) => serde_json::from_slice(raw).unwrap_or(Value::Null),
            None => self.body.clone(),
        }
    }
}

/// Everything an adapter needs to call one deployment.
pub struct CallContext<'a> {
    pub http: &'a HttpClient,
    pub deployment: &'a Deployment,
    pub call: CallType,
    /// The client's body; adapters copy what they need and never mutate it.
    pub body: &'a RequestBody,
    /// Time allowed for the whole (non-stream) call or until the first stream chunk.
    pub timeout: Duration,
    /// The deployment's prepared request heads, when the caller keeps them.
    pub prepared: Option<&'a Prepared>,
}

/// The URL and fixed headers of a deployment's upstream requests, one per call type,
/// built once when the deployment is loaded: parsing them per request cost more than
/// the rest of building the request.
#[derive(Debug, Default)]
pub struct Prepared {
    heads: [Option<UpstreamRequest>; 3],
}

impl Prepared {
    pub fn for_deployment(dep: &Deployment) -> Prepared {
        let head = |call| match dep.wire {
            Wire::OpenAi | Wire::Azure => {
                openai::head(dep, call).ok().map(UpstreamRequest::prepared)
            }
            Wire::Anthropic | Wire::Mock => None,
        };
        Prepared {
            heads: [
                head(CallType::Chat),
                head(CallType::Completion),
                head(CallType::Embedding),
            ],
        }
    }

    /// A copy of the head for `call`, ready for a body.
    fn head(&self, call: CallType) -> Option<UpstreamRequest> {
        let i = match call {
            CallType::Chat => 0,
            CallType::Completion => 1,
            CallType::Embedding => 2,
        };
        self.heads[i].as_ref().and_then(UpstreamRequest::duplicate)
    }
}

/// Calls the deployment and returns the whole answer.
pub async fn call(ctx: &CallContext<'_>) -> Result<Completion, Error> {
    match ctx.deployment.wire {
        Wire::Mock => mock::call(ctx).await,
        Wire::OpenAi | Wire::Azure => {
            let req = openai::build(ctx, false)?;
            let bytes = send(ctx, req).await?;
            openai::parse(ctx.call, bytes)
        }
        Wire::Anthropic => {
            let req = anthropic::build(ctx, false)?;
            let bytes = send(ctx, req).await?;
            anthropic::parse(ctx, &bytes)
        }
    }
}

/// Calls the deployment in streaming mode. The returned stream yields OpenAI chunks
/// (without `data:` framing) and ends after the upstream's last event.
pub async fn call_stream(ctx: &CallContext<'_>) -> Result<ChunkStream, Error> {
    match ctx.deployment.wire {
        Wire::Mock => mock::call_stream(ctx).await,
        Wire::OpenAi | Wire::Azure => {
            let req = openai::build(ctx, true)?;
            let resp = send_for_stream(ctx, req).await?;
            Ok(openai::stream(resp))
        }
        Wire::Anthropic => {
            let req = anthropic::build(ctx, true)?;
            let resp = send_for_stream(ctx, req).await?;
            Ok(anthropic::stream(ctx, resp))
        }
    }
}

// `send`, `send_for_stream` and `within` return their futures rather than being `async
// fn`s: an async fn keeps its arguments in its state next to the future it hands them
// to, which doubled the size of these futures (~4 KB each), and every level above
// copies them whole when it moves them.
fn send<'a>(
    ctx: &'a CallContext<'_>,
    req: UpstreamRequest,
) -> impl Future<Output = Result<Bytes, Error>> + 'a {
    let provider = ctx.deployment.provider_name();
    within(ctx, async move {
        send_ok(ctx, provider, req).await?.bytes(provider).await
    })
}

fn send_for_stream<'a>(
    ctx: &'a CallContext<'_>,
    req: UpstreamRequest,
) -> impl Future<Output = Result<UpstreamResponse, Error>> + 'a {
    within(ctx, send_ok(ctx, ctx.deployment.provider_name(), req))
}

/// Sends; a non-2xx answer is read and classified into an `Error`.
async fn send_ok(
    ctx: &CallContext<'_>,
    provider: &'static str,
    req: UpstreamRequest,
) -> Result<UpstreamResponse, Error> {
    let resp = ctx.http.send(req).await?;
    let status = resp.status;
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers();
    let bytes = resp.bytes(provider).await.unwrap_or_default();
    Err(Error::from_status(
        provider,
        status.as_u16(),
        &headers,
        &bytes,
    ))
}

/// Runs `work` within the call's timeout.
fn within<T>(
    ctx: &CallContext<'_>,
    work: impl Future<Output = Result<T, Error>>,
) -> impl Future<Output = Result<T, Error>> {
    let (provider, timeout) = (ctx.deployment.provider_name(), ctx.timeout);
    tokio::time::timeout(timeout, work)
        .map(move |r| r.unwrap_or_else(|_| Err(Error::timeout(provider, timeout))))
}

/// Adds the deployment's `extra_headers` to an upstream request.
pub(crate) fn with_extra_headers(mut req: UpstreamRequest, dep: &Deployment) -> UpstreamRequest {
    for (k, v) in &dep.extra_headers {
        req = req.header(k, v);
    }
    req
}

/// Rough token estimate (about four characters a token) used when an upstream reports
/// no usage and for pre-call checks. Documented in README as an estimate.
pub fn estimate_tokens(text_len: usize) -> u64 {
    (text_len as u64).div_ceil(4)
}

/// Estimated prompt tokens of an OpenAI-shaped request body: the text of its messages,
/// prompt, input and tools (images a fixed amount each), and a few tokens of framing a
/// chat message.
pub fn estimate_prompt_tokens(body: &RequestBody) -> u64 {
    let len = ["messages", "prompt", "input", "tools"]
        .iter()
        .map(|k| body.text_len(k))
        .sum::<usize>();
    let framing = body
        .array_len("messages")
        .map(|n| n as u64 * 4)
        .unwrap_or(0);
    estimate_tokens(len) + framing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_scanned_reads_as_the_full_reader_does() {
        let cases = [
            r#"{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}"#,
            r#" { "prompt_tokens" : 0 , "total_tokens": 12 } "#,
            r#"{"prompt_tokens":5,"completion_tokens":null,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0}}"#,
            r#"{"prompt_tokens":5,"prompt_tokens_details":null,"cache_creation_input_tokens":4,"x":{"y":[1]}}"#,
            r#"{"prompt_tokens":5,"prompt_tokens":6}"#,
            r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1234567,"total_tokens":10}"#,
            r#"{}"#,
        ];
        for text in cases {
            let scanned = Usage::from_plain_openai_json(text.as_bytes());
            assert!(scanned.is_some(), "{text} is the plain shape");
            assert_eq!(
                scanned,
                Usage::from_openai_json_by_serde(text.as_bytes()).unwrap(),
                "{text}"
            );
        }
        // Not plain: left to the full reader, which rounds, refuses or finds no usage.
        for text in [
            r#"{"prompt_tokens":5.7,"completion_tokens":2}"#,
            r#"{"prompt_tokens":"5"}"#,
            r#"{"prompt_tokens":05}"#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens":1e3}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":1.5}}"#,
            r#"{"prompt_tokens_details":[1]}"#,
            r#"null"#,
            r#"[1]"#,
            r#"{"prompt_tokens":5"#,
        ] {
            assert_eq!(
                Usage::from_plain_openai_json(text.as_bytes()),
                None,
                "{text}"
            );
        }
        assert_eq!(
            Usage::from_openai_json(br#"{"prompt_tokens":5.7,"completion_tokens":2}"#)
                .unwrap()
                .map(|u| u.prompt_tokens),
            Some(5)
        );
        assert!(Usage::from_openai_json(br#"{"prompt_tokens":05}"#).is_err());
    }
}
