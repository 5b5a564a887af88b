//! Reading a request: the body extractors (JSON for the API, bytes for proxied calls) and
//! the fields the gateway uses.

use axum::extract::{FromRequest, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use serde_json::Value;

use super::ApiError;
use crate::providers::body::BodyError;
use crate::providers::{CallType, RequestBody};

/// Looked up by name, as a string lookup parses the name first, every request.
const X_LITELLM_TAGS: HeaderName = HeaderName::from_static("x-litellm-tags");

/// Whether the proxied path reads the request header `name` (any case): the key headers
/// and the tags. The gateway's own HTTP/1.1 loop (`server.rs`) hands the handler only
/// these, so a header read anywhere on the proxied path must be listed here.
pub(crate) fn read_by_proxy(name: &[u8]) -> bool {
    std::iter::once(&AUTHORIZATION)
        .chain(&crate::auth::KEY_HEADERS)
        .chain([&X_LITELLM_TAGS])
        .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name))
}

/// The request body as JSON, with size and syntax errors in OpenAI's shape.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_body(&body_bytes(req, state).await?).map(JsonBody)
    }
}

/// The body of a proxied call (`/chat/completions` and the like), kept as bytes.
pub struct ProxyBody(pub RequestBody);

impl<S: Send + Sync> FromRequest<S> for ProxyBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        proxy_body(body_bytes(req, state).await?).map(ProxyBody)
    }
}

/// The whole body, or the error for one too large or broken off.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<bytes::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(format!("Could not read request body: {}", rej.body_text()))
            }
        })
}

/// Reads a whole proxied body of at most `limit` bytes, with the same errors as
/// [`ProxyBody`].
pub async fn read_body<B>(body: B, limit: usize) -> Result<RequestBody, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => proxy_body(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "Could not read request body: {e}"
        ))),
    }
}

pub(crate) fn proxy_body(bytes: bytes::Bytes) -> Result<RequestBody, ApiError> {
    RequestBody::parse(bytes).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "Request body is too large",
    )
}

/// The body as a JSON object, or a 400 saying what is wrong with it (the same words as
/// [`RequestBody::parse`]).
fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    let refuse = |e: BodyError| ApiError::bad_request(e.to_string());
    if bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
    {
        return Err(refuse(BodyError::Empty));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| refuse(BodyError::Invalid(e.to_string())))?;
    if !v.is_object() {
        return Err(refuse(BodyError::NotAnObject));
    }
    Ok(v)
}

/// What the gateway reads from a request before routing it.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub call: CallType,
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage` as the client asked.
    pub include_usage: bool,
    pub end_user: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Value,
    pub max_output_tokens: Option<u64>,
}

impl ProxyRequest {
    /// Validates the fields each endpoint requires, naming the missing one.
    pub fn parse(
        call: CallType,
        body: &RequestBody,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let model = match body.raw("model") {
            Some(_) => body.non_empty_str("model").ok_or_else(|| {
                ApiError::missing_param("model", "`model` must be a non-empty string")
            })?,
            None => {
                return Err(ApiError::missing_param(
                    "model",
                    "Missing required parameter: `model`",
                ))
            }
        };
        match call {
            CallType::Chat => match body.array_len("messages") {
                Some(n) if n > 0 => {}
                Some(_) => {
                    return Err(ApiError::missing_param(
                        "messages",
                        "`messages` must not be empty",
                    ))
                }
                None if body.contains_key("messages") => {
                    return Err(ApiError::missing_param(
                        "messages",
                        "`messages` must be an array",
                    ))
                }
                None => {
                    return Err(ApiError::missing_param(
                        "messages",
                        "Missing required parameter: `messages`",
                    ))
                }
            },
            CallType::Completion => {
                if !body.contains_key("prompt") {
                    return Err(ApiError::missing_param(
                        "prompt",
                        "Missing required parameter: `prompt`",
                    ));
                }
            }
            CallType::Embedding => {
                if !body.contains_key("input") {
                    return Err(ApiError::missing_param(
                        "input",
                        "Missing required parameter: `input`",
                    ));
                }
            }
        }
        let stream = call != CallType::Embedding && body.bool("stream").unwrap_or(false);
        #[derive(serde::Deserialize)]
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        let include_usage = body
            .get::<StreamOptions>("stream_options")
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let metadata = body.value("metadata").unwrap_or(Value::Null);
        let mut tags: Vec<String> = match metadata.get("tags") {
            Some(tags) => string_items(tags),
            None => body
                .value("tags")
                .map(|t| string_items(&t))
                .unwrap_or_default(),
        };
        if let Some(h) = headers.get(&X_LITELLM_TAGS).and_then(|v| v.to_str().ok()) {
            for t in h.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if !tags.iter().any(|x| x == t) {
                    tags.push(t.to_owned());
                }
            }
        }
        let end_user = body.non_empty_str("user");
        // The newer name wins when given at all, as in the tree this replaced.
        let max_output_tokens = match body.raw("max_completion_tokens") {
            Some(_) => body.u64("max_completion_tokens"),
            None => body.u64("max_tokens"),
        };
        Ok(ProxyRequest {
            call,
            model,
            stream,
            include_usage,
            end_user,
            tags,
            metadata: redact_metadata(metadata),
            max_output_tokens,
        })
    }
}

/// The strings of a JSON array; nothing for anything else.
fn string_items(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Request metadata as stored in spend logs: anything that looks like a secret removed.
fn redact_metadata(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            !(k.contains("key")
                || k.contains("secret")
                || k.contains("token")
                || k.contains("password")
                || k == "authorization")
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_are_named() {
        let h = HeaderMap::new();
        let e = ProxyRequest::parse(
            CallType::Chat,
            &RequestBody::from_value(&json!({"messages": [{"role":"user","content":"x"}]})),
            &h,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = ProxyRequest::parse(
            CallType::Chat,
            &RequestBody::from_value(&json!({"model": "m"})),
            &h,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = ProxyRequest::parse(
            CallType::Embedding,
            &RequestBody::from_value(&json!({"model": "m"})),
            &h,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }

    #[test]
    fn tags_come_from_metadata_and_header_and_secrets_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-litellm-tags", "b, c".parse().unwrap());
        let r = ProxyRequest::parse(
            CallType::Chat,
            &RequestBody::from_value(&json!({"model": "m", "messages": [{"role":"user","content":"x"}], "metadata": {"tags": ["a", "b"], "api_key": "sk-x", "team": "t"}, "user": "u1"})),
            &h,
        )
        .unwrap();
        assert_eq!(r.tags, vec!["a", "b", "c"]);
        assert_eq!(r.end_user.as_deref(), Some("u1"));
        assert!(r.metadata.get("api_key").is_none());
        assert_eq!(r.metadata.get("team"), Some(&json!("t")));
    }
}
