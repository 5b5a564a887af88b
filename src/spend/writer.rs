//! The background spend writer: the hot path packs rows into a shared buffer (encoded
//! for storage, their daily aggregates summed) and never waits; this task takes the
//! buffer in batches (one redb transaction per interval) together with the current
//! budget counters, and drains on shutdown. Pushing wakes nobody until a batch is full:
//! a wake-up per request would cost the hot path more than the push itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{error, warn};

use super::commit_thread::CommitThread;
use super::log::{DailyAggregate, SpendRow};
use crate::store::{PackedRows, Store};

/// Most rows committed in one transaction. The end of a transaction (redb writing its
/// pages, the disk sync's writeback) cannot give the core back part way, so under load
/// its size is how long a request sharing the core can wait: at 2,000 rows those pieces
/// reached 0.7–4 ms. 1,000 rows a transaction: lower c64 p99 in 5 of 6 interleaved pairs
/// and no fewer requests a second; 500 was no better (bench/RESULTS.md, seventh session).
const MAX_BATCH: usize = 1_000;

/// Rows waiting beyond which commits stop yielding the CPU between blocks (see
/// `yield_cpu`): past it the log catches up at the requests' expense, which bounds the
/// buffer's memory (~2 s of rows at 30k requests/s).
const BACKLOG_WITHOUT_YIELDING: usize = 64_000;

/// How often raw rows older than the retention period are deleted (aggregates are kept).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Which raw rows the writer keeps. Daily aggregates and budget counters are always
/// committed: reports and budgets must not depend on the request log being on.
#[derive(Debug, Clone, Copy)]
pub struct RowPolicy {
    /// False with LiteLLM's `disable_spend_logs`: rows only feed the aggregates.
    pub keep_rows: bool,
    /// Raw rows older than this are deleted.
    pub retention: Option<Duration>,
}

impl Default for RowPolicy {
    fn default() -> Self {
        RowPolicy {
            keep_rows: true,
            retention: None,
        }
    }
}

/// Supplies the budget counters changed since the last call, to commit with the rows.
pub type CounterSource = Arc<dyn Fn() -> Vec<(String, Vec<u8>)> + Send + Sync>;

enum Msg {
    Flush(oneshot::Sender<()>),
    /// Commit everything and stop (shutdown).
    Close,
}

/// Emptied chunks kept for reuse: half the backlog commits still yield at, so a saturated
/// core recycles warm memory instead of faulting in fresh pages.
const SPARE_CHUNKS: usize = BACKLOG_WITHOUT_YIELDING / MAX_BATCH / 2 + 1;

/// Bytes a stored row usually takes, to size a chunk's buffer.
const ROW_BYTES: usize = 384;

/// Largest row buffer a spare chunk keeps: twice what a chunk is sized for.
const MAX_SPARE_BYTES: usize = 2 * MAX_BATCH * (ROW_BYTES + 4);

/// A recording thread's encoding buffer is dropped after a row larger than this (one
/// that stores a long prompt), so it does not hold that memory for good.
const MAX_KEPT_ENCODING_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Where `record` encodes a row, reused by each thread that records.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows recorded and not yet taken by the writer, in the order they were recorded.
struct Pending {
    chunks: Mutex<Chunks>,
    /// `RowPolicy::keep_rows`: whether rows are encoded for storage at all.
    keep_rows: bool,
    /// Set once the writer has stopped: later rows are dropped (and logged).
    stopped: AtomicBool,
    full: Notify,
}

/// Up to `MAX_BATCH` rows in the form the writer commits: encoded into blocks and summed
/// into daily aggregates as they are recorded. The writer's transaction then only
/// inserts finished blocks, and each row is freed by the request that made it, on its
/// own thread, not by the writer in one piece per batch.
#[derive(Default)]
struct Chunk {
    /// Empty when rows are not kept.
    rows: PackedRows,
    /// Rows recorded, kept or not.
    recorded: usize,
    /// Hashed with foldhash (seeded per process; the quality variant, as tags come
    /// from clients): std's SipHash cost more than the rest of the lookup.
    daily: HashMap<String, DailyAggregate, foldhash::quality::RandomState>,
}

