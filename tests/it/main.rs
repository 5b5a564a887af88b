//! Integration tests: the real server on a random port against mock upstreams.

mod models_admin;
mod proxy;
mod spend;
mod spend_csv;
mod spend_reports;
mod support;
