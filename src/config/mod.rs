//! LiteLLM's `config.yaml`, accepted unchanged: load, resolve `os.environ/VAR`,
//! validate, and turn into typed settings and deployments.
//!
//! The YAML is first read as a JSON value so every error can name its field path, and
//! unknown keys can be listed as ignored instead of failing.

mod error;
mod model_list;
mod settings;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

pub use error::ConfigError;
pub use model_list::parse_runtime_deployment;
pub use settings::{GeneralSettings, RouterSettings, RoutingStrategy};

use crate::deployment::Deployment;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: String,
    pub deployments: Vec<Deployment>,
    pub general: GeneralSettings,
    pub router: RouterSettings,
    /// Path of a LiteLLM-format JSON price file to load over the built-in table.
    pub prices_file: Option<String>,
    /// Upstream TLS checks: `litellm_settings.ssl_verify`, `SSL_CERT_FILE`, `SSL_VERIFY`.
    pub tls: crate::providers::TlsOptions,
    /// Field paths that were read but are not used by Switchyard.
    pub ignored: Vec<String>,
}

/// Looks up environment variables: `environment_variables:` from the file first,
/// then the process environment.
#[derive(Debug, Default, Clone)]
pub struct Env {
    overlay: HashMap<String, String>,
}

impl Env {
    pub fn get(&self, name: &str) -> Option<String> {
        self.overlay
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: "(file)".into(),
            problem: format!("cannot read: {e}"),
            fix: "pass an existing file with --config or SWITCHYARD_CONFIG".into(),
        })?;
        Config::from_yaml(&file, &text)
    }

    /// Parses YAML text; `file` is only used in error messages.
    pub fn from_yaml(file: &str, text: &str) -> Result<Config, ConfigError> {
        let root: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_norway::from_str(text).map_err(|e| ConfigError {
                file: file.into(),
                field: e
                    .location()
                    .map(|l| format!("line {}, column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "(yaml)".into()),
                problem: format!("invalid YAML: {e}"),
                fix: "check indentation and quoting".into(),
            })?
        };
        let mut p = Parser {
            file: file.into(),
            env: Env::default(),
            ignored: Vec::new(),
        };
        p.parse(root)
    }

    /// Model group names in config order, without duplicates.
    pub fn model_groups(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for d in &self.deployments {
            if !seen.contains(&d.model_name) {
                seen.push(d.model_name.clone());
            }
        }
        seen
    }
}

/// Walks the YAML tree with the current field path for errors.
pub(crate) struct Parser {
    pub(crate) file: String,
    pub(crate) env: Env,
    pub(crate) ignored: Vec<String>,
}

