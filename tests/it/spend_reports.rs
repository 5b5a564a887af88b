//! Spend reports over the management API: log filters and paging, per-key totals,
//! aggregates against raw rows after a restart, retention, and admin-only access.

use std::borrow::Cow;

use serde_json::{json, Value};
use switchyard::spend::SpendRow;

use crate::spend::{
    all_logs, assert_usd, f, general_with, header_cost, msg, priced_config, priced_upstreams,
    setup, wait_for_store,
};
use crate::support::*;

/// A row recorded straight into the writer.
pub fn row(i: usize, key: &str, day: &str, tags: &[&str]) -> SpendRow<'static> {
    SpendRow {
        request_id: format!("req-{i}").into(),
        call_type: "acompletion".into(),
        api_key: key.to_owned().into(),
        user: Some(format!("user-{}", i % 2).into()),
        team_id: Some(format!("team-{}", i % 3).into()),
        end_user: (i % 4 == 0).then(|| "customer-a".into()),
        model: if i % 2 == 0 { "gpt" } else { "claude" }.into(),
        model_group: "g".into(),
        spend: 0.001 * (i as f64 + 1.0),
        prompt_tokens: 10,
        completion_tokens: i as u64,
        total_tokens: 10 + i as u64,
        start_time: format!("{day}T10:00:{:02}.000Z", i % 60),
        end_time: format!("{day}T10:00:{:02}.500Z", i % 60),
        status: if i % 5 == 0 { "failure" } else { "success" }.into(),
        http_status: 200,
        request_tags: tags
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into(),
        metadata: Cow::Owned(json!({"i": i})),
        ..Default::default()
    }
}

#[tokio::test]
async fn spend_logs_filter_by_key_user_team_model_tags_and_dates_and_page() {
    let (app, _o, _a) = setup("").await;
    for i in 0..30 {
        let day = if i < 10 { "2026-03-01" } else { "2026-03-02" };
        let key = if i % 2 == 0 { "hash-a" } else { "hash-b" };
        let tags: &[&str] = if i % 3 == 0 { &["batch"] } else { &[] };
        app.state().spend.record(row(i, key, day, tags));
    }
    app.flush_spend().await;
    let ids = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let all = all_logs(&app, "").await;
    assert_eq!(all.len(), 30);
    assert_eq!(all[0]["request_id"], "req-29", "newest first");
    assert_eq!(all_logs(&app, "api_key=hash-a").await.len(), 15);
    assert_eq!(all_logs(&app, "user_id=user-1").await.len(), 15);
    assert_eq!(all_logs(&app, "team_id=team-0").await.len(), 10);
    assert_eq!(all_logs(&app, "model=claude").await.len(), 15);
    assert_eq!(all_logs(&app, "tags=batch").await.len(), 10);
    assert_eq!(all_logs(&app, "start_date=2026-03-02").await.len(), 20);
    assert_eq!(
        all_logs(&app, "start_date=2026-03-01&end_date=2026-03-01")
            .await
            .len(),
        10
    );
    assert_eq!(
        all_logs(
            &app,
            "start_date=2026-03-02T00:00:00Z&end_date=2026-03-02T10:00:12Z&api_key=hash-a"
        )
        .await
        .len(),
        2,
        "req-10 and req-12"
    );
    let page2 = app
        .get("/spend/logs?page=2&page_size=7", Some(MASTER_KEY))
        .await;
    assert_eq!(ids(page2.body.as_array().unwrap()), ids(&all[7..14]));
    let bad = app
        .get("/spend/logs?start_date=soon", Some(MASTER_KEY))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.error_message().contains("start_date"));
    let bad = app.get("/spend/logs?page=x", Some(MASTER_KEY)).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    app.stop().await;
}

