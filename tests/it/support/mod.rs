//! Test harness: `spawn_app` starts the real server on a random port with an in-memory
//! (or on-disk, for restart tests) store, and `TestApp` gives typed helpers.
#![allow(dead_code, unused_imports)]

pub mod upstream;

use std::path::Path;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use switchyard::app::{self, Running};
use switchyard::config::Config;
use switchyard::store::Store;

pub use upstream::{MockResponse, MockUpstream};

pub const MASTER_KEY: &str = "sk-test-master-key";

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub running: Option<Running>,
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error.message` of an OpenAI-shaped error.
    pub fn error_message(&self) -> &str {
        self.body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

/// Starts the gateway with `yaml` (master key `MASTER_KEY` is added when the YAML sets none).
pub async fn spawn_app(yaml: &str) -> TestApp {
    spawn_with_store(yaml, Store::memory().expect("memory store")).await
}

/// Starts the gateway on a file store in `dir` (for restart tests).
pub async fn spawn_app_in(yaml: &str, dir: &Path) -> TestApp {
    spawn_with_store(
        yaml,
        Store::open(&dir.join("switchyard.redb")).expect("open store"),
    )
    .await
}

async fn spawn_with_store(yaml: &str, store: Store) -> TestApp {
    let yaml = if yaml.contains("master_key") {
        yaml.to_owned()
    } else {
        format!("{yaml}\ngeneral_settings:\n  master_key: {MASTER_KEY}\n")
    };
    let config = Config::from_yaml("test.yaml", &yaml).expect("test config is valid");
    let prices = app::load_prices(&config, None).expect("prices");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = app::start(config, store, prices, listener)
        .await
        .expect("start app");
    TestApp {
        url: format!("http://{}", running.addr),
        client: reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("client"),
        running: Some(running),
    }
}

/// A mock OpenAI upstream and the gateway with one group `gpt` (→ `openai/gpt-4o`) on it.
pub async fn spawn_with_openai_gpt() -> (MockUpstream, TestApp) {
    let up = MockUpstream::openai().await;
    let base = format!("{}/v1", up.url());
    let app = spawn_app(&config_for(&[("gpt", "openai/gpt-4o", &base)])).await;
    (up, app)
}

/// A config with one deployment per `(model_name, litellm model, api_base)`.
pub fn config_for(entries: &[(&str, &str, &str)]) -> String {
    let mut y = String::from("model_list:\n");
    for (name, model, base) in entries {
        y += &format!("  - model_name: {name}\n    litellm_params:\n      model: {model}\n      api_base: {base}\n      api_key: sk-upstream-{name}\n");
    }
    y
}

impl TestApp {
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    pub fn state(&self) -> &app::AppState {
        &self.running.as_ref().expect("running").state
    }

    /// Waits until every queued spend row is committed.
    pub async fn flush_spend(&self) {
        self.state().spend.flush().await;
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut r = self.client.post(format!("{}{path}", self.url)).json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        self.send(r).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        let mut r = self.client.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        self.send(r).await
    }

    /// `POST /v1/chat/completions` with one user message.
    pub async fn chat(&self, key: &str, model: &str) -> Reply {
        self.post(
            "/v1/chat/completions",
            Some(key),
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
    }

    pub async fn chat_body(&self, key: &str, body: Value) -> Reply {
        self.post("/v1/chat/completions", Some(key), &body).await
    }
}

/// One `model_list` entry: `openai/<id>` at `{base}/v1` with `model_info.id: <id>` and
/// extra `litellm_params` lines (`key: value`, values written as YAML).
pub fn deployment(name: &str, id: &str, base: &str, params: &[(&str, &str)]) -> String {
    let mut s = format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/{id}\n      api_base: {base}/v1\n      api_key: sk-up-{id}\n"
    );
    for (k, v) in params {
        s += &format!("      {k}: {v}\n");
    }
    s += &format!("    model_info:\n      id: {id}\n");
    s
}

/// A config from `deployment(..)` entries and `router_settings` lines (`key: value`).
pub fn config(deployments: &[String], router: &[(&str, &str)]) -> String {
    let mut y = format!("model_list:\n{}", deployments.concat());
    if !router.is_empty() {
        y += "router_settings:\n";
        for (k, v) in router {
            y += &format!("  {k}: {v}\n");
        }
    }
    y
}

/// A chat body with one user message.
pub fn chat_json(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Asserts an OpenAI-shaped error body: `error.message/type/param/code` all present.
pub fn assert_error_shape(r: &Reply) {
    let e = r
        .body
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object: {}", r.text));
    for k in ["message", "type", "param", "code"] {
        assert!(e.get(k).is_some(), "error.{k} missing: {}", r.text);
    }
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
}

impl TestApp {
    /// Sends `n` chat requests to `model`, 20 at a time.
    pub async fn chat_many(&self, model: &str, n: usize) -> Vec<Reply> {
        let mut out = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let k = left.min(20);
            let batch = (0..k).map(|_| self.chat(MASTER_KEY, model));
            out.extend(futures_util::future::join_all(batch).await);
            left -= k;
        }
        out
    }
}
