//! `admin::Error`: every management-API failure with its status; rendered as OpenAI's
//! error shape by `admin::http` (this file has no HTTP framework dependency).

use crate::governance::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A field has the wrong JSON type (422, like LiteLLM's request validation).
    #[error("Invalid type for field `{field}`: expected {expected}")]
    Type {
        field: &'static str,
        expected: &'static str,
    },
    /// A field has a well-typed but unacceptable value.
    #[error("Invalid value for field `{field}`: {message}")]
    Value {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("database error: {0}")]
    Store(#[from] crate::store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Type { .. } => 422,
            Error::Value { .. } | Error::BadRequest(_) => 400,
            Error::Store(_) => 500,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "auth_error",
            Error::Forbidden(_) => "permission_denied_error",
            Error::NotFound(_) => "not_found_error",
            Error::Type { .. } | Error::Value { .. } | Error::BadRequest(_) => {
                "invalid_request_error"
            }
            Error::Store(_) => "internal_server_error",
        }
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            Error::Type { field, .. } | Error::Value { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn value(field: &'static str, message: impl Into<String>) -> Error {
        Error::Value {
            field,
            message: message.into(),
        }
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        Error::Unauthorized(e.to_string())
    }
}
