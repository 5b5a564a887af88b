//! Typed `general_settings`, `litellm_settings` and `router_settings`.

use std::collections::HashMap;
use std::time::Duration;

use crate::providers::ErrorClass;

/// `router_settings.routing_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingStrategy {
    #[default]
    SimpleShuffle,
    LeastBusy,
    UsageBased,
    LatencyBased,
    CostBased,
}

impl RoutingStrategy {
    pub const NAMES: &'static [&'static str] = &[
        "simple-shuffle",
        "least-busy",
        "usage-based-routing",
        "usage-based-routing-v2",
        "latency-based-routing",
        "cost-based-routing",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "simple-shuffle" => Self::SimpleShuffle,
            "least-busy" => Self::LeastBusy,
            "usage-based-routing" | "usage-based-routing-v2" => Self::UsageBased,
            "latency-based-routing" => Self::LatencyBased,
            "cost-based-routing" => Self::CostBased,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct GeneralSettings {
    pub master_key: Option<String>,
    /// Largest accepted request body.
    pub max_request_size_bytes: usize,
    pub store_prompts_in_spend_logs: bool,
    /// LiteLLM's `disable_spend_logs`: no per-request rows are stored; spend totals, budget
    /// counters and the daily aggregates behind the reports are still kept.
    pub disable_spend_logs: bool,
    /// Raw spend rows older than this are deleted; daily aggregates are kept.
    pub spend_logs_retention: Option<Duration>,
    /// How often the spend writer commits a batch.
    pub spend_flush_interval: Duration,
    /// How long the serving thread keeps polling after a request starts or ends
    /// (`busy_poll_us`; zero turns it off). See `busy_poll`.
    pub busy_poll: Duration,
}

/// Long enough to cover an upstream on the same host answering and a client sending its
/// next request (tens of microseconds each); short enough that sparse traffic costs
/// almost no CPU (at most twice this per request).
pub const DEFAULT_BUSY_POLL_US: u64 = 100;

impl Default for GeneralSettings {
    fn default() -> Self {
        GeneralSettings {
            master_key: None,
            max_request_size_bytes: 16 * 1024 * 1024,
            store_prompts_in_spend_logs: false,
            disable_spend_logs: false,
            spend_logs_retention: None,
            spend_flush_interval: Duration::from_millis(200),
            busy_poll: Duration::from_micros(DEFAULT_BUSY_POLL_US),
        }
    }
}

/// Router behaviour; `litellm_settings` values are the fallback for unset ones.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub routing_strategy: RoutingStrategy,
    /// `routing_strategy_args.lowest_latency_buffer`: spread among deployments within
    /// this fraction of the best latency.
    pub lowest_latency_buffer: f64,
    pub num_retries: u32,
    pub timeout: Duration,
    pub stream_timeout: Option<Duration>,
    pub retry_policy: HashMap<ErrorClass, u32>,
    pub allowed_fails: u32,
    pub allowed_fails_policy: HashMap<ErrorClass, u32>,
    pub cooldown_time: Duration,
    pub fallbacks: Vec<(String, Vec<String>)>,
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
    pub default_fallbacks: Vec<String>,
    pub enable_pre_call_checks: bool,
    /// Smallest wait between retries (LiteLLM's `retry_after`).
    pub retry_after: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            routing_strategy: RoutingStrategy::SimpleShuffle,
            lowest_latency_buffer: 0.0,
            num_retries: 2,
            timeout: Duration::from_secs(600),
            stream_timeout: None,
            retry_policy: HashMap::new(),
            allowed_fails: 3,
            allowed_fails_policy: HashMap::new(),
            cooldown_time: Duration::from_secs(5),
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            default_fallbacks: Vec::new(),
            enable_pre_call_checks: false,
            retry_after: Duration::ZERO,
        }
    }
}

/// LiteLLM's `retry_policy` / `allowed_fails_policy` key prefix for an error class.
pub fn policy_class(key: &str, suffix: &str) -> Option<ErrorClass> {
    let name = key.strip_suffix(suffix)?;
    Some(match name {
        "BadRequestError" => ErrorClass::BadRequest,
        "AuthenticationError" => ErrorClass::Authentication,
        "TimeoutError" => ErrorClass::Timeout,
        "RateLimitError" => ErrorClass::RateLimit,
        "ContentPolicyViolationError" => ErrorClass::ContentPolicyViolation,
        "InternalServerError" => ErrorClass::InternalServer,
        _ => return None,
    })
}
