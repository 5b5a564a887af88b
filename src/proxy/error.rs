//! `ApiError`: every proxy failure rendered in OpenAI's error shape.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::governance::{AuthError, LimitError};
use crate::providers::ErrorClass;
use crate::router::RouteError;

/// `{"error":{"message","type","param","code"}}` with a status and optional `retry-after`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<Box<str>>,
    pub retry_after: Option<Duration>,
    /// Extra response headers (e.g. how many retries and fallbacks were tried).
    pub headers: Box<[(&'static str, String)]>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Some(status.as_u16().to_string().into()),
            retry_after: None,
            headers: Box::default(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn missing_param(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.into()),
            ..ApiError::bad_request(message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "auth_error", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            message,
        )
    }

    /// The JSON body, also used for SSE error events.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(ra) = self.retry_after {
            let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        for (k, v) in self.headers.into_vec() {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = e.status();
        ApiError {
            code: Some(status.as_u16().to_string().into()),
            ..ApiError::new(status, e.kind(), e.to_string())
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        let status = e.status();
        ApiError {
            retry_after: e.retry_after(),
            ..ApiError::new(status, e.kind(), e.to_string())
        }
    }
}

fn class_type(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::BadRequest
        | ErrorClass::ContextWindowExceeded
        | ErrorClass::ContentPolicyViolation => "invalid_request_error",
        ErrorClass::Authentication => "authentication_error",
        ErrorClass::PermissionDenied => "permission_denied_error",
        ErrorClass::NotFound => "not_found_error",
        ErrorClass::Timeout => "timeout",
        ErrorClass::RateLimit => "rate_limit_error",
        ErrorClass::InternalServer | ErrorClass::Connection => "api_error",
    }
}

impl From<&crate::providers::Error> for ApiError {
    fn from(e: &crate::providers::Error) -> Self {
        let status = match e.class {
            // A local timeout is the gateway's: 408 like LiteLLM.
            ErrorClass::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorClass::Connection => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY),
        };
        ApiError {
            retry_after: e.retry_after,
            code: Some(status.as_u16().to_string().into()),
            ..ApiError::new(
                status,
                class_type(e.class),
                format!("litellm.{}: {}", e.class.litellm_name(), e),
            )
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match &e {
            RouteError::UnknownModel { .. } => ApiError {
                param: Some("model".into()),
                ..ApiError::bad_request(e.to_string())
            },
            RouteError::NoDeployment { retry_after, .. } => ApiError {
                retry_after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    e.to_string(),
                )
            },
            RouteError::AllFailed { errors } => {
                // One entry per attempt, tagged with its group: groups after the first are
                // fallbacks, further attempts within a group are retries.
                let mut groups: Vec<&str> = Vec::new();
                for (g, _) in errors {
                    if !groups.contains(&g.as_str()) {
                        groups.push(g);
                    }
                }
                let headers: Box<[_]> = Box::new([
                    (
                        "x-litellm-attempted-retries",
                        (errors.len() - groups.len()).to_string(),
                    ),
                    (
                        "x-litellm-attempted-fallbacks",
                        groups.len().saturating_sub(1).to_string(),
                    ),
                ]);
                let last = errors.last().map(|(_, e)| ApiError::from(e));
                match (last, errors.len()) {
                    (Some(last), 1) => ApiError { headers, ..last },
                    (Some(last), _) => ApiError {
                        message: e.to_string(),
                        headers,
                        ..last
                    },
                    (None, _) => ApiError::internal(e.to_string()),
                }
            }
        }
    }
}
