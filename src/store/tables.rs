//! Every redb table, with its key and value. Values are JSON documents so records can
//! gain fields without a migration; names carry a version for the ones that cannot.

use redb::TableDefinition;

/// Key: setting name. Value: UTF-8 text (e.g. `schema_version`).
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta-1");

/// Key: `sha256` hex of a virtual key (LiteLLM's `token`). Value: JSON `KeyRecord`.
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys-1");

/// Key: key alias. Value: token hash. Keeps aliases unique.
pub const KEY_ALIASES: TableDefinition<&str, &str> = TableDefinition::new("key_aliases-1");

/// Key: user id. Value: JSON `UserRecord`.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users-1");

/// Key: team id. Value: JSON `TeamRecord`.
pub const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams-1");

/// Key: `team_id \x1f user_id`. Value: role (`admin` / `user`).
pub const TEAM_MEMBERS: TableDefinition<&str, &str> = TableDefinition::new("team_members-1");

/// Key: end-user id (the `user` field of requests). Value: JSON `EndUserRecord`.
pub const END_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("end_users-1");

/// Key: budget owner (`key:<hash>`, `user:<id>`, `team:<id>`, `end_user:<id>`,
/// `key_model:<hash>:<model>`). Value: JSON `SpendCounter` (spend, period start).
pub const SPEND_COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("spend_counters-1");

/// Schema 1's spend log, one row per entry (key: sequence number; value: an encoded
/// `SpendRow`). Schema 2 moves its rows into `SPEND_BLOCKS` and deletes it.
pub const SPEND_LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("spend_logs-1");

/// The spend log. Key: sequence number of the block's first row; rows in a block have
/// consecutive sequence numbers, increasing in commit order (what an exporter streams
/// by). Value: a block of encoded `SpendRow`s (`blocks.rs`).
pub const SPEND_BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("spend_blocks-1");

/// Key: `YYYY-MM-DD \x1f api_key \x1f model \x1f team \x1f user \x1f end_user \x1f tag`.
/// Value: JSON `DailyAggregate`.
pub const SPEND_DAILY: TableDefinition<&str, &[u8]> = TableDefinition::new("spend_daily-1");

/// Key: deployment id. Value: JSON runtime deployment with its API key encrypted.
pub const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models-1");

/// The document tables that hold one JSON record per string key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    Keys,
    Users,
    Teams,
    EndUsers,
    SpendCounters,
    Models,
}

impl Doc {
    pub(crate) fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Doc::Keys => KEYS,
            Doc::Users => USERS,
            Doc::Teams => TEAMS,
            Doc::EndUsers => END_USERS,
            Doc::SpendCounters => SPEND_COUNTERS,
            Doc::Models => MODELS,
        }
    }
}
