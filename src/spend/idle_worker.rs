//! A thread that runs the spend writer's batch work at the lowest CPU priority.
//!
//! A batch commit is milliseconds of CPU in one piece. At normal priority the kernel lets
//! it run a whole scheduler tick (4 ms here) before the request-serving thread gets its
//! core back, which shows up as the requests' tail latency (bench/RESULTS.md). Under
//! Linux's `SCHED_IDLE` the commit yields the core the moment a request needs it. The
//! writer falls back to normal priority when its backlog grows, so a core saturated by
//! requests cannot starve the spend log.

use tokio::sync::oneshot;
use tracing::debug;

type Job = Box<dyn FnOnce() + Send>;

/// Cheap handle; the thread ends when the last handle is dropped.
pub struct IdleWorker {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl IdleWorker {
    /// Starts the thread; `None` when no thread can be started (callers then use the
    /// blocking pool).
    pub fn start() -> Option<IdleWorker> {
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
        Some(IdleWorker { jobs })
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

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's (pid 0) policy; `param` outlives the call.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            debug!(error = %std::io::Error::last_os_error(), "spend commits stay at normal priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_worker_thread_in_order_and_at_idle_priority() {
        let w = IdleWorker::start().unwrap();
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
        #[cfg(target_os = "linux")]
        {
            // SAFETY: reads the worker thread's own policy.
            let policy = w
                .run(|| unsafe { libc::sched_getscheduler(0) })
                .await
                .unwrap();
            assert_eq!(policy, libc::SCHED_IDLE);
        }
    }
}
