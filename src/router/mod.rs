//! Model groups and deployment choice: strategies, retries, cooldowns and fallbacks.
//!
//! [`Router::run`] is the one loop every proxied call goes through: pick a deployment,
//! call it, classify a failure, retry (preferring another deployment), then fall back to
//! other groups. Each failure is kept and returned together when everything failed.

pub mod health;
pub mod strategy;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rand::Rng;

use crate::deployment::Deployment;
pub use health::{DeploymentState, HealthSnapshot, InFlight};

use crate::config::{RouterSettings, RoutingStrategy};
use crate::providers::{Error as ProviderError, ErrorClass};

/// Per-request routing options (from the body and the caller).
#[derive(Debug, Clone, Default)]
pub struct RouteRequest {
    pub model: String,
    pub stream: bool,
    pub est_prompt_tokens: u64,
    /// `num_retries` from the request body.
    pub num_retries: Option<u32>,
    /// `fallbacks` from the request body: replaces the configured ones.
    pub fallbacks: Option<Vec<String>>,
    /// `mock_testing_fallbacks`: the first group fails on purpose.
    pub mock_testing_fallbacks: bool,
    /// `mock_testing_rate_limit_error`: the first group answers 429 on purpose.
    pub mock_testing_rate_limit_error: bool,
}

/// A successful call and how it got there.
#[derive(Debug)]
pub struct Routed<T> {
    pub value: T,
    pub deployment: Arc<DeploymentState>,
    pub attempted_retries: u32,
    pub attempted_fallbacks: u32,
}

/// Why no deployment answered.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key. Available: {available}")]
    UnknownModel { model: String, available: String },
    #[error("No deployments available for selected model={model}: {reason}")]
    NoDeployment {
        model: String,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The last failure decides the status; every failure is listed in the message.
    #[error("{}", summary(.errors))]
    AllFailed {
        errors: Vec<(String, ProviderError)>,
    },
}

fn summary(errors: &[(String, ProviderError)]) -> String {
    match errors {
        [] => "no deployment was tried".into(),
        [(_, e)] => e.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(|(g, e)| format!("[{g}] {e}")).collect();
            format!("All deployments failed: {}", parts.join("; "))
        }
    }
}

pub struct Router {
    settings: RouterSettings,
    /// Swapped whole on runtime model changes; readers clone the `Arc` and never block.
    groups: RwLock<Arc<Groups>>,
}

/// The deployments of one model group; shared, so handing one out is a count increment.
pub type Group = Arc<[Arc<DeploymentState>]>;

#[derive(Default)]
struct Groups {
    /// Looked up by the client's model name on every request; entries come from the
    /// config and the admin API, so foldhash (seeded per process) instead of SipHash.
    by_name: HashMap<String, Group, foldhash::fast::RandomState>,
    /// Group names in declaration order, for `/models`.
    order: Vec<String>,
}

impl Router {
    pub fn new(settings: RouterSettings, deployments: Vec<Arc<DeploymentState>>) -> Router {
        let r = Router {
            settings,
            groups: RwLock::new(Arc::new(Groups::default())),
        };
        r.replace(deployments);
        r
    }

    pub fn settings(&self) -> &RouterSettings {
        &self.settings
    }

    /// Installs a new set of deployments; live state of unchanged ones is kept.
    pub fn replace(&self, deployments: Vec<Arc<DeploymentState>>) {
        let old = self.groups.read().clone();
        let mut g = Groups::default();
        let mut by_name: HashMap<String, Vec<Arc<DeploymentState>>> = HashMap::new();
        for d in deployments {
            let d = old
                .by_name
                .get(&d.dep.model_name)
                .and_then(|v| {
                    v.iter()
                        .find(|o| o.dep.id == d.dep.id && same_target(&o.dep, &d.dep))
                })
                .cloned()
                .unwrap_or(d);
            if !by_name.contains_key(&d.dep.model_name) {
                g.order.push(d.dep.model_name.clone());
            }
            by_name.entry(d.dep.model_name.clone()).or_default().push(d);
        }
        g.by_name = by_name.into_iter().map(|(k, v)| (k, v.into())).collect();
        *self.groups.write() = Arc::new(g);
    }

