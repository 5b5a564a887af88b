//! One spend log row per request (LiteLLM `SpendLogs`-like) and the daily aggregates
//! folded from them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request's spend record. Field names follow LiteLLM's `SpendLogs` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub request_id: String,
    pub call_type: String,
    /// Hash of the virtual key (never the key); empty for the master key.
    pub api_key: String,
    pub key_alias: Option<String>,
    /// Internal user owning the key.
    pub user: Option<String>,
    pub team_id: Option<String>,
    /// The request's `user` field (LiteLLM's customer / end user).
    pub end_user: Option<String>,
    /// The alias the client asked for.
    pub model: String,
    /// The group that answered (differs from `model` after a fallback).
    pub model_group: String,
    pub model_id: String,
    /// Provider and public base URL (never a secret).
    pub api_base: String,
    pub custom_llm_provider: String,
    pub spend: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub usage_estimated: bool,
    /// RFC 3339 UTC.
    pub start_time: String,
    pub end_time: String,
    pub ttft_ms: Option<u64>,
    pub duration_ms: u64,
    /// `success` or `failure`.
    pub status: String,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub http_status: u16,
    pub request_tags: Vec<String>,
    pub metadata: Value,
    pub attempted_retries: u32,
    pub attempted_fallbacks: u32,
    pub stream: bool,
    /// Only with `store_prompts_in_spend_logs`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub messages: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response: Option<Value>,
}

impl SpendRow {
    /// `YYYY-MM-DD` of the start time (UTC).
    pub fn day(&self) -> &str {
        self.start_time.get(..10).unwrap_or("1970-01-01")
    }

    pub fn is_success(&self) -> bool {
        self.status == "success"
    }

    /// Keys of the daily aggregates this row adds to: one main key, one per tag.
    pub fn aggregate_keys(&self) -> Vec<String> {
        let dims = [
            self.api_key.as_str(),
            self.model.as_str(),
            self.team_id.as_deref().unwrap_or(""),
            self.user.as_deref().unwrap_or(""),
            self.end_user.as_deref().unwrap_or(""),
        ]
        .join(SEP);
        let day = self.day();
        let mut keys = vec![format!("{day}{SEP}K{SEP}{dims}")];
        for tag in &self.request_tags {
            keys.push(format!("{day}{SEP}T{SEP}{tag}{SEP}{dims}"));
        }
        keys
    }
}

/// Separates the parts of an aggregate key (a control character never seen in ids).
pub const SEP: &str = "\x1f";

/// Totals of one day for one combination of key, model, team, user, end user (and tag).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DailyAggregate {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub spend: f64,
}

impl DailyAggregate {
    pub fn from_row(r: &SpendRow) -> Self {
        DailyAggregate {
            requests: 1,
            successes: r.is_success() as u64,
            failures: (!r.is_success()) as u64,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
            spend: r.spend,
        }
    }

    pub fn add(&mut self, o: &DailyAggregate) {
        self.requests += o.requests;
        self.successes += o.successes;
        self.failures += o.failures;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
        self.spend += o.spend;
    }
}

/// A parsed aggregate key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateKey<'a> {
    pub day: &'a str,
    /// `Some(tag)` for per-tag entries; `None` for the main entry.
    pub tag: Option<&'a str>,
    pub api_key: &'a str,
    pub model: &'a str,
    pub team_id: &'a str,
    pub user: &'a str,
    pub end_user: &'a str,
}

impl<'a> AggregateKey<'a> {
    pub fn parse(key: &'a str) -> Option<Self> {
        let mut parts = key.split(SEP);
        let day = parts.next()?;
        let tag = match parts.next()? {
            "K" => None,
            "T" => Some(parts.next()?),
            _ => return None,
        };
        Some(AggregateKey {
            day,
            tag,
            api_key: parts.next()?,
            model: parts.next()?,
            team_id: parts.next()?,
            user: parts.next()?,
            end_user: parts.next()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_keys_round_trip_with_one_entry_per_tag() {
        let r = SpendRow {
            api_key: "h".into(),
            model: "gpt".into(),
            team_id: Some("t".into()),
            start_time: "2026-11-24T10:00:00Z".into(),
            request_tags: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let keys = r.aggregate_keys();
        assert_eq!(keys.len(), 3);
        let main = AggregateKey::parse(&keys[0]).unwrap();
        assert_eq!(
            (main.day, main.tag, main.api_key, main.model, main.team_id),
            ("2026-11-24", None, "h", "gpt", "t")
        );
        assert_eq!(AggregateKey::parse(&keys[2]).unwrap().tag, Some("b"));
    }
}
