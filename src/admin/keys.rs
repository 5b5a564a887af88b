//! Virtual-key service: generate, update, delete, info, list, regenerate, block.
//! The store is written (durably) before the in-memory index changes.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use rand::RngCore;
use serde_json::{json, Value};

use super::common::*;
use super::error::{Error, Result};
use super::fields::{self, Obj};
use crate::governance::records::{abbreviate, hash_secret, KeyRecord, Period};
use crate::governance::{key_owner, Caller, Index};
use crate::store::{Doc, Op};

/// A new secret: `sk-` + 43 url-safe characters (32 random bytes).
pub fn new_secret() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    format!(
        "sk-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// The token hash for a key given as its secret or its hash.
pub fn resolve(idx: &Index, key: &str) -> Option<String> {
    if idx.keys.contains_key(key) {
        return Some(key.to_owned());
    }
    let h = hash_secret(key);
    idx.keys.contains_key(&h).then_some(h)
}

/// The key record named by `key` (secret or hash) with its hash, or 404.
fn lookup(idx: &Index, key: &str) -> Result<(String, Arc<KeyRecord>)> {
    let hash = resolve(idx, key).ok_or_else(|| not_found(key))?;
    let rec = idx.keys.get(&hash).cloned().ok_or_else(|| not_found(key))?;
    Ok((hash, rec))
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("Key not found: {}", crate::governance::redact(key)))
}

/// Applies the settable fields present in `o`. Returns whether the budget period changed.
fn apply(idx: &Index, k: &mut KeyRecord, o: &Obj) -> Result<bool> {
    if let Some(v) = fields::string(o, "key_alias")? {
        k.key_alias = v.filter(|a| !a.is_empty());
    }
    if let Some(v) = fields::strings(o, "models")? {
        k.models = v;
    }
    if let Some(v) = fields::float(o, "max_budget")? {
        k.max_budget = v;
    }
    if let Some(v) = fields::float(o, "soft_budget")? {
        k.soft_budget = v;
    }
    let mut period_changed = false;
    if let Some(v) = fields::duration(o, "budget_duration")? {
        period_changed = v != k.budget_duration;
        k.budget_duration = v;
    }
    if let Some(v) = fields::duration(o, "duration")? {
        k.expires = v
            .as_deref()
            .and_then(Period::parse)
            .map(|p| p.after(Utc::now()));
    }
    if let Some(v) = fields::uint(o, "rpm_limit")? {
        k.rpm_limit = v;
    }
    if let Some(v) = fields::uint(o, "tpm_limit")? {
        k.tpm_limit = v;
    }
    if let Some(v) = fields::uint(o, "max_parallel_requests")? {
        k.max_parallel_requests = v;
    }
    if let Some(v) = fields::model_budgets(o, "model_max_budget")? {
        k.model_max_budget = v;
    }
    if let Some(v) = fields::uint_map(o, "model_rpm_limit")? {
        k.model_rpm_limit = v;
    }
    if let Some(v) = fields::uint_map(o, "model_tpm_limit")? {
        k.model_tpm_limit = v;
    }
    if let Some(v) = fields::object(o, "metadata")? {
        k.metadata = v;
    }
    if let Some(v) = fields::strings(o, "tags")? {
        k.tags = v;
    }
    if let Some(v) = fields::string(o, "team_id")? {
        if let Some(t) = &v {
            if !idx.teams.contains_key(t) {
                return Err(Error::NotFound(format!("Team not found, team_id={t}")));
            }
        }
        k.team_id = v;
    }
    if let Some(v) = fields::string(o, "user_id")? {
        k.user_id = v;
    }
    if let Some(v) = fields::boolean(o, "blocked")? {
        k.blocked = v;
    }
    if let Some(v) = fields::strings(o, "allowed_routes")? {
        k.allowed_routes = v;
    }
    Ok(period_changed)
}

fn check_alias(idx: &Index, alias: &Option<String>, own: Option<&str>) -> Result<()> {
    if let Some(a) = alias {
        if let Some(h) = idx.aliases.get(a) {
            if Some(h.as_str()) != own {
                return Err(Error::value(
                    "key_alias",
                    format!("a key with alias `{a}` already exists"),
                ));
            }
        }
    }
    Ok(())
}

