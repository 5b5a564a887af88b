//! Reading a proxied request: the JSON body extractor and the fields the gateway uses.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::ApiError;
use crate::providers::CallType;

/// The request body as JSON, with size and syntax errors in OpenAI's shape.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rej) => {
                return Err(if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::bad_request(format!(
                        "Could not read request body: {}",
                        rej.body_text()
                    ))
                });
            }
        };
        parse_body(&bytes).map(JsonBody)
    }
}

/// Reads a whole body of at most `limit` bytes, with the same errors as [`JsonBody`].
pub async fn read_body<B>(body: B, limit: usize) -> Result<Value, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => parse_body(&collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "Could not read request body: {e}"
        ))),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "Request body is too large",
    )
}

/// The body as a JSON object, or a 400 saying what is wrong with it.
fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "Request body is empty; expected a JSON object",
        ));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in request body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
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
    pub fn parse(call: CallType, body: &Value, headers: &HeaderMap) -> Result<Self, ApiError> {
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::missing_param(
                    "model",
                    "`model` must be a non-empty string",
                ))
            }
            None => {
                return Err(ApiError::missing_param(
                    "model",
                    "Missing required parameter: `model`",
                ))
            }
        };
        match call {
            CallType::Chat => match body.get("messages") {
                Some(Value::Array(m)) if !m.is_empty() => {}
                Some(Value::Array(_)) => {
                    return Err(ApiError::missing_param(
                        "messages",
                        "`messages` must not be empty",
                    ))
                }
                Some(_) => {
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
                if body.get("prompt").is_none() {
                    return Err(ApiError::missing_param(
                        "prompt",
                        "Missing required parameter: `prompt`",
                    ));
                }
            }
            CallType::Embedding => {
                if body.get("input").is_none() {
                    return Err(ApiError::missing_param(
                        "input",
                        "Missing required parameter: `input`",
                    ));
                }
            }
        }
        let stream = call != CallType::Embedding
            && body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let metadata = body.get("metadata").cloned().unwrap_or(Value::Null);
        let mut tags: Vec<String> = metadata
            .get("tags")
            .or_else(|| body.get("tags"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(h) = headers.get("x-litellm-tags").and_then(|v| v.to_str().ok()) {
            for t in h.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if !tags.iter().any(|x| x == t) {
                    tags.push(t.to_owned());
                }
            }
        }
        let end_user = match body.get("user") {
            Some(Value::String(u)) if !u.is_empty() => Some(u.clone()),
            _ => None,
        };
        let max_output_tokens = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64);
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
            &json!({"messages": [{"role":"user","content":"x"}]}),
            &h,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = ProxyRequest::parse(CallType::Chat, &json!({"model": "m"}), &h).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = ProxyRequest::parse(CallType::Embedding, &json!({"model": "m"}), &h).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }

    #[test]
    fn tags_come_from_metadata_and_header_and_secrets_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-litellm-tags", "b, c".parse().unwrap());
        let r = ProxyRequest::parse(
            CallType::Chat,
            &json!({"model": "m", "messages": [{"role":"user","content":"x"}], "metadata": {"tags": ["a", "b"], "api_key": "sk-x", "team": "t"}, "user": "u1"}),
            &h,
        )
        .unwrap();
        assert_eq!(r.tags, vec!["a", "b", "c"]);
        assert_eq!(r.end_user.as_deref(), Some("u1"));
        assert!(r.metadata.get("api_key").is_none());
        assert_eq!(r.metadata.get("team"), Some(&json!("t")));
    }
}
