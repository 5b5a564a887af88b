//! The thread the spend writer's batch work runs on.
//!
//! A dedicated thread, so the work never waits behind the blocking pool. It runs at nice
//! 10: when it shares a core with the request thread (the benchmark pins the gateway to
//! one), the kernel gives the request thread the core back sooner, yet the writer still
//! gets about a tenth of a saturated core, several times what it needs. The batch work
//! itself gives the core back every few dozen rows (`yield_now` between redb blocks), so
//! a request thread sharing the core waits tens of microseconds at a time, not a
//! scheduler tick. An earlier design ran this thread at `SCHED_IDLE` with a
//! normal-priority fallback; on a saturated core the fallback took the core in 4 ms
//! slices (bench/RESULTS.md, fourth session). Nice 10 against nice 0: more requests a
//! second in 13 of 17 interleaved pairs (bench/RESULTS.md, seventh session).

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Cheap handle; the thread ends when the last handle is dropped.
pub struct CommitThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl CommitThread {
    /// Starts the thread; `None` when no thread can be started (callers then use the
    /// blocking pool).
    pub fn start() -> Option<CommitThread> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("spend-commit".into())
            .spawn(move || {
                lower_priority();
                for job in queue {
                    job();
                }
            })
            .ok()?;
        Some(CommitThread { jobs })
    }

    /// Runs `work` on the thread; `None` if the thread has gone.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .ok()?;
        rx.await.ok()
    }
}

/// The nice value of the commit thread.
#[cfg(target_os = "linux")]
const COMMIT_THREAD_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority (on Linux `setpriority` with `PRIO_PROCESS` and
/// 0 applies to the calling thread only). Best effort: the work runs either way.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: an FFI call with plain integer arguments that changes only this thread's
    // nice value.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, COMMIT_THREAD_NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_commit_thread_in_order() {
        let w = CommitThread::start().unwrap();
        let name = w
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("spend-commit"));
        #[cfg(target_os = "linux")]
        {
            fn nice() -> libc::c_int {
                // SAFETY: reads the calling thread's nice value.
                unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
            }
            let there = w.run(nice).await.unwrap();
            assert!(
                there >= COMMIT_THREAD_NICE,
                "the commit thread runs at nice {COMMIT_THREAD_NICE} (or lower priority), got {there}"
            );
            if nice() < COMMIT_THREAD_NICE {
                assert!(nice() < there, "and only that thread is lowered");
            }
        }
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(w.run(move || i * 2).await.unwrap());
        }
        assert_eq!(got, vec![0, 2, 4, 6, 8]);
    }
}