impl Parser {
    pub(crate) fn err(
        &self,
        field: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn parse(&mut self, root: Value) -> Result<Config, ConfigError> {
        let root = match root {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                return Err(self.err(
                    "(root)",
                    "the file must be a YAML mapping",
                    "start with `model_list:`",
                ))
            }
        };
        // environment_variables first: os.environ/ lookups below may need them.
        if let Some(vars) = root.get("environment_variables") {
            let vars = self.object(vars, "environment_variables")?;
            for (k, v) in vars {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(self.err(
                            &format!("environment_variables.{k}"),
                            "must be a string",
                            "quote the value",
                        ))
                    }
                };
                self.env.overlay.insert(k.clone(), v);
            }
        }
        let mut root = Value::Object(root);
        self.resolve_env(&mut root, "")?;
        let Value::Object(root) = root else {
            return Err(self.err("(root)", "the file must be a YAML mapping", ""));
        };

        let mut general = GeneralSettings::default();
        let mut router = RouterSettings::default();
        let mut prices_file = None;
        let mut tls = crate::providers::TlsOptions::default();
        let mut deployments = Vec::new();
        for (key, value) in &root {
            match key.as_str() {
                "model_list" => deployments = self.model_list(value)?,
                "general_settings" => self.general_settings(value, &mut general)?,
                "litellm_settings" => {
                    self.router_like_settings(
                        value,
                        "litellm_settings",
                        &mut router,
                        &mut prices_file,
                    )?;
                    if let Some(v) = value.get("ssl_verify") {
                        self.ssl_verify(v, &mut tls)?;
                    }
                }
                "router_settings" | "environment_variables" => {}
                other => self.ignored.push(other.to_owned()),
            }
        }
        // router_settings wins over litellm_settings for the keys both know.
        if let Some(value) = root.get("router_settings") {
            self.router_like_settings(value, "router_settings", &mut router, &mut prices_file)?;
        }
        if let Some(key) = self.env.get("LITELLM_MASTER_KEY") {
            general.master_key = Some(key);
        }
        self.tls_from_env(&mut tls)?;
        if let Some(key) = &general.master_key {
            if !key.starts_with("sk-") {
                return Err(self.err(
                    "general_settings.master_key",
                    "the master key must start with `sk-`",
                    "use a key like sk-<random string>",
                ));
            }
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, d) in deployments.iter().enumerate() {
            if let Some(first) = ids.insert(d.id.as_str(), i) {
                return Err(self.err(
                    &format!("model_list[{i}].model_info.id"),
                    format!("duplicate id {:?} (also used by model_list[{first}])", d.id),
                    "give every deployment a unique model_info.id",
                ));
            }
        }
        Ok(Config {
            file: self.file.clone(),
            deployments,
            general,
            router,
            prices_file,
            tls,
            ignored: std::mem::take(&mut self.ignored),
        })
    }

    /// Replaces every `os.environ/VAR` string with the variable's value.
    fn resolve_env(&self, v: &mut Value, path: &str) -> Result<(), ConfigError> {
        match v {
            Value::String(s) => {
                if let Some(name) = s.strip_prefix("os.environ/") {
                    let val = self.env.get(name).ok_or_else(|| {
                        self.err(
                            path,
                            format!("environment variable {name} is not set"),
                            format!("export {name}=... before starting, or set it under environment_variables"),
                        )
                    })?;
                    *s = val;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.resolve_env(item, &format!("{path}[{i}]"))?;
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.resolve_env(item, &p)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn general_settings(&mut self, v: &Value, g: &mut GeneralSettings) -> Result<(), ConfigError> {
        for (k, val) in self.object(v, "general_settings")? {
            let path = format!("general_settings.{k}");
            match k.as_str() {
                "master_key" => g.master_key = self.opt_string(val, &path)?,
                "max_request_size_mb" => {
                    let mb = self.number(val, &path)?;
                    if mb <= 0.0 {
                        return Err(self.err(
                            &path,
                            "must be positive",
                            "use a size in MiB, e.g. 16",
                        ));
                    }
                    g.max_request_size_bytes = (mb * 1024.0 * 1024.0) as usize;
                }
                "store_prompts_in_spend_logs" => {
                    g.store_prompts_in_spend_logs = self.boolean(val, &path)?
                }
                "disable_spend_logs" => g.disable_spend_logs = self.boolean(val, &path)?,
                "maximum_spend_logs_retention_period" => {
                    let s = self.string(val, &path)?;
                    g.spend_logs_retention = Some(parse_duration(&s).ok_or_else(|| {
                        self.err(
                            &path,
                            format!("{s:?} is not a duration"),
                            "use e.g. 30d, 12h, 1mo",
                        )
                    })?);
                }
                "spend_flush_interval_ms" => {
                    g.spend_flush_interval =
                        Duration::from_millis(self.number(val, &path)?.max(1.0) as u64)
                }
                "busy_poll_us" => {
                    g.busy_poll = Duration::from_micros(self.number(val, &path)? as u64)
                }
                _ => self.ignored.push(path),
            }
        }
        Ok(())
    }

    fn router_like_settings(
        &mut self,
        v: &Value,
        section: &str,
        r: &mut RouterSettings,
        prices_file: &mut Option<String>,
    ) -> Result<(), ConfigError> {
        for (k, val) in self.object(v, section)? {
            let path = format!("{section}.{k}");
            match k.as_str() {
                "routing_strategy" => {
                    let s = self.string(val, &path)?;
                    r.routing_strategy = RoutingStrategy::parse(&s).ok_or_else(|| {
                        self.err(
                            &path,
                            format!("unknown routing strategy {s:?}"),
                            format!("use one of: {}", RoutingStrategy::NAMES.join(", ")),
                        )
                    })?;
                }
                "routing_strategy_args" => {
                    if let Some(b) = self.object(val, &path)?.get("lowest_latency_buffer") {
                        r.lowest_latency_buffer =
                            self.number(b, &format!("{path}.lowest_latency_buffer"))?;
                    }
                }
                "num_retries" => r.num_retries = self.number(val, &path)? as u32,
                "timeout" | "request_timeout" => r.timeout = self.duration_secs(val, &path)?,
                "stream_timeout" => r.stream_timeout = Some(self.duration_secs(val, &path)?),
                "allowed_fails" => r.allowed_fails = self.number(val, &path)? as u32,
                "cooldown_time" => r.cooldown_time = self.duration_secs(val, &path)?,
                "retry_after" => r.retry_after = self.duration_secs(val, &path)?,
                "enable_pre_call_checks" => r.enable_pre_call_checks = self.boolean(val, &path)?,
                "retry_policy" => r.retry_policy = self.policy(val, &path, "Retries")?,
                "allowed_fails_policy" => {
                    r.allowed_fails_policy = self.policy(val, &path, "AllowedFails")?
                }
                "fallbacks" => r.fallbacks = self.fallbacks(val, &path)?,
                "context_window_fallbacks" => {
                    r.context_window_fallbacks = self.fallbacks(val, &path)?
                }
                "content_policy_fallbacks" => {
                    r.content_policy_fallbacks = self.fallbacks(val, &path)?
                }
                "default_fallbacks" => r.default_fallbacks = self.string_list(val, &path)?,
                "model_prices_file" | "model_cost_map_path" => {
                    *prices_file = self.opt_string(val, &path)?
                }
                // Read by the caller (litellm_settings only).
                "ssl_verify" if section == "litellm_settings" => {}
                _ => self.ignored.push(path),
            }
        }
        Ok(())
    }

    /// `litellm_settings.ssl_verify`: `true`, `false`, or the path of a CA bundle.
    fn ssl_verify(
        &self,
        v: &Value,
        tls: &mut crate::providers::TlsOptions,
    ) -> Result<(), ConfigError> {
        let path = "litellm_settings.ssl_verify";
        match v {
            Value::Bool(verify) => tls.insecure = !verify,
            Value::String(bundle) => {
                tls.extra_roots.push(self.ca_bundle(bundle, path)?);
            }
            _ => {
                return Err(self.err(
                    path,
                    "expected true, false or the path of a CA bundle",
                    "write ssl_verify: /path/to/ca-bundle.pem",
                ))
            }
        }
        Ok(())
    }

    /// `SSL_CERT_FILE` and `SSL_VERIFY`. `SSL_VERIFY` wins over the file as in LiteLLM;
    /// a bundle from `SSL_CERT_FILE` is trusted as well as the file's, not instead of it,
    /// because many hosts set `SSL_CERT_FILE` to the system bundle for other tools.
    fn tls_from_env(&self, tls: &mut crate::providers::TlsOptions) -> Result<(), ConfigError> {
        if let Some(bundle) = self.env.get("SSL_CERT_FILE") {
            tls.extra_roots
                .push(self.ca_bundle(&bundle, "SSL_CERT_FILE (environment)")?);
        }
        if let Some(verify) = self.env.get("SSL_VERIFY") {
            tls.insecure = matches!(verify.to_ascii_lowercase().as_str(), "false" | "0" | "no");
        }
        Ok(())
    }

    fn ca_bundle(&self, bundle: &str, field: &str) -> Result<std::path::PathBuf, ConfigError> {
        let p = std::path::PathBuf::from(bundle);
        if !p.is_file() {
            return Err(self.err(
                field,
                format!("CA bundle {bundle:?} is not a readable file"),
                "point it at a PEM file of CA certificates, or remove it",
            ));
        }
        Ok(p)
    }

    fn policy(
        &self,
        v: &Value,
        path: &str,
        suffix: &str,
    ) -> Result<HashMap<crate::providers::ErrorClass, u32>, ConfigError> {
        let mut out = HashMap::new();
        for (k, val) in self.object(v, path)? {
            let p = format!("{path}.{k}");
            let class = settings::policy_class(k, suffix).ok_or_else(|| {
                self.err(&p, format!("unknown error class {k:?}"), format!("use e.g. RateLimitError{suffix}, TimeoutError{suffix}, InternalServerError{suffix}"))
            })?;
            out.insert(class, self.number(val, &p)? as u32);
        }
        Ok(out)
    }

    /// `[{"gpt-4": ["gpt-3.5"]}, ...]` (a list of one-key maps) or one map.
    fn fallbacks(&self, v: &Value, path: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        let fix = "use a list like [{\"gpt-4o\": [\"gpt-4o-mini\"]}]";
        let maps: Vec<&Map<String, Value>> = match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    m.as_object()
                        .ok_or_else(|| self.err(&format!("{path}[{i}]"), "must be a mapping", fix))
                })
                .collect::<Result<_, _>>()?,
            Value::Object(m) => vec![m],
            Value::Null => vec![],
            _ => return Err(self.err(path, "must be a list of mappings", fix)),
        };
        let mut out = Vec::new();
        for m in maps {
            for (k, targets) in m {
                out.push((
                    k.clone(),
                    self.string_list(targets, &format!("{path}.{k}"))?,
                ));
            }
        }
        Ok(out)
    }

    // ---- typed readers ------------------------------------------------------------

    pub(crate) fn object<'v>(
        &self,
        v: &'v Value,
        path: &str,
    ) -> Result<&'v Map<String, Value>, ConfigError> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match v {
            Value::Object(m) => Ok(m),
            Value::Null => Ok(EMPTY.get_or_init(Map::new)),
            _ => Err(self.err(path, "must be a mapping", "indent its fields under it")),
        }
    }

    pub(crate) fn string(&self, v: &Value, path: &str) -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.err(path, "must be a string", "quote the value")),
        }
    }

    pub(crate) fn opt_string(&self, v: &Value, path: &str) -> Result<Option<String>, ConfigError> {
        match v {
            Value::Null => Ok(None),
            _ => self.string(v, path).map(Some),
        }
    }

    pub(crate) fn number(&self, v: &Value, path: &str) -> Result<f64, ConfigError> {
        match v {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| self.err(path, "must be a number", "")),
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| {
                self.err(
                    path,
                    format!("{s:?} is not a number"),
                    "write a plain number, e.g. 60",
                )
            }),
            _ => Err(self.err(path, "must be a number", "write a plain number, e.g. 60")),
        }
        .and_then(|n| {
            if n.is_finite() && n >= 0.0 {
                Ok(n)
            } else {
                Err(self.err(
                    path,
                    "must be a non-negative number",
                    "write a plain number, e.g. 60",
                ))
            }
        })
    }

    pub(crate) fn duration_secs(&self, v: &Value, path: &str) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs_f64(self.number(v, path)?))
    }

    pub(crate) fn boolean(&self, v: &Value, path: &str) -> Result<bool, ConfigError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.err(path, "must be true or false", "")),
        }
    }

    pub(crate) fn string_list(&self, v: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| self.string(x, &format!("{path}[{i}]")))
                .collect(),
            Value::Null => Ok(vec![]),
            _ => Err(self.err(path, "must be a list of strings", "write [\"a\", \"b\"]")),
        }
    }
}

/// LiteLLM durations: `30s`, `10m`, `1h`, `1d`, `30d`, `1mo` (30 days), `1w`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        "mo" => 30.0 * 86400.0,
        "y" => 365.0 * 86400.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(n * secs))
}

#[cfg(test)]
mod tests;
