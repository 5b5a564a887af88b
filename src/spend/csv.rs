//! RFC 4180 CSV for spend exports: spend log rows and report rows, written record by
//! record so an export can stream, and a small reader for round-trip checks.

use std::borrow::Cow;

use super::log::SpendRow;
use super::report::ReportRow;

/// Appends one field, quoted when it holds a comma, quote, CR or LF (quotes doubled).
pub fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends one record terminated by CRLF.
pub fn push_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f.as_ref());
    }
    out.push_str("\r\n");
}

/// Columns of a spend log export (times are ISO-8601 UTC; tags and metadata are JSON).
pub const LOG_HEADER: &[&str] = &[
    "request_id",
    "call_type",
    "api_key",
    "key_alias",
    "user",
    "team_id",
    "end_user",
    "model",
    "model_group",
    "model_id",
    "api_base",
    "custom_llm_provider",
    "spend",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "usage_estimated",
    "startTime",
    "endTime",
    "ttft_ms",
    "duration_ms",
    "status",
    "http_status",
    "error_class",
    "error_message",
    "request_tags",
    "metadata",
    "attempted_retries",
    "attempted_fallbacks",
    "stream",
];

fn opt(v: &Option<Cow<'_, str>>) -> String {
    v.as_deref().unwrap_or_default().to_owned()
}

/// The fields of one spend row, in `LOG_HEADER` order.
pub fn log_fields(r: &SpendRow<'_>) -> Vec<String> {
    vec![
        r.request_id.to_string(),
        r.call_type.to_string(),
        r.api_key.to_string(),
        opt(&r.key_alias),
        opt(&r.user),
        opt(&r.team_id),
        opt(&r.end_user),
        r.model.to_string(),
        r.model_group.to_string(),
        r.model_id.to_string(),
        r.api_base.to_string(),
        r.custom_llm_provider.to_string(),
        r.spend.to_string(),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.total_tokens.to_string(),
        r.cache_read_tokens.to_string(),
        r.cache_creation_tokens.to_string(),
        r.usage_estimated.to_string(),
        r.start_time.clone(),
        r.end_time.clone(),
        r.ttft_ms.map(|t| t.to_string()).unwrap_or_default(),
        r.duration_ms.to_string(),
        r.status.to_string(),
        r.http_status.to_string(),
        opt(&r.error_class),
        opt(&r.error_message),
        serde_json::to_string(&r.request_tags).unwrap_or_default(),
        r.metadata.to_string(),
        r.attempted_retries.to_string(),
        r.attempted_fallbacks.to_string(),
        r.stream.to_string(),
    ]
}

/// Columns of a report export.
pub fn report_header(group: &str) -> Vec<String> {
    [
        "group_by_day",
        group,
        "model",
        "api_key",
        "requests",
        "successes",
        "failures",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "spend",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn report_fields(r: &ReportRow) -> Vec<String> {
    let t = &r.totals;
    vec![
        r.day.clone(),
        r.group.clone(),
        r.model.to_string(),
        r.api_key.to_string(),
        t.requests.to_string(),
        t.successes.to_string(),
        t.failures.to_string(),
        t.prompt_tokens.to_string(),
        t.completion_tokens.to_string(),
        t.total_tokens.to_string(),
        t.spend.to_string(),
    ]
}

/// Parses RFC 4180 text into records (for tests and tools; not used on a request path).
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            '"' => return Err("quote inside an unquoted field".into()),
            ',' => {
                record.push(std::mem::take(&mut field));
                at_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_start = true;
            }
            _ => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_quotes_and_newlines_round_trip() {
        let fields = ["plain", "a,b", "say \"hi\"", "two\nlines", "", "cr\r\nlf"];
        let mut out = String::new();
        push_record(&mut out, &fields);
        push_record(&mut out, &["x"]);
        assert!(out.starts_with("plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,"));
        let back = parse(&out).unwrap();
        assert_eq!(
            back,
            vec![fields.map(String::from).to_vec(), vec!["x".to_string()]]
        );
    }

    #[test]
    fn log_fields_match_the_header() {
        assert_eq!(log_fields(&SpendRow::default()).len(), LOG_HEADER.len());
        assert!(parse("\"open").is_err());
    }
}
