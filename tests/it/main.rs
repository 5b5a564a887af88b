//! Integration tests: the real server on a random port against mock upstreams.

mod models_admin;
mod proxy;
mod support;
