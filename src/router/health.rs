//! Live per-deployment state: requests in flight, latency (peak-EWMA), usage in the
//! current minute, recent failures and cooldown.

use http::HeaderMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::Deployment;
use crate::spend::prices::ModelPrice;

/// How fast the latency average forgets: weight of a sample taken `tau` after the last.
const EWMA_TAU: Duration = Duration::from_secs(10);

/// A deployment with its live counters. Shared by every request that uses it.
#[derive(Debug)]
pub struct DeploymentState {
    pub dep: Deployment,
    /// Largest prompt it accepts (model_info or price table), for pre-call checks.
    pub context_window: Option<u64>,
    /// The deployment's price (table + overrides), for cost and cost-based routing.
    pub price: Option<ModelPrice>,
    /// `api_base` without credentials or query, as logs and headers show it.
    pub public_api_base: String,
    /// The response headers every answer from it starts from, built by the proxy on
    /// first use (cloning a ready map costs less than inserting each header again).
    pub response_headers: std::sync::OnceLock<HeaderMap>,
    /// URL and fixed headers of its upstream requests, built once.
    pub prepared: crate::providers::Prepared,
    in_flight: AtomicU64,
    inner: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    latency: Ewma,
    ttft: Ewma,
    minute: u64,
    minute_requests: u64,
    minute_tokens: u64,
    failures: VecDeque<Instant>,
    total_failures: u64,
    total_successes: u64,
    cooldown_until: Option<Instant>,
    last_error: Option<String>,
}

/// Peak-sensitive EWMA: a slower sample replaces the average at once, faster samples
/// pull it down gradually. Spikes are seen immediately and forgotten slowly.
#[derive(Debug, Default, Clone, Copy)]
struct Ewma {
    value: f64,
    at: Option<Instant>,
}

impl Ewma {
    fn observe(&mut self, sample: f64, now: Instant) {
        match self.at {
            None => self.value = sample,
            Some(at) if sample > self.value => {
                let _ = at;
                self.value = sample;
            }
            Some(at) => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                let w = (-dt / EWMA_TAU.as_secs_f64()).exp();
                // Keep at least a small step so a quiet deployment still recovers.
                let w = w.min(0.9);
                self.value = self.value * w + sample * (1.0 - w);
            }
        }
        self.at = Some(now);
    }
}

/// What `/health` and the UI show about a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    pub model_id: String,
    pub model_name: String,
    pub in_flight: u64,
    pub latency_ms_per_token: f64,
    pub ttft_ms: f64,
    pub failures_last_minute: usize,
    pub total_failures: u64,
    pub total_successes: u64,
    pub cooling_down: bool,
    pub cooldown_remaining_ms: u64,
    pub last_error: Option<String>,
}

fn minute_of(now: Instant, epoch: Instant) -> u64 {
    now.saturating_duration_since(epoch).as_secs() / 60
}

