//! Spend queries behind the management API: filtered, paged spend logs (newest first)
//! and totals / grouped reports folded from the daily aggregates (never the raw logs).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::log::{AggregateKey, DailyAggregate, SpendRow};
use crate::store::{Doc, Store};

/// Rows read from the store per read transaction.
pub const PAGE_ROWS: usize = 1000;
/// Largest `page_size` a caller may ask for.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Rows are stored in commit order, which trails their start time by at most the
/// request's duration plus the writer's batching delay. A newest-first scan with a
/// start bound stops once rows *ended* this long before the bound.
const SCAN_SLACK: chrono::Duration = chrono::Duration::hours(6);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("stored spend row is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, ReportError>;

fn bad(msg: impl Into<String>) -> ReportError {
    ReportError::BadRequest(msg.into())
}

/// A time window: `from` inclusive, `to` exclusive (both RFC 3339 with milliseconds, `Z`,
/// comparable as text with `SpendRow::start_time`), and the days it touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl TimeRange {
    /// Parses `start_date` / `end_date`: `YYYY-MM-DD` (the end day is inclusive) or RFC 3339.
    pub fn parse(start: Option<&str>, end: Option<&str>) -> Result<TimeRange> {
        let from = start
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_instant(s, "start_date", false))
            .transpose()?;
        let to = end
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_instant(s, "end_date", true))
            .transpose()?;
        if let (Some(f), Some(t)) = (&from, &to) {
            if f >= t {
                return Err(bad("start_date must be before end_date"));
            }
        }
        Ok(TimeRange {
            from: from.map(fmt),
            to: to.map(fmt),
        })
    }

    pub fn contains(&self, ts: &str) -> bool {
        self.from.as_deref().is_none_or(|f| ts >= f) && self.to.as_deref().is_none_or(|t| ts < t)
    }

    /// First and last day (`YYYY-MM-DD`, inclusive) whose aggregates fall in the range.
    pub fn days(&self) -> (String, String) {
        let from = self
            .from
            .as_deref()
            .and_then(|f| f.get(..10))
            .unwrap_or("0000-01-01")
            .to_owned();
        let to = match self.to.as_deref().and_then(|t| parse_rfc3339(t).ok()) {
            // `to` is exclusive: the last day is the one holding the instant just before it.
            Some(t) => fmt(t - chrono::Duration::milliseconds(1))[..10].to_owned(),
            None => "9999-12-31".to_owned(),
        };
        (from, to)
    }
}

fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_rfc3339(s: &str) -> std::result::Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// An instant; a bare date as an end bound means the end of that day.
fn parse_instant(s: &str, name: &str, end: bool) -> Result<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    match parse_rfc3339(s) {
        // An RFC 3339 end is inclusive: the exclusive bound is one millisecond later.
        Ok(t) if end => Ok(t + chrono::Duration::milliseconds(1)),
        Ok(t) => Ok(t),
        Err(_) => Err(bad(format!(
            "{name} must be YYYY-MM-DD or an RFC 3339 time, got {s:?}"
        ))),
    }
}

/// `sha256` hex of a virtual key, as spend rows store it.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Which spend rows to return. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// A virtual key (`sk-...`) or its hash.
    pub api_key: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub end_user: Option<String>,
    pub request_id: Option<String>,
    pub model: Option<String>,
    /// Rows carrying any of these tags.
    pub tags: Vec<String>,
    pub status: Option<String>,
    pub time: TimeRange,
}

impl LogFilter {
    /// Normalises the filter (hashes a raw key) once, before a scan.
    pub fn prepared(mut self) -> LogFilter {
        if let Some(k) = &self.api_key {
            if k.starts_with("sk-") {
                self.api_key = Some(hash_key(k));
            }
        }
        self
    }

