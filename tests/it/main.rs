//! Integration tests: the real server on a random port against mock upstreams.

mod budgets;
mod compat;
mod errors;
mod fallbacks;
mod http1;
mod keys;
mod limits;
mod models_admin;
mod providers;
mod proxy;
mod retries;
mod routing;
mod spend;
mod spend_csv;
mod spend_reports;
mod startup;
mod streaming;
mod support;
mod teams_users;
mod tls;
