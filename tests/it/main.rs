//! Integration tests: the real server on a random port against mock upstreams.

mod budgets;
mod keys;
mod limits;
mod proxy;
mod support;
mod teams_users;