    pub fn matches(&self, r: &SpendRow<'_>) -> bool {
        fn eq(want: &Option<String>, got: &str) -> bool {
            want.as_deref().is_none_or(|w| w == got)
        }
        fn eq_opt(want: &Option<String>, got: &Option<Cow<'_, str>>) -> bool {
            want.as_deref().is_none_or(|w| got.as_deref() == Some(w))
        }
        eq(&self.api_key, &r.api_key)
            && eq(&self.request_id, &r.request_id)
            && (self.model.is_none()
                || eq(&self.model, &r.model)
                || eq(&self.model, &r.model_group))
            && eq_opt(&self.user_id, &r.user)
            && eq_opt(&self.team_id, &r.team_id)
            && eq_opt(&self.end_user, &r.end_user)
            && eq(&self.status, &r.status)
            && (self.tags.is_empty() || self.tags.iter().any(|t| r.request_tags.contains(t)))
            && self.time.contains(&r.start_time)
    }

    /// True once a newest-first scan has passed every row that can still match.
    fn exhausted(&self, r: &SpendRow<'_>) -> bool {
        let (Some(from), Ok(end)) = (self.time.from.as_deref(), parse_rfc3339(&r.end_time)) else {
            return false;
        };
        fmt(end + SCAN_SLACK).as_str() < from
    }
}

/// 1-based page number and rows per page.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: usize,
    pub page_size: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            page: 1,
            page_size: 100,
        }
    }
}

