//! Spend: prices, per-request cost, spend logs and reports.

pub mod cost;
pub mod prices;
pub mod log;
pub mod writer;

pub use log::{DailyAggregate, SpendRow};
pub use writer::SpendWriter;
