//! One spend log row per request (LiteLLM `SpendLogs`-like) and the daily aggregates
//! folded from them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request's spend record. Field names follow LiteLLM's `SpendLogs` table.
///
/// The text fields borrow from the request that made the row (its context lives until
/// the row is recorded, and copying a dozen strings a request cost more than encoding
/// them); rows read back from the store own theirs (`SpendRow<'static>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendRow<'a> {
    pub request_id: Cow<'a, str>,
    pub call_type: Cow<'a, str>,
    /// Hash of the virtual key (never the key); empty for the master key.
    pub api_key: Cow<'a, str>,
    pub key_alias: Option<Cow<'a, str>>,
    /// Internal user owning the key.
    pub user: Option<Cow<'a, str>>,
    pub team_id: Option<Cow<'a, str>>,
    /// The request's `user` field (LiteLLM's customer / end user).
    pub end_user: Option<Cow<'a, str>>,
    /// The alias the client asked for.
    pub model: Cow<'a, str>,
    /// The group that answered (differs from `model` after a fallback).
    pub model_group: Cow<'a, str>,
    pub model_id: Cow<'a, str>,
    /// Provider and public base URL (never a secret).
    pub api_base: Cow<'a, str>,
    pub custom_llm_provider: Cow<'a, str>,
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
    pub status: Cow<'a, str>,
    pub error_class: Option<Cow<'a, str>>,
    pub error_message: Option<Cow<'a, str>>,
    pub http_status: u16,
    pub request_tags: Cow<'a, [String]>,
    pub metadata: Cow<'a, Value>,
    pub attempted_retries: u32,
    pub attempted_fallbacks: u32,
    pub stream: bool,
    /// Only with `store_prompts_in_spend_logs`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub messages: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response: Option<Value>,
}

impl SpendRow<'_> {
    /// `YYYY-MM-DD` of the start time (UTC).
    pub fn day(&self) -> &str {
        self.start_time.get(..10).unwrap_or("1970-01-01")
    }

    pub fn is_success(&self) -> bool {
        self.status == "success"
    }

    /// Keys of the daily aggregates this row adds to: one main key, one per tag.
    pub fn aggregate_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        self.for_each_aggregate_key(&mut String::new(), |k| keys.push(k.to_owned()));
        keys
    }

    /// Calls `f` with each aggregate key, built in `buf` (the writer's batch loop reuses
    /// one buffer instead of allocating keys per row).
    pub fn for_each_aggregate_key(&self, buf: &mut String, mut f: impl FnMut(&str)) {
        let dims = [
            &*self.api_key,
            &*self.model,
            self.team_id.as_deref().unwrap_or(""),
            self.user.as_deref().unwrap_or(""),
            self.end_user.as_deref().unwrap_or(""),
        ];
        let day = self.day();
        let mut build = |kind: &str, tag: Option<&str>| {
            buf.clear();
            for part in [day, kind].into_iter().chain(tag) {
                buf.push_str(part);
                buf.push_str(SEP);
            }
            for (i, d) in dims.iter().enumerate() {
                if i > 0 {
                    buf.push_str(SEP);
                }
                buf.push_str(d);
            }
            f(buf);
        };
        build("K", None);
        for tag in self.request_tags.iter() {
            build("T", Some(tag));
        }
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-24T10:00:00.000Z`), the spend rows'
/// time format. Every request formats two, and chrono's general formatter costs more
/// than the rest of the row; years outside 1970–9999 take chrono's path. The text up to
/// the seconds is kept per thread for the last second formatted: a request's start and
/// end, and the requests around it, mostly fall in the same one.
pub fn rfc3339_millis(t: chrono::DateTime<chrono::Utc>) -> String {
    thread_local! {
        static LAST_SECOND: std::cell::Cell<(i64, [u8; 20])> =
            const { std::cell::Cell::new((-1, [0; 20])) };
    }
    let ms = t.timestamp_millis();
    if !(0..253_402_300_800_000).contains(&ms) {
        return t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }
    let (second, milli) = (ms / 1000, ms % 1000);
    let prefix = LAST_SECOND.with(|last| {
        let (cached, prefix) = last.get();
        if cached == second {
            return prefix;
        }
        let prefix = up_to_seconds(second);
        last.set((second, prefix));
        prefix
    });
    let mut out = [0u8; 24];
    out[..20].copy_from_slice(&prefix);
    out[20] = b'0' + (milli / 100) as u8;
    out[21] = b'0' + (milli / 10 % 10) as u8;
    out[22] = b'0' + (milli % 10) as u8;
    out[23] = b'Z';
    // Only ASCII digits and separators were written.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the epoch (non-negative, before year 10000).
fn up_to_seconds(secs: i64) -> [u8; 20] {
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm, shifted to
    // eras starting on 0000-03-01).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, hour);
    put(14, 2, minute);
    put(17, 2, second);
    out
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
    pub fn from_row(r: &SpendRow<'_>) -> Self {
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
    fn rfc3339_millis_matches_chrono() {
        use chrono::TimeZone;
        let mut ms: i64 = 0;
        let mut checked = 0;
        // Day boundaries, leap days and centuries, then a spread of arbitrary instants.
        let fixed = [
            0,
            951_782_400_000,
            951_868_799_999,
            4_107_542_400_000,
            253_402_300_799_999,
        ];
        for step in 0..5_000i64 {
            let t = fixed.get(step as usize).copied().unwrap_or_else(|| {
                ms = (ms + 48_271 * 1_000_003 + step * 7_919) % 253_402_300_800_000;
                ms
            });
            let at = chrono::Utc.timestamp_millis_opt(t).unwrap();
            assert_eq!(
                rfc3339_millis(at),
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "{t}"
            );
            checked += 1;
        }
        assert_eq!(checked, 5_000);
        // Runs within one second and across second, minute, day and year ends, where
        // the kept text must be replaced.
        for base in [0, 951_868_799_000, 1_798_761_599_000, 1_767_225_599_500] {
            for t in (base..base + 2_500).step_by(7) {
                let at = chrono::Utc.timestamp_millis_opt(t).unwrap();
                assert_eq!(
                    rfc3339_millis(at),
                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "{t}"
                );
            }
        }
        let before = chrono::Utc.timestamp_millis_opt(-1).unwrap();
        assert_eq!(rfc3339_millis(before), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn aggregate_keys_round_trip_with_one_entry_per_tag() {
        let r = SpendRow {
            api_key: "h".into(),
            model: "gpt".into(),
            team_id: Some("t".into()),
            start_time: "2026-11-24T10:00:00Z".into(),
            request_tags: vec!["a".into(), "b".into()].into(),
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
