//! Governance: who is calling (virtual keys, users, teams, end users) and whether they
//! may (model access, budgets, rpm/tpm, parallel limits). Everything is in memory and
//! written through to the store; nothing here waits on disk on the request path.

mod admission;
pub mod budget;
mod errors;
pub mod ratelimit;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

use chrono::Utc;
use parking_lot::{Mutex, RwLock};
use subtle::ConstantTimeEq;

use crate::spend::writer::CounterSource;
use crate::store::{Doc, Store};
pub use admission::Admission;
use admission::{Held, Hot};
use budget::Counter;
pub use errors::{AuthError, BudgetScope, LimitError};
use records::*;

/// Who made a request, resolved from its API key.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub is_master: bool,
    /// sha256 hex of the virtual key; `None` for the master key.
    pub token_hash: Option<String>,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub metadata: serde_json::Value,
    /// The key's user has `user_role: proxy_admin`.
    pub is_proxy_admin: bool,
}

impl Caller {
    /// The master key, or a key whose user is a proxy admin.
    pub fn is_admin(&self) -> bool {
        self.is_master || self.is_proxy_admin
    }
}

/// What a request asks to be admitted with.
#[derive(Debug, Clone)]
pub struct AdmitRequest<'a> {
    pub model: &'a str,
    pub end_user: Option<&'a str>,
    /// Upper estimate of the cost, reserved against budgets until the call settles.
    pub est_cost: f64,
    /// Estimated prompt tokens plus reserved output tokens.
    pub est_tokens: u64,
    pub route: &'a str,
}

// LiteLLM's budget and rate-limit response headers (names built at compile time).
const KEY_SPEND: HeaderName = HeaderName::from_static("x-litellm-key-spend");
const KEY_MAX_BUDGET: HeaderName = HeaderName::from_static("x-litellm-key-max-budget");
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");

/// A float as a header value: shortest round-trip form, or with `decimals` places. Also
/// used for the proxy's cost and duration headers.
pub fn float_header(v: f64, decimals: Option<usize>) -> HeaderValue {
    use std::io::Write;
    if v == 0.0 && decimals.is_none() {
        return HeaderValue::from_static("0");
    }
    if let Some(fixed) = decimals.and_then(|d| fixed_point(v, d)) {
        return fixed;
    }
    // Formatted on the stack (a header per request otherwise costs two allocations);
    // a number too long for the buffer takes the allocating path.
    let mut buf = [0u8; 48];
    let mut rest = &mut buf[..];
    let written = match decimals {
        Some(d) => write!(rest, "{v:.d$}"),
        None => write!(rest, "{v}"),
    };
    let text = match written {
        Ok(()) => {
            let len = 48 - rest.len();
            std::borrow::Cow::Borrowed(&buf[..len])
        }
        Err(_) => std::borrow::Cow::Owned(match decimals {
            Some(d) => format!("{v:.d$}").into_bytes(),
            None => v.to_string().into_bytes(),
        }),
    };
    // A formatted f64 is ASCII digits, sign, point, exponent or inf/NaN: always valid.
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"))
}

/// `v` with `decimals` places by integer arithmetic, for the common case (non-negative,
/// under 10^12, up to 6 places): the general float formatter costs more than the rest of
/// the header. `None` leaves the value to it.
fn fixed_point(v: f64, decimals: usize) -> Option<HeaderValue> {
    const SCALES: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
    let scale = *SCALES.get(decimals)?;
    if !(0.0..1e12).contains(&v) {
        return None;
    }
    // Digits written from the right: the fraction's `decimals`, its point, then the
    // whole part (at least one digit).
    let mut scaled = (v * scale).round() as u64;
    let mut buf = [0u8; 24];
    let mut at = buf.len();
    for i in 0.. {
        if i == decimals && decimals > 0 {
            at -= 1;
            buf[at] = b'.';
        }
        at -= 1;
        buf[at] = b'0' + (scaled % 10) as u8;
        scaled /= 10;
        if scaled == 0 && i >= decimals {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..]).ok()
}

