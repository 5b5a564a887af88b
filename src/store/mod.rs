//! The embedded store: one redb file. The only module that imports redb.
//!
//! Records are JSON documents keyed by string; spend rows are keyed by an increasing
//! sequence number so an exporter can stream them in commit order.

mod blocks;
mod migrations;
pub mod tables;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use blocks::PackedRows;
pub use tables::Doc;
use tables::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("database transaction failed: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("database table error: {0}")]
    Table(#[from] redb::TableError),
    #[error("database storage error: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("database commit failed: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    TooNew { found: u32, supported: u32 },
}

pub type Result<T> = std::result::Result<T, Error>;

/// redb's page cache. Its default (1 GiB) let RSS grow with the spend log; recent
/// pages are what the writer and reports touch, so a small cache is enough.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// One change in an atomic batch.
#[derive(Debug, Clone)]
pub enum Op {
    Put(Doc, String, Vec<u8>),
    Delete(Doc, String),
    PutAlias(String, String),
    DeleteAlias(String),
    PutMember {
        team: String,
        user: String,
        role: String,
    },
    DeleteMember {
        team: String,
        user: String,
    },
}

impl Op {
    pub fn put<T: Serialize>(doc: Doc, key: impl Into<String>, value: &T) -> Result<Op> {
        Ok(Op::Put(doc, key.into(), serde_json::to_vec(value)?))
    }
}

/// Rows between two calls of `commit_spend`'s `pace`: one block.
pub const PACE_ROWS: usize = blocks::BLOCK_ROWS;

/// Folds a daily aggregate increment into the stored value (`None` when absent); the
/// increments themselves come keyed in `SPEND_DAILY` form.
pub type MergeFn<'a> = &'a dyn Fn(Option<&[u8]>, &[u8]) -> Result<Vec<u8>>;

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    next_seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn member_key(team: &str, user: &str) -> String {
    format!("{team}\x1f{user}")
}

impl Store {
    /// Opens (or creates) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| Error::Open {
                path: path.display().to_string(),
                source,
            })?;
        Store::init(db)
    }

    /// A store in memory, for tests.
    pub fn memory() -> Result<Store> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| Error::Open {
                path: "(memory)".into(),
                source,
            })?;
        Store::init(db)
    }

    fn init(db: Database) -> Result<Store> {
        migrations::run(&db)?;
        let next = {
            let tx = db.begin_read()?;
            let t = tx.open_table(SPEND_BLOCKS)?;
            // Bound to a name so the borrow of `t` ends before `t` does.
            let next = match t.last()? {
                Some((k, v)) => k.value() + blocks::rows(v.value())?.len() as u64,
                None => 1,
            };
            next
        };
        Ok(Store {
            db: Arc::new(db),
            next_seq: Arc::new(AtomicU64::new(next)),
        })
    }

    pub fn schema_version(&self) -> Result<u32> {
        let tx = self.db.begin_read()?;
        migrations::read_version(&tx.open_table(META)?)
    }

    /// Cheap liveness check for readiness probes.
    pub fn ping(&self) -> Result<()> {
        let tx = self.db.begin_read()?;
        tx.open_table(META)?;
        Ok(())
    }

    // ---- documents --------------------------------------------------------------

    pub fn get<T: DeserializeOwned>(&self, doc: Doc, key: &str) -> Result<Option<T>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(doc.def())?;
        let v = t.get(key)?;
        Ok(match v {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Every record of a table, in key order.
    pub fn list<T: DeserializeOwned>(&self, doc: Doc) -> Result<Vec<(String, T)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(doc.def())?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    pub fn put<T: Serialize>(&self, doc: Doc, key: &str, value: &T) -> Result<()> {
        self.apply(vec![Op::put(doc, key, value)?])
    }

    /// Applies every op in one durable transaction.
    pub fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            for op in &ops {
                match op {
                    Op::Put(doc, k, v) => {
                        tx.open_table(doc.def())?.insert(k.as_str(), v.as_slice())?;
                    }
                    Op::Delete(doc, k) => {
                        tx.open_table(doc.def())?.remove(k.as_str())?;
                    }
                    Op::PutAlias(alias, hash) => {
                        tx.open_table(KEY_ALIASES)?
                            .insert(alias.as_str(), hash.as_str())?;
                    }
                    Op::DeleteAlias(alias) => {
                        tx.open_table(KEY_ALIASES)?.remove(alias.as_str())?;
                    }
                    Op::PutMember { team, user, role } => {
                        tx.open_table(TEAM_MEMBERS)?
                            .insert(member_key(team, user).as_str(), role.as_str())?;
                    }
                    Op::DeleteMember { team, user } => {
                        tx.open_table(TEAM_MEMBERS)?
                            .remove(member_key(team, user).as_str())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// `(team, user, role)` for every team membership.
    pub fn team_members(&self) -> Result<Vec<(String, String, String)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TEAM_MEMBERS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            if let Some((team, user)) = k.value().split_once('\x1f') {
                out.push((team.to_owned(), user.to_owned(), v.value().to_owned()));
            }
        }
        Ok(out)
    }

    // ---- spend ------------------------------------------------------------------

    /// Appends spend rows, folds their daily aggregates and writes spend counters, all
    /// in one transaction. Returns the sequence numbers given to the rows. `pace` is
    /// called every [`PACE_ROWS`] rows (the writer yields the CPU there).
    pub fn commit_spend(
        &self,
        rows: &PackedRows,
        daily: &[(String, Vec<u8>)],
        merge: MergeFn<'_>,
        counters: &[(String, Vec<u8>)],
        pace: &mut dyn FnMut(),
    ) -> Result<std::ops::Range<u64>> {
        let tx = self.db.begin_write()?;
        let start = self.next_seq.load(Ordering::SeqCst);
        {
            let mut logs = tx.open_table(SPEND_BLOCKS)?;
            for (n, block) in rows.blocks().enumerate() {
                logs.insert(start + (n * PACE_ROWS) as u64, block)?;
                if (n + 1) * PACE_ROWS <= rows.len() {
                    pace();
                }
            }
            let mut agg = tx.open_table(SPEND_DAILY)?;
            for (k, delta) in daily {
                let merged = {
                    let old = agg.get(k.as_str())?;
                    merge(old.as_ref().map(|v| v.value()), delta)?
                };
                agg.insert(k.as_str(), merged.as_slice())?;
            }
            let mut ctr = tx.open_table(SPEND_COUNTERS)?;
            for (k, v) in counters {
                ctr.insert(k.as_str(), v.as_slice())?;
            }
        }
        tx.commit()?;
        let end = start + rows.len() as u64;
        self.next_seq.store(end, Ordering::SeqCst);
        Ok(start..end)
    }

    /// Spend rows with sequence in `(after, ..]`, oldest first, at most `limit`.
    pub fn spend_rows_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SPEND_BLOCKS)?;
        // The block holding `after + 1` starts at or before it.
        let first = match t.range(..=after.saturating_add(1))?.next_back() {
            Some(item) => item?.0.value(),
            None => 0,
        };
        let mut out = Vec::new();
        for item in t.range(first..)? {
            let (k, v) = item?;
            let start = k.value();
            for (i, row) in blocks::rows(v.value())?.into_iter().enumerate() {
                let seq = start + i as u64;
                if out.len() >= limit {
                    return Ok(out);
                }
                if seq > after {
                    out.push((seq, row.to_vec()));
                }
            }
        }
        Ok(out)
    }

    /// Spend rows with sequence below `before`, newest first, at most `limit`.
    pub fn spend_rows_before(&self, before: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SPEND_BLOCKS)?;
        let mut out = Vec::new();
        for item in t.range(..before)?.rev() {
            let (k, v) = item?;
            let start = k.value();
            for (i, row) in blocks::rows(v.value())?.into_iter().enumerate().rev() {
                let seq = start + i as u64;
                if out.len() >= limit {
                    return Ok(out);
                }
                if seq < before {
                    out.push((seq, row.to_vec()));
                }
            }
        }
        Ok(out)
    }

    pub fn spend_row_count(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let mut n = 0;
        for item in tx.open_table(SPEND_BLOCKS)?.iter()? {
            n += blocks::rows(item?.1.value())?.len() as u64;
        }
        Ok(n)
    }

    /// Deletes the oldest rows while `expired` says so; stops at the first kept row.
    pub fn prune_spend_rows(&self, expired: &dyn Fn(&[u8]) -> bool) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let mut n = 0;
        {
            let mut t = tx.open_table(SPEND_BLOCKS)?;
            loop {
                let (start, kept) = match t.first()? {
                    Some((k, v)) => {
                        let rows = blocks::rows(v.value())?;
                        let gone = rows.iter().take_while(|r| expired(r)).count();
                        if gone == 0 {
                            break;
                        }
                        n += gone as u64;
                        let mut kept = Vec::new();
                        for row in &rows[gone..] {
                            blocks::push(&mut kept, row)?;
                        }
                        (
                            k.value(),
                            (!kept.is_empty()).then_some((k.value() + gone as u64, kept)),
                        )
                    }
                    None => break,
                };
                t.remove(start)?;
                if let Some((first_kept, block)) = kept {
                    // The rest of a block with the first kept row: rows keep their
                    // sequence numbers, the block is keyed by its new first row.
                    t.insert(first_kept, block.as_slice())?;
                    break;
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Daily aggregates whose key starts in `[from_day, to_day]` (inclusive, `YYYY-MM-DD`).
    pub fn daily_aggregates(&self, from_day: &str, to_day: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SPEND_DAILY)?;
        let upper = format!("{to_day}\x1f\u{10ffff}");
        let mut out = Vec::new();
        for item in t.range(from_day..upper.as_str())? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_batches_are_atomic() {
        let s = Store::memory().unwrap();
        s.put(Doc::Teams, "t1", &serde_json::json!({"a": 1}))
            .unwrap();
        let v: Option<serde_json::Value> = s.get(Doc::Teams, "t1").unwrap();
        assert_eq!(v, Some(serde_json::json!({"a": 1})));
        s.apply(vec![
            Op::Delete(Doc::Teams, "t1".into()),
            Op::PutMember {
                team: "t2".into(),
                user: "u".into(),
                role: "admin".into(),
            },
        ])
        .unwrap();
        assert!(s.list::<serde_json::Value>(Doc::Teams).unwrap().is_empty());
        assert_eq!(
            s.team_members().unwrap(),
            vec![("t2".into(), "u".into(), "admin".into())]
        );
    }

    #[test]
    fn committing_spend_rows_paces_every_pace_rows() {
        let s = Store::memory().unwrap();
        let rows = pack((0..2 * PACE_ROWS + 5).map(|i| vec![i as u8]));
        let mut paced = 0;
        let r = s
            .commit_spend(&rows, &[], &no_merge, &[], &mut || paced += 1)
            .unwrap();
        assert_eq!((r.end - r.start, paced), (rows.len() as u64, 2));
    }

    fn pack(rows: impl IntoIterator<Item = Vec<u8>>) -> PackedRows {
        let mut p = PackedRows::default();
        for r in rows {
            p.push_with(|b| b.extend_from_slice(&r)).unwrap();
        }
        p
    }

    fn no_merge(_: Option<&[u8]>, d: &[u8]) -> Result<Vec<u8>> {
        Ok(d.to_vec())
    }

    fn commit_rows(s: &Store, seqs: std::ops::Range<u64>) -> std::ops::Range<u64> {
        let rows = pack(seqs.map(|i| format!("row-{i}").into_bytes()));
        s.commit_spend(&rows, &[], &no_merge, &[], &mut || {})
            .unwrap()
    }

    fn seqs(rows: &[(u64, Vec<u8>)]) -> Vec<u64> {
        for (seq, row) in rows {
            assert_eq!(
                row,
                format!("row-{seq}").as_bytes(),
                "row {seq} has its own bytes"
            );
        }
        rows.iter().map(|r| r.0).collect()
    }

    #[test]
    fn spend_rows_are_read_across_blocks_and_commits_from_any_point() {
        let s = Store::memory().unwrap();
        // Full and partial blocks from three commits.
        assert_eq!(commit_rows(&s, 1..101), 1..101);
        assert_eq!(commit_rows(&s, 101..131), 101..131);
        assert_eq!(commit_rows(&s, 131..201), 131..201);
        assert_eq!(s.spend_row_count().unwrap(), 200);
        for after in [0, 1, 63, 64, 65, 100, 129, 130, 131, 199, 200, 500] {
            let got = seqs(&s.spend_rows_after(after, 70).unwrap());
            let want: Vec<u64> = (after + 1..=200).take(70).collect();
            assert_eq!(got, want, "after {after}");
        }
        for before in [1, 2, 64, 65, 101, 131, 132, 200, 201, u64::MAX] {
            let got = seqs(&s.spend_rows_before(before, 70).unwrap());
            let want: Vec<u64> = (1..before.min(201)).rev().take(70).collect();
            assert_eq!(got, want, "before {before}");
        }
        assert!(s.spend_rows_after(0, 0).unwrap().is_empty());
    }

    #[test]
    fn pruning_drops_whole_blocks_and_splits_the_one_with_the_first_kept_row() {
        let s = Store::memory().unwrap();
        commit_rows(&s, 1..201);
        let expired = |row: &[u8]| {
            let n: u64 = String::from_utf8_lossy(&row[4..]).parse().unwrap();
            n <= 100
        };
        assert_eq!(s.prune_spend_rows(&expired).unwrap(), 100);
        assert_eq!(s.spend_row_count().unwrap(), 100);
        assert_eq!(
            seqs(&s.spend_rows_after(0, 3).unwrap()),
            vec![101, 102, 103]
        );
        assert_eq!(seqs(&s.spend_rows_before(102, 5).unwrap()), vec![101]);
        assert_eq!(
            s.prune_spend_rows(&expired).unwrap(),
            0,
            "stops at a kept row"
        );
        assert_eq!(commit_rows(&s, 201..203), 201..203);
    }

    #[test]
    fn a_schema_1_spend_log_is_packed_into_blocks_with_its_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.insert("schema_version", "1").unwrap();
                let mut logs = tx.open_table(SPEND_LOGS).unwrap();
                // Rows 1..=4 were pruned; 150 is missing as a gap must not shift rows.
                for i in (5..=200).filter(|&i| i != 150) {
                    logs.insert(i, format!("row-{i}").as_bytes()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        let all = seqs(&s.spend_rows_after(0, 1000).unwrap());
        let want: Vec<u64> = (5..=200).filter(|&i| i != 150).collect();
        assert_eq!(all, want);
        assert_eq!(commit_rows(&s, 201..202), 201..202, "numbering goes on");
        let tx = s.db.begin_read().unwrap();
        assert!(tx.open_table(SPEND_LOGS).is_err(), "the old table is gone");
    }

    #[test]
    fn spend_rows_get_increasing_sequences_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let merge = |old: Option<&[u8]>, d: &[u8]| -> Result<Vec<u8>> {
            let a: u64 = old
                .map(|o| String::from_utf8_lossy(o).parse().unwrap())
                .unwrap_or(0);
            let b: u64 = String::from_utf8_lossy(d).parse().unwrap();
            Ok((a + b).to_string().into_bytes())
        };
        {
            let s = Store::open(&path).unwrap();
            let r = s
                .commit_spend(
                    &pack([b"a".to_vec(), b"b".to_vec()]),
                    &[("2026-01-01\x1fk".into(), b"2".to_vec())],
                    &merge,
                    &[],
                    &mut || {},
                )
                .unwrap();
            assert_eq!(r, 1..3);
        }
        let s = Store::open(&path).unwrap();
        let r = s
            .commit_spend(
                &pack([b"c".to_vec()]),
                &[("2026-01-01\x1fk".into(), b"3".to_vec())],
                &merge,
                &[],
                &mut || {},
            )
            .unwrap();
        assert_eq!(r, 3..4);
        let rows = s.spend_rows_after(1, 10).unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(s.spend_rows_before(3, 10).unwrap()[0].0, 2);
        let agg = s.daily_aggregates("2026-01-01", "2026-01-01").unwrap();
        assert_eq!(agg[0].1, b"5".to_vec());
        assert_eq!(s.prune_spend_rows(&|v| v == b"a").unwrap(), 1);
        assert_eq!(s.spend_row_count().unwrap(), 2);
        assert_eq!(s.schema_version().unwrap(), migrations::CURRENT);
    }
}
