//! Spend reports over HTTP (LiteLLM-compatible; master key / proxy admin only): thin
//! handlers over `spend::report`, and streamed CSV exports.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use crate::proxy::ApiError;
use crate::spend::csv;
use crate::spend::report::{self, GroupBy, LogFilter, Page, ReportError, TimeRange};
use crate::state::AppState;
use crate::store::{Doc, Store};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/spend/logs", get(spend_logs))
        .route("/spend/logs/csv", get(spend_logs_csv))
        .route("/spend/tags", get(spend_tags))
        .route("/global/spend", get(global_spend))
        .route("/global/spend/keys", get(global_keys))
        .route("/global/spend/models", get(global_models))
        .route("/global/spend/teams", get(global_teams))
        .route("/global/spend/tags", get(spend_tags))
        .route("/global/spend/report", get(global_report))
        .route("/global/spend/report/csv", get(global_report_csv))
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Query parameters; repeated keys are joined with commas (`tags=a&tags=b` = `tags=a,b`).
struct Q(HashMap<String, String>);

impl Q {
    fn from(p: Params) -> Result<Q, ApiError> {
        let Query(pairs) = p.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut m: HashMap<String, String> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k)
                .and_modify(|old| {
                    old.push(',');
                    old.push_str(&v);
                })
                .or_insert(v);
        }
        Ok(Q(m))
    }

    fn str(&self, k: &str) -> Option<String> {
        self.0
            .get(k)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    fn usize(&self, k: &str) -> Result<Option<usize>, ApiError> {
        self.str(k)
            .map(|s| {
                s.parse::<usize>().map_err(|_| {
                    ApiError::missing_param(k, format!("{k} must be a non-negative integer"))
                })
            })
            .transpose()
    }

    fn range(&self) -> Result<TimeRange, ApiError> {
        TimeRange::parse(
            self.str("start_date").as_deref(),
            self.str("end_date").as_deref(),
        )
        .map_err(err)
    }

    fn filter(&self) -> Result<LogFilter, ApiError> {
        Ok(LogFilter {
            api_key: self.str("api_key"),
            user_id: self.str("user_id"),
            team_id: self.str("team_id"),
            end_user: self.str("end_user").or_else(|| self.str("customer_id")),
            request_id: self.str("request_id"),
            model: self.str("model"),
            tags: self
                .str("tags")
                .map(|t| {
                    t.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            status: self.str("status"),
            time: self.range()?,
        }
        .prepared())
    }

    fn group_by(&self) -> Result<GroupBy, ApiError> {
        GroupBy::parse(self.str("group_by").as_deref().unwrap_or("team")).map_err(err)
    }
}

fn err(e: ReportError) -> ApiError {
    match e {
        ReportError::BadRequest(m) => ApiError::bad_request(m),
        other => {
            tracing::error!(error = %other, "spend report failed");
            ApiError::internal(format!("spend report failed: {other}"))
        }
    }
}

/// The master key or a proxy admin, else 401 (LiteLLM refuses admin-only routes with 401).
fn admin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let caller = app.governance.authenticate(crate::auth::api_key(headers))?;
    if !caller.is_admin() {
        return Err(ApiError::unauthorized(super::common::admin_only_message(
            &caller,
        )));
    }
    Ok(())
}

/// Runs a store read off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReportError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("spend report task failed: {e}")))?
        .map_err(err)
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn spend_logs(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let q = Q::from(q)?;
            let filter = q.filter()?;
            let page = Page {
                page: q.usize("page")?.unwrap_or(1).max(1),
                page_size: q
                    .usize("page_size")?
                    .or(q.usize("limit")?)
                    .unwrap_or(Page::default().page_size)
                    .clamp(1, report::MAX_PAGE_SIZE),
            };
            let store = app.store.clone();
            let rows = blocking(move || report::logs(&store, &filter, page)).await?;
            Ok(Value::Array(rows.iter().map(report::row_json).collect()))
        }
        .await,
    )
}

async fn spend_tags(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let range = Q::from(q)?.range()?;
            let store = app.store.clone();
            let totals = blocking(move || report::totals_by(&store, &range, GroupBy::Tag)).await?;
            Ok(report::tags_json(&totals))
        }
        .await,
    )
}

async fn global_spend(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let range = Q::from(q)?.range()?;
            let store = app.store.clone();
            let t = blocking(move || report::total(&store, &range)).await?;
            Ok(json!({
                "spend": t.spend,
                "max_budget": 0.0,
                "requests": t.requests,
                "successes": t.successes,
                "failures": t.failures,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "total_tokens": t.total_tokens,
            }))
        }
        .await,
    )
}

async fn global_keys(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let q = Q::from(q)?;
            let (range, limit) = (q.range()?, q.usize("limit")?.unwrap_or(usize::MAX));
            let store = app.store.clone();
            blocking(move || {
                let totals = report::totals_by(&store, &range, GroupBy::ApiKey)?;
                Ok(totals
                    .into_iter()
                    .take(limit)
                    .map(|(key, a)| {
                        let alias = report::doc_field(&store, Doc::Keys, &key, "key_alias");
                        let name = report::doc_field(&store, Doc::Keys, &key, "key_name");
                        json!({"api_key": key, "total_spend": a.spend, "key_alias": alias, "key_name": name, "requests": a.requests, "total_tokens": a.total_tokens})
                    })
                    .collect())
            })
            .await
        }
        .await,
    )
}

