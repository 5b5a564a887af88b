//! Busy polling: the serving thread stays awake for a short window after traffic instead
//! of sleeping in `epoll_wait`.
//!
//! A request through the gateway crosses cores four times (client → gateway → upstream →
//! gateway → client). When the gateway's thread has gone to sleep, each crossing that
//! reaches it first has to wake its core, which in a VM means an interrupt to a halted
//! vCPU: on the benchmark box that added ~0.15 ms to every request at concurrency 1
//! (bench/RESULTS.md, seventh session), more than all of the gateway's own work. With
//! the thread kept awake for a window after each request starts and ends, the answer
//! from the upstream and the client's next request find it polling.
//!
//! How: one task that yields in a loop. While it is runnable, Tokio polls the I/O driver
//! without blocking (`epoll_wait` with a zero timeout) between rounds of tasks instead
//! of parking. Each round also yields the thread to the OS, so other threads on the core
//! (the spend writer) run as before. When no request started or ended for the window,
//! the task waits on a `Notify` and the thread parks as usual, so an idle gateway uses no
//! CPU. `general_settings.busy_poll_us: 0` turns it off (CPU-quota-limited containers
//! where every spent microsecond counts more than latency).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Shared by the request path (which marks activity) and the polling task.
#[derive(Debug, Default)]
pub struct BusyPoll {
    /// A request started or ended since the polling task last looked.
    active: AtomicBool,
    /// The polling task is waiting for activity.
    parked: AtomicBool,
    wake: Notify,
}

impl BusyPoll {
    /// Marks activity: a request started or ended. Two relaxed loads and a store; a
    /// touch racing with the task going to sleep can be missed, which costs that one
    /// request its polling window and nothing else.
    #[inline]
    pub fn touch(&self) {
        self.active.store(true, Ordering::Relaxed);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Polls while requests keep coming, parks after `window` without one. Runs until
    /// the task is aborted; does nothing when `window` is zero.
    pub async fn run(&self, window: Duration) {
        if window.is_zero() {
            return;
        }
        let mut last_active = Instant::now();
        loop {
            tokio::task::yield_now().await;
            // Let any other runnable thread on this core have it (a busy loop would
            // otherwise hold its full time slice against them).
            std::thread::yield_now();
            let now = Instant::now();
            if self.active.swap(false, Ordering::Relaxed) {
                last_active = now;
                continue;
            }
            if now.duration_since(last_active) < window {
                continue;
            }
            self.parked.store(true, Ordering::SeqCst);
            // A touch between the check above and `parked` being set would be lost.
            if self.active.swap(false, Ordering::SeqCst) {
                self.parked.store(false, Ordering::Relaxed);
                last_active = now;
                continue;
            }
            // `notify_one` before this await leaves a permit, so a wake is never lost. A
            // permit left by a touch that raced with an earlier park ends this wait early:
            // then this is one more window of polling, and `parked` is cleared either way.
            self.wake.notified().await;
            self.parked.store(false, Ordering::SeqCst);
            last_active = Instant::now();
        }
    }

    /// True while the polling task is asleep (tests).
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A polling task with `window`, on the test's runtime.
    fn start(window: Duration) -> (Arc<BusyPoll>, tokio::task::JoinHandle<()>) {
        let poll = Arc::new(BusyPoll::default());
        let task = tokio::spawn({
            let poll = poll.clone();
            async move { poll.run(window).await }
        });
        (poll, task)
    }

    async fn wait_until(what: impl Fn() -> bool) -> bool {
        for _ in 0..2000 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    }

    #[tokio::test(flavor = "current_thread")]
    async fn parks_when_idle_and_wakes_on_activity() {
        let (poll, task) = start(Duration::from_millis(200));
        // Let the task run a few rounds, so "polls at first" is about the task, not about
        // a task that has not started yet.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(!poll.is_parked(), "polls at first");
        assert!(
            wait_until(|| poll.is_parked()).await,
            "parks after the window"
        );
        poll.touch();
        assert!(!poll.is_parked(), "a touch wakes it");
        assert!(wait_until(|| poll.is_parked()).await, "and it parks again");
        task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn activity_keeps_it_polling() {
        let (poll, task) = start(Duration::from_millis(200));
        // Touched every 10 ms for a second: five windows long, never idle for one.
        for _ in 0..100 {
            poll.touch();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(!poll.is_parked());
        }
        // Left alone, it parks.
        assert!(wait_until(|| poll.is_parked()).await);
        task.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_zero_window_never_polls() {
        let poll = BusyPoll::default();
        tokio::time::timeout(Duration::from_secs(1), poll.run(Duration::ZERO))
            .await
            .expect("returns at once");
    }
}
