//! Users, teams and end users (customers) through the management API.

use serde_json::json;

use crate::keys::{new_key, setup};
use crate::support::*;

#[tokio::test]
async fn users_are_created_updated_listed_and_deleted() {
    let (_up, app) = setup().await;
    let r = app
        .post("/user/new", Some(MASTER_KEY), &json!({"user_id": "alice", "user_email": "a@x.io", "max_budget": 2.0, "budget_duration": "30d", "models": ["gpt"], "rpm_limit": 9, "tpm_limit": 99, "metadata": {"dept": "r"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["key"].as_str().unwrap().starts_with("sk-"),
        "a key is created for the user"
    );
    assert_eq!(r.body["user_email"], "a@x.io");
    let dup = app
        .post("/user/new", Some(MASTER_KEY), &json!({"user_id": "alice"}))
        .await;
    assert_eq!(dup.status, 400, "{}", dup.text);
    let bad = app
        .post("/user/new", Some(MASTER_KEY), &json!({"user_role": "king"}))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.body["error"]["param"], "user_role");
    let r = app
        .post(
            "/user/update",
            Some(MASTER_KEY),
            &json!({"user_id": "alice", "max_budget": 4.0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["max_budget"], 4.0);
    assert_eq!(
        app.post("/user/update", Some(MASTER_KEY), &json!({"user_id": "bob"}))
            .await
            .status,
        404
    );
    let info = app.get("/user/info?user_id=alice", Some(MASTER_KEY)).await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.body["user_info"]["budget_duration"], "30d");
    assert_eq!(info.body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(info.body["user_info"]["spend"], 0.0);
    assert_eq!(
        app.get("/user/info?user_id=nobody", Some(MASTER_KEY))
            .await
            .status,
        404
    );
    app.post(
        "/user/new",
        Some(MASTER_KEY),
        &json!({"user_id": "carol", "auto_create_key": false}),
    )
    .await;
    let list = app.get("/user/list?page_size=1", Some(MASTER_KEY)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["total"], 2);
    assert_eq!(list.body["users"].as_array().unwrap().len(), 1);
    let key = info.body["keys"][0]["token"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/user/delete",
            Some(MASTER_KEY),
            &json!({"user_ids": ["alice"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        app.get("/user/info?user_id=alice", Some(MASTER_KEY))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/key/info?key={key}"), Some(MASTER_KEY))
            .await
            .status,
        404,
        "the user's keys go too"
    );
    assert_eq!(
        app.post(
            "/user/delete",
            Some(MASTER_KEY),
            &json!({"user_ids": ["alice"]})
        )
        .await
        .status,
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn teams_have_members_and_can_be_blocked() {
    let (_up, app) = setup().await;
    let r = app
        .post("/team/new", Some(MASTER_KEY), &json!({"team_id": "t1", "team_alias": "Team One", "models": ["gpt"], "max_budget": 9.0, "members_with_roles": [{"role": "admin", "user_id": "ann"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["members_with_roles"][0]["user_id"], "ann");
    let r = app
        .post(
            "/team/member_add",
            Some(MASTER_KEY),
            &json!({"team_id": "t1", "member": {"role": "user", "user_id": "ben"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["members_with_roles"].as_array().unwrap().len(), 2);
    let r = app
        .post(
            "/team/member_delete",
            Some(MASTER_KEY),
            &json!({"team_id": "t1", "user_id": "ann"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["members_with_roles"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.post(
            "/team/member_add",
            Some(MASTER_KEY),
            &json!({"team_id": "nope", "member": {"user_id": "x"}})
        )
        .await
        .status,
        404
    );
    let r = app
        .post(
            "/team/update",
            Some(MASTER_KEY),
            &json!({"team_id": "t1", "rpm_limit": 100}),
        )
        .await;
    assert_eq!(r.body["rpm_limit"], 100);
    assert_eq!(
        app.post(
            "/team/update",
            Some(MASTER_KEY),
            &json!({"team_id": "t1", "max_budget": []})
        )
        .await
        .status,
        422
    );

    let key = new_key(&app, json!({"team_id": "t1"})).await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);
    let r = app.chat(&key, "other").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["type"], "team_model_access_denied");
    app.post("/team/block", Some(MASTER_KEY), &json!({"team_id": "t1"}))
        .await;
    let r = app.chat(&key, "gpt").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.error_message().contains("blocked"));
    app.post("/team/unblock", Some(MASTER_KEY), &json!({"team_id": "t1"}))
        .await;
    assert_eq!(app.chat(&key, "gpt").await.status, 200);

    let info = app.get("/team/info?team_id=t1", Some(MASTER_KEY)).await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(info.body["keys"].as_array().unwrap().len(), 1);
    assert!((info.body["team_info"]["spend"].as_f64().unwrap() - 0.04).abs() < 1e-9);
    assert_eq!(
        app.get("/team/info?team_id=zzz", Some(MASTER_KEY))
            .await
            .status,
        404
    );
    app.post("/team/new", Some(MASTER_KEY), &json!({"team_id": "t2"}))
        .await;
    let list = app.get("/team/list", Some(MASTER_KEY)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    let list = app.get("/team/list?user_id=ben", Some(MASTER_KEY)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    let r = app
        .post(
            "/team/delete",
            Some(MASTER_KEY),
            &json!({"team_ids": ["t1"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        app.chat(&key, "gpt").await.status,
        401,
        "the team's keys are deleted with it"
    );
    assert_eq!(
        app.post(
            "/team/delete",
            Some(MASTER_KEY),
            &json!({"team_ids": ["t1"]})
        )
        .await
        .status,
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn all_team_models_follows_the_team_list() {
    let (_up, app) = setup().await;
    app.post(
        "/team/new",
        Some(MASTER_KEY),
        &json!({"team_id": "t", "models": ["other"]}),
    )
    .await;
    let key = new_key(&app, json!({"team_id": "t", "models": ["all-team-models"]})).await;
    assert_eq!(app.chat(&key, "other").await.status, 200);
    assert_eq!(app.chat(&key, "gpt").await.status, 401);
    let r = app
        .post(
            "/key/generate",
            Some(MASTER_KEY),
            &json!({"team_id": "missing"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn customers_are_managed_and_can_be_blocked() {
    let (_up, app) = setup().await;
    let r = app
        .post(
            "/customer/new",
            Some(MASTER_KEY),
            &json!({"user_id": "c1", "alias": "Cust", "max_budget": 1.0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        app.post("/customer/new", Some(MASTER_KEY), &json!({"alias": "x"}))
            .await
            .status,
        400
    );
    let r = app
        .post(
            "/customer/update",
            Some(MASTER_KEY),
            &json!({"user_id": "c1", "blocked": true}),
        )
        .await;
    assert_eq!(r.body["blocked"], true);
    assert_eq!(
        app.post(
            "/customer/update",
            Some(MASTER_KEY),
            &json!({"user_id": "c9"})
        )
        .await
        .status,
        404
    );
    let key = new_key(&app, json!({})).await;
    let body =
        json!({"model": "gpt", "user": "c1", "messages": [{"role": "user", "content": "hi"}]});
    let r = app.chat_body(&key, body.clone()).await;
    assert_eq!(r.status, 401, "{}", r.text);
    app.post(
        "/customer/update",
        Some(MASTER_KEY),
        &json!({"user_id": "c1", "blocked": false}),
    )
    .await;
    assert_eq!(app.chat_body(&key, body).await.status, 200);
    let info = app
        .get("/customer/info?end_user_id=c1", Some(MASTER_KEY))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert!((info.body["spend"].as_f64().unwrap() - 0.02).abs() < 1e-9);
    assert_eq!(
        app.get("/customer/info?end_user_id=zz", Some(MASTER_KEY))
            .await
            .status,
        404
    );
    assert_eq!(
        app.post(
            "/customer/delete",
            Some(MASTER_KEY),
            &json!({"user_ids": ["c1"]})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.get("/customer/info?end_user_id=c1", Some(MASTER_KEY))
            .await
            .status,
        404
    );
    app.stop().await;
}