/// Writes `k` (and a user created on demand) to the store, then the index.
fn save(a: &Admin, k: KeyRecord, old: Option<&KeyRecord>, mut ops: Vec<Op>) -> Result<()> {
    let user = {
        let idx = a.gov.index.read();
        match &k.user_id {
            Some(u) => ensure_user(&idx, u, None)?,
            None => None,
        }
    };
    if let Some(u) = &user {
        ops.push(put_user_op(u)?);
    }
    if let Some(old) = old {
        if let Some(al) = &old.key_alias {
            if old.key_alias != k.key_alias || old.token != k.token {
                ops.push(Op::DeleteAlias(al.clone()));
            }
        }
    }
    if let Some(al) = &k.key_alias {
        ops.push(Op::PutAlias(al.clone(), k.token.clone()));
    }
    ops.push(Op::put(Doc::Keys, k.token.clone(), &k)?);
    a.store.apply(ops)?;
    let mut idx = a.gov.index.write();
    if let Some(u) = user {
        insert_user(&mut idx, u);
    }
    if let Some(old) = old {
        if let Some(al) = &old.key_alias {
            idx.aliases.remove(al);
        }
        if old.token != k.token {
            idx.keys.remove(&old.token);
        }
    }
    if let Some(al) = &k.key_alias {
        idx.aliases.insert(al.clone(), k.token.clone());
    }
    idx.keys.insert(k.token.clone(), Arc::new(k));
    Ok(())
}

pub fn generate(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let secret = match fields::string(o, "key")? {
        Some(Some(s)) => {
            if !s.starts_with("sk-") || s.len() < 8 {
                return Err(Error::value(
                    "key",
                    "a custom key must start with `sk-` and be at least 8 characters",
                ));
            }
            s
        }
        _ => new_secret(),
    };
    let token = hash_secret(&secret);
    let now = Utc::now();
    let mut k = KeyRecord {
        token: token.clone(),
        key_name: Some(abbreviate(&secret)),
        metadata: json!({}),
        created_at: Some(now),
        updated_at: Some(now),
        ..Default::default()
    };
    {
        let idx = a.gov.index.read();
        if idx.keys.contains_key(&token) {
            return Err(Error::value("key", "this key already exists"));
        }
        apply(&idx, &mut k, o)?;
        check_alias(&idx, &k.key_alias, None)?;
    }
    save(a, k.clone(), None, Vec::new())?;
    let mut v = key_view(a.gov, &k);
    v["key"] = json!(secret);
    v["token_id"] = json!(token);
    Ok(v)
}

fn key_param(o: &Obj) -> Result<String> {
    fields::required(o, "key")
}

pub fn update(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let key = key_param(o)?;
    let (old, new, period_changed) = {
        let idx = a.gov.index.read();
        let (hash, old) = lookup(&idx, &key)?;
        let mut k = (*old).clone();
        let changed = apply(&idx, &mut k, o)?;
        check_alias(&idx, &k.key_alias, Some(&hash))?;
        k.updated_at = Some(Utc::now());
        (old, k, changed)
    };
    save(a, new.clone(), Some(&old), Vec::new())?;
    if period_changed {
        a.gov.restart_period(&key_owner(&new.token));
    }
    Ok(key_view(a.gov, &new))
}

pub fn set_blocked(a: &Admin, caller: &Caller, o: &Obj, blocked: bool) -> Result<Value> {
    let mut o = o.clone();
    let key = key_param(&o)?;
    o.clear();
    o.insert("key".into(), json!(key));
    o.insert("blocked".into(), json!(blocked));
    update(a, caller, &o)
}

pub fn delete(a: &Admin, caller: &Caller, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let (names, by_alias) = match fields::strings(o, "keys")? {
        Some(k) if !k.is_empty() => (k, false),
        _ => (
            id_list(o, "key_aliases")
                .map_err(|_| Error::value("keys", "pass `keys` or `key_aliases`"))?,
            true,
        ),
    };
    let records: Vec<Arc<KeyRecord>> = {
        let idx = a.gov.index.read();
        names
            .iter()
            .map(|n| {
                let hash = if by_alias {
                    idx.aliases.get(n).cloned()
                } else {
                    resolve(&idx, n)
                };
                hash.and_then(|h| idx.keys.get(&h).cloned())
                    .ok_or_else(|| not_found(n))
            })
            .collect::<Result<_>>()?
    };
    let mut ops = Vec::new();
    for k in &records {
        ops.push(Op::Delete(Doc::Keys, k.token.clone()));
        ops.push(Op::Delete(Doc::SpendCounters, key_owner(&k.token)));
        if let Some(al) = &k.key_alias {
            ops.push(Op::DeleteAlias(al.clone()));
        }
    }
    a.store.apply(ops)?;
    let mut idx = a.gov.index.write();
    for k in &records {
        idx.keys.remove(&k.token);
        if let Some(al) = &k.key_alias {
            idx.aliases.remove(al);
        }
        a.gov.forget(&key_owner(&k.token));
    }
    Ok(json!({"deleted_keys": names}))
}

