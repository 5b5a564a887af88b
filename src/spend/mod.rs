//! Spend: prices, per-request cost, spend logs and reports.

mod commit_thread;
pub mod cost;
pub mod csv;
pub mod encoding;
pub mod log;
pub mod prices;
pub mod report;
pub mod writer;

pub use log::{rfc3339_millis, DailyAggregate, SpendRow};
pub use writer::{RowPolicy, SpendWriter};