    pub fn group_names(&self) -> Vec<String> {
        self.groups.read().order.clone()
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.groups.read().by_name.contains_key(name)
    }

    pub fn deployments(&self) -> Vec<Arc<DeploymentState>> {
        let g = self.groups.read().clone();
        g.order
            .iter()
            .flat_map(|n| g.by_name[n].iter().cloned())
            .collect()
    }

    /// The deployments of group `name`; `None` for a name that is no group.
    pub fn group(&self, name: &str) -> Option<Group> {
        self.groups.read().by_name.get(name).cloned()
    }

    /// The fallback groups for `group` after a failure of `class`.
    fn fallbacks_for(&self, group: &str, class: ErrorClass, req: &RouteRequest) -> Vec<String> {
        let find = |list: &[(String, Vec<String>)]| {
            list.iter()
                .find(|(g, _)| g == group)
                .map(|(_, f)| f.clone())
        };
        let specific = match class {
            ErrorClass::ContextWindowExceeded => find(&self.settings.context_window_fallbacks),
            ErrorClass::ContentPolicyViolation => find(&self.settings.content_policy_fallbacks),
            _ => None,
        };
        if let Some(s) = specific {
            return s;
        }
        if let Some(f) = &req.fallbacks {
            return f.clone();
        }
        if let Some(f) = find(&self.settings.fallbacks) {
            return f;
        }
        match class {
            ErrorClass::ContextWindowExceeded | ErrorClass::ContentPolicyViolation => vec![],
            _ => self.settings.default_fallbacks.clone(),
        }
    }

    /// Healthy candidates of the best `order`, or why there are none.
    fn candidates(
        &self,
        all: &[Arc<DeploymentState>],
        req: &RouteRequest,
        exclude: &[String],
        now: Instant,
    ) -> Result<Vec<Arc<DeploymentState>>, (String, Option<Duration>)> {
        // Filters applied in passes over the group rather than into intermediate lists:
        // this runs on every request and groups are small.
        let fits = |d: &DeploymentState| {
            !self.settings.enable_pre_call_checks
                || d.context_window.is_none_or(|w| req.est_prompt_tokens <= w)
        };
        if !all.is_empty() && !all.iter().any(|d| fits(d)) {
            return Err((
                format!(
                    "the request's ~{} prompt tokens exceed every deployment's context window",
                    req.est_prompt_tokens
                ),
                None,
            ));
        }
        let healthy = |d: &DeploymentState| fits(d) && !d.is_cooling_down(now);
        if !all.iter().any(|d| healthy(d)) {
            let wait = all
                .iter()
                .filter(|d| fits(d))
                .filter_map(|d| d.cooldown_remaining(now))
                .min();
            return Err((
                "all deployments are cooling down after failures".into(),
                wait,
            ));
        }
        // Prefer deployments not yet tried in this request, when any remain.
        let untried = |d: &DeploymentState| !exclude.contains(&d.dep.id);
        let prefer_untried = all.iter().any(|d| healthy(d) && untried(d));
        let eligible = |d: &DeploymentState| healthy(d) && (!prefer_untried || untried(d));
        let order = |d: &DeploymentState| d.dep.order.unwrap_or(u32::MAX);
        let best = all
            .iter()
            .filter(|d| eligible(d))
            .map(|d| order(d))
            .min()
            .unwrap_or(u32::MAX);
        Ok(all
            .iter()
            .filter(|d| eligible(d) && order(d) == best)
            .cloned()
            .collect())
    }