/// `/key/info`: an admin may ask about any key, a key about itself.
pub fn info(a: &Admin, caller: &Caller, key: Option<&str>) -> Result<Value> {
    let hash = match key {
        Some(k) => resolve(&a.gov.index.read(), k).ok_or_else(|| not_found(k))?,
        None => caller
            .token_hash
            .clone()
            .ok_or_else(|| Error::value("key", "is required"))?,
    };
    if !caller.is_admin() && caller.token_hash.as_deref() != Some(hash.as_str()) {
        return Err(Error::Forbidden(
            "A key may only see its own info; use the master key for others.".into(),
        ));
    }
    let k = a
        .gov
        .index
        .read()
        .keys
        .get(&hash)
        .cloned()
        .ok_or_else(|| Error::NotFound("Key not found".into()))?;
    Ok(json!({"key": hash, "info": key_view(a.gov, &k)}))
}

pub fn list(a: &Admin, caller: &Caller, q: &HashMap<String, String>) -> Result<Value> {
    require_admin(caller)?;
    let (page, size) = fields::page(q, "size")?;
    let full = q.get("return_full_object").is_some_and(|v| v == "true");
    let mut keys: Vec<Arc<KeyRecord>> = a
        .gov
        .index
        .read()
        .keys
        .values()
        .filter(|k| {
            q.get("user_id")
                .is_none_or(|u| k.user_id.as_ref() == Some(u))
        })
        .filter(|k| {
            q.get("team_id")
                .is_none_or(|t| k.team_id.as_ref() == Some(t))
        })
        .filter(|k| {
            q.get("key_alias")
                .is_none_or(|al| k.key_alias.as_ref() == Some(al))
        })
        .cloned()
        .collect();
    keys.sort_by(|x, y| (x.created_at, &x.token).cmp(&(y.created_at, &y.token)));
    let (items, total, pages) = paginate(keys, page, size);
    let items: Vec<Value> = items
        .iter()
        .map(|k| {
            if full {
                key_view(a.gov, k)
            } else {
                json!(k.token)
            }
        })
        .collect();
    Ok(json!({"keys": items, "total_count": total, "current_page": page, "total_pages": pages}))
}

/// A new secret with the same settings (and any fields in `o` applied); spend carries over.
pub fn regenerate(a: &Admin, caller: &Caller, path_key: Option<&str>, o: &Obj) -> Result<Value> {
    require_admin(caller)?;
    let _g = a.gov.admin_lock.lock();
    let key = match path_key {
        Some(k) => k.to_owned(),
        None => key_param(o)?,
    };
    let secret = match fields::string(o, "new_key")? {
        Some(Some(s)) if s.starts_with("sk-") && s.len() >= 8 => s,
        Some(Some(_)) => return Err(Error::value("new_key", "must start with `sk-`")),
        _ => new_secret(),
    };
    let (old, new) = {
        let idx = a.gov.index.read();
        let (_, old) = lookup(&idx, &key)?;
        let mut k = (*old).clone();
        let mut o = o.clone();
        o.remove("key");
        apply(&idx, &mut k, &o)?;
        k.token = hash_secret(&secret);
        if idx.keys.contains_key(&k.token) {
            return Err(Error::value("new_key", "this key already exists"));
        }
        k.key_name = Some(abbreviate(&secret));
        k.updated_at = Some(Utc::now());
        (old, k)
    };
    let ops = vec![
        Op::Delete(Doc::Keys, old.token.clone()),
        Op::Delete(Doc::SpendCounters, key_owner(&old.token)),
    ];
    save(a, new.clone(), Some(&old), ops)?;
    a.gov.rename_key(&old.token, &new.token);
    let mut v = key_view(a.gov, &new);
    v["key"] = json!(secret);
    v["token_id"] = json!(new.token);
    Ok(v)
}
