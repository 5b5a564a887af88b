//! End-user (customer) service: the `user` field of requests, with its own budget.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::common::*;
use super::error::{Error, Result};
use super::fields::{self, Obj};
use crate::governance::records::EndUserRecord;
use crate::governance::{end_user_owner, Caller};
use crate::store::{Doc, Op};

fn apply(e: &mut EndUserRecord, o: &Obj) -> Result<bool> {
    if let Some(v) = fields::string(o, "alias")? {
        e.alias = v;
    }
    if let Some(v) = fields::boolean(o, "blocked")? {
        e.blocked = v;
    }
    if let Some(v) = fields::float(o, "max_budget")? {
        e.max_budget = v;
    }
    let mut changed = false;
    if let Some(v) = fields::duration(o, "budget_duration")? {
        changed = v != e.budget_duration;
        e.budget_duration = v;
    }
    if let Some(v) = fields::uint(o, "rpm_limit")? {
        e.rpm_limit = v;
    }
    if let Some(v) = fields::uint(o, "tpm_limit")? {
        e.tpm_limit = v;
    }
    if let Some(v) = fields::object(o, "metadata")? {
        e.metadata = v;
    }
    Ok(changed)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("End user not found, user_id={id}"))
}

fn save(a: &Admin, e: EndUserRecord) -> Result<()> {
    a.store
        .apply(vec![Op::put(Doc::EndUsers, e.user_id.clone(), &e)?])?;
    a.gov
        .index
        .write()
        .end_users
        .insert(e.user_id.clone(), Arc::new(e));
    Ok(())
}

pub fn new(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let id = fields::required(o, "user_id")?;
    if a.gov.index.read().end_users.contains_key(&id) {
        return Err(Error::value(
            "user_id",
            format!("end user `{id}` already exists"),
        ));
    }
    let mut e = EndUserRecord {
        user_id: id,
        metadata: json!({}),
        created_at: Some(Utc::now()),
        ..Default::default()
    };
    apply(&mut e, o)?;
    save(a, e.clone())?;
    Ok(end_user_view(a.gov, &e))
}

pub fn update(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let id = fields::required(o, "user_id")?;
    let mut e = a
        .gov
        .index
        .read()
        .end_users
        .get(&id)
        .map(|e| (**e).clone())
        .ok_or_else(|| not_found(&id))?;
    let changed = apply(&mut e, o)?;
    save(a, e.clone())?;
    if changed {
        a.gov.restart_period(&end_user_owner(&id));
    }
    Ok(end_user_view(a.gov, &e))
}

/// `/customer/block` and `/customer/unblock` take `{"user_ids": [...]}` like LiteLLM
/// (customer_endpoints.py). Block creates missing end users blocked and answers
/// `{"blocked_users": [records]}`; unblock answers `{"blocked_users": [ids still blocked]}`.
pub fn set_blocked(a: &Admin, caller: &Caller, o: &Obj, blocked: bool) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let ids = id_list(o, "user_ids")?;
    let mut records = Vec::new();
    {
        let idx = a.gov.index.read();
        for id in &ids {
            let mut e = match idx.end_users.get(id) {
                Some(e) => (**e).clone(),
                None if blocked => EndUserRecord {
                    user_id: id.clone(),
                    metadata: json!({}),
                    created_at: Some(Utc::now()),
                    ..Default::default()
                },
                None => return Err(not_found(id)),
            };
            e.blocked = blocked;
            records.push(e);
        }
    }
    let ops = records
        .iter()
        .map(|e| Op::put(Doc::EndUsers, e.user_id.clone(), e))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    a.store.apply(ops)?;
    {
        let mut idx = a.gov.index.write();
        for e in &records {
            idx.end_users.insert(e.user_id.clone(), Arc::new(e.clone()));
        }
    }
    if blocked {
        let views: Vec<Value> = records.iter().map(|e| end_user_view(a.gov, e)).collect();
        return Ok(json!({"blocked_users": views}));
    }
    let mut still: Vec<String> = a
        .gov
        .index
        .read()
        .end_users
        .values()
        .filter(|e| e.blocked)
        .map(|e| e.user_id.clone())
        .collect();
    still.sort();
    Ok(json!({"blocked_users": still}))
}

pub fn delete(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let ids = id_list(o, "user_ids")?;
    let mut ops = Vec::new();
    {
        let idx = a.gov.index.read();
        for id in &ids {
            if !idx.end_users.contains_key(id) {
                return Err(not_found(id));
            }
            ops.push(Op::Delete(Doc::EndUsers, id.clone()));
            ops.push(Op::Delete(Doc::SpendCounters, end_user_owner(id)));
        }
    }
    a.store.apply(ops)?;
    let mut idx = a.gov.index.write();
    for id in &ids {
        idx.end_users.remove(id);
        a.gov.forget(&end_user_owner(id));
    }
    Ok(json!({"deleted_customers": ids}))
}

pub fn info(a: &Admin, caller: &Caller, id: Option<&str>) -> Result<Value> {
    require_admin(caller)?;
    let id = id.ok_or_else(|| Error::value("end_user_id", "is required"))?;
    let e = a
        .gov
        .index
        .read()
        .end_users
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(id))?;
    Ok(end_user_view(a.gov, &e))
}

pub fn list(a: &Admin, caller: &Caller) -> Result<Value> {
    require_admin(caller)?;
    let all: Vec<_> = a.gov.index.read().end_users.values().cloned().collect();
    Ok(Value::Array(
        all.iter().map(|e| end_user_view(a.gov, e)).collect(),
    ))
}
