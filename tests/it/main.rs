//! Integration tests: the real server on a random port against mock upstreams.

mod errors;
mod fallbacks;
mod providers;
mod proxy;
mod retries;
mod routing;
mod startup;
mod streaming;
mod support;
