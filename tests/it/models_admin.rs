//! Runtime model management: `/model/new|update|delete|info`.

use serde_json::{json, Value};
use switchyard::store::Doc;

use crate::support::*;

fn new_model_body(base: &str) -> Value {
    json!({
        "model_name": "runtime-gpt",
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base, "api_key": "sk-runtime-secret-123"},
        "model_info": {"id": "rt-1"}
    })
}

#[tokio::test]
async fn a_model_added_at_runtime_routes_immediately_and_its_key_is_sealed_at_rest() {
    let up = MockUpstream::openai().await;
    let app = spawn_app("model_list: []\n").await;
    assert_eq!(
        app.chat(MASTER_KEY, "runtime-gpt").await.status,
        400,
        "unknown before it is added"
    );

    let r = app
        .post(
            "/model/new",
            Some(MASTER_KEY),
            &new_model_body(&format!("{}/v1", up.url())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.chat(MASTER_KEY, "runtime-gpt").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        up.last().header("authorization"),
        Some("Bearer sk-runtime-secret-123")
    );
    assert_eq!(up.last().body["model"], "gpt-4o-mini");

    let stored: Value = app.state().store.get(Doc::Models, "rt-1").unwrap().unwrap();
    let sealed = stored["litellm_params"]["api_key"].as_str().unwrap();
    assert!(
        !sealed.contains("sk-runtime-secret-123"),
        "key must be encrypted at rest: {sealed}"
    );

    let info = app.get("/model/info", Some(MASTER_KEY)).await;
    assert_eq!(info.status, 200);
    assert!(
        !info.text.contains("sk-runtime-secret-123"),
        "model info must not show keys"
    );
    let ids: Vec<&str> = info.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["model_info"]["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["rt-1"]);
    assert_eq!(info.body["data"][0]["model_info"]["db_model"], true);

    // Any key may ask, and sees only the models it may call (LiteLLM's /model/info).
    let limited = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"models": ["other-model"]}),
        )
        .await;
    let limited = limited.body["key"].as_str().unwrap().to_owned();
    let r = app.get("/model/info", Some(&limited)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0, "{}", r.text);
    let open = app
        .post("/key/generate", Some(MASTER_KEY), &json!({}))
        .await;
    let r = app
        .get("/v1/model/info", Some(open.body["key"].as_str().unwrap()))
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert!(
        r.body["data"][0]["litellm_params"]
            .get("api_base")
            .is_none(),
        "api_base is for admins: {}",
        r.text
    );
    assert_eq!(app.get("/model/info", None).await.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn update_and_delete_take_effect_without_restart() {
    let up1 = MockUpstream::openai().await;
    let up2 = MockUpstream::openai().await;
    let app = spawn_app("model_list: []\n").await;
    assert_eq!(
        app.post(
            "/model/new",
            Some(MASTER_KEY),
            &new_model_body(&format!("{}/v1", up1.url()))
        )
        .await
        .status,
        200
    );
    let r = app
        .post("/model/update", Some(MASTER_KEY), &json!({"model_info": {"id": "rt-1"}, "litellm_params": {"api_base": format!("{}/v1", up2.url())}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.chat(MASTER_KEY, "runtime-gpt").await.status, 200);
    assert_eq!((up1.hits(), up2.hits()), (0, 1));
    assert_eq!(
        up2.last().header("authorization"),
        Some("Bearer sk-runtime-secret-123"),
        "the key survives an update"
    );

    assert_eq!(
        app.post("/model/delete", Some(MASTER_KEY), &json!({"id": "rt-1"}))
            .await
            .status,
        200
    );
    assert_eq!(app.chat(MASTER_KEY, "runtime-gpt").await.status, 400);
    assert_eq!(
        app.post("/model/delete", Some(MASTER_KEY), &json!({"id": "rt-1"}))
            .await
            .status,
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn runtime_models_survive_a_restart() {
    let up = MockUpstream::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in("model_list: []\n", dir.path()).await;
    assert_eq!(
        app.post(
            "/model/new",
            Some(MASTER_KEY),
            &new_model_body(&format!("{}/v1", up.url()))
        )
        .await
        .status,
        200
    );
    app.stop().await;
    let app = spawn_app_in("model_list: []\n", dir.path()).await;
    let r = app.chat(MASTER_KEY, "runtime-gpt").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        up.last().header("authorization"),
        Some("Bearer sk-runtime-secret-123")
    );
    app.stop().await;
}

#[tokio::test]
async fn config_models_are_read_only_and_bad_entries_are_rejected_with_the_field() {
    let up = MockUpstream::openai().await;
    let yaml = format!("model_list:\n  - model_name: cfg\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: {}/v1\n    model_info:\n      id: cfg-1\n", up.url());
    let app = spawn_app(&yaml).await;
    let r = app
        .post("/model/delete", Some(MASTER_KEY), &json!({"id": "cfg-1"}))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error_message().contains("read-only"));
    let r = app
        .post(
            "/model/new",
            Some(MASTER_KEY),
            &json!({"model_name": "x", "litellm_params": {"model": "claude-3"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.error_message().contains("anthropic/claude-3"),
        "{}",
        r.text
    );
    let r = app.post("/model/new", Some(MASTER_KEY), &json!({"model_name": "dup", "litellm_params": {"model": "openai/x"}, "model_info": {"id": "cfg-1"}})).await;
    assert_eq!(r.status, 400);
    let r = app
        .post(
            "/model/new",
            Some("sk-not-a-key"),
            &new_model_body("http://127.0.0.1:9/v1"),
        )
        .await;
    assert_eq!(r.status, 401);
    app.stop().await;
}
