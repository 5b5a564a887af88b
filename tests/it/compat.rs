//! LiteLLM drop-in compatibility: management-API response shapes and refusal
//! statuses/types as LiteLLM's proxy produces them (each test names its source file).

use std::time::Duration;

use serde_json::json;

use crate::keys::{new_key, setup};
use crate::support::*;

fn hi() -> serde_json::Value {
    json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
}

// litellm/proxy/auth/route_checks.py raises "Only proxy admin can be used to generate,
// delete, update info for new keys/users/teams"; auth_exception_handler.py wraps it as
// ProxyException(type=auth_error, code=401) with an "Authentication Error, " prefix.
#[tokio::test]
async fn admin_only_routes_refuse_a_plain_key_with_401_auth_error() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"user_id": "plain"})).await;
    for (path, post) in [
        ("/key/generate", true),
        ("/team/new", true),
        ("/user/new", true),
        ("/key/list", false),
        ("/global/spend/report", false),
    ] {
        let r = if post {
            app.post(path, Some(&key), &json!({})).await
        } else {
            app.get(path, Some(&key)).await
        };
        assert_eq!(r.status, 401, "{path}: {}", r.text);
        assert_eq!(r.body["error"]["type"], "auth_error", "{path}");
        assert_eq!(r.body["error"]["code"], "401", "{path}");
        assert!(
            r.error_message().starts_with(
                "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams."
            ),
            "{path}: {}",
            r.text
        );
    }
    app.stop().await;
}

// litellm/proxy/_types.py ProxyErrorTypes.expired_key; raised by
// litellm/proxy/auth/user_api_key_auth.py with "Authentication Error - Expired Key."
#[tokio::test]
async fn an_expired_key_is_refused_with_type_expired_key() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"duration": "1s"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "expired_key");
    assert!(r
        .error_message()
        .starts_with("Authentication Error - Expired Key. Key Expiry time"));
    app.stop().await;
}

// litellm/proxy/auth/auth_checks.py: "Key is blocked. Update via `/key/unblock` if you're
// an admin.", wrapped by auth_exception_handler.py as auth_error / 401.
#[tokio::test]
async fn a_blocked_key_gets_litellms_exact_refusal() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({})).await;
    let r = app
        .post("/key/block", Some(MASTER_KEY), &json!({"key": key}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        r.error_message(),
        "Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin."
    );
    assert_eq!(r.body["error"]["type"], "auth_error");
    assert_eq!(r.body["error"]["code"], "401");
    app.stop().await;
}

// litellm/proxy/auth/auth_checks.py: BudgetExceededError("Budget has been exceeded! Key=...
// Current cost: X, Max budget: Y"); auth_exception_handler.py: type budget_exceeded, 400.
#[tokio::test]
async fn an_over_budget_key_gets_budget_exceeded_with_litellms_message() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"key_alias": "dev", "max_budget": 0.01})).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "budget_exceeded");
    assert_eq!(r.body["error"]["code"], "400");
    assert_eq!(
        r.error_message(),
        "Budget has been exceeded! Key=dev Current cost: 0.02, Max budget: 0.01"
    );
    app.stop().await;
}

// Shapes from litellm/proxy/management_endpoints/key_management_endpoints.py:
// /key/generate (GenerateKeyResponse: key, key_name, token_id, expires), /key/info
// {"key", "info"}, /key/list {"keys", "total_count", "current_page", "total_pages"},
// /key/delete {"deleted_keys"}.
#[tokio::test]
async fn key_routes_answer_in_litellms_shapes() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"key_alias": "shape", "models": ["gpt"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for f in [
        "key",
        "key_name",
        "token_id",
        "expires",
        "key_alias",
        "models",
    ] {
        assert!(r.body.get(f).is_some(), "generate lacks {f}: {}", r.text);
    }
    let key = r.body["key"].as_str().expect("key").to_owned();
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert!(info.body["key"].is_string());
    assert_eq!(info.body["info"]["key_alias"], "shape");
    assert!(info.body["info"]["spend"].is_number());
    let list = app.get("/key/list", Some(MASTER_KEY)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["total_count"], 1);
    assert_eq!(list.body["current_page"], 1);
    assert_eq!(list.body["total_pages"], 1);
    let del = app
        .post("/key/delete", Some(MASTER_KEY), &json!({"keys": [key]}))
        .await;
    assert_eq!(del.status, 200, "{}", del.text);
    assert_eq!(del.body["deleted_keys"], json!([key]));
    let gone = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    app.stop().await;
}

// /team/info from litellm/proxy/management_endpoints/team_endpoints.py:
// {"team_id", "team_info", "keys", "team_memberships"}; /user/info from
// internal_user_endpoints.py: {"user_id", "user_info", "keys", "teams"}.
#[tokio::test]
async fn team_and_user_info_answer_in_litellms_shapes() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/team/new",
            Some(MASTER_KEY),
            &json!({"team_id": "t1", "team_alias": "T", "members_with_roles": [{"user_id": "u1", "role": "admin"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    new_key(&app, json!({"team_id": "t1", "user_id": "u1"})).await;
    let t = app.get("/team/info?team_id=t1", Some(MASTER_KEY)).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["team_id"], "t1");
    assert_eq!(t.body["team_info"]["team_alias"], "T");
    assert_eq!(t.body["keys"].as_array().map(Vec::len), Some(1));
    let m = &t.body["team_memberships"];
    assert_eq!(m.as_array().map(Vec::len), Some(1), "{}", t.text);
    assert_eq!(m[0]["user_id"], "u1");
    assert_eq!(m[0]["team_id"], "t1");
    let u = app.get("/user/info?user_id=u1", Some(MASTER_KEY)).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["user_id"], "u1");
    assert_eq!(u.body["user_info"]["user_id"], "u1");
    assert_eq!(u.body["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(u.body["teams"][0]["team_id"], "t1");
    app.stop().await;
}

// litellm/proxy/management_endpoints/customer_endpoints.py: /customer/block and
// /customer/unblock take {"user_ids": [...]} and answer {"blocked_users": ...}; block
// creates the end user when it does not exist.
#[tokio::test]
async fn customers_are_blocked_and_unblocked_by_user_ids() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({})).await;
    let mut body = hi();
    body["user"] = json!("cust-1");
    assert_eq!(app.chat_body(&key, body.clone()).await.status, 200);
    let r = app
        .post(
            "/customer/block",
            Some(MASTER_KEY),
            &json!({"user_ids": ["cust-1"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["blocked_users"][0]["user_id"], "cust-1");
    assert_eq!(r.body["blocked_users"][0]["blocked"], true);
    let refused = app.chat_body(&key, body.clone()).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    let r = app
        .post(
            "/end_user/unblock",
            Some(MASTER_KEY),
            &json!({"user_ids": ["cust-1"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["blocked_users"], json!([]));
    assert_eq!(app.chat_body(&key, body).await.status, 200);
    app.stop().await;
}
