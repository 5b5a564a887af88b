//! Team service: new, update, delete, members, block, info, list.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::common::*;
use super::error::{Error, Result};
use super::fields::{self, Obj};
use crate::governance::records::{TeamRecord, UserRecord};
use crate::governance::{key_owner, team_owner, Caller, Index};
use crate::store::{Doc, Op};

fn apply(t: &mut TeamRecord, o: &Obj) -> Result<bool> {
    if let Some(v) = fields::string(o, "team_alias")? {
        t.team_alias = v;
    }
    if let Some(v) = fields::strings(o, "models")? {
        t.models = v;
    }
    if let Some(v) = fields::float(o, "max_budget")? {
        t.max_budget = v;
    }
    let mut changed = false;
    if let Some(v) = fields::duration(o, "budget_duration")? {
        changed = v != t.budget_duration;
        t.budget_duration = v;
    }
    if let Some(v) = fields::uint(o, "rpm_limit")? {
        t.rpm_limit = v;
    }
    if let Some(v) = fields::uint(o, "tpm_limit")? {
        t.tpm_limit = v;
    }
    if let Some(v) = fields::object(o, "metadata")? {
        t.metadata = v;
    }
    if let Some(v) = fields::boolean(o, "blocked")? {
        t.blocked = v;
    }
    Ok(changed)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("Team not found, team_id={id}"))
}

/// `(user_id, role, new user record)` for each member object in `v`.
fn parse_members(
    idx: &Index,
    v: &Value,
    field: &'static str,
) -> Result<Vec<(String, String, Option<UserRecord>)>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        Value::Null => vec![],
        _ => {
            return Err(Error::Type {
                field,
                expected: "a member object or a list of them",
            })
        }
    };
    let mut out = Vec::new();
    for m in items {
        let m = m.as_object().ok_or(Error::Type {
            field,
            expected: "a member object {user_id, role}",
        })?;
        let email = fields::string(m, "user_email")?.flatten();
        let role = fields::string(m, "role")?
            .flatten()
            .unwrap_or_else(|| "user".into());
        if role != "admin" && role != "user" {
            return Err(Error::value(field, "role must be `admin` or `user`"));
        }
        let user_id = match (fields::string(m, "user_id")?.flatten(), &email) {
            (Some(u), _) => u,
            (None, Some(e)) => idx
                .users
                .values()
                .find(|u| u.user_email.as_ref() == Some(e))
                .map(|u| u.user_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            (None, None) => {
                return Err(Error::value(
                    field,
                    "each member needs user_id or user_email",
                ))
            }
        };
        let new_user = ensure_user(idx, &user_id, email)?;
        out.push((user_id, role, new_user));
    }
    Ok(out)
}

/// Writes the team, members and new users, then updates the index.
fn save(
    a: &Admin,
    t: TeamRecord,
    members: Vec<(String, String, Option<UserRecord>)>,
) -> Result<()> {
    let mut ops = vec![Op::put(Doc::Teams, t.team_id.clone(), &t)?];
    for (u, role, new) in &members {
        if let Some(n) = new {
            ops.push(put_user_op(n)?);
        }
        ops.push(Op::PutMember {
            team: t.team_id.clone(),
            user: u.clone(),
            role: role.clone(),
        });
    }
    a.store.apply(ops)?;
    let mut idx = a.gov.index.write();
    for (u, role, new) in members {
        if let Some(n) = new {
            insert_user(&mut idx, n);
        }
        idx.members
            .entry(t.team_id.clone())
            .or_default()
            .insert(u, role);
    }
    idx.teams.insert(t.team_id.clone(), Arc::new(t));
    Ok(())
}

pub fn new(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let id = fields::string(o, "team_id")?
        .flatten()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let members = {
        let idx = a.gov.index.read();
        if idx.teams.contains_key(&id) {
            return Err(Error::value(
                "team_id",
                format!("team `{id}` already exists"),
            ));
        }
        match o.get("members_with_roles") {
            Some(v) => parse_members(&idx, v, "members_with_roles")?,
            None => Vec::new(),
        }
    };
    let now = Utc::now();
    let mut t = TeamRecord {
        team_id: id,
        metadata: json!({}),
        created_at: Some(now),
        updated_at: Some(now),
        ..Default::default()
    };
    apply(&mut t, o)?;
    save(a, t.clone(), members)?;
    Ok(team_view(a.gov, &t))
}

fn existing(a: &Admin, o: &Obj) -> Result<TeamRecord> {
    let id = fields::required(o, "team_id")?;
    let t = a.gov.index.read().teams.get(&id).cloned();
    t.map(|t| (*t).clone()).ok_or_else(|| not_found(&id))
}

pub fn update(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let mut t = existing(a, o)?;
    let changed = apply(&mut t, o)?;
    t.updated_at = Some(Utc::now());
    save(a, t.clone(), Vec::new())?;
    if changed {
        a.gov.restart_period(&team_owner(&t.team_id));
    }
    Ok(team_view(a.gov, &t))
}

pub fn set_blocked(a: &Admin, caller: &Caller, o: &Obj, blocked: bool) -> Result<Value> {
    let id = fields::required(o, "team_id")?;
    let mut body = Obj::new();
    body.insert("team_id".into(), json!(id));
    body.insert("blocked".into(), json!(blocked));
    update(a, caller, &body)
}

