//! The stored governance records (LiteLLM field names) and budget period parsing.

use std::collections::BTreeMap;

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A per-model budget (`model_max_budget`): a limit and an optional reset period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBudget {
    pub budget_limit: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_period: Option<String>,
}

/// A virtual key. Only the hash of the secret is stored (`token`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyRecord {
    pub token: String,
    /// The secret abbreviated (`sk-...abcd`), for display.
    pub key_name: Option<String>,
    pub key_alias: Option<String>,
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    pub model_max_budget: BTreeMap<String, ModelBudget>,
    pub model_rpm_limit: BTreeMap<String, u64>,
    pub model_tpm_limit: BTreeMap<String, u64>,
    pub metadata: Value,
    pub tags: Vec<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub blocked: bool,
    pub allowed_routes: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserRecord {
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_role: Option<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub models: Vec<String>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub metadata: Value,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamRecord {
    pub team_id: String,
    pub team_alias: Option<String>,
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub metadata: Value,
    pub blocked: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A customer / end user: the `user` field of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndUserRecord {
    pub user_id: String,
    pub alias: Option<String>,
    pub blocked: bool,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub metadata: Value,
    pub created_at: Option<DateTime<Utc>>,
}

/// A budget owner's persisted spend state (`SPEND_COUNTERS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpendCounter {
    pub spend: f64,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub soft_budget_crossed_at: Option<DateTime<Utc>>,
}

/// A budget period: a fixed number of seconds, or calendar months (`1mo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Seconds(i64),
    Months(u32),
}

impl Period {
    /// Parses LiteLLM durations: `30s`, `5m`, `1h`, `1d`, `2w`, `1mo`.
    pub fn parse(s: &str) -> Option<Period> {
        let s = s.trim();
        let digits = s.chars().take_while(char::is_ascii_digit).count();
        let (n, unit) = s.split_at(digits);
        let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
        Some(match unit.trim() {
            "s" => Period::Seconds(n),
            "m" => Period::Seconds(n.checked_mul(60)?),
            "h" => Period::Seconds(n.checked_mul(3600)?),
            "d" => Period::Seconds(n.checked_mul(86_400)?),
            "w" => Period::Seconds(n.checked_mul(7 * 86_400)?),
            "mo" => Period::Months(u32::try_from(n).ok()?),
            _ => return None,
        })
    }

    /// `from` moved forward by one period.
    pub fn after(self, from: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Period::Seconds(s) => from + chrono::Duration::seconds(s),
            Period::Months(m) => from
                .checked_add_months(Months::new(m))
                .unwrap_or(from + chrono::Duration::days(30 * i64::from(m))),
        }
    }
}

/// Abbreviates a secret for display: `sk-...abcd`.
pub fn abbreviate(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

/// `sha256` hex of a secret: the stored `token`. Runs on every virtual-key request, so the
/// hex is written directly (the `hex` crate's iterator costs more than the hash here).
pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(2 * digest.len());
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_secret_is_lowercase_sha256_hex() {
        assert_eq!(
            super::hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            super::hash_secret("sk-1234"),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"sk-1234"))
        );
    }

    use super::*;

    #[test]
    fn durations_parse_like_litellm() {
        assert_eq!(Period::parse("30s"), Some(Period::Seconds(30)));
        assert_eq!(Period::parse("1h"), Some(Period::Seconds(3600)));
        assert_eq!(Period::parse("30d"), Some(Period::Seconds(30 * 86_400)));
        assert_eq!(Period::parse("1mo"), Some(Period::Months(1)));
        assert_eq!(Period::parse("abc"), None);
        assert_eq!(Period::parse("0s"), None);
        assert_eq!(Period::parse("5x"), None);
    }

    #[test]
    fn secrets_hash_to_hex_and_abbreviate() {
        assert_eq!(hash_secret("sk-1").len(), 64);
        assert_eq!(abbreviate("sk-abcdefgh"), "sk-...efgh");
    }
}