#[tokio::test]
async fn spend_reports_need_the_master_key_or_an_admin() {
    let (app, _o, _a) = setup("").await;
    let plain_key = crate::keys::new_key(&app, serde_json::json!({})).await;
    for path in [
        "/spend/logs",
        "/spend/logs/csv",
        "/spend/tags",
        "/global/spend",
        "/global/spend/keys",
        "/global/spend/models",
        "/global/spend/teams",
        "/global/spend/report",
        "/global/spend/report/csv",
    ] {
        assert_eq!(app.get(path, None).await.status, 401, "{path}");
        let r = app.get(path, Some("sk-wrong-key-123")).await;
        assert_eq!(r.status, 401, "{path}");
        assert!(r.body["error"]["message"].is_string(), "{path}: {}", r.text);
        let r = app.get(path, Some(&plain_key)).await;
        assert_eq!(
            r.status, 401,
            "a plain virtual key may not read spend: {path}: {}",
            r.text
        );
        assert_eq!(app.get(path, Some(MASTER_KEY)).await.status, 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_spend_of_a_key_equals_the_sum_of_its_logs() {
    let (app, _o, _a) = setup("").await;
    for _ in 0..3 {
        app.chat_body(MASTER_KEY, msg("gpt")).await;
        app.chat_body(MASTER_KEY, msg("claude")).await;
    }
    for i in 0..20 {
        let key = if i % 2 == 0 { "hash-a" } else { "hash-b" };
        app.state().spend.record(row(i, key, "2026-03-01", &[]));
    }
    app.flush_spend().await;
    let keys = app.get("/global/spend/keys", Some(MASTER_KEY)).await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    let keys = keys.body.as_array().expect("list").clone();
    assert_eq!(keys.len(), 3, "master (empty hash), hash-a, hash-b");
    let rows = all_logs(&app, "").await;
    for k in &keys {
        let key = k["api_key"].as_str().expect("api_key");
        let (sum, _) = sum_rows(&rows, |r| r["api_key"] == key);
        assert_usd(f(k, "total_spend"), sum);
        if !key.is_empty() {
            let (filtered, n) =
                sum_rows(&all_logs(&app, &format!("api_key={key}")).await, |_| true);
            assert_eq!(n, 10);
            assert_usd(filtered, sum);
        }
    }
    // The master key's requests: 3 × (0.02 + 0.024).
    let master = keys
        .iter()
        .find(|k| k["api_key"] == "")
        .expect("master key row");
    assert_usd(f(master, "total_spend"), 0.132);
    let models = app
        .get("/global/spend/models?limit=1", Some(MASTER_KEY))
        .await;
    assert_eq!(
        models.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        models.text
    );
    app.stop().await;
}

fn sum_rows(rows: &[Value], pick: impl Fn(&Value) -> bool) -> (f64, u64) {
    rows.iter()
        .filter(|r| pick(r))
        .fold((0.0, 0), |(s, n), r| (s + f(r, "spend"), n + 1))
}

#[tokio::test]
async fn aggregates_equal_the_sum_of_raw_rows_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (o, a) = priced_upstreams().await;
    let yaml = priced_config(&o, &a, "");
    let app = spawn_app_in(&yaml, dir.path()).await;
    for i in 0..4 {
        let mut body = msg(if i % 2 == 0 { "gpt" } else { "claude" });
        body["metadata"] = json!({"tags": ["t-a", format!("t-{i}")]});
        body["user"] = json!(format!("cust-{}", i % 2));
        assert_eq!(app.chat_body(MASTER_KEY, body).await.status, 200);
    }
    for i in 0..10 {
        app.state()
            .spend
            .record(row(i, "hash-a", "2026-03-01", &["t-a"]));
    }
    app.stop().await;
    drop(wait_for_store(dir.path()).await);
    let app = spawn_app_in(&yaml, dir.path()).await;
    let mut body = msg("gpt");
    body["metadata"] = json!({"tags": ["t-a"]});
    assert_eq!(app.chat_body(MASTER_KEY, body).await.status, 200);
    app.flush_spend().await;

    let rows = all_logs(&app, "").await;
    assert_eq!(rows.len(), 15);
    let (total, n) = sum_rows(&rows, |_| true);
    let global = app.get("/global/spend", Some(MASTER_KEY)).await;
    assert_usd(f(&global.body, "spend"), total);
    assert_eq!(global.body["requests"], n);

    let tags = app.get("/spend/tags", Some(MASTER_KEY)).await;
    for t in tags.body.as_array().expect("tags") {
        let tag = t["individual_request_tag"].as_str().unwrap();
        let (s, n) = sum_rows(&rows, |r| {
            r["request_tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == tag)
        });
        assert_usd(f(t, "total_spend"), s);
        assert_eq!(t["log_count"], n, "{tag}");
    }
    assert_eq!(tags.body.as_array().unwrap().len(), 5, "t-a, t-0..t-3");

    let by_customer = app
        .get("/global/spend/report?group_by=customer", Some(MASTER_KEY))
        .await;
    assert_eq!(by_customer.status, 200, "{}", by_customer.text);
    for day in by_customer.body.as_array().expect("days") {
        let d = day["group_by_day"].as_str().unwrap();
        for c in day["customers"].as_array().unwrap() {
            let cust = c["customer"].as_str().unwrap();
            let (s, _) = sum_rows(&rows, |r| {
                r["start_time"].as_str().unwrap().starts_with(d)
                    && r["end_user"].as_str().unwrap_or("") == cust
            });
            assert_usd(f(c, "total_spend"), s);
        }
    }
    let by_key = app
        .get(
            "/global/spend/report?group_by=api_key&start_date=2026-03-01&end_date=2026-03-01",
            Some(MASTER_KEY),
        )
        .await;
    let by_key = by_key.body.as_array().expect("keys");
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0]["api_key"], "hash-a");
    assert_usd(
        f(&by_key[0], "total_cost"),
        sum_rows(&rows, |r| r["api_key"] == "hash-a").0,
    );
    let teams = app.get("/global/spend/teams", Some(MASTER_KEY)).await;
    let per_team = teams.body["total_spend_per_team"]
        .as_array()
        .expect("teams");
    let team_total: f64 = per_team.iter().map(|t| f(t, "total_spend")).sum();
    assert_usd(team_total, total);
    let bad = app
        .get("/global/spend/report?group_by=planet", Some(MASTER_KEY))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    app.stop().await;
}

#[tokio::test]
async fn retention_prunes_old_raw_rows_but_keeps_their_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let (o, a) = priced_upstreams().await;
    let app = spawn_app_in(&priced_config(&o, &a, ""), dir.path()).await;
    for i in 0..5 {
        app.state()
            .spend
            .record(row(i, "hash-old", "2020-01-01", &[]));
    }
    app.stop().await;
    drop(wait_for_store(dir.path()).await);
    let yaml = priced_config(
        &o,
        &a,
        &general_with("maximum_spend_logs_retention_period: 30d"),
    );
    let app = spawn_app_in(&yaml, dir.path()).await;
    assert_eq!(app.chat_body(MASTER_KEY, msg("gpt")).await.status, 200);
    app.flush_spend().await;
    let rows = all_logs(&app, "").await;
    assert_eq!(rows.len(), 1, "only the fresh row is kept");
    let global = app.get("/global/spend", Some(MASTER_KEY)).await;
    // 0.001 + 0.002 + ... + 0.005 (old, from aggregates) + 0.02 (fresh)
    assert_usd(f(&global.body, "spend"), 0.035);
    app.stop().await;
}