    fn pick(
        &self,
        group: &[Arc<DeploymentState>],
        req: &RouteRequest,
        exclude: &[String],
    ) -> Result<Arc<DeploymentState>, (String, Option<Duration>)> {
        let now = Instant::now();
        let cands = self.candidates(group, req, exclude, now)?;
        let mut rng = rand::thread_rng();
        let mut p = strategy::Pick {
            strategy: self.settings.routing_strategy,
            stream: req.stream,
            lowest_latency_buffer: self.settings.lowest_latency_buffer,
            now,
            est_tokens: req.est_prompt_tokens,
            rng: &mut rng,
        };
        let enforce_rpm = self.settings.routing_strategy == RoutingStrategy::UsageBased;
        // The strategy reads usage without holding every lock; counting re-checks the
        // rpm limit atomically, and a deployment filled meanwhile is chosen around.
        let mut chosen = None;
        for _ in 0..=cands.len() {
            let Some(i) = strategy::choose(&cands, &mut p) else {
                break;
            };
            let limit = if enforce_rpm { cands[i].dep.rpm } else { None };
            if cands[i].count_request(now, limit) {
                chosen = Some(i);
                break;
            }
        }
        match chosen {
            Some(i) => Ok(cands[i].clone()),
            None => Err((
                "every deployment is at its rpm/tpm limit this minute".into(),
                Some(Duration::from_secs(
                    60 - (chrono::Utc::now().timestamp() % 60) as u64,
                )),
            )),
        }
    }

    fn retries_for(&self, class: ErrorClass, req: &RouteRequest, dep: &Deployment) -> u32 {
        if let Some(n) = self.settings.retry_policy.get(&class) {
            return *n;
        }
        if !class.retryable() {
            return 0;
        }
        req.num_retries
            .or(dep.max_retries)
            .unwrap_or(self.settings.num_retries)
    }

    /// Records a failure against the deployment and maybe starts its cooldown.
    pub fn report_failure(&self, d: &DeploymentState, e: &ProviderError) {
        let counts = matches!(
            e.class,
            ErrorClass::RateLimit
                | ErrorClass::Timeout
                | ErrorClass::InternalServer
                | ErrorClass::Connection
                | ErrorClass::Authentication
                | ErrorClass::NotFound
        );
        if !counts {
            return;
        }
        let immediate = matches!(e.class, ErrorClass::Authentication | ErrorClass::NotFound);
        let allowed = self
            .settings
            .allowed_fails_policy
            .get(&e.class)
            .copied()
            .unwrap_or(self.settings.allowed_fails);
        if d.record_failure(
            &e.to_string(),
            immediate,
            allowed,
            self.settings.cooldown_time,
        ) {
            tracing::warn!(model_id = %d.dep.id, group = %d.dep.model_name, error = %e.class.litellm_name(), "deployment cooling down");
        }
    }

    fn backoff(&self, attempt: u32, e: &ProviderError, same_deployment: bool) -> Duration {
        if !same_deployment {
            return self.settings.retry_after;
        }
        if let Some(ra) = e.retry_after {
            return ra
                .max(self.settings.retry_after)
                .min(Duration::from_secs(60));
        }
        let base = 0.05 * 2f64.powi(attempt.min(8) as i32);
        let jitter = rand::thread_rng().gen_range(0.5..1.0);
        Duration::from_secs_f64((base * jitter).min(4.0)).max(self.settings.retry_after)
    }

