//! Sliding one-minute windows of requests and tokens per scope (key, user, team,
//! key+model, end user).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

pub const WINDOW: Duration = Duration::from_secs(60);

/// Width of one bucket. Events in the same second share a bucket, so a window holds at
/// most ~61 buckets however busy the scope is, and reading it is O(1).
const BUCKET: Duration = Duration::from_secs(1);

/// Requests and tokens of the last minute, in one-second buckets with running totals.
/// A bucket leaves a minute after it opened, so events late in a bucket leave up to
/// one second early.
#[derive(Debug, Default)]
pub struct Window {
    /// `(bucket start, requests, tokens)`; tokens may include corrections (negative).
    buckets: VecDeque<(Instant, u64, i64)>,
    requests: u64,
    tokens: i64,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while let Some(&(at, r, t)) = self.buckets.front() {
            if now.saturating_duration_since(at) >= WINDOW {
                self.buckets.pop_front();
                self.requests -= r;
                self.tokens -= t;
            } else {
                break;
            }
        }
    }

    /// `(requests, tokens)` in the window ending now.
    pub fn usage(&mut self, now: Instant) -> (u64, u64) {
        self.prune(now);
        (self.requests, self.tokens.max(0) as u64)
    }

    pub fn add(&mut self, now: Instant, requests: u32, tokens: i64) {
        self.prune(now);
        self.requests += u64::from(requests);
        self.tokens += tokens;
        match self.buckets.back_mut() {
            Some((at, r, t)) if now.saturating_duration_since(*at) < BUCKET => {
                *r += u64::from(requests);
                *t += tokens;
            }
            _ => self.buckets.push_back((now, u64::from(requests), tokens)),
        }
    }

    /// Time until the oldest bucket leaves the window.
    pub fn retry_after(&self, now: Instant) -> Duration {
        self.buckets
            .front()
            .map(|(at, _, _)| WINDOW.saturating_sub(now.saturating_duration_since(*at)))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_leave_the_window_after_a_minute() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.add(t0, 1, 10);
        w.add(t0, 0, -4);
        assert_eq!(w.usage(t0), (1, 6));
        assert_eq!(w.usage(t0 + Duration::from_secs(61)), (0, 0));
        assert!(w.is_empty());
    }

    #[test]
    fn a_busy_window_stays_small_and_its_totals_follow_the_buckets() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for i in 0..100_000u64 {
            w.add(t0 + Duration::from_micros(i * 1_200), 1, 3);
        }
        // 100k events over 120 s: only the last ~61 one-second buckets remain.
        let end = t0 + Duration::from_micros(100_000 * 1_200);
        assert!(w.buckets.len() <= 61, "{}", w.buckets.len());
        let (r, t) = w.usage(end);
        assert!((49_000..=50_001).contains(&r), "{r}");
        assert_eq!(t, r * 3);
    }
}
