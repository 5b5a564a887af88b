//! Integration tests: the real server on a random port against mock upstreams.

mod proxy;
mod spend;
mod spend_csv;
mod spend_reports;
mod support;