/// One page of matching rows, newest first.
pub fn logs(store: &Store, filter: &LogFilter, page: Page) -> Result<Vec<SpendRow<'static>>> {
    let mut skip = page.page.saturating_sub(1).saturating_mul(page.page_size);
    let want = page.page_size.clamp(1, MAX_PAGE_SIZE);
    let mut out = Vec::new();
    let mut before = u64::MAX;
    loop {
        let batch = store.spend_rows_before(before, PAGE_ROWS)?;
        let full = batch.len() == PAGE_ROWS;
        for (seq, bytes) in batch {
            before = seq;
            let row = SpendRow::decode(&bytes)?;
            if filter.exhausted(&row) {
                return Ok(out);
            }
            if !filter.matches(&row) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            out.push(row);
            if out.len() >= want {
                return Ok(out);
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The highest sequence committed so far (0 when there are no rows): an export's snapshot.
pub fn last_sequence(store: &Store) -> Result<u64> {
    Ok(store
        .spend_rows_before(u64::MAX, 1)?
        .first()
        .map(|(s, _)| *s)
        .unwrap_or(0))
}

/// Matching rows with sequence in `(after, upto]`, oldest first, read from at most
/// `PAGE_ROWS` stored rows. Returns the rows and the sequence to continue after, or
/// `None` when the range is done.
pub fn logs_chunk(
    store: &Store,
    filter: &LogFilter,
    after: u64,
    upto: u64,
) -> Result<(Vec<SpendRow<'static>>, Option<u64>)> {
    let batch = store.spend_rows_after(after, PAGE_ROWS)?;
    let full = batch.len() == PAGE_ROWS;
    let mut last = after;
    let mut out = Vec::new();
    for (seq, bytes) in batch {
        if seq > upto {
            return Ok((out, None));
        }
        last = seq;
        let row = SpendRow::decode(&bytes)?;
        if filter.matches(&row) {
            out.push(row);
        }
    }
    Ok((out, (full && last < upto).then_some(last)))
}

/// A row in LiteLLM's `/spend/logs` shape: every field, plus the camelCase time aliases.
pub fn row_json(r: &SpendRow) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("startTime".into(), r.start_time.clone().into());
        m.insert("endTime".into(), r.end_time.clone().into());
    }
    v
}

// ---- aggregates -----------------------------------------------------------------

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Team,
    Customer,
    ApiKey,
    Model,
    Tag,
    User,
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy> {
        Ok(match s {
            "team" => GroupBy::Team,
            "customer" | "end_user" => GroupBy::Customer,
            "api_key" | "key" => GroupBy::ApiKey,
            "model" => GroupBy::Model,
            "tag" | "tags" => GroupBy::Tag,
            "user" => GroupBy::User,
            other => {
                return Err(bad(format!(
                "group_by must be one of team, customer, api_key, model, tag, user; got {other:?}"
            )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Team => "team",
            GroupBy::Customer => "customer",
            GroupBy::ApiKey => "api_key",
            GroupBy::Model => "model",
            GroupBy::Tag => "tag",
            GroupBy::User => "user",
        }
    }

    fn value<'a>(self, k: &AggregateKey<'a>) -> &'a str {
        match self {
            GroupBy::Team => k.team_id,
            GroupBy::Customer => k.end_user,
            GroupBy::ApiKey => k.api_key,
            GroupBy::Model => k.model,
            GroupBy::Tag => k.tag.unwrap_or(""),
            GroupBy::User => k.user,
        }
    }
}

/// Totals of one day for one group value, model and key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    pub day: String,
    pub group: String,
    pub model: String,
    pub api_key: String,
    pub totals: DailyAggregate,
}

/// Visits every aggregate in the day range: per-tag entries when `tags`, else the main ones.
fn each_aggregate(
    store: &Store,
    range: &TimeRange,
    tags: bool,
    mut f: impl FnMut(&AggregateKey<'_>, &DailyAggregate),
) -> Result<()> {
    let (from, to) = range.days();
    for (key, bytes) in store.daily_aggregates(&from, &to)? {
        let Some(k) = AggregateKey::parse(&key) else {
            continue;
        };
        if k.tag.is_some() != tags {
            continue;
        }
        let agg: DailyAggregate = serde_json::from_slice(&bytes)?;
        f(&k, &agg);
    }
    Ok(())
}

/// Totals over the range.
pub fn total(store: &Store, range: &TimeRange) -> Result<DailyAggregate> {
    let mut sum = DailyAggregate::default();
    each_aggregate(store, range, false, |_, a| sum.add(a))?;
    Ok(sum)
}

/// Totals per group value over the range, dearest first.
pub fn totals_by(
    store: &Store,
    range: &TimeRange,
    by: GroupBy,
) -> Result<Vec<(String, DailyAggregate)>> {
    let mut m: BTreeMap<String, DailyAggregate> = BTreeMap::new();
    each_aggregate(store, range, by == GroupBy::Tag, |k, a| {
        m.entry(by.value(k).to_owned()).or_default().add(a)
    })?;
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.spend.total_cmp(&a.1.spend).then(a.0.cmp(&b.0)));
    Ok(v)
}

/// Report rows (day × group × model × key), in day then group order.
pub fn report_rows(store: &Store, range: &TimeRange, by: GroupBy) -> Result<Vec<ReportRow>> {
    let mut m: BTreeMap<(String, String, String, String), DailyAggregate> = BTreeMap::new();
    each_aggregate(store, range, by == GroupBy::Tag, |k, a| {
        let key = (
            k.day.to_owned(),
            by.value(k).to_owned(),
            k.model.to_owned(),
            k.api_key.to_owned(),
        );
        m.entry(key).or_default().add(a)
    })?;
    Ok(m.into_iter()
        .map(|((day, group, model, api_key), totals)| ReportRow {
            day,
            group,
            model,
            api_key,
            totals,
        })
        .collect())
}

/// `/global/spend/report` in LiteLLM's shapes: `api_key` gives one entry per key with
/// per-model details; the others one entry per day with the groups of that day.
pub fn report_json(
    rows: &[ReportRow],
    by: GroupBy,
    names: &dyn Fn(&str) -> Option<String>,
) -> Value {
    if by == GroupBy::ApiKey {
        let mut keys: BTreeMap<&str, (DailyAggregate, BTreeMap<&str, DailyAggregate>)> =
            BTreeMap::new();
        for r in rows {
            let e = keys.entry(&r.api_key).or_default();
            e.0.add(&r.totals);
            e.1.entry(&r.model).or_default().add(&r.totals);
        }
        let mut out: Vec<(f64, Value)> = keys
            .into_iter()
            .map(|(key, (t, models))| {
                let details: Vec<Value> = models
                    .into_iter()
                    .map(|(m, a)| json!({"model": m, "total_cost": a.spend, "total_input_tokens": a.prompt_tokens, "total_output_tokens": a.completion_tokens}))
                    .collect();
                (
                    t.spend,
                    json!({"api_key": key, "total_cost": t.spend, "total_input_tokens": t.prompt_tokens, "total_output_tokens": t.completion_tokens, "model_details": details}),
                )
            })
            .collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0));
        return Value::Array(out.into_iter().map(|(_, v)| v).collect());
    }
    let (list_name, item_name) = match by {
        GroupBy::Team => ("teams", "team_name"),
        GroupBy::Customer => ("customers", "customer"),
        GroupBy::Model => ("models", "model"),
        GroupBy::Tag => ("tags", "tag"),
        GroupBy::User => ("users", "user"),
        GroupBy::ApiKey => ("api_keys", "api_key"),
    };
    let mut days: BTreeMap<&str, BTreeMap<&str, (f64, Vec<Value>)>> = BTreeMap::new();
    for r in rows {
        let g = days.entry(&r.day).or_default().entry(&r.group).or_default();
        g.0 += r.totals.spend;
        g.1.push(json!({"model": r.model, "api_key": r.api_key, "spend": r.totals.spend, "total_tokens": r.totals.total_tokens, "requests": r.totals.requests}));
    }
    let out: Vec<Value> = days
        .into_iter()
        .map(|(day, groups)| {
            let items: Vec<Value> = groups
                .into_iter()
                .map(|(g, (spend, metadata))| {
                    let mut o = Map::new();
                    let label = match by {
                        GroupBy::Team if g.is_empty() => "Unassigned Team".to_owned(),
                        GroupBy::Team => names(g).unwrap_or_else(|| g.to_owned()),
                        _ => g.to_owned(),
                    };
                    o.insert(item_name.into(), label.into());
                    if by == GroupBy::Team {
                        o.insert("team_id".into(), g.into());
                    }
                    o.insert("total_spend".into(), spend.into());
                    o.insert("metadata".into(), metadata.into());
                    Value::Object(o)
                })
                .collect();
            json!({"group_by_day": day, list_name: items})
        })
        .collect();
    Value::Array(out)
}

