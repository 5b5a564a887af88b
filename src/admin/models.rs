//! Runtime model management (`/model/new`, `/model/update`, `/model/delete`,
//! `/model/info`): deployments stored in redb with provider keys sealed at rest.
//! Config-file deployments are read-only. Service functions only; no HTTP here.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::parse_runtime_deployment;
use crate::deployment::{Deployment, Source};
use crate::router::DeploymentState;
use crate::state::App;
use crate::store::{Doc, Op};

/// A runtime deployment as stored: the LiteLLM entry with `api_key` sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredModel {
    pub model_name: String,
    pub litellm_params: Map<String, Value>,
    #[serde(default)]
    pub model_info: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("model id {0:?} not found")]
    NotFound(String),
    #[error("model id {0:?} comes from the config file and is read-only; edit the config instead")]
    ReadOnly(String),
    #[error("{0}")]
    Secret(#[from] crate::auth::secret_box::SecretError),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
}

/// Decrypts and parses every stored runtime deployment.
pub fn load_runtime(
    app_store: &crate::store::Store,
    secrets: &crate::auth::secret_box::SecretBox,
) -> Result<Vec<Deployment>, ModelError> {
    let mut out = Vec::new();
    for (id, m) in app_store.list::<StoredModel>(Doc::Models)? {
        let mut params = m.litellm_params.clone();
        if let Some(Value::String(sealed)) = params.get("api_key") {
            let plain = secrets.open(sealed)?;
            params.insert("api_key".into(), Value::String(plain));
        }
        let mut info = m.model_info.clone();
        info.insert("id".into(), Value::String(id.clone()));
        let entry =
            json!({"model_name": m.model_name, "litellm_params": params, "model_info": info});
        match parse_runtime_deployment(&entry) {
            Ok(d) => out.push(d),
            Err(e) => {
                tracing::warn!(model_id = %id, error = %e, "skipping stored model that no longer validates")
            }
        }
    }
    Ok(out)
}

