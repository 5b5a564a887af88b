//! Shared pieces of the admin services: the context, the admin check and the JSON
//! views of records (with live spend from the in-memory counters).

use std::sync::Arc;

use serde_json::{json, Value};

use super::error::{Error, Result};
use crate::governance::records::{EndUserRecord, KeyRecord, TeamRecord, UserRecord};
use crate::governance::{self as gov, Caller, Governance, Index};
use crate::store::{Doc, Op, Store};

/// What every admin service function works on.
pub struct Admin<'a> {
    pub gov: &'a Governance,
    pub store: &'a Store,
}

/// LiteLLM's refusal of an admin-only route to a non-admin key (route_checks.py):
/// rendered as 401 `auth_error`, like LiteLLM's auth exception handler does.
pub fn admin_only_message(caller: &Caller) -> String {
    let role = if caller.user_id.is_some() {
        "internal_user"
    } else {
        "unknown"
    };
    format!(
        "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Your role={role}. Your user_id={}",
        caller.user_id.as_deref().unwrap_or("unknown")
    )
}

pub fn require_admin(caller: &Caller) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(Error::Unauthorized(admin_only_message(caller)))
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn spend_fields(c: gov::records::SpendCounter) -> Value {
    json!({
        "spend": c.spend,
        "budget_reset_at": c.budget_reset_at,
        "soft_budget_crossed_at": c.soft_budget_crossed_at,
    })
}

pub fn key_view(g: &Governance, k: &KeyRecord) -> Value {
    let c = g.spend_of(&gov::key_owner(&k.token), &k.budget_duration);
    let mut v = merge(serde_json::to_value(k).unwrap_or_default(), spend_fields(c));
    let model_spend: serde_json::Map<String, Value> = k
        .model_max_budget
        .iter()
        .map(|(m, b)| {
            let s = g.spend_of(&gov::key_model_owner(&k.token, m), &b.time_period);
            (m.clone(), json!(s.spend))
        })
        .collect();
    v["model_spend"] = Value::Object(model_spend);
    v
}

pub fn user_view(g: &Governance, u: &UserRecord) -> Value {
    let c = g.spend_of(&gov::user_owner(&u.user_id), &u.budget_duration);
    merge(serde_json::to_value(u).unwrap_or_default(), spend_fields(c))
}

pub fn members_of(idx: &Index, team: &str) -> Vec<Value> {
    idx.members
        .get(team)
        .into_iter()
        .flatten()
        .map(|(u, role)| {
            let email = idx.users.get(u).and_then(|r| r.user_email.clone());
            json!({"user_id": u, "role": role, "user_email": email})
        })
        .collect()
}

pub fn team_view(g: &Governance, t: &TeamRecord) -> Value {
    let c = g.spend_of(&gov::team_owner(&t.team_id), &t.budget_duration);
    let members = members_of(&g.index.read(), &t.team_id);
    let mut v = merge(serde_json::to_value(t).unwrap_or_default(), spend_fields(c));
    v["members_with_roles"] = Value::Array(members);
    v
}

pub fn end_user_view(g: &Governance, e: &EndUserRecord) -> Value {
    let c = g.spend_of(&gov::end_user_owner(&e.user_id), &e.budget_duration);
    merge(serde_json::to_value(e).unwrap_or_default(), spend_fields(c))
}

/// Ops creating `user_id` when it does not exist yet (LiteLLM creates users on demand).
pub fn ensure_user(
    idx: &Index,
    user_id: &str,
    email: Option<String>,
) -> Result<Option<UserRecord>> {
    if idx.users.contains_key(user_id) {
        return Ok(None);
    }
    Ok(Some(UserRecord {
        user_id: user_id.to_owned(),
        user_email: email,
        user_role: Some("internal_user".into()),
        metadata: json!({}),
        created_at: Some(chrono::Utc::now()),
        ..Default::default()
    }))
}

pub fn put_user_op(u: &UserRecord) -> Result<Op> {
    Ok(Op::put(Doc::Users, u.user_id.clone(), u)?)
}

pub fn insert_user(idx: &mut Index, u: UserRecord) {
    idx.users.insert(u.user_id.clone(), Arc::new(u));
}

/// The ids in a list field (`keys`, `user_ids`, `team_ids`), required and non-empty.
pub fn id_list(o: &super::fields::Obj, f: &'static str) -> Result<Vec<String>> {
    match super::fields::strings(o, f)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::value(f, "must be a non-empty list")),
    }
}

/// Slices `items` to one 1-based page.
pub fn paginate<T>(items: Vec<T>, page: usize, size: usize) -> (Vec<T>, usize, usize) {
    let total = items.len();
    let pages = total.div_ceil(size).max(1);
    let out = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    (out, total, pages)
}
