//! The background spend writer: the hot path hands rows over a channel and never waits;
//! this task commits them in batches (one redb transaction per interval) together with
//! their daily aggregates and the current budget counters, and drains on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::log::{DailyAggregate, SpendRow};
use crate::store::Store;

/// Most rows committed in one transaction.
const MAX_BATCH: usize = 2_000;

/// How often raw rows older than the retention period are deleted (aggregates are kept).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Supplies the budget counters changed since the last call, to commit with the rows.
pub type CounterSource = Arc<dyn Fn() -> Vec<(String, Vec<u8>)> + Send + Sync>;

enum Msg {
    Row(Box<SpendRow>),
    Flush(oneshot::Sender<()>),
    /// Commit everything and stop (shutdown).
    Close,
}

/// Cheap to clone; sending never blocks.
#[derive(Clone)]
pub struct SpendWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

impl SpendWriter {
    /// Starts the writer task. It ends after every `SpendWriter` clone is dropped and
    /// everything sent has been committed.
    pub fn start(
        store: Store,
        interval: Duration,
        retention: Option<Duration>,
        counters: CounterSource,
    ) -> (SpendWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(run(store, rx, interval, retention, counters));
        (SpendWriter { tx }, handle)
    }

    /// Queues a row. Never waits.
    pub fn record(&self, row: SpendRow) {
        if self.tx.send(Msg::Row(Box::new(row))).is_err() {
            error!("spend writer has stopped; a spend row was dropped");
        }
    }

    /// Commits everything queued and stops the writer task; rows recorded after this
    /// are logged as dropped.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    interval: Duration,
    retention: Option<Duration>,
    counters: CounterSource,
) {
    let mut rows: Vec<SpendRow> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut last_commit = tokio::time::Instant::now();
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        let mut closed = tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Row(r)) => { rows.push(*r); false }
                Some(Msg::Flush(w)) => { waiters.push(w); false }
                Some(Msg::Close) | None => true,
            },
            _ = tokio::time::sleep_until(last_commit + interval) => false,
        };
        // Take whatever else is already queued without waiting.
        while rows.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Row(r)) => rows.push(*r),
                Ok(Msg::Flush(w)) => waiters.push(w),
                Ok(Msg::Close) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let due = closed
            || !waiters.is_empty()
            || rows.len() >= MAX_BATCH
            || last_commit.elapsed() >= interval;
        if due {
            commit(&store, &mut rows, &counters).await;
            last_commit = tokio::time::Instant::now();
        }
        // Retention: prune at the first pass after start, then at most once a minute,
        // before answering flush waiters so a flush also observes the pruning.
        if let Some(ret) = retention {
            if last_prune.is_none_or(|t| t.elapsed() > PRUNE_EVERY) {
                last_prune = Some(std::time::Instant::now());
                prune(&store, ret).await;
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if closed {
            return;
        }
    }
}

async fn commit(store: &Store, rows: &mut Vec<SpendRow>, counters: &CounterSource) {
    let counters = counters();
    if rows.is_empty() && counters.is_empty() {
        return;
    }
    let batch = std::mem::take(rows);
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<usize, crate::store::Error> {
        let mut encoded = Vec::with_capacity(batch.len());
        let mut daily: HashMap<String, DailyAggregate> = HashMap::new();
        for r in &batch {
            encoded.push(serde_json::to_vec(r)?);
            let agg = DailyAggregate::from_row(r);
            for k in r.aggregate_keys() {
                daily.entry(k).or_default().add(&agg);
            }
        }
        let daily: Vec<(String, Vec<u8>)> = daily
            .into_iter()
            .map(|(k, v)| Ok((k, serde_json::to_vec(&v)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let merge = |old: Option<&[u8]>, delta: &[u8]| -> crate::store::Result<Vec<u8>> {
            let mut sum: DailyAggregate = match old {
                Some(o) => serde_json::from_slice(o)?,
                None => DailyAggregate::default(),
            };
            sum.add(&serde_json::from_slice(delta)?);
            Ok(serde_json::to_vec(&sum)?)
        };
        store.commit_spend(&encoded, &daily, &merge, &counters)?;
        Ok(batch.len())
    })
    .await;
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => error!(error = %e, "spend batch commit failed"),
        Err(e) => error!(error = %e, "spend batch task failed"),
    }
}

async fn prune(store: &Store, retention: Duration) {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let store = store.clone();
    let r = tokio::task::spawn_blocking(move || {
        store.prune_spend_rows(&|bytes| {
            serde_json::from_slice::<SpendRow>(bytes)
                .map(|r| r.start_time < cutoff)
                .unwrap_or(false)
        })
    })
    .await;
    if let Ok(Err(e)) = r {
        warn!(error = %e, "spend log retention pruning failed");
    }
}