#[tokio::test]
async fn disable_spend_logs_stores_no_rows_but_keeps_every_total_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (o, a) = priced_upstreams().await;
    let yaml = priced_config(&o, &a, &general_with("disable_spend_logs: true"));
    let app = spawn_app_in(&yaml, dir.path()).await;
    let key = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"max_budget": 1.0}),
        )
        .await;
    assert_eq!(key.status, 200, "{}", key.text);
    let key = key.body["key"].as_str().expect("key").to_string();
    for _ in 0..3 {
        let r = app.chat_body(&key, msg("gpt")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_usd(header_cost(&r), 0.02);
    }
    app.flush_spend().await;
    assert!(all_logs(&app, "").await.is_empty(), "no raw row is stored");
    // The totals stay: the key's budget counter and the daily aggregates behind reports.

    let (key_spend, global_spend) = totals(&app, &key).await;
    assert_usd(key_spend, 0.06);
    assert_usd(global_spend, 0.06);
    app.stop().await;

    drop(wait_for_store(dir.path()).await);
    let app = spawn_app_in(&yaml, dir.path()).await;
    let (key_spend, global_spend) = totals(&app, &key).await;
    assert_usd(key_spend, 0.06);
    assert_usd(global_spend, 0.06);
    assert!(all_logs(&app, "").await.is_empty());
    app.stop().await;
}

/// A key's spend (its budget counter) and the global spend (daily aggregates).
async fn totals(app: &TestApp, key: &str) -> (f64, f64) {
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    let global = app.get("/global/spend", Some(MASTER_KEY)).await;
    (f(&info.body["info"], "spend"), f(&global.body, "spend"))
}