impl Chunk {
    /// An empty chunk with room for `MAX_BATCH` rows.
    fn with_room() -> Chunk {
        Chunk {
            rows: PackedRows::with_capacity(MAX_BATCH, ROW_BYTES),
            ..Chunk::default()
        }
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.recorded = 0;
        self.daily.clear();
    }
}

/// The buffer as chunks of at most `MAX_BATCH` rows, each sized for that up front, so
/// recording never copies the backlog into a larger allocation (at saturation that copy
/// and its page faults cost more than the rows themselves), and each chunk is exactly
/// one transaction for the writer.
#[derive(Default)]
struct Chunks {
    /// Oldest first; only the last one is still being filled.
    filled: Vec<Chunk>,
    spare: Vec<Chunk>,
    /// Reused to build aggregate keys.
    key: String,
}

impl Chunks {
    /// Adds `row`, with its stored form when rows are kept; true when it filled its chunk.
    fn push(&mut self, row: &SpendRow, encoded: Option<&[u8]>) -> bool {
        let chunk = match self.filled.last_mut() {
            Some(c) if c.recorded < MAX_BATCH => c,
            _ => {
                let fresh = self.spare.pop().unwrap_or_else(Chunk::with_room);
                self.filled.push(fresh);
                let last = self.filled.len() - 1;
                &mut self.filled[last]
            }
        };
        if let Some(bytes) = encoded {
            if let Err(e) = chunk.rows.push_with(|out| out.extend_from_slice(bytes)) {
                error!(error = %e, request_id = %row.request_id, "spend row not stored");
            }
        }
        let agg = DailyAggregate::from_row(row);
        let daily = &mut chunk.daily;
        row.for_each_aggregate_key(&mut self.key, |k| match daily.get_mut(k) {
            Some(sum) => sum.add(&agg),
            None => {
                daily.insert(k.to_owned(), agg.clone());
            }
        });
        chunk.recorded += 1;
        chunk.recorded == MAX_BATCH
    }

    /// Rows recorded and not yet taken.
    fn rows(&self) -> usize {
        self.filled.iter().map(|c| c.recorded).sum()
    }

    fn take(&mut self) -> (Vec<Chunk>, usize) {
        let rows = self.rows();
        (std::mem::take(&mut self.filled), rows)
    }

    /// The chunks that are full, leaving the one still being filled: when a chunk fills,
    /// the next few rows have usually started another, and committing that one too would
    /// double the commits (each with its own sync) under steady load.
    fn take_full(&mut self) -> (Vec<Chunk>, usize) {
        let filling = match self.filled.last() {
            Some(c) if c.recorded < MAX_BATCH => self.filled.pop(),
            _ => None,
        };
        let (full, rows) = self.take();
        self.filled.extend(filling);
        (full, rows)
    }

    fn give_back(&mut self, mut chunk: Chunk) {
        // A chunk that grew for large rows (stored prompts) is freed, not kept: spares
        // would otherwise hold that memory for good.
        if self.spare.len() < SPARE_CHUNKS && chunk.rows.capacity_bytes() <= MAX_SPARE_BYTES {
            chunk.clear();
            self.spare.push(chunk);
        }
    }
}

/// Cheap to clone; recording never blocks on I/O (one short lock, no wake-up).
#[derive(Clone)]
pub struct SpendWriter {
    tx: mpsc::UnboundedSender<Msg>,
    pending: Arc<Pending>,
}

