//! A request's admission: the budget reservation, rate-window entries and parallel slot
//! it holds until it settles (charge) or drops (release uncharged).

use std::sync::Arc;

use chrono::Utc;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::budget::{Ledger, OwnerMap};
use super::ratelimit::Window;

#[derive(Debug, Default)]
pub(super) struct Hot {
    pub ledger: Ledger,
    pub windows: OwnerMap<Window>,
    pub in_flight: OwnerMap<u64>,
}

/// A reservation held for the duration of one request; settle it with the real cost.
/// Dropping it unsettled releases the reservation without charging.
#[derive(Debug, Default)]
pub struct Admission {
    pub(super) held: Option<Held>,
    pub(super) headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

#[derive(Debug)]
pub(super) struct Held {
    pub hot: Arc<Mutex<Hot>>,
    pub owners: Vec<String>,
    pub est_cost: f64,
    pub scopes: Vec<String>,
    pub est_tokens: u64,
    pub parallel_key: Option<String>,
    /// `(key owner, soft budget)` to record a soft-budget crossing.
    pub soft: Option<(String, f64)>,
}

impl Held {
    fn finish(self, charge: Option<(f64, u64)>) {
        let now = Utc::now();
        let at = Instant::now();
        let mut hot = self.hot.lock();
        for o in &self.owners {
            let c = hot.ledger.counter(o);
            c.reserved = (c.reserved - self.est_cost).max(0.0);
            if let Some((cost, _)) = charge {
                if cost > 0.0 {
                    c.spend += cost;
                    c.dirty = true;
                }
            }
        }
        if let (Some((owner, soft)), Some(_)) = (&self.soft, charge) {
            let c = hot.ledger.counter(owner);
            if c.spend >= *soft && c.soft_crossed_at.is_none() {
                c.soft_crossed_at = Some(now);
                c.dirty = true;
                tracing::info!(owner = %owner, spend = c.spend, soft_budget = soft, "soft budget crossed");
            }
        }
        let real = charge.map(|(_, t)| t).unwrap_or(0) as i64;
        let delta = real - self.est_tokens as i64;
        for s in &self.scopes {
            hot.windows
                .entry_ref(s.as_str())
                .or_default()
                .add(at, 0, delta);
        }
        if let Some(k) = &self.parallel_key {
            if let Some(n) = hot.in_flight.get_mut(k) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

impl Admission {
    /// Charges the real cost and tokens; returns nothing to wait for.
    pub fn settle(mut self, cost: f64, tokens: u64) {
        if let Some(h) = self.held.take() {
            h.finish(Some((cost.max(0.0), tokens)));
        }
    }

    /// LiteLLM's rate-limit and budget response headers.
    pub fn headers(&self) -> &[(http::HeaderName, http::HeaderValue)] {
        &self.headers
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(h) = self.held.take() {
            h.finish(None);
        }
    }
}
