//! Upstream failures, classified once here so the router never matches on strings.

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;

/// The error classes LiteLLM's `retry_policy` and `allowed_fails_policy` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    BadRequest,
    Authentication,
    PermissionDenied,
    NotFound,
    Timeout,
    RateLimit,
    ContextWindowExceeded,
    ContentPolicyViolation,
    InternalServer,
    /// Connection refused, reset, or dropped mid-response.
    Connection,
}

impl ErrorClass {
    /// LiteLLM's exception name, used in error types and spend log rows.
    pub fn litellm_name(self) -> &'static str {
        match self {
            ErrorClass::BadRequest => "BadRequestError",
            ErrorClass::Authentication => "AuthenticationError",
            ErrorClass::PermissionDenied => "PermissionDeniedError",
            ErrorClass::NotFound => "NotFoundError",
            ErrorClass::Timeout => "Timeout",
            ErrorClass::RateLimit => "RateLimitError",
            ErrorClass::ContextWindowExceeded => "ContextWindowExceededError",
            ErrorClass::ContentPolicyViolation => "ContentPolicyViolationError",
            ErrorClass::InternalServer => "InternalServerError",
            ErrorClass::Connection => "APIConnectionError",
        }
    }

    /// Whether trying again (same or another deployment) can help.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Timeout
                | ErrorClass::RateLimit
                | ErrorClass::InternalServer
                | ErrorClass::Connection
        )
    }
}

/// One failed upstream call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}Exception - {message}")]
pub struct Error {
    pub class: ErrorClass,
    /// HTTP status to show the client (the upstream's, or 408/500 for local failures).
    pub status: u16,
    /// Where the error came from, e.g. `openai`, `anthropic`, `azure`.
    pub provider: &'static str,
    pub message: String,
    /// Upstream's `retry-after` / `retry-after-ms`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl Error {
    pub fn new(class: ErrorClass, status: u16, provider: &'static str, message: String) -> Self {
        Error {
            class,
            status,
            provider,
            message,
            retry_after: None,
        }
    }

    pub fn timeout(provider: &'static str, after: Duration) -> Self {
        Error::new(
            ErrorClass::Timeout,
            408,
            provider,
            format!("Request timed out after {:.1}s", after.as_secs_f64()),
        )
    }

    /// A response the adapter could not understand.
    pub fn bad_response(provider: &'static str, what: impl std::fmt::Display) -> Self {
        Error::new(
            ErrorClass::InternalServer,
            502,
            provider,
            format!("invalid response from upstream: {what}"),
        )
    }

    /// A client request this provider cannot express.
    pub fn invalid_request(provider: &'static str, what: impl std::fmt::Display) -> Self {
        Error::new(ErrorClass::BadRequest, 400, provider, what.to_string())
    }

    /// A transport failure (connect, reset, TLS, broken body): the message walks the
    /// error's causes, which name what failed but never the URL.
    pub fn connection(provider: &'static str, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = format!("Connection error: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Error::new(ErrorClass::Connection, 500, provider, message)
    }

    /// Classifies a non-2xx upstream answer.
    pub fn from_status(
        provider: &'static str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("message"))
                    .or_else(|| v.get("error"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
        let code = parsed
            .as_ref()
            .and_then(|v| {
                v.pointer("/error/code")
                    .or_else(|| v.pointer("/error/type"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("");
        let lower = message.to_ascii_lowercase();
        let class = match status {
            400 | 413 | 422 if is_context_window(code, &lower) => ErrorClass::ContextWindowExceeded,
            400 if is_content_policy(code, &lower) => ErrorClass::ContentPolicyViolation,
            400 | 413 | 422 => ErrorClass::BadRequest,
            401 => ErrorClass::Authentication,
            403 => ErrorClass::PermissionDenied,
            404 => ErrorClass::NotFound,
            408 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimit,
            // Anthropic's "overloaded" is 529.
            _ => ErrorClass::InternalServer,
        };
        Error {
            class,
            status,
            provider,
            message,
            retry_after: retry_after(headers),
        }
    }
}

fn is_context_window(code: &str, lower: &str) -> bool {
    code == "context_length_exceeded"
        || lower.contains("context length")
        || lower.contains("context_length_exceeded")
        || lower.contains("maximum context")
        || lower.contains("prompt is too long")
        || lower.contains("too many tokens")
        || lower.contains("context window")
}

fn is_content_policy(code: &str, lower: &str) -> bool {
    code == "content_filter"
        || code == "content_policy_violation"
        || lower.contains("content management policy")
        || lower.contains("content_policy")
        || lower.contains("content policy")
        || lower.contains("safety system")
}

/// `retry-after-ms` (milliseconds) wins over `retry-after` (seconds).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = read("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after").map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn context_length_errors_are_classified_from_code_or_message() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
        let e = Error::from_status("openai", 400, &HeaderMap::new(), body);
        assert_eq!(e.class, ErrorClass::ContextWindowExceeded);
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300000 tokens > 200000 maximum"}}"#;
        let e = Error::from_status("anthropic", 400, &HeaderMap::new(), body);
        assert_eq!(e.class, ErrorClass::ContextWindowExceeded);
    }

    #[test]
    fn content_filter_and_plain_bad_request_differ() {
        let body = br#"{"error":{"message":"blocked","code":"content_filter"}}"#;
        let e = Error::from_status("azure", 400, &HeaderMap::new(), body);
        assert_eq!(e.class, ErrorClass::ContentPolicyViolation);
        let body = br#"{"error":{"message":"bad field"}}"#;
        let e = Error::from_status("openai", 400, &HeaderMap::new(), body);
        assert_eq!(e.class, ErrorClass::BadRequest);
        assert_eq!(e.message, "bad field");
    }

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let h = headers(&[("retry-after", "3"), ("retry-after-ms", "250")]);
        let e = Error::from_status("openai", 429, &h, b"{}");
        assert_eq!(e.class, ErrorClass::RateLimit);
        assert_eq!(e.retry_after, Some(Duration::from_millis(250)));
        let h = headers(&[("retry-after", "2")]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }
}
