//! Spend: prices, per-request cost, spend logs and reports.

pub mod cost;
pub mod prices;