/// Process-wide reference point for minute buckets.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl DeploymentState {
    pub fn new(dep: Deployment, price: Option<ModelPrice>) -> Arc<Self> {
        let context_window = dep
            .context_window_override()
            .or(price.as_ref().and_then(|p| p.max_input_tokens));
        let public_api_base = dep.public_api_base();
        let prepared = crate::providers::Prepared::for_deployment(&dep);
        Arc::new(DeploymentState {
            prepared,
            dep,
            context_window,
            price,
            public_api_base,
            response_headers: std::sync::OnceLock::new(),
            in_flight: AtomicU64::new(0),
            inner: Mutex::new(Live::default()),
        })
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a request started; the guard marks it finished when dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Counts one request against this minute's usage, unless `rpm_limit` is already
    /// reached. Check and count happen under one lock, so concurrent requests can never
    /// take more than the limit. The router calls this when it picks the deployment.
    pub fn count_request(&self, now: Instant, rpm_limit: Option<u64>) -> bool {
        let mut l = self.inner.lock();
        let m = minute_of(now, epoch());
        if l.minute != m {
            l.minute = m;
            l.minute_requests = 0;
            l.minute_tokens = 0;
        }
        if rpm_limit.is_some_and(|limit| l.minute_requests >= limit) {
            return false;
        }
        l.minute_requests += 1;
        true
    }

    pub fn is_cooling_down(&self, now: Instant) -> bool {
        self.inner.lock().cooldown_until.is_some_and(|t| t > now)
    }

    pub fn cooldown_remaining(&self, now: Instant) -> Option<Duration> {
        self.inner
            .lock()
            .cooldown_until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// (requests, tokens) used in the current minute.
    pub fn minute_usage(&self, now: Instant) -> (u64, u64) {
        let l = self.inner.lock();
        if l.minute == minute_of(now, epoch()) {
            (l.minute_requests, l.minute_tokens)
        } else {
            (0, 0)
        }
    }

    /// Latency score for routing: ms per output token (or ttft for streams).
    pub fn latency_score(&self, stream: bool) -> f64 {
        let l = self.inner.lock();
        if stream && l.ttft.at.is_some() {
            l.ttft.value
        } else {
            l.latency.value
        }
    }

    pub fn record_success(
        &self,
        total: Duration,
        ttft: Option<Duration>,
        tokens: u64,
        output_tokens: u64,
    ) {
        let now = Instant::now();
        let mut l = self.inner.lock();
        l.total_successes += 1;
        let per_token = total.as_secs_f64() * 1000.0 / output_tokens.max(1) as f64;
        l.latency.observe(per_token, now);
        if let Some(t) = ttft {
            l.ttft.observe(t.as_secs_f64() * 1000.0, now);
        }
        if l.minute == minute_of(now, epoch()) {
            l.minute_tokens += tokens;
        }
    }

    /// Records a failure; returns true when the deployment entered cooldown.
    pub fn record_failure(
        &self,
        message: &str,
        immediate: bool,
        allowed_fails: u32,
        cooldown: Duration,
    ) -> bool {
        let now = Instant::now();
        let mut l = self.inner.lock();
        l.total_failures += 1;
        l.last_error = Some(message.chars().take(300).collect());
        l.failures.push_back(now);
        while l
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(60))
        {
            l.failures.pop_front();
        }
        // A slow failure is still a latency sample: routing should avoid it too.
        if immediate || l.failures.len() as u32 > allowed_fails {
            l.cooldown_until = Some(now + cooldown);
            l.failures.clear();
            return true;
        }
        false
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let now = Instant::now();
        let l = self.inner.lock();
        let remaining = l.cooldown_until.and_then(|t| t.checked_duration_since(now));
        HealthSnapshot {
            model_id: self.dep.id.clone(),
            model_name: self.dep.model_name.clone(),
            in_flight: self.in_flight(),
            latency_ms_per_token: l.latency.value,
            ttft_ms: l.ttft.value,
            failures_last_minute: l
                .failures
                .iter()
                .filter(|t| now.saturating_duration_since(**t) <= Duration::from_secs(60))
                .count(),
            total_failures: l.total_failures,
            total_successes: l.total_successes,
            cooling_down: remaining.is_some_and(|d| !d.is_zero()),
            cooldown_remaining_ms: remaining.map(|d| d.as_millis() as u64).unwrap_or(0),
            last_error: l.last_error.clone(),
        }
    }
}

/// Decrements the in-flight count when the request ends, however it ends.
#[derive(Debug)]
pub struct InFlight(Arc<DeploymentState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_at_once_and_decays_slowly() {
        let mut e = Ewma::default();
        let t0 = Instant::now();
        e.observe(10.0, t0);
        e.observe(100.0, t0 + Duration::from_millis(10));
        assert_eq!(e.value, 100.0);
        e.observe(10.0, t0 + Duration::from_millis(20));
        assert!(
            e.value > 50.0,
            "one fast sample must not erase a spike: {}",
            e.value
        );
    }

    #[test]
    fn failures_beyond_allowed_fails_start_a_cooldown() {
        let s = DeploymentState::new(
            crate::deployment::test_deployment("a", "g", crate::providers::Wire::OpenAi),
            None,
        );
        let cd = Duration::from_secs(5);
        assert!(!s.record_failure("x", false, 1, cd));
        assert!(s.record_failure("x", false, 1, cd));
        assert!(s.is_cooling_down(Instant::now()));
        assert!(!s.is_cooling_down(Instant::now() + Duration::from_secs(6)));
    }

    #[test]
    fn in_flight_guard_counts_and_releases() {
        let s = DeploymentState::new(
            crate::deployment::test_deployment("a", "g", crate::providers::Wire::OpenAi),
            None,
        );
        let g1 = s.start();
        let g2 = s.start();
        assert_eq!(s.in_flight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(s.in_flight(), 0);
        let now = Instant::now();
        assert!(s.count_request(now, Some(2)));
        assert!(s.count_request(now, Some(2)));
        assert!(!s.count_request(now, Some(2)), "the limit is never passed");
        assert_eq!(s.minute_usage(now).0, 2);
    }
}
