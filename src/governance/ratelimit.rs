//! Sliding one-minute windows of requests and tokens per scope (key, user, team,
//! key+model, end user).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

pub const WINDOW: Duration = Duration::from_secs(60);

/// Events in the last minute: `(when, requests, tokens)`; tokens may be a correction.
#[derive(Debug, Default)]
pub struct Window {
    events: VecDeque<(Instant, u32, i64)>,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.events.front() {
            if now.duration_since(*at) >= WINDOW {
                self.events.pop_front();
            } else {
                break;
            }
        }
    }

    /// `(requests, tokens)` in the window ending now.
    pub fn usage(&mut self, now: Instant) -> (u64, u64) {
        self.prune(now);
        let (r, t) = self
            .events
            .iter()
            .fold((0u64, 0i64), |(r, t), e| (r + u64::from(e.1), t + e.2));
        (r, t.max(0) as u64)
    }

    pub fn add(&mut self, now: Instant, requests: u32, tokens: i64) {
        self.events.push_back((now, requests, tokens));
    }

    /// Time until the oldest event leaves the window.
    pub fn retry_after(&self, now: Instant) -> Duration {
        self.events
            .front()
            .map(|(at, _, _)| WINDOW.saturating_sub(now.duration_since(*at)))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1))
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
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
}