/// Counter owner keys (also the `SPEND_COUNTERS` keys).
pub fn key_owner(hash: &str) -> String {
    owner(&["key:", hash])
}
pub fn user_owner(id: &str) -> String {
    owner(&["user:", id])
}
pub fn team_owner(id: &str) -> String {
    owner(&["team:", id])
}
pub fn end_user_owner(id: &str) -> String {
    owner(&["end_user:", id])
}
pub fn key_model_owner(hash: &str, model: &str) -> String {
    owner(&["key_model:", hash, ":", model])
}

/// The pieces joined; built on every admitted request, where `format!`'s machinery cost
/// several times the copy.
fn owner(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// A std map hashed with foldhash, for maps whose entries an admin creates.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Every record, indexed for the hot path. Admin code writes the store first, then this.
#[derive(Debug, Default)]
pub struct Index {
    /// token hash → key; looked up on every virtual-key request (foldhash: see `OwnerMap`).
    pub keys: FastMap<String, Arc<KeyRecord>>,
    /// alias → token hash.
    pub aliases: HashMap<String, String>,
    pub users: BTreeMap<String, Arc<UserRecord>>,
    pub teams: BTreeMap<String, Arc<TeamRecord>>,
    pub end_users: BTreeMap<String, Arc<EndUserRecord>>,
    /// team → user → role.
    pub members: BTreeMap<String, BTreeMap<String, String>>,
}

/// `(owner, scope, display id, max budget, period)` of one budget a request must fit.
type BudgetCheck = (String, BudgetScope, String, Option<f64>, Option<Period>);

pub struct Governance {
    master_key: Option<String>,
    /// Records, read on every request; written by the admin service after the store.
    pub index: RwLock<Index>,
    hot: Arc<Mutex<Hot>>,
    /// Serializes admin changes so validation, the store write and the index agree.
    pub admin_lock: Mutex<()>,
}

/// Shows at most the first and last few characters of a secret, for error messages.
pub fn redact(secret: &str) -> String {
    if secret.len() <= 8 || !secret.is_ascii() {
        return "****".into();
    }
    format!("{}****{}", &secret[..3], &secret[secret.len() - 4..])
}

fn period_of(s: &Option<String>) -> Option<Period> {
    s.as_deref().and_then(Period::parse)
}

/// Whether `model` is in `list` (empty = all; `*`, `all-proxy-models`, `prefix/*`).
pub fn list_allows(list: &[String], model: &str) -> bool {
    list.is_empty()
        || list.iter().any(|m| {
            m == model
                || m == "*"
                || m == "all-proxy-models"
                || m.strip_suffix('*').is_some_and(|p| model.starts_with(p))
        })
}

fn bare_route(r: &str) -> &str {
    let r = r.trim_start_matches('/');
    r.strip_prefix("v1/").unwrap_or(r)
}

fn route_allowed(allowed: &[String], route: &str) -> bool {
    let bare = bare_route(route);
    allowed.is_empty()
        || allowed.iter().any(|a| {
            a == "llm_api_routes"
                || a == "openai_routes"
                || bare_route(a) == bare
                || a.strip_suffix('*')
                    .is_some_and(|p| bare.starts_with(bare_route(p)))
        })
}

impl Governance {
    pub fn new(master_key: Option<String>) -> Self {
        Governance {
            master_key,
            index: RwLock::new(Index::default()),
            hot: Arc::new(Mutex::new(Hot::default())),
            admin_lock: Mutex::new(()),
        }
    }

    /// Loads every record and spend counter from the store (once, at start).
    pub fn load(store: &Store, master_key: Option<String>) -> crate::store::Result<Self> {
        let g = Governance::new(master_key);
        {
            let mut idx = g.index.write();
            for (hash, k) in store.list::<KeyRecord>(Doc::Keys)? {
                if let Some(a) = &k.key_alias {
                    idx.aliases.insert(a.clone(), hash.clone());
                }
                idx.keys.insert(hash, Arc::new(k));
            }
            for (id, u) in store.list::<UserRecord>(Doc::Users)? {
                idx.users.insert(id, Arc::new(u));
            }
            for (id, t) in store.list::<TeamRecord>(Doc::Teams)? {
                idx.teams.insert(id, Arc::new(t));
            }
            for (id, e) in store.list::<EndUserRecord>(Doc::EndUsers)? {
                idx.end_users.insert(id, Arc::new(e));
            }
            for (team, user, role) in store.team_members()? {
                idx.members.entry(team).or_default().insert(user, role);
            }
        }
        let mut hot = g.hot.lock();
        for (owner, c) in store.list::<SpendCounter>(Doc::SpendCounters)? {
            hot.ledger.counters.insert(owner, Counter::from_stored(c));
        }
        drop(hot);
        Ok(g)
    }

    /// The spend writer's hook: counters changed since the last batch, as JSON.
    pub fn counter_source(&self) -> CounterSource {
        let hot = self.hot.clone();
        Arc::new(move || {
            let dirty = hot.lock().ledger.take_dirty();
            dirty
                .into_iter()
                .filter_map(|(k, c)| serde_json::to_vec(&c).ok().map(|v| (k, v)))
                .collect()
        })
    }

    /// An owner's spend state now (rolled to the current period).
    pub fn spend_of(&self, owner: &str, budget_duration: &Option<String>) -> SpendCounter {
        let mut hot = self.hot.lock();
        let c = hot.ledger.counter(owner);
        c.roll(period_of(budget_duration), Utc::now());
        c.stored()
    }

    /// Restarts an owner's budget period (after its `budget_duration` changed).
    pub fn restart_period(&self, owner: &str) {
        let mut hot = self.hot.lock();
        if let Some(c) = hot.ledger.counters.get_mut(owner) {
            c.reset_at = None;
            c.dirty = true;
        }
    }

    /// Forgets an owner's counter (its record was deleted).
    pub fn forget(&self, owner: &str) {
        let mut hot = self.hot.lock();
        hot.ledger.counters.remove(owner);
        hot.windows.remove(owner);
    }

    /// Moves a key's counters to a new hash (regenerate keeps spend).
    pub fn rename_key(&self, old: &str, new: &str) {
        let mut hot = self.hot.lock();
        let prefix_old = format!("key_model:{old}:");
        let moved: Vec<String> = hot
            .ledger
            .counters
            .keys()
            .filter(|k| *k == &key_owner(old) || k.starts_with(&prefix_old))
            .cloned()
            .collect();
        for k in moved {
            if let Some(mut c) = hot.ledger.counters.remove(&k) {
                c.dirty = true;
                let nk = if k == key_owner(old) {
                    key_owner(new)
                } else {
                    format!("key_model:{new}:{}", &k[prefix_old.len()..])
                };
                hot.ledger.counters.insert(nk, c);
            }
        }
        if let Some(n) = hot.in_flight.remove(&key_owner(old)) {
            hot.in_flight.insert(key_owner(new), n);
        }
    }

    pub fn authenticate(&self, secret: Option<&str>) -> Result<Caller, AuthError> {
        let secret = secret.filter(|s| !s.is_empty()).ok_or(AuthError::Missing)?;
        if let Some(mk) = &self.master_key {
            if bool::from(mk.as_bytes().ct_eq(secret.as_bytes())) {
                return Ok(Caller {
                    is_master: true,
                    ..Default::default()
                });
            }
        }
        let hash = hash_secret(secret);
        let idx = self.index.read();
        let Some(key) = idx.keys.get(&hash) else {
            if self.master_key.is_none() {
                // No master key configured: the gateway is open, like LiteLLM without one.
                return Ok(Caller {
                    is_master: true,
                    ..Default::default()
                });
            }
            return Err(AuthError::Invalid(redact(secret)));
        };
        let now = Utc::now();
        if let Some(exp) = key.expires {
            if exp <= now {
                return Err(AuthError::Expired {
                    expires: exp.to_rfc3339(),
                    now: now.to_rfc3339(),
                });
            }
        }
        if key.blocked {
            return Err(AuthError::Blocked);
        }
        if let Some(t) = key.team_id.as_ref().and_then(|t| idx.teams.get(t)) {
            if t.blocked {
                return Err(AuthError::TeamBlocked(t.team_id.clone()));
            }
        }
        let is_proxy_admin = key
            .user_id
            .as_ref()
            .and_then(|u| idx.users.get(u))
            .is_some_and(|u| u.user_role.as_deref() == Some("proxy_admin"));
        Ok(Caller {
            is_master: false,
            token_hash: Some(hash),
            key_alias: key.key_alias.clone(),
            user_id: key.user_id.clone(),
            team_id: key.team_id.clone(),
            metadata: key.metadata.clone(),
            is_proxy_admin,
        })
    }

    fn check_model(idx: &Index, key: &KeyRecord, model: &str) -> Result<(), LimitError> {
        let team = key.team_id.as_ref().and_then(|t| idx.teams.get(t));
        let team_models: &[String] = team.map(|t| t.models.as_slice()).unwrap_or(&[]);
        let key_models: Vec<String> = key
            .models
            .iter()
            .flat_map(|m| {
                if m == "all-team-models" {
                    team_models.to_vec()
                } else {
                    vec![m.clone()]
                }
            })
            .collect();
        let expanded_to_nothing = key_models.is_empty() && !key.models.is_empty();
        if expanded_to_nothing || !list_allows(&key_models, model) {
            return Err(LimitError::KeyModel {
                model: model.into(),
                models: key.models.clone(),
            });
        }
        if let Some(t) = team {
            if !list_allows(&t.models, model) {
                return Err(LimitError::TeamModel {
                    model: model.into(),
                    models: t.models.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether the caller's key/team allows this model group (for `/models` listings).
    pub fn can_use_model(&self, caller: &Caller, model: &str) -> bool {
        let Some(hash) = &caller.token_hash else {
            return true;
        };
        let idx = self.index.read();
        match idx.keys.get(hash) {
            Some(k) => Self::check_model(&idx, k, model).is_ok(),
            None => false,
        }
    }

    pub fn admit(&self, caller: &Caller, req: &AdmitRequest<'_>) -> Result<Admission, LimitError> {
        // Room for the usual key, user and team entries.
        let mut budgets: Vec<BudgetCheck> = Vec::with_capacity(4);
        // (scope, rpm, tpm)
        let mut rates: Vec<(String, Option<u64>, Option<u64>)> = Vec::with_capacity(4);
        let mut parallel: Option<(String, u64)> = None;
        let mut soft = None;
        let mut key_limits = None;
        {
            let idx = self.index.read();
            if let Some(hash) = &caller.token_hash {
                // A key deleted since authentication no longer admits anything.
                let key = idx.keys.get(hash).cloned().ok_or(LimitError::KeyGone)?;
                if !route_allowed(&key.allowed_routes, req.route) {
                    return Err(LimitError::Route(req.route.into()));
                }
                Self::check_model(&idx, &key, req.model)?;
                let ko = key_owner(hash);
                let shown = key
                    .key_alias
                    .clone()
                    .or_else(|| key.key_name.clone())
                    .unwrap_or_else(|| hash.clone());
                budgets.push((
                    ko.clone(),
                    BudgetScope::Key,
                    shown.clone(),
                    key.max_budget,
                    period_of(&key.budget_duration),
                ));
                if let Some(s) = key.soft_budget {
                    soft = Some((ko.clone(), s));
                }
                if let Some(mb) = key.model_max_budget.get(req.model) {
                    budgets.push((
                        key_model_owner(hash, req.model),
                        BudgetScope::KeyModel,
                        format!("{shown} model={}", req.model),
                        Some(mb.budget_limit),
                        period_of(&mb.time_period),
                    ));
                }
                rates.push((ko.clone(), key.rpm_limit, key.tpm_limit));
                key_limits = Some((ko.clone(), key.max_budget, key.rpm_limit, key.tpm_limit));
                let (mr, mt) = (
                    key.model_rpm_limit.get(req.model).copied(),
                    key.model_tpm_limit.get(req.model).copied(),
                );
                if mr.is_some() || mt.is_some() {
                    rates.push((key_model_owner(hash, req.model), mr, mt));
                }
                if let Some(n) = key.max_parallel_requests {
                    parallel = Some((ko, n));
                }
                if let Some(uid) = &key.user_id {
                    let user = idx.users.get(uid);
                    // A team key is held to the team's budget, not its user's (LiteLLM).
                    let max = if key.team_id.is_none() {
                        user.and_then(|u| u.max_budget)
                    } else {
                        None
                    };
                    budgets.push((
                        user_owner(uid),
                        BudgetScope::User,
                        uid.clone(),
                        max,
                        user.and_then(|u| period_of(&u.budget_duration)),
                    ));
                    if let Some(u) = user {
                        if u.rpm_limit.is_some() || u.tpm_limit.is_some() {
                            rates.push((user_owner(uid), u.rpm_limit, u.tpm_limit));
                        }
                    }
                }
                if let Some(t) = key.team_id.as_ref().and_then(|t| idx.teams.get(t)) {
                    budgets.push((
                        team_owner(&t.team_id),
                        BudgetScope::Team,
                        t.team_id.clone(),
                        t.max_budget,
                        period_of(&t.budget_duration),
                    ));
                    if t.rpm_limit.is_some() || t.tpm_limit.is_some() {
                        rates.push((team_owner(&t.team_id), t.rpm_limit, t.tpm_limit));
                    }
                }
            }
            if let Some(e) = req.end_user.and_then(|e| idx.end_users.get(e)) {
                if e.blocked {
                    return Err(LimitError::EndUserBlocked(e.user_id.clone()));
                }
                budgets.push((
                    end_user_owner(&e.user_id),
                    BudgetScope::EndUser,
                    e.user_id.clone(),
                    e.max_budget,
                    period_of(&e.budget_duration),
                ));
                if e.rpm_limit.is_some() || e.tpm_limit.is_some() {
                    rates.push((end_user_owner(&e.user_id), e.rpm_limit, e.tpm_limit));
                }
            }
        }
        if budgets.is_empty() && rates.is_empty() {
            return Ok(Admission::default());
        }
        let now = Utc::now();
        let at = Instant::now();
        let mut hot = self.hot.lock();
        if let Some((k, limit)) = &parallel {
            if hot.in_flight.get(k).copied().unwrap_or(0) >= *limit {
                return Err(LimitError::Parallel { limit: *limit });
            }
        }
        for (owner, scope, id, max, period) in &budgets {
            let c = hot.ledger.counter(owner);
            c.roll(*period, now);
            if let Some(max) = max {
                if c.spend + c.reserved >= *max {
                    return Err(LimitError::Budget {
                        scope: *scope,
                        id: id.clone(),
                        spend: c.spend,
                        max: *max,
                    });
                }
            }
        }
        // The key's own window usage, for its rate-limit headers.
        let mut key_usage = (0, 0);
        for (scope, rpm, tpm) in &rates {
            let w = hot.windows.entry_ref(scope.as_str()).or_default();
            let (r, t) = w.usage(at);
            if key_limits.as_ref().is_some_and(|k| &k.0 == scope) {
                key_usage = (r, t);
            }
            for (what, limit, current) in [("rpm", rpm, r), ("tpm", tpm, t)] {
                if let Some(limit) = limit {
                    if current >= *limit {
                        return Err(LimitError::Rate {
                            scope: scope.split(':').next().unwrap_or("key").to_owned(),
                            what,
                            limit: *limit,
                            current,
                            retry_after: w.retry_after(at),
                        });
                    }
                }
            }
        }
        // Everything passed: reserve.
        for (owner, ..) in &budgets {
            hot.ledger.counter(owner).reserved += req.est_cost.max(0.0);
        }
        for (scope, ..) in &rates {
            hot.windows
                .entry_ref(scope.as_str())
                .or_default()
                .add(at, 1, req.est_tokens as i64);
        }
        if let Some((k, _)) = &parallel {
            *hot.in_flight.entry_ref(k.as_str()).or_default() += 1;
        }
        let mut headers = Vec::with_capacity(6);
        if let Some((ko, max, rpm, tpm)) = key_limits {
            let spend = hot.ledger.counter(&ko).spend;
            headers.push((KEY_SPEND, float_header(spend, None)));
            if let Some(m) = max {
                headers.push((KEY_MAX_BUDGET, float_header(m, None)));
            }
            let (r, t) = key_usage;
            if let Some(l) = rpm {
                headers.push((LIMIT_REQUESTS, HeaderValue::from(l)));
                headers.push((
                    REMAINING_REQUESTS,
                    HeaderValue::from(l.saturating_sub(r + 1)),
                ));
            }
            if let Some(l) = tpm {
                headers.push((LIMIT_TOKENS, HeaderValue::from(l)));
                headers.push((
                    REMAINING_TOKENS,
                    HeaderValue::from(l.saturating_sub(t + req.est_tokens)),
                ));
            }
        }
        drop(hot);
        Ok(Admission {
            held: Some(Held {
                hot: self.hot.clone(),
                owners: budgets.into_iter().map(|b| b.0).collect(),
                est_cost: req.est_cost.max(0.0),
                scopes: rates.into_iter().map(|r| r.0).collect(),
                est_tokens: req.est_tokens,
                parallel_key: parallel.map(|p| p.0),
                soft,
            }),
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_allow_wildcards_and_empty_means_all() {
        assert!(list_allows(&[], "gpt"));
        assert!(list_allows(&["openai/*".into()], "openai/gpt-4o"));
        assert!(!list_allows(&["claude".into()], "gpt"));
        assert!(route_allowed(
            &["/chat/completions".into()],
            "/v1/chat/completions"
        ));
        assert!(!route_allowed(&["/embeddings".into()], "/chat/completions"));
    }

    #[test]
    fn owner_names_keep_their_stored_form() {
        // Budget counters are stored under these names: they must not change.
        assert_eq!(key_owner("ab12"), "key:ab12");
        assert_eq!(user_owner("u"), "user:u");
        assert_eq!(team_owner("t"), "team:t");
        assert_eq!(end_user_owner("e"), "end_user:e");
        assert_eq!(key_model_owner("ab12", "gpt-4o"), "key_model:ab12:gpt-4o");
    }

    #[test]
    fn float_headers_match_rusts_float_formatting() {
        let text = |v: f64, d: Option<usize>| float_header(v, d).to_str().unwrap().to_owned();
        assert_eq!(text(0.0, None), "0");
        assert_eq!(text(0.5, None), "0.5");
        assert_eq!(text(1.5e-5, None), "0.000015");
        assert_eq!(text(12.3456, Some(3)), "12.346");
        assert_eq!(text(0.0, Some(3)), "0.000");
        assert_eq!(text(7.0, Some(0)), "7");
        // An exact tie rounds away from zero (Rust's formatter rounds it to even).
        assert_eq!(text(0.0625, Some(3)), "0.063");
        assert_eq!(text(1234.5678, Some(2)), "1234.57");
        assert_eq!(text(0.004, Some(3)), "0.004");
        assert_eq!(text(99.9996, Some(3)), "100.000");
        // Longer than the stack buffer: the same text by the allocating path.
        assert_eq!(text(1e300, None), 1e300.to_string());
        assert_eq!(text(-2.0e40, Some(2)), format!("{:.2}", -2.0e40));
    }
}