pub fn member_add(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let t = existing(a, o)?;
    let members = {
        let idx = a.gov.index.read();
        let v = o
            .get("member")
            .ok_or_else(|| Error::value("member", "is required"))?;
        parse_members(&idx, v, "member")?
    };
    if members.is_empty() {
        return Err(Error::value("member", "is required"));
    }
    save(a, t.clone(), members)?;
    Ok(team_view(a.gov, &t))
}

pub fn member_delete(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let t = existing(a, o)?;
    let user = {
        let idx = a.gov.index.read();
        match fields::string(o, "user_id")?.flatten() {
            Some(u) => u,
            None => {
                let e = fields::string(o, "user_email")?
                    .flatten()
                    .ok_or_else(|| Error::value("user_id", "pass user_id or user_email"))?;
                idx.users
                    .values()
                    .find(|u| u.user_email.as_ref() == Some(&e))
                    .map(|u| u.user_id.clone())
                    .ok_or_else(|| Error::NotFound(format!("User not found, user_email={e}")))?
            }
        }
    };
    let is_member = a
        .gov
        .index
        .read()
        .members
        .get(&t.team_id)
        .is_some_and(|m| m.contains_key(&user));
    if !is_member {
        return Err(Error::NotFound(format!(
            "User {user} is not a member of team {}",
            t.team_id
        )));
    }
    a.store.apply(vec![Op::DeleteMember {
        team: t.team_id.clone(),
        user: user.clone(),
    }])?;
    if let Some(m) = a.gov.index.write().members.get_mut(&t.team_id) {
        m.remove(&user);
    }
    Ok(team_view(a.gov, &t))
}

/// Deletes teams, their memberships and their keys.
pub fn delete(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let ids = id_list(o, "team_ids")?;
    let mut ops = Vec::new();
    let mut keys = Vec::new();
    {
        let idx = a.gov.index.read();
        for id in &ids {
            if !idx.teams.contains_key(id) {
                return Err(not_found(id));
            }
            ops.push(Op::Delete(Doc::Teams, id.clone()));
            ops.push(Op::Delete(Doc::SpendCounters, team_owner(id)));
            for u in idx.members.get(id).into_iter().flatten().map(|m| m.0) {
                ops.push(Op::DeleteMember {
                    team: id.clone(),
                    user: u.clone(),
                });
            }
            for k in idx.keys.values().filter(|k| k.team_id.as_ref() == Some(id)) {
                ops.push(Op::Delete(Doc::Keys, k.token.clone()));
                if let Some(al) = &k.key_alias {
                    ops.push(Op::DeleteAlias(al.clone()));
                }
                keys.push(k.clone());
            }
        }
    }
    a.store.apply(ops)?;
    let mut idx = a.gov.index.write();
    for id in &ids {
        idx.teams.remove(id);
        idx.members.remove(id);
        a.gov.forget(&team_owner(id));
    }
    for k in &keys {
        idx.keys.remove(&k.token);
        if let Some(al) = &k.key_alias {
            idx.aliases.remove(al);
        }
        a.gov.forget(&key_owner(&k.token));
    }
    Ok(json!({"deleted_teams": ids}))
}

/// `/team/info`: admins, or a key of that team.
pub fn info(a: &Admin, caller: &Caller, team_id: Option<&str>) -> Result<Value> {
    let id = team_id
        .map(str::to_owned)
        .or_else(|| caller.team_id.clone())
        .ok_or_else(|| Error::value("team_id", "is required"))?;
    if !caller.is_admin() && caller.team_id.as_deref() != Some(id.as_str()) {
        return Err(Error::Forbidden("A key may only see its own team.".into()));
    }
    let (t, keys) = {
        let idx = a.gov.index.read();
        let t = idx.teams.get(&id).cloned().ok_or_else(|| not_found(&id))?;
        let keys: Vec<_> = idx
            .keys
            .values()
            .filter(|k| k.team_id.as_deref() == Some(id.as_str()))
            .cloned()
            .collect();
        (t, keys)
    };
    // LiteLLM's `/team/info` also lists `team_memberships` (LiteLLM_TeamMembership rows:
    // user_id, team_id, budget_id, litellm_budget_table); member budgets are not kept here.
    let memberships: Vec<Value> = members_of(&a.gov.index.read(), &id)
        .iter()
        .map(|m| {
            json!({"user_id": m["user_id"], "team_id": id, "budget_id": null,
                   "litellm_budget_table": null, "spend": 0.0})
        })
        .collect();
    Ok(json!({
        "team_id": id,
        "team_info": team_view(a.gov, &t),
        "keys": keys.iter().map(|k| key_view(a.gov, k)).collect::<Vec<_>>(),
        "team_memberships": memberships,
    }))
}

pub fn list(a: &Admin, caller: &Caller, q: &HashMap<String, String>) -> Result<Value> {
    require_admin(caller)?;
    let teams: Vec<Arc<TeamRecord>> = {
        let idx = a.gov.index.read();
        idx.teams
            .values()
            .filter(|t| {
                q.get("user_id").is_none_or(|u| {
                    idx.members
                        .get(&t.team_id)
                        .is_some_and(|m| m.contains_key(u))
                })
            })
            .cloned()
            .collect()
    };
    Ok(Value::Array(
        teams.iter().map(|t| team_view(a.gov, t)).collect(),
    ))
}
