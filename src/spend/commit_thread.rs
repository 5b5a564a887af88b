//! The thread the spend writer's batch work runs on.
//!
//! A dedicated thread at normal priority, so the work is never starved and never waits
//! behind the blocking pool; the batch work itself gives the core back every few dozen
//! rows (`yield_now` between redb blocks), so a request thread sharing the core waits
//! tens of microseconds at a time, not a scheduler tick. An earlier design ran this
//! thread at `SCHED_IDLE` with a normal-priority fallback; on a saturated core the
//! fallback took the core in 4 ms slices (bench/RESULTS.md, fourth session).

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
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(w.run(move || i * 2).await.unwrap());
        }
        assert_eq!(got, vec![0, 2, 4, 6, 8]);
    }
}