    /// Runs `call` against the request's group with retries, then its fallbacks.
    pub async fn run<T, F, Fut>(
        &self,
        req: &RouteRequest,
        mut call: F,
    ) -> Result<Routed<T>, RouteError>
    where
        F: FnMut(Arc<DeploymentState>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut errors: Vec<(String, ProviderError)> = Vec::new();
        // Group names borrow the request's own until a fallback adds one: the first
        // attempt copies no name.
        let mut queue: Vec<Cow<'_, str>> = vec![Cow::Borrowed(req.model.as_str())];
        let mut tried_groups: Vec<Cow<'_, str>> = Vec::new();
        let mut retries_total = 0;
        let mut last_unavailable: Option<(String, Option<Duration>)> = None;
        while let Some(group) = (!queue.is_empty()).then(|| queue.remove(0)) {
            if tried_groups.contains(&group) {
                continue;
            }
            // Looked up once a group: the members stay as they were for its attempts
            // even if the model list is replaced meanwhile.
            let Some(members) = self.group(&group) else {
                if tried_groups.is_empty() {
                    return Err(RouteError::UnknownModel {
                        model: req.model.clone(),
                        available: self.group_names().join(", "),
                    });
                }
                continue;
            };
            tried_groups.push(group.clone());
            let fallback_index = tried_groups.len() as u32 - 1;
            let mut tried_ids: Vec<String> = Vec::new();
            let mut attempt = 0u32;
            // The class of this group's last failure: it picks the fallback kind even
            // when a retry then finds no deployment available.
            let mut last_class: Option<ErrorClass> = None;
            let failure_class = loop {
                let dep = match self.pick(&members, req, &tried_ids) {
                    Ok(d) => d,
                    Err(why) => {
                        last_unavailable = Some(why);
                        break last_class;
                    }
                };
                let mock_error = fallback_index == 0
                    && (req.mock_testing_fallbacks || req.mock_testing_rate_limit_error);
                let result = if mock_error {
                    Err(if req.mock_testing_rate_limit_error {
                        ProviderError::new(
                            ErrorClass::RateLimit,
                            429,
                            "mock",
                            "This is a mock rate limit error (mock_testing_rate_limit_error)"
                                .into(),
                        )
                    } else {
                        ProviderError::new(
                            ErrorClass::InternalServer,
                            500,
                            "mock",
                            "This is a mock exception for fallbacks (mock_testing_fallbacks)"
                                .into(),
                        )
                    })
                } else {
                    call(dep.clone()).await
                };
                match result {
                    Ok(value) => {
                        return Ok(Routed {
                            value,
                            deployment: dep,
                            attempted_retries: retries_total,
                            attempted_fallbacks: fallback_index,
                        })
                    }
                    Err(e) => {
                        if !mock_error {
                            self.report_failure(&dep, &e);
                        }
                        let class = e.class;
                        last_class = Some(class);
                        let allowed = self.retries_for(class, req, &dep.dep);
                        let repeat_same = !members.iter().any(|d| {
                            d.dep.id != dep.dep.id
                                && !tried_ids.contains(&d.dep.id)
                                && !d.is_cooling_down(Instant::now())
                        });
                        tried_ids.push(dep.dep.id.clone());
                        let wait = self.backoff(attempt, &e, repeat_same);
                        errors.push((group.to_string(), e));
                        if attempt >= allowed || mock_error {
                            break Some(class);
                        }
                        attempt += 1;
                        retries_total += 1;
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            };
            let class = failure_class.unwrap_or(ErrorClass::RateLimit);
            for f in self.fallbacks_for(&group, class, req) {
                if !tried_groups.iter().chain(&queue).any(|g| *g == *f) {
                    queue.push(Cow::Owned(f));
                }
            }
        }
        if errors.is_empty() {
            let (reason, retry_after) =
                last_unavailable.unwrap_or_else(|| ("no deployment".into(), None));
            return Err(RouteError::NoDeployment {
                model: req.model.clone(),
                reason,
                retry_after,
            });
        }
        Err(RouteError::AllFailed { errors })
    }
}

/// Whether two definitions of a deployment call the same upstream the same way.
fn same_target(a: &Deployment, b: &Deployment) -> bool {
    a.api_base == b.api_base
        && a.upstream_model == b.upstream_model
        && a.api_key == b.api_key
        && a.wire == b.wire
}

#[cfg(test)]
mod tests;