async fn global_models(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let q = Q::from(q)?;
            let (range, limit) = (q.range()?, q.usize("limit")?.unwrap_or(usize::MAX));
            let store = app.store.clone();
            let totals =
                blocking(move || report::totals_by(&store, &range, GroupBy::Model)).await?;
            Ok(totals
                .into_iter()
                .take(limit)
                .map(|(model, a)| json!({"model": model, "total_spend": a.spend, "requests": a.requests, "total_tokens": a.total_tokens}))
                .collect())
        }
        .await,
    )
}

async fn global_teams(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let range = Q::from(q)?.range()?;
            let store = app.store.clone();
            blocking(move || {
                let alias = |team: &str| {
                    if team.is_empty() {
                        "Unassigned".to_owned()
                    } else {
                        report::doc_field(&store, Doc::Teams, team, "team_alias")
                            .unwrap_or_else(|| team.to_owned())
                    }
                };
                let totals = report::totals_by(&store, &range, GroupBy::Team)?;
                let per_team: Vec<Value> = totals
                    .iter()
                    .map(|(t, a)| {
                        let id = if t.is_empty() {
                            "Unassigned"
                        } else {
                            t.as_str()
                        };
                        json!({"team_id": id, "team_alias": alias(t), "total_spend": a.spend})
                    })
                    .collect();
                let teams: Vec<String> = totals.iter().map(|(t, _)| alias(t)).collect();
                let daily: Vec<Value> = report::team_daily(&store, &range)?
                    .into_iter()
                    .map(|(day, by_team)| {
                        let mut o = serde_json::Map::new();
                        o.insert("date".into(), day.into());
                        for (t, s) in by_team {
                            o.insert(alias(&t), s.into());
                        }
                        Value::Object(o)
                    })
                    .collect();
                Ok(json!({"daily_spend": daily, "teams": teams, "total_spend_per_team": per_team}))
            })
            .await
        }
        .await,
    )
}

async fn global_report(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    respond(
        async {
            admin(&app, &headers)?;
            let q = Q::from(q)?;
            let (range, by) = (q.range()?, q.group_by()?);
            let store = app.store.clone();
            blocking(move || {
                let rows = report::report_rows(&store, &range, by)?;
                let names = |team: &str| report::doc_field(&store, Doc::Teams, team, "team_alias");
                Ok(report::report_json(&rows, by, &names))
            })
            .await
        }
        .await,
    )
}

fn csv_response(body: Body, name: &str) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}_{stamp}.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// State of a streamed log export: rows with sequence in `(after, upto]`, a page per read.
struct LogExport {
    store: Store,
    filter: LogFilter,
    after: Option<u64>,
    upto: u64,
    header: bool,
}

impl LogExport {
    /// The next non-empty piece of CSV, or `None` at the end.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let mut out = String::new();
        if !self.header {
            self.header = true;
            csv::push_record(&mut out, csv::LOG_HEADER);
        }
        while let Some(after) = self.after {
            let (store, filter, upto) = (self.store.clone(), self.filter.clone(), self.upto);
            let page = tokio::task::spawn_blocking(move || {
                report::logs_chunk(&store, &filter, after, upto)
            })
            .await;
            let (rows, next) = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Some(Err(std::io::Error::other(e.to_string()))),
                Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
            };
            self.after = next;
            for r in &rows {
                csv::push_record(&mut out, &csv::log_fields(r));
            }
            if !out.is_empty() {
                break;
            }
        }
        (!out.is_empty()).then(|| Ok(Bytes::from(out)))
    }
}

async fn spend_logs_csv(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    let start = async {
        admin(&app, &headers)?;
        let filter = Q::from(q)?.filter()?;
        let store = app.store.clone();
        let upto = blocking(move || report::last_sequence(&store)).await?;
        Ok::<_, ApiError>(LogExport {
            store: app.store.clone(),
            filter,
            after: Some(0),
            upto,
            header: false,
        })
    }
    .await;
    match start {
        Ok(export) => {
            let stream = futures_util::stream::unfold(export, |mut ex| async move {
                ex.next().await.map(|piece| (piece, ex))
            });
            csv_response(Body::from_stream(stream), "spend_logs")
        }
        Err(e) => e.into_response(),
    }
}

async fn global_report_csv(State(app): State<AppState>, headers: HeaderMap, q: Params) -> Response {
    let rows = async {
        admin(&app, &headers)?;
        let q = Q::from(q)?;
        let (range, by) = (q.range()?, q.group_by()?);
        let store = app.store.clone();
        let rows = blocking(move || report::report_rows(&store, &range, by)).await?;
        Ok::<_, ApiError>((rows, by))
    }
    .await;
    let (rows, by) = match rows {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Aggregates are already small (days × groups); write them a thousand records a chunk.
    let mut head = String::new();
    csv::push_record(&mut head, &csv::report_header(by.name()));
    let chunks: Vec<Vec<report::ReportRow>> = rows.chunks(1000).map(<[_]>::to_vec).collect();
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
            .chain(futures_util::stream::iter(chunks.into_iter().map(
                |chunk| {
                    let mut out = String::new();
                    for r in &chunk {
                        csv::push_record(&mut out, &csv::report_fields(r));
                    }
                    Ok(Bytes::from(out))
                },
            )));
    csv_response(
        Body::from_stream(body),
        &format!("spend_report_{}", by.name()),
    )
}