/// Spend per team per day, for `/global/spend/teams`' `daily_spend`.
pub fn team_daily(
    store: &Store,
    range: &TimeRange,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let mut m: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    each_aggregate(store, range, false, |k, a| {
        *m.entry(k.day.to_owned())
            .or_default()
            .entry(k.team_id.to_owned())
            .or_default() += a.spend;
    })?;
    Ok(m)
}

/// `/spend/tags`: one entry per tag with its request count and spend.
pub fn tags_json(totals: &[(String, DailyAggregate)]) -> Value {
    totals
        .iter()
        .map(|(tag, a)| json!({"individual_request_tag": tag, "log_count": a.requests, "total_spend": a.spend}))
        .collect()
}

/// A string field of a stored governance document (e.g. a key's `key_alias`), if any.
pub fn doc_field(store: &Store, doc: Doc, id: &str, field: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    store
        .get::<Value>(doc, id)
        .ok()
        .flatten()
        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_inclusive_days_or_rfc3339_instants() {
        let r = TimeRange::parse(Some("2026-01-02"), Some("2026-01-03")).unwrap();
        assert_eq!(r.from.as_deref(), Some("2026-01-02T00:00:00.000Z"));
        assert_eq!(r.to.as_deref(), Some("2026-01-04T00:00:00.000Z"));
        assert!(r.contains("2026-01-03T23:59:59.999Z"));
        assert!(!r.contains("2026-01-04T00:00:00.000Z"));
        assert_eq!(r.days(), ("2026-01-02".into(), "2026-01-03".into()));
        let r = TimeRange::parse(Some("2026-01-02T10:00:00+02:00"), None).unwrap();
        assert_eq!(r.from.as_deref(), Some("2026-01-02T08:00:00.000Z"));
        assert!(TimeRange::parse(Some("yesterday"), None).is_err());
        assert!(TimeRange::parse(Some("2026-01-05"), Some("2026-01-04")).is_err());
    }

    #[test]
    fn a_raw_key_filter_matches_the_stored_hash() {
        let f = LogFilter {
            api_key: Some("sk-abc".into()),
            ..Default::default()
        }
        .prepared();
        let row = SpendRow {
            api_key: hash_key("sk-abc").into(),
            ..Default::default()
        };
        assert!(f.matches(&row));
        assert!(!f.matches(&SpendRow::default()));
    }
}
