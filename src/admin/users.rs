//! Internal-user service: new (with a key by default, like LiteLLM), update, delete,
//! info, list.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::common::*;
use super::error::{Error, Result};
use super::fields::{self, Obj};
use crate::governance::records::UserRecord;
use crate::governance::{key_owner, user_owner, Caller};
use crate::store::{Doc, Op};

const ROLES: &[&str] = &[
    "proxy_admin",
    "proxy_admin_viewer",
    "internal_user",
    "internal_user_viewer",
    "team",
    "customer",
];

fn apply(u: &mut UserRecord, o: &Obj) -> Result<bool> {
    if let Some(v) = fields::string(o, "user_email")? {
        u.user_email = v;
    }
    if let Some(v) = fields::string(o, "user_role")? {
        if let Some(r) = &v {
            if !ROLES.contains(&r.as_str()) {
                return Err(Error::value(
                    "user_role",
                    format!("`{r}` is not one of {}", ROLES.join(", ")),
                ));
            }
        }
        u.user_role = v;
    }
    if let Some(v) = fields::float(o, "max_budget")? {
        u.max_budget = v;
    }
    let mut changed = false;
    if let Some(v) = fields::duration(o, "budget_duration")? {
        changed = v != u.budget_duration;
        u.budget_duration = v;
    }
    if let Some(v) = fields::strings(o, "models")? {
        u.models = v;
    }
    if let Some(v) = fields::uint(o, "rpm_limit")? {
        u.rpm_limit = v;
    }
    if let Some(v) = fields::uint(o, "tpm_limit")? {
        u.tpm_limit = v;
    }
    if let Some(v) = fields::object(o, "metadata")? {
        u.metadata = v;
    }
    Ok(changed)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("User not found, user_id={id}"))
}

fn save(a: &Admin, u: UserRecord) -> Result<()> {
    a.store.apply(vec![put_user_op(&u)?])?;
    insert_user(&mut a.gov.index.write(), u);
    Ok(())
}

pub fn new(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let auto_key = fields::boolean(o, "auto_create_key")?.unwrap_or(true);
    let user = {
        let _g = a.gov.admin_lock.lock();
        let id = fields::string(o, "user_id")?
            .flatten()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if a.gov.index.read().users.contains_key(&id) {
            return Err(Error::value(
                "user_id",
                format!("user `{id}` already exists"),
            ));
        }
        let now = Utc::now();
        let mut u = UserRecord {
            user_id: id,
            user_role: Some("internal_user".into()),
            metadata: json!({}),
            created_at: Some(now),
            updated_at: Some(now),
            ..Default::default()
        };
        apply(&mut u, o)?;
        save(a, u.clone())?;
        u
    };
    let mut v = user_view(a.gov, &user);
    if auto_key {
        let mut ko = serde_json::Map::new();
        ko.insert("user_id".into(), json!(user.user_id));
        for f in ["key_alias", "duration", "team_id"] {
            if let Some(x) = o.get(f) {
                ko.insert(f.into(), x.clone());
            }
        }
        let k = super::keys::generate(a, caller, &ko)?;
        v["key"] = k["key"].clone();
        v["token"] = k["token"].clone();
        v["expires"] = k["expires"].clone();
    }
    Ok(v)
}

pub fn update(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let id = fields::required(o, "user_id")?;
    let mut u = (**a
        .gov
        .index
        .read()
        .users
        .get(&id)
        .ok_or_else(|| not_found(&id))?)
    .clone();
    let changed = apply(&mut u, o)?;
    u.updated_at = Some(Utc::now());
    save(a, u.clone())?;
    if changed {
        a.gov.restart_period(&user_owner(&id));
    }
    Ok(user_view(a.gov, &u))
}

/// Deletes users, their keys and their team memberships.
pub fn delete(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let ids = id_list(o, "user_ids")?;
    let mut ops = Vec::new();
    let mut keys = Vec::new();
    let mut memberships = Vec::new();
    {
        let idx = a.gov.index.read();
        for id in &ids {
            if !idx.users.contains_key(id) {
                return Err(not_found(id));
            }
            ops.push(Op::Delete(Doc::Users, id.clone()));
            ops.push(Op::Delete(Doc::SpendCounters, user_owner(id)));
            for k in idx.keys.values().filter(|k| k.user_id.as_ref() == Some(id)) {
                ops.push(Op::Delete(Doc::Keys, k.token.clone()));
                if let Some(al) = &k.key_alias {
                    ops.push(Op::DeleteAlias(al.clone()));
                }
                keys.push(k.clone());
            }
            for (team, members) in &idx.members {
                if members.contains_key(id) {
                    ops.push(Op::DeleteMember {
                        team: team.clone(),
                        user: id.clone(),
                    });
                    memberships.push((team.clone(), id.clone()));
                }
            }
        }
    }
    a.store.apply(ops)?;
    let mut idx = a.gov.index.write();
    for id in &ids {
        idx.users.remove(id);
        a.gov.forget(&user_owner(id));
    }
    for k in &keys {
        idx.keys.remove(&k.token);
        if let Some(al) = &k.key_alias {
            idx.aliases.remove(al);
        }
        a.gov.forget(&key_owner(&k.token));
    }
    for (t, u) in memberships {
        if let Some(m) = idx.members.get_mut(&t) {
            m.remove(&u);
        }
    }
    Ok(json!({"deleted_users": ids}))
}

/// `/user/info`: admins see anyone; a key sees its own user.
pub fn info(a: &Admin, caller: &Caller, user_id: Option<&str>) -> Result<Value> {
    let id = match user_id {
        Some(u) => u.to_owned(),
        None => caller
            .user_id
            .clone()
            .ok_or_else(|| Error::value("user_id", "is required"))?,
    };
    if !caller.is_admin() && caller.user_id.as_deref() != Some(id.as_str()) {
        return Err(Error::Forbidden("A key may only see its own user.".into()));
    }
    let (u, keys, teams) = {
        let idx = a.gov.index.read();
        let u = idx.users.get(&id).cloned().ok_or_else(|| not_found(&id))?;
        let keys: Vec<_> = idx
            .keys
            .values()
            .filter(|k| k.user_id.as_deref() == Some(id.as_str()))
            .cloned()
            .collect();
        let teams: Vec<_> = idx
            .members
            .iter()
            .filter(|(_, m)| m.contains_key(&id))
            .filter_map(|(t, _)| idx.teams.get(t).cloned())
            .collect();
        (u, keys, teams)
    };
    Ok(json!({
        "user_id": id,
        "user_info": user_view(a.gov, &u),
        "keys": keys.iter().map(|k| key_view(a.gov, k)).collect::<Vec<_>>(),
        "teams": teams.iter().map(|t| team_view(a.gov, t)).collect::<Vec<_>>(),
    }))
}

pub fn list(a: &Admin, caller: &Caller, q: &HashMap<String, String>) -> Result<Value> {
    require_admin(caller)?;
    let (page, size) = fields::page(q, "page_size")?;
    let users: Vec<Arc<UserRecord>> = a
        .gov
        .index
        .read()
        .users
        .values()
        .filter(|u| {
            q.get("role")
                .is_none_or(|r| u.user_role.as_ref() == Some(r))
        })
        .cloned()
        .collect();
    let (items, total, pages) = paginate(users, page, size);
    Ok(json!({
        "users": items.iter().map(|u| user_view(a.gov, u)).collect::<Vec<_>>(),
        "total": total, "page": page, "page_size": size, "total_pages": pages,
    }))
}
