//! Numbered, idempotent schema steps run at open; the version lives in `meta-1`.

use redb::{Database, ReadableTable};
use tracing::info;

use super::tables::*;
use super::{blocks, Error, Result};

/// The schema version this binary writes.
pub const CURRENT: u32 = 2;

pub(crate) fn read_version(meta: &impl ReadableTable<&'static str, &'static str>) -> Result<u32> {
    Ok(meta
        .get("schema_version")?
        .and_then(|v| v.value().parse().ok())
        .unwrap_or(0))
}

pub(crate) fn run(db: &Database) -> Result<()> {
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        let found = read_version(&meta)?;
        if found > CURRENT {
            return Err(Error::TooNew {
                found,
                supported: CURRENT,
            });
        }
        if found < 1 {
            // Step 1: create every table so readers never meet a missing one.
            tx.open_table(KEYS)?;
            tx.open_table(KEY_ALIASES)?;
            tx.open_table(USERS)?;
            tx.open_table(TEAMS)?;
            tx.open_table(TEAM_MEMBERS)?;
            tx.open_table(END_USERS)?;
            tx.open_table(SPEND_COUNTERS)?;
            tx.open_table(SPEND_LOGS)?;
            tx.open_table(SPEND_DAILY)?;
            tx.open_table(MODELS)?;
            info!(
                from = found,
                to = CURRENT,
                "store migration: created tables"
            );
        }
        if found < 2 {
            // Step 2: the spend log moves from one entry per row to blocks of rows.
            let moved = pack_spend_rows(&tx)?;
            tx.delete_table(SPEND_LOGS)?;
            if found >= 1 {
                info!(
                    from = found,
                    to = 2,
                    rows = moved,
                    "store migration: spend rows packed into blocks"
                );
            }
        }
        meta.insert("schema_version", CURRENT.to_string().as_str())?;
    }
    tx.commit()?;
    Ok(())
}

/// Copies schema 1's per-row spend log into blocks, keeping every sequence number.
fn pack_spend_rows(tx: &redb::WriteTransaction) -> Result<u64> {
    let legacy = tx.open_table(SPEND_LOGS)?;
    let mut packed = tx.open_table(SPEND_BLOCKS)?;
    let mut block = Vec::new();
    let (mut start, mut count, mut moved) = (0u64, 0u64, 0u64);
    for item in legacy.iter()? {
        let (k, v) = item?;
        let seq = k.value();
        // A block holds consecutive sequences only; pruning leaves none missing, but a
        // gap must not shift the rows after it.
        if count > 0 && (count as usize == blocks::BLOCK_ROWS || seq != start + count) {
            packed.insert(start, block.as_slice())?;
            block.clear();
            count = 0;
        }
        if count == 0 {
            start = seq;
        }
        blocks::push(&mut block, v.value())?;
        count += 1;
        moved += 1;
    }
    if count > 0 {
        packed.insert(start, block.as_slice())?;
    }
    Ok(moved)
}
