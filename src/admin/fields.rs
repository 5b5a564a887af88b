//! Typed reads of request-body fields that name the field when its type or value is
//! wrong. Each returns `None` when the field is absent, `Some(None)` when it is null.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{Error, Result};
use crate::governance::records::{ModelBudget, Period};

pub type Obj = Map<String, Value>;

fn get<'a>(o: &'a Obj, f: &str) -> Option<&'a Value> {
    o.get(f)
}

pub fn string(o: &Obj, f: &'static str) -> Result<Option<Option<String>>> {
    match get(o, f) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(Error::Type {
            field: f,
            expected: "a string",
        }),
    }
}

/// A required non-empty string.
pub fn required(o: &Obj, f: &'static str) -> Result<String> {
    match string(o, f)? {
        Some(Some(s)) if !s.is_empty() => Ok(s),
        _ => Err(Error::value(f, "is required")),
    }
}

pub fn float(o: &Obj, f: &'static str) -> Result<Option<Option<f64>>> {
    match get(o, f) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(Some(x))),
            _ => Err(Error::value(f, "must be a non-negative number")),
        },
        Some(_) => Err(Error::Type {
            field: f,
            expected: "a number",
        }),
    }
}

pub fn uint(o: &Obj, f: &'static str) -> Result<Option<Option<u64>>> {
    match get(o, f) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) => Ok(Some(Some(x))),
            None => Err(Error::value(f, "must be a non-negative integer")),
        },
        Some(_) => Err(Error::Type {
            field: f,
            expected: "an integer",
        }),
    }
}

pub fn boolean(o: &Obj, f: &'static str) -> Result<Option<bool>> {
    match get(o, f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Error::Type {
            field: f,
            expected: "a boolean",
        }),
    }
}

/// A list of strings; null reads as an empty list.
pub fn strings(o: &Obj, f: &'static str) -> Result<Option<Vec<String>>> {
    match get(o, f) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or(Error::Type {
                    field: f,
                    expected: "a list of strings",
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(Error::Type {
            field: f,
            expected: "a list of strings",
        }),
    }
}

/// A JSON object; null reads as `{}`.
pub fn object(o: &Obj, f: &'static str) -> Result<Option<Value>> {
    match get(o, f) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Value::Object(Map::new()))),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(Error::Type {
            field: f,
            expected: "an object",
        }),
    }
}

/// A budget period such as `30s`, `1d`, `1mo`.
pub fn duration(o: &Obj, f: &'static str) -> Result<Option<Option<String>>> {
    match string(o, f)? {
        Some(Some(s)) => {
            if Period::parse(&s).is_none() {
                return Err(Error::value(
                    f,
                    format!("`{s}` is not a duration like 30s, 1h, 1d, 30d or 1mo"),
                ));
            }
            Ok(Some(Some(s)))
        }
        other => Ok(other),
    }
}

/// `{model: integer}`.
pub fn uint_map(o: &Obj, f: &'static str) -> Result<Option<BTreeMap<String, u64>>> {
    let Some(v) = object(o, f)? else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let n = v.as_u64().ok_or(Error::Type {
            field: f,
            expected: "an object of model → integer",
        })?;
        out.insert(k.clone(), n);
    }
    Ok(Some(out))
}

/// `{model: number}` or `{model: {"budget_limit": number, "time_period": "1d"}}`.
pub fn model_budgets(o: &Obj, f: &'static str) -> Result<Option<BTreeMap<String, ModelBudget>>> {
    let Some(v) = object(o, f)? else {
        return Ok(None);
    };
    let bad = || Error::Type {
        field: f,
        expected: "an object of model → budget_limit",
    };
    let mut out = BTreeMap::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let b = match v {
            Value::Number(n) => ModelBudget {
                budget_limit: n.as_f64().ok_or_else(bad)?,
                time_period: None,
            },
            Value::Object(m) => {
                let limit = m
                    .get("budget_limit")
                    .and_then(Value::as_f64)
                    .ok_or_else(bad)?;
                let period = match m.get("time_period") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if Period::parse(s).is_some() => Some(s.clone()),
                    Some(_) => return Err(Error::value(f, "time_period must be like 1d or 1mo")),
                };
                ModelBudget {
                    budget_limit: limit,
                    time_period: period,
                }
            }
            _ => return Err(bad()),
        };
        if b.budget_limit < 0.0 {
            return Err(Error::value(f, "budget_limit must be non-negative"));
        }
        out.insert(k.clone(), b);
    }
    Ok(Some(out))
}

/// Parses a request body as a JSON object.
pub fn body(bytes: &[u8]) -> Result<Obj> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::BadRequest(
            "the request body must be a JSON object".into(),
        )),
        Err(e) => Err(Error::BadRequest(format!("invalid JSON body: {e}"))),
    }
}

/// Page number and size from query strings (1-based page).
pub fn page(
    q: &std::collections::HashMap<String, String>,
    size_name: &'static str,
) -> Result<(usize, usize)> {
    let page = match q.get("page") {
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or(Error::value("page", "must be an integer ≥ 1"))?,
        None => 1,
    };
    let size = match q.get(size_name) {
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=1000).contains(p))
            .ok_or(Error::value(
                size_name,
                "must be an integer between 1 and 1000",
            ))?,
        None => 10,
    };
    Ok((page, size))
}
