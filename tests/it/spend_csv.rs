//! CSV downloads: `/spend/logs/csv` and `/global/spend/report/csv` parse back to the
//! same rows, stream in bounded chunks, and apply the same filters as the JSON endpoints.

use std::borrow::Cow;

use futures_util::StreamExt;
use serde_json::json;
use switchyard::spend::csv;

use crate::spend::assert_usd;
use crate::spend_reports::row;
use crate::support::*;

async fn app() -> TestApp {
    let up = MockUpstream::openai().await;
    spawn_app(&config_for(&[(
        "gpt",
        "openai/gpt-4o",
        &format!("{}/v1", up.url()),
    )]))
    .await
}

#[tokio::test]
async fn spend_log_csv_parses_back_to_the_same_rows_with_awkward_text() {
    let app = app().await;
    let mut rows = Vec::new();
    for i in 0..25 {
        let mut r = row(
            i,
            "hash-a",
            "2026-03-01",
            &["plain", "a,b", "say \"hi\"", "two\nlines"],
        );
        r.metadata = Cow::Owned(json!({"note": "comma, \"quote\"\r\nand newline", "i": i}));
        r.error_message = (i % 5 == 0).then(|| "upstream said: \"no\",\nsorry".into());
        r.key_alias = Some("alias, with comma".into());
        app.state().spend.record(r.clone());
        rows.push(r);
    }
    let mut other = row(99, "hash-b", "2026-03-02", &[]);
    other.request_id = "req-other".into();
    app.state().spend.record(other);
    app.flush_spend().await;

    let r = app
        .get("/spend/logs/csv?api_key=hash-a", Some(MASTER_KEY))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let disposition = r
        .header("content-disposition")
        .expect("content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"spend_logs_")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let records = csv::parse(&r.text).expect("valid RFC 4180");
    assert_eq!(
        records[0],
        csv::LOG_HEADER
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        records.len(),
        1 + rows.len(),
        "header + the key's rows only"
    );
    let col = |name: &str| csv::LOG_HEADER.iter().position(|h| *h == name).unwrap();
    for (got, want) in records[1..].iter().zip(&rows) {
        let mut want_fields = csv::log_fields(want);
        // serde_json's default float parser may be one ULP off after the store round trip.
        assert_usd(got[col("spend")].parse().unwrap(), want.spend);
        want_fields[col("spend")] = got[col("spend")].clone();
        assert_eq!(got, &want_fields);
    }
    // Typed fields survive: tags and metadata parse back exactly.
    let last = &records[rows.len()];
    let tags: Vec<String> = serde_json::from_str(&last[col("request_tags")]).unwrap();
    assert_eq!(tags, *rows[24].request_tags);
    let meta: serde_json::Value = serde_json::from_str(&last[col("metadata")]).unwrap();
    assert_eq!(meta, *rows[24].metadata);
    assert_eq!(last[col("startTime")], "2026-03-01T10:00:24.000Z");

    let dated = app
        .get(
            "/spend/logs/csv?start_date=2026-03-02&end_date=2026-03-02",
            Some(MASTER_KEY),
        )
        .await;
    assert_eq!(csv::parse(&dated.text).unwrap().len(), 2, "{}", dated.text);
    let bad = app
        .get("/spend/logs/csv?end_date=tomorrow", Some(MASTER_KEY))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    app.stop().await;
}

#[tokio::test]
async fn a_hundred_thousand_rows_export_in_bounded_chunks() {
    let app = app().await;
    let n = 100_000;
    for i in 0..n {
        app.state()
            .spend
            .record(row(i, "hash-a", "2026-03-01", &["bulk"]));
    }
    app.flush_spend().await;
    let resp = app
        .client
        .get(format!("{}/spend/logs/csv", app.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    let (mut lines, mut chunks, mut largest) = (0usize, 0usize, 0usize);
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        chunks += 1;
        largest = largest.max(chunk.len());
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(lines, n + 1, "header + every row");
    // Each piece holds at most one store page (1000 rows): memory stays bounded.
    assert!(chunks >= n / 1000, "{chunks} chunks");
    assert!(largest < 1 << 20, "largest chunk {largest} bytes");
    app.stop().await;
}

#[tokio::test]
async fn the_report_csv_matches_the_json_report() {
    let app = app().await;
    for i in 0..40 {
        let day = if i < 20 { "2026-03-01" } else { "2026-03-02" };
        let tags: &[&str] = if i % 2 == 0 { &["x,y"] } else { &["z"] };
        app.state().spend.record(row(i, "hash-a", day, tags));
    }
    app.flush_spend().await;
    for group_by in ["team", "customer", "api_key", "model", "tag"] {
        let r = app
            .get(&format!("/global/spend/report/csv?group_by={group_by}&start_date=2026-03-01&end_date=2026-03-02"), Some(MASTER_KEY))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r
            .header("content-disposition")
            .unwrap()
            .contains(&format!("spend_report_{group_by}")));
        let records = csv::parse(&r.text).unwrap();
        assert_eq!(records[0], csv::report_header(group_by));
        let spend_col = records[0].iter().position(|h| h == "spend").unwrap();
        let total: f64 = records[1..]
            .iter()
            .map(|r| r[spend_col].parse::<f64>().unwrap())
            .sum();
        let requests: u64 = records[1..]
            .iter()
            .map(|r| r[4].parse::<u64>().unwrap())
            .sum();
        // 0.001 × (1 + 2 + ... + 40); every row has exactly one tag.
        assert_usd(total, 0.82);
        assert_eq!(requests, 40, "{group_by}");
    }
    let tags = app
        .get("/global/spend/report/csv?group_by=tag", Some(MASTER_KEY))
        .await;
    let records = csv::parse(&tags.text).unwrap();
    assert!(records.iter().any(|r| r[1] == "x,y"), "{}", tags.text);
    let one_day = app
        .get(
            "/global/spend/report/csv?group_by=model&start_date=2026-03-02&end_date=2026-03-02",
            Some(MASTER_KEY),
        )
        .await;
    let records = csv::parse(&one_day.text).unwrap();
    assert!(
        records[1..].iter().all(|r| r[0] == "2026-03-02"),
        "{}",
        one_day.text
    );
    app.stop().await;
}
