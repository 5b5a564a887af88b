//! Virtual keys through the management API and their enforcement on proxied calls.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// Two model groups priced so a mock call (10 prompt + 5 completion tokens) costs 0.02.
pub fn priced(up: &MockUpstream) -> String {
    let mut y = String::from("model_list:\n");
    for name in ["gpt", "other"] {
        y += &format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/{name}\n      api_base: {}/v1\n      api_key: sk-up\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n",
            up.url()
        );
    }
    y
}

pub async fn setup() -> (MockUpstream, TestApp) {
    let up = MockUpstream::openai().await;
    let app = spawn_app(&priced(&up)).await;
    (up, app)
}

/// Generates a key with `body`, asserting success; returns the secret.
pub async fn new_key(app: &TestApp, body: Value) -> String {
    let r = app.post("/key/generate", Some(MASTER_KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn generated_key_is_returned_once_and_only_its_hash_is_stored() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"key_alias": "a1", "models": ["gpt"], "max_budget": 1.5, "metadata": {"x": 1}, "tags": ["t"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = r.body["key"].as_str().unwrap();
    assert!(key.starts_with("sk-") && key.len() >= 35, "{key}");
    assert!(key[3..]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_ne!(token, key);
    assert_eq!(r.body["max_budget"], 1.5);
    assert_eq!(r.body["models"], json!(["gpt"]));
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.body["key"], token);
    assert_eq!(info.body["info"]["key_alias"], "a1");
    assert!(
        info.body["info"].get("key").is_none(),
        "the secret is never returned again"
    );
    assert!(!info.text.contains(key));
    let stored: Option<Value> = app
        .state()
        .store
        .get(switchyard::store::Doc::Keys, token)
        .unwrap();
    assert!(!stored.unwrap().to_string().contains(key));
    assert_eq!(app.chat(key, "gpt").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn custom_keys_must_start_with_sk_and_bad_fields_are_named() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"key": "abc-123456789"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["param"], "key");
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"max_budget": "lots"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("max_budget"));
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"budget_duration": "soon"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_message().contains("budget_duration"));
    let r = app
        .post("/key/generate", Some(MASTER_KEY), &json!({"rpm_limit": -1}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app
        .post("/key/generate", Some(MASTER_KEY), &json!([1, 2]))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let key = new_key(&app, json!({"key": "sk-my-custom-key-1"})).await;
    assert_eq!(key, "sk-my-custom-key-1");
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn management_routes_need_the_master_key_or_an_admin_user() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({})).await;
    // LiteLLM refuses admin-only routes to a plain key with 401 auth_error.
    let r = app.post("/key/generate", Some(&key), &json!({})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(app.get("/key/list", Some(&key)).await.status, 401);
    assert_eq!(
        app.post("/team/new", Some(&key), &json!({})).await.status,
        401
    );
    assert_eq!(app.get("/key/list", None).await.status, 401);
    assert_eq!(app.get("/key/list", Some("sk-nope-nope")).await.status, 401);
    // A key may read its own info, not another's.
    let own = app.get(&format!("/key/info?key={key}"), Some(&key)).await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(app.get("/key/info", Some(&key)).await.status, 200);
    let other = new_key(&app, json!({})).await;
    assert_eq!(
        app.get(&format!("/key/info?key={other}"), Some(&key))
            .await
            .status,
        403
    );
    // A proxy_admin user's key may manage.
    let r = app
        .post(
            "/user/new",
            Some(MASTER_KEY),
            &json!({"user_id": "boss", "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let admin_key = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post("/key/generate", Some(&admin_key), &json!({}))
            .await
            .status,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn key_works_then_blocked_then_unblocked() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"key_alias": "blk"})).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app
        .post("/key/block", Some(MASTER_KEY), &json!({"key": key}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["blocked"], true);
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.error_message().contains("blocked"));
    assert_eq!(r.body["error"]["type"], "auth_error");
    let r = app
        .post("/key/unblock", Some(MASTER_KEY), &json!({"key": key}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_key_with_a_one_second_duration_expires() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"duration": "1s"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["expires"].is_string());
    let key = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.error_message().contains("Expired"), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn model_and_route_restrictions_are_enforced() {
    let (_up, app) = setup().await;
    let key = new_key(&app, json!({"models": ["gpt"]})).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app.chat(&key, "other").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "key_model_access_denied");
    let models = app.get("/v1/models", Some(&key)).await;
    let ids: Vec<&str> = models.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["gpt"]);
    let emb_only = new_key(&app, json!({"allowed_routes": ["/v1/embeddings"]})).await;
    let r = app.chat(&emb_only, "gpt").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.error_message().contains("route"));
    app.stop().await;
}

#[tokio::test]
async fn update_list_regenerate_and_delete_keys() {
    let (_up, app) = setup().await;
    let key = new_key(
        &app,
        json!({"key_alias": "k1", "user_id": "u1", "max_budget": 5.0}),
    )
    .await;
    let _k2 = new_key(&app, json!({"key_alias": "k2", "user_id": "u2"})).await;
    let r = app
        .post(
            "/key/update",
            Some(MASTER_KEY),
            &json!({"key": key, "max_budget": 7.0, "models": ["gpt"], "key_alias": "k1b"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["max_budget"], 7.0);
    assert_eq!(r.body["key_alias"], "k1b");
    let r = app
        .post(
            "/key/update",
            Some(MASTER_KEY),
            &json!({"key": "sk-unknown-key", "max_budget": 1}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app
        .post(
            "/key/update",
            Some(MASTER_KEY),
            &json!({"key": key, "tpm_limit": "x"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["param"], "tpm_limit");

    let l = app.get("/key/list?user_id=u1", Some(MASTER_KEY)).await;
    assert_eq!(l.status, 200, "{}", l.text);
    assert_eq!(l.body["total_count"], 1);
    let l = app.get("/key/list?size=1&page=2", Some(MASTER_KEY)).await;
    assert_eq!(l.body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(l.body["total_pages"], 2);
    let l = app
        .get(
            "/key/list?key_alias=k1b&return_full_object=true",
            Some(MASTER_KEY),
        )
        .await;
    assert_eq!(l.body["keys"][0]["max_budget"], 7.0);

    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    app.flush_spend().await;
    let r = app
        .post("/key/regenerate", Some(MASTER_KEY), &json!({"key": key}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["key"].as_str().unwrap().to_owned();
    assert_ne!(new, key);
    assert_eq!(r.body["max_budget"], 7.0);
    assert!(
        (r.body["spend"].as_f64().unwrap() - 0.02).abs() < 1e-9,
        "spend carries over: {}",
        r.text
    );
    assert_eq!(
        app.chat(&key, "gpt").await.status,
        401,
        "the old secret stops working"
    );
    assert_eq!(app.chat(&new, "gpt").await.status, 200);

    let r = app
        .post(
            "/key/delete",
            Some(MASTER_KEY),
            &json!({"key_aliases": ["k2"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .post("/key/delete", Some(MASTER_KEY), &json!({"keys": [new]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.chat(&new, "gpt").await.status, 401);
    let r = app
        .post(
            "/key/delete",
            Some(MASTER_KEY),
            &json!({"keys": ["sk-never-existed"]}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app
        .get("/key/info?key=sk-never-existed", Some(MASTER_KEY))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(
        app.get("/key/list", Some(MASTER_KEY)).await.body["total_count"],
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn key_spend_and_limit_headers_are_returned() {
    let (_up, app) = setup().await;
    let key = new_key(
        &app,
        json!({"max_budget": 10.0, "rpm_limit": 5, "tpm_limit": 10000}),
    )
    .await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-key-max-budget"), Some("10"));
    let spend: f64 = r.header("x-litellm-key-spend").unwrap().parse().unwrap();
    assert!((spend - 0.02).abs() < 1e-9, "{spend}");
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("3"));
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("10000"));
    assert!(r.header("x-ratelimit-remaining-tokens").is_some());
    app.stop().await;
}

#[tokio::test]
async fn keys_teams_and_spend_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = MockUpstream::openai().await;
    let app = spawn_app_in(&priced(&up), dir.path()).await;
    let r = app
        .post(
            "/team/new",
            Some(MASTER_KEY),
            &json!({"team_id": "t1", "max_budget": 3.0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = new_key(
        &app,
        json!({"team_id": "t1", "user_id": "u1", "key_alias": "persist"}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(app.chat(&key, "gpt").await.status, 200);
    }
    app.stop().await;

    let app = spawn_app_in(&priced(&up), dir.path()).await;
    let info = app
        .get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert!(
        (info.body["info"]["spend"].as_f64().unwrap() - 0.06).abs() < 1e-9,
        "{}",
        info.text
    );
    let t = app.get("/team/info?team_id=t1", Some(MASTER_KEY)).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert!((t.body["team_info"]["spend"].as_f64().unwrap() - 0.06).abs() < 1e-9);
    assert_eq!(t.body["team_info"]["max_budget"], 3.0);
    let u = app.get("/user/info?user_id=u1", Some(MASTER_KEY)).await;
    assert!(
        (u.body["user_info"]["spend"].as_f64().unwrap() - 0.06).abs() < 1e-9,
        "{}",
        u.text
    );
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    app.stop().await;
}