impl SpendWriter {
    /// Starts the writer task. It ends after every `SpendWriter` clone is dropped and
    /// everything sent has been committed.
    pub fn start(
        store: Store,
        policy: RowPolicy,
        interval: Duration,
        counters: CounterSource,
    ) -> (SpendWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending {
            chunks: Mutex::default(),
            keep_rows: policy.keep_rows,
            stopped: AtomicBool::new(false),
            full: Notify::new(),
        });
        let handle = tokio::spawn(run(store, rx, pending.clone(), interval, policy, counters));
        (SpendWriter { tx, pending }, handle)
    }

    /// Queues a row. Never waits.
    pub fn record(&self, row: SpendRow) {
        if self.pending.stopped.load(Ordering::Acquire) {
            error!("spend writer has stopped; a spend row was dropped");
            return;
        }
        let keep_rows = self.pending.keep_rows;
        // Encoded before taking the lock: other threads recording wait for a copy, not
        // for the encoding.
        let filled_a_chunk = ENCODED.with_borrow_mut(|buf| {
            buf.clear();
            if keep_rows {
                row.encode_into(buf);
            }
            let filled = self
                .pending
                .chunks
                .lock()
                .push(&row, keep_rows.then_some(buf.as_slice()));
            if buf.capacity() > MAX_KEPT_ENCODING_BUFFER {
                *buf = Vec::new();
            }
            filled
        });
        if filled_a_chunk {
            self.pending.full.notify_one();
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
    pending: Arc<Pending>,
    interval: Duration,
    policy: RowPolicy,
    counters: CounterSource,
) {
    let thread = CommitThread::start();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut last_commit = tokio::time::Instant::now();
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        let mut closed = tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Flush(w)) => { waiters.push(w); false }
                Some(Msg::Close) | None => true,
            },
            _ = pending.full.notified() => false,
            _ = tokio::time::sleep_until(last_commit + interval) => false,
        };
        // Take whatever else is already asked without waiting.
        loop {
            match rx.try_recv() {
                Ok(Msg::Flush(w)) => waiters.push(w),
                Ok(Msg::Close) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if closed {
            // Rows recorded from now on are refused; those before are committed below.
            pending.stopped.store(true, Ordering::Release);
        }
        let full = pending.chunks.lock().rows() >= MAX_BATCH;
        let everything = closed || !waiters.is_empty() || last_commit.elapsed() >= interval;
        if everything || full {
            // Every row recorded before a flush or close was asked is in the buffer now.
            let (chunks, rows) = if everything {
                pending.chunks.lock().take()
            } else {
                pending.chunks.lock().take_full()
            };
            // Yield between blocks unless shutting down or far behind.
            let pace = !closed && rows <= BACKLOG_WITHOUT_YIELDING;
            // One transaction a chunk, oldest first; the counters go with the first. An
            // empty buffer still commits once, for counters changed without a row.
            if chunks.is_empty() {
                commit(&store, Chunk::default(), &counters, thread.as_ref(), pace).await;
            }
            for chunk in chunks {
                if let Some(emptied) = commit(&store, chunk, &counters, thread.as_ref(), pace).await
                {
                    pending.chunks.lock().give_back(emptied);
                }
            }
            last_commit = tokio::time::Instant::now();
        }
        // Retention: prune at the first pass after start, then at most once a minute,
        // before answering flush waiters so a flush also observes the pruning.
        if let Some(ret) = policy.retention {
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

/// Commits `chunk` with the counters changed since the last commit and hands it back for
/// reuse; `pace` yields the CPU every `PACE_ROWS` rows.
async fn commit(
    store: &Store,
    mut chunk: Chunk,
    counters: &CounterSource,
    thread: Option<&CommitThread>,
    pace: bool,
) -> Option<Chunk> {
    let counters = counters();
    if chunk.recorded == 0 && counters.is_empty() {
        return Some(chunk);
    }
    let store = store.clone();
    let work = move || -> (Chunk, Result<(), crate::store::Error>) {
        let result = commit_chunk(&store, &mut chunk, &counters, pace);
        (chunk, result)
    };
    let result = match thread {
        Some(w) => w.run(work).await,
        None => tokio::task::spawn_blocking(work).await.ok(),
    };
    match result {
        Some((emptied, Ok(()))) => Some(emptied),
        Some((emptied, Err(e))) => {
            error!(error = %e, "spend batch commit failed");
            Some(emptied)
        }
        None => {
            error!("spend batch task failed");
            None
        }
    }
}

/// Lets a runnable request thread have the core. A batch is milliseconds of CPU; the
/// kernel would otherwise let it run a whole scheduler tick while requests wait (the c64
/// tail in bench/RESULTS.md). It comes every `PACE_ROWS` rows (one redb block, tens of
/// microseconds of work), and not at all once the backlog is past
/// `BACKLOG_WITHOUT_YIELDING`.
fn yield_cpu() {
    std::thread::yield_now();
}

/// One redb transaction: the chunk's rows (none when they are not kept), its daily
/// aggregates and the budget counters.
fn commit_chunk(
    store: &Store,
    chunk: &mut Chunk,
    counters: &[(String, Vec<u8>)],
    pace: bool,
) -> Result<(), crate::store::Error> {
    let daily: Vec<(String, Vec<u8>)> = chunk
        .daily
        .drain()
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
    let mut maybe_yield = || {
        if pace {
            yield_cpu();
        }
    };
    store.commit_spend(&chunk.rows, &daily, &merge, counters, &mut maybe_yield)?;
    Ok(())
}

async fn prune(store: &Store, retention: Duration) {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let store = store.clone();
    let r = tokio::task::spawn_blocking(move || {
        store.prune_spend_rows(&|bytes| {
            SpendRow::decode(bytes)
                .map(|r| r.start_time < cutoff)
                .unwrap_or(false)
        })
    })
    .await;
    if let Ok(Err(e)) = r {
        warn!(error = %e, "spend log retention pruning failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> SpendRow<'static> {
        SpendRow {
            request_id: format!("r{i}").into(),
            start_time: "2026-11-24T10:00:00.000Z".into(),
            status: "success".into(),
            spend: 0.5,
            ..SpendRow::default()
        }
    }

    /// A writer on a fresh file store that commits only when asked (hour-long interval).
    fn start_writer() -> (
        tempfile::TempDir,
        Store,
        SpendWriter,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let (writer, handle) = SpendWriter::start(
            store.clone(),
            RowPolicy::default(),
            Duration::from_secs(3600),
            Arc::new(Vec::new),
        );
        (dir, store, writer, handle)
    }

    /// The one daily aggregate every `row(i)` adds to.
    fn day_total(chunk: &Chunk) -> (u64, f64) {
        assert_eq!(chunk.daily.len(), 1, "one key, one day");
        let sum = chunk.daily.values().next().unwrap();
        (sum.requests, sum.spend)
    }

    #[test]
    fn chunks_hold_max_batch_rows_packed_with_their_aggregates_and_are_reused() {
        let mut chunks = Chunks::default();
        let filling: Vec<usize> = (0..MAX_BATCH + 1)
            .filter(|&i| chunks.push(&row(i), Some(&row(i).encode())))
            .collect();
        assert_eq!(
            filling,
            vec![MAX_BATCH - 1],
            "only the row that fills a chunk says so"
        );
        let (taken, rows) = chunks.take();
        assert_eq!((taken.len(), rows), (2, MAX_BATCH + 1));
        let packed: Vec<usize> = taken.iter().map(|c| c.rows.len()).collect();
        assert_eq!(packed, vec![MAX_BATCH, 1]);
        assert_eq!(
            day_total(&taken[0]),
            (MAX_BATCH as u64, 0.5 * MAX_BATCH as f64)
        );
        assert_eq!(day_total(&taken[1]), (1, 0.5));
        for chunk in taken {
            chunks.give_back(chunk);
        }
        assert_eq!(chunks.spare.len(), 2);
        chunks.push(&row(0), Some(&row(0).encode()));
        assert_eq!(chunks.spare.len(), 1, "a spare chunk is reused");
        let (again, rows) = chunks.take();
        assert_eq!((rows, again[0].rows.len()), (1, 1), "and comes back empty");
        assert_eq!(day_total(&again[0]), (1, 0.5));
    }

    #[test]
    fn a_chunk_grown_by_a_large_row_is_not_kept_as_a_spare() {
        let mut chunks = Chunks::default();
        let mut big = row(0);
        big.messages = Some(serde_json::Value::String("x".repeat(2 * MAX_SPARE_BYTES)));
        chunks.push(&big, Some(&big.encode()));
        chunks.push(&row(1), Some(&row(1).encode()));
        let (taken, _) = chunks.take();
        for chunk in taken {
            chunks.give_back(chunk);
        }
        assert!(chunks.spare.is_empty());
        chunks.push(&row(2), Some(&row(2).encode()));
        let (taken, _) = chunks.take();
        for chunk in taken {
            chunks.give_back(chunk);
        }
        assert_eq!(chunks.spare.len(), 1, "a normal chunk is kept");
    }

    #[test]
    fn a_full_chunk_is_taken_without_the_one_still_filling() {
        let mut chunks = Chunks::default();
        for i in 0..MAX_BATCH + 5 {
            chunks.push(&row(i), None);
        }
        let (taken, rows) = chunks.take_full();
        assert_eq!((taken.len(), rows), (1, MAX_BATCH));
        assert_eq!(chunks.rows(), 5, "the filling chunk stays");
        assert_eq!(chunks.take_full().1, 0, "nothing full is left");
        for i in 0..MAX_BATCH - 5 {
            chunks.push(&row(i), None);
        }
        let (taken, rows) = chunks.take_full();
        assert_eq!((taken.len(), rows), (1, MAX_BATCH), "it fills up and goes");
        assert_eq!(chunks.take().1, 0);
    }

    #[test]
    fn rows_without_a_stored_form_are_still_summed() {
        let mut chunks = Chunks::default();
        chunks.push(&row(0), None);
        chunks.push(&row(1), None);
        let (taken, rows) = chunks.take();
        assert_eq!((rows, taken[0].recorded), (2, 2));
        assert!(taken[0].rows.is_empty());
        assert_eq!(day_total(&taken[0]), (2, 1.0));
    }

    #[tokio::test]
    async fn a_backlog_past_the_yielding_limit_is_committed_whole_and_in_order() {
        let (_dir, store, writer, handle) = start_writer();
        // Recorded before the writer task first runs: one take past the limit.
        let n = BACKLOG_WITHOUT_YIELDING + 3;
        for i in 0..n {
            writer.record(row(i));
        }
        writer.flush().await;
        let rows = store.spend_rows_before(u64::MAX, n + 10).unwrap();
        assert_eq!(rows.len(), n);
        let newest = SpendRow::decode(&rows[0].1).unwrap();
        let oldest = SpendRow::decode(&rows[n - 1].1).unwrap();
        assert_eq!(
            (&*oldest.request_id, &*newest.request_id),
            ("r0", format!("r{}", n - 1).as_str())
        );
        writer.close();
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn rows_are_committed_in_recorded_order_in_bounded_batches_and_none_after_close() {
        let (_dir, store, writer, handle) = start_writer();
        let n = 2 * MAX_BATCH + 7;
        for i in 0..n {
            writer.record(row(i));
        }
        writer.flush().await;
        let all = |store: &Store| {
            let mut rows = store.spend_rows_before(u64::MAX, n + 10).unwrap();
            rows.reverse();
            rows.into_iter()
                .map(|(_, b)| SpendRow::decode(&b).unwrap().request_id.into_owned())
                .collect::<Vec<String>>()
        };
        let ids = all(&store);
        let want: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        assert_eq!(ids.len(), n, "every row is committed by flush");
        assert_eq!(ids, want, "in the order recorded");
        writer.close();
        handle.await.unwrap();
        writer.record(row(n));
        writer.flush().await;
        assert_eq!(
            all(&store).len(),
            n,
            "a row recorded after close is dropped"
        );
    }
}
