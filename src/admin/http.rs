//! Thin axum handlers for the management API: authenticate, parse, call the service on
//! a blocking thread (it waits for its durable write), render JSON or an OpenAI-shaped error.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::common::Admin;
use super::error::{Error, Result};
use super::fields::{self, Obj};
use super::{customers, keys, teams, users};
use crate::governance::Caller;
use crate::state::AppState;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Store(e) = &self {
            tracing::error!(error = %e, "admin store write failed");
        }
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": self.param(),
            "code": self.status().to_string(),
        }});
        (status, Json(body)).into_response()
    }
}

type Query2 = std::result::Result<Query<HashMap<String, String>>, QueryRejection>;

async fn call<F>(app: AppState, headers: &HeaderMap, f: F) -> Response
where
    F: FnOnce(&Admin, &Caller) -> Result<Value> + Send + 'static,
{
    let caller = match app.governance.authenticate(crate::auth::api_key(headers)) {
        Ok(c) => c,
        Err(e) => return Error::from(e).into_response(),
    };
    let r = tokio::task::spawn_blocking(move || {
        let a = Admin {
            gov: &app.governance,
            store: &app.store,
        };
        f(&a, &caller)
    })
    .await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin task failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "internal error", "type": "internal_server_error", "param": null, "code": "500"}})),
            )
                .into_response()
        }
    }
}

type BodyFn = fn(&Admin, &Caller, &Obj) -> Result<Value>;
type QueryFn = fn(&Admin, &Caller, &HashMap<String, String>) -> Result<Value>;

fn p(f: BodyFn) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>, headers: HeaderMap, body: Bytes| async move {
            let obj = match fields::body(&body) {
                Ok(o) => o,
                Err(e) => return e.into_response(),
            };
            call(app, &headers, move |a, c| f(a, c, &obj)).await
        },
    )
}

fn g(f: QueryFn) -> MethodRouter<AppState> {
    get(
        move |State(app): State<AppState>, headers: HeaderMap, q: Query2| async move {
            let q = match q {
                Ok(Query(q)) => q,
                Err(e) => return Error::BadRequest(e.body_text()).into_response(),
            };
            call(app, &headers, move |a, c| f(a, c, &q)).await
        },
    )
}

async fn regenerate_path(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let obj = match fields::body(&body) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    call(app, &headers, move |a, c| {
        keys::regenerate(a, c, Some(&key), &obj)
    })
    .await
}

fn q<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|s| !s.is_empty())
}

pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/key/generate", p(keys::generate))
        .route("/key/update", p(keys::update))
        .route("/key/delete", p(keys::delete))
        .route(
            "/key/regenerate",
            p(|a, c, o| keys::regenerate(a, c, None, o)),
        )
        .route("/key/{key}/regenerate", post(regenerate_path))
        .route("/key/block", p(|a, c, o| keys::set_blocked(a, c, o, true)))
        .route(
            "/key/unblock",
            p(|a, c, o| keys::set_blocked(a, c, o, false)),
        )
        .route("/key/info", g(|a, c, m| keys::info(a, c, q(m, "key"))))
        .route("/key/list", g(keys::list))
        .route("/user/new", p(users::new))
        .route("/user/update", p(users::update))
        .route("/user/delete", p(users::delete))
        .route(
            "/user/info",
            g(|a, c, m| users::info(a, c, q(m, "user_id"))),
        )
        .route("/user/list", g(users::list))
        .route("/team/new", p(teams::new))
        .route("/team/update", p(teams::update))
        .route("/team/delete", p(teams::delete))
        .route("/team/member_add", p(teams::member_add))
        .route("/team/member_delete", p(teams::member_delete))
        .route(
            "/team/block",
            p(|a, c, o| teams::set_blocked(a, c, o, true)),
        )
        .route(
            "/team/unblock",
            p(|a, c, o| teams::set_blocked(a, c, o, false)),
        )
        .route(
            "/team/info",
            g(|a, c, m| teams::info(a, c, q(m, "team_id"))),
        )
        .route("/team/list", g(teams::list));
    for prefix in ["/customer", "/end_user"] {
        r = r
            .route(&format!("{prefix}/new"), p(customers::new))
            .route(&format!("{prefix}/update"), p(customers::update))
            .route(&format!("{prefix}/delete"), p(customers::delete))
            .route(
                &format!("{prefix}/block"),
                p(|a, c, o| customers::set_blocked(a, c, o, true)),
            )
            .route(
                &format!("{prefix}/unblock"),
                p(|a, c, o| customers::set_blocked(a, c, o, false)),
            )
            .route(
                &format!("{prefix}/info"),
                g(|a, c, m| customers::info(a, c, q(m, "end_user_id").or(q(m, "user_id")))),
            )
            .route(
                &format!("{prefix}/list"),
                g(|a, c, _| customers::list(a, c)),
            );
    }
    r
}