/// Installs config + runtime deployments into the router (live state kept).
fn reload(app: &App) -> Result<(), ModelError> {
    let runtime = load_runtime(&app.store, &app.secrets)?;
    let all = app
        .config
        .deployments
        .iter()
        .cloned()
        .chain(runtime)
        .map(|d| {
            let price = app.prices.for_deployment(&d);
            DeploymentState::new(d, price)
        })
        .collect();
    app.router.replace(all);
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn is_config_model(app: &App, id: &str) -> bool {
    app.config.deployments.iter().any(|d| d.id == id)
}

/// Validates an entry, seals its key and returns the stored form.
fn seal(
    app: &App,
    id: &str,
    model_name: String,
    params: Map<String, Value>,
    mut info: Map<String, Value>,
    created_at: Option<String>,
) -> Result<StoredModel, ModelError> {
    info.insert("id".into(), Value::String(id.to_owned()));
    let entry = json!({"model_name": model_name, "litellm_params": params, "model_info": info});
    parse_runtime_deployment(&entry).map_err(|e| {
        ModelError::Invalid(format!(
            "{}: {}{}",
            e.field,
            e.problem,
            if e.fix.is_empty() {
                String::new()
            } else {
                format!(" (fix: {})", e.fix)
            }
        ))
    })?;
    let mut params = params;
    if let Some(Value::String(key)) = params.get("api_key") {
        // `os.environ/` references stay as they are: the secret is not in the store.
        if !key.starts_with("os.environ/") {
            let sealed = app.secrets.seal(key)?;
            params.insert("api_key".into(), Value::String(sealed));
        }
    }
    info.remove("id");
    let t = now();
    Ok(StoredModel {
        model_name,
        litellm_params: params,
        model_info: info,
        created_at: created_at.unwrap_or_else(|| t.clone()),
        updated_at: t,
    })
}

/// `POST /model/new`: `{model_name, litellm_params, model_info?}`.
pub fn add(app: &App, body: &Value) -> Result<Value, ModelError> {
    let model_name = body
        .get("model_name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ModelError::Invalid("model_name is required".into()))?;
    let params = body
        .get("litellm_params")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| ModelError::Invalid("litellm_params must be an object".into()))?;
    let info = body
        .get("model_info")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let id = info
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if is_config_model(app, &id) || app.store.get::<StoredModel>(Doc::Models, &id)?.is_some() {
        return Err(ModelError::Invalid(format!(
            "model_info.id {id:?} already exists"
        )));
    }
    let stored = seal(app, &id, model_name.to_owned(), params, info, None)?;
    app.store
        .apply(vec![Op::put(Doc::Models, id.clone(), &stored)?])?;
    reload(app)?;
    Ok(json!({"model_id": id, "model_name": model_name, "message": "model added"}))
}

/// `POST /model/update`: `{model_info: {id}, model_name?, litellm_params?, model_info?}`;
/// given `litellm_params` fields replace the stored ones.
pub fn update(app: &App, body: &Value) -> Result<Value, ModelError> {
    let id = body
        .pointer("/model_info/id")
        .or_else(|| body.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| ModelError::Invalid("model_info.id is required".into()))?
        .to_owned();
    if is_config_model(app, &id) {
        return Err(ModelError::ReadOnly(id));
    }
    let old: StoredModel = app
        .store
        .get(Doc::Models, &id)?
        .ok_or_else(|| ModelError::NotFound(id.clone()))?;
    let mut params = old.litellm_params.clone();
    // Start from the plain key so an unchanged key is re-sealed, not double-sealed.
    if let Some(Value::String(sealed)) = params.get("api_key") {
        if !sealed.starts_with("os.environ/") {
            let plain = app.secrets.open(sealed)?;
            params.insert("api_key".into(), Value::String(plain));
        }
    }
    if let Some(new) = body.get("litellm_params").and_then(Value::as_object) {
        for (k, v) in new {
            params.insert(k.clone(), v.clone());
        }
    }
    let mut info = old.model_info.clone();
    if let Some(new) = body.get("model_info").and_then(Value::as_object) {
        for (k, v) in new {
            info.insert(k.clone(), v.clone());
        }
    }
    let model_name = body
        .get("model_name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or(old.model_name);
    let stored = seal(
        app,
        &id,
        model_name.clone(),
        params,
        info,
        Some(old.created_at),
    )?;
    app.store
        .apply(vec![Op::put(Doc::Models, id.clone(), &stored)?])?;
    reload(app)?;
    Ok(json!({"model_id": id, "model_name": model_name, "message": "model updated"}))
}

/// `POST /model/delete`: `{id}`.
pub fn delete(app: &App, body: &Value) -> Result<Value, ModelError> {
    let id = body
        .get("id")
        .or_else(|| body.pointer("/model_info/id"))
        .and_then(Value::as_str)
        .ok_or_else(|| ModelError::Invalid("id is required".into()))?
        .to_owned();
    if is_config_model(app, &id) {
        return Err(ModelError::ReadOnly(id));
    }
    if app.store.get::<StoredModel>(Doc::Models, &id)?.is_none() {
        return Err(ModelError::NotFound(id));
    }
    app.store.apply(vec![Op::Delete(Doc::Models, id.clone())])?;
    reload(app)?;
    Ok(json!({"model_id": id, "message": "model deleted"}))
}

/// `GET /model/info`: every deployment (config and runtime), keys never shown.
/// `visible` says which model groups the caller may see (all, for admins).
pub fn info(app: &App, only_id: Option<&str>, visible: &dyn Fn(&str) -> bool) -> Value {
    let data: Vec<Value> = app
        .router
        .deployments()
        .iter()
        .filter(|d| only_id.is_none_or(|id| d.dep.id == id))
        .filter(|d| visible(&d.dep.model_name))
        .map(|d| deployment_info(d))
        .collect();
    json!({"data": data})
}

fn deployment_info(d: &DeploymentState) -> Value {
    let dep = &d.dep;
    let mut info = dep.model_info.clone();
    info.insert("id".into(), json!(dep.id));
    info.insert("db_model".into(), json!(dep.source == Source::Runtime));
    if let Some(p) = &d.price {
        info.entry("input_cost_per_token")
            .or_insert(json!(p.input_cost_per_token));
        info.entry("output_cost_per_token")
            .or_insert(json!(p.output_cost_per_token));
        if let Some(m) = p.max_input_tokens {
            info.entry("max_input_tokens").or_insert(json!(m));
        }
    }
    json!({
        "model_name": dep.model_name,
        "litellm_params": {
            "model": format!("{}/{}", dep.provider, dep.upstream_model),
            "api_base": dep.public_api_base(),
            "api_version": dep.api_version,
            "rpm": dep.rpm,
            "tpm": dep.tpm,
            "order": dep.order,
            "weight": dep.weight,
            "timeout": dep.timeout.map(|t| t.as_secs_f64()),
        },
        "model_info": info,
        "health": d.snapshot(),
    })
}
