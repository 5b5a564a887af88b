//! Why a caller was refused: authentication failures (401) and admission limits
//! (budget 400, model/route 401, rate and parallel 429), with LiteLLM's statuses.

use std::time::Duration;

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication Error, No api key passed in.")]
    Missing,
    #[error("Authentication Error, Invalid proxy server token passed. Received API Key = {0}")]
    Invalid(String),
    #[error(
        "Authentication Error - Expired Key. Key Expiry time {expires} and current time {now}"
    )]
    Expired { expires: String, now: String },
    /// LiteLLM's exact text (auth_checks / user_api_key_auth); the key is not named.
    #[error("Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.")]
    Blocked,
    #[error(
        "Authentication Error, Team={0} is blocked. Update via `/team/unblock` if you're an admin."
    )]
    TeamBlocked(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
    /// LiteLLM's `ProxyErrorTypes`: `expired_key` for an expired key, else `auth_error`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Expired { .. } => "expired_key",
            _ => "auth_error",
        }
    }
}

/// Which budget was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    Key,
    KeyModel,
    User,
    Team,
    EndUser,
}

impl BudgetScope {
    pub fn label(self) -> &'static str {
        match self {
            BudgetScope::Key => "Key",
            BudgetScope::KeyModel => "Key model budget",
            BudgetScope::User => "User",
            BudgetScope::Team => "Team",
            BudgetScope::EndUser => "End user",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("key not allowed to access model. This key can only access models={models:?}. Tried to access {model}")]
    KeyModel { model: String, models: Vec<String> },
    #[error("team not allowed to access model. This team can only access models={models:?}. Tried to access {model}")]
    TeamModel { model: String, models: Vec<String> },
    #[error("Authentication Error, route not allowed for this key: {0}")]
    Route(String),
    #[error("Authentication Error, this key was deleted.")]
    KeyGone,
    #[error("Authentication Error, end user {0} is blocked.")]
    EndUserBlocked(String),
    /// LiteLLM's shape: `Budget has been exceeded! Key=<alias> Current cost: X, Max budget: Y`.
    #[error("Budget has been exceeded! {}={id} Current cost: {spend}, Max budget: {max}", scope.label())]
    Budget {
        scope: BudgetScope,
        id: String,
        spend: f64,
        max: f64,
    },
    #[error("Rate limit exceeded for {scope}: {what} limit {limit}, current {current}")]
    Rate {
        scope: String,
        what: &'static str,
        limit: u64,
        current: u64,
        retry_after: Duration,
    },
    #[error("Max parallel request limit reached for this key: {limit} requests in flight")]
    Parallel { limit: u64 },
}

impl LimitError {
    pub fn status(&self) -> StatusCode {
        match self {
            LimitError::KeyModel { .. }
            | LimitError::TeamModel { .. }
            | LimitError::Route(_)
            | LimitError::KeyGone
            | LimitError::EndUserBlocked(_) => StatusCode::UNAUTHORIZED,
            LimitError::Budget { .. } => StatusCode::BAD_REQUEST,
            LimitError::Rate { .. } | LimitError::Parallel { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            LimitError::KeyModel { .. } => "key_model_access_denied",
            LimitError::TeamModel { .. } => "team_model_access_denied",
            LimitError::Route(_) | LimitError::KeyGone | LimitError::EndUserBlocked(_) => {
                "auth_error"
            }
            LimitError::Budget { .. } => "budget_exceeded",
            LimitError::Rate { .. } | LimitError::Parallel { .. } => "rate_limit_error",
        }
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitError::Rate { retry_after, .. } => Some(*retry_after),
            LimitError::Parallel { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}
