//! Numbered, idempotent schema steps run at open; the version lives in `meta-1`.

use redb::{Database, ReadableTable};
use tracing::info;

use super::tables::*;
use super::{Error, Result};

/// The schema version this binary writes.
pub const CURRENT: u32 = 1;

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
            info!(from = found, to = 1, "store migration: created tables");
        }
        meta.insert("schema_version", CURRENT.to_string().as_str())?;
    }
    tx.commit()?;
    Ok(())
}
