//! Unit tests of config loading and validation.

use super::*;

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml("test.yaml", yaml)
}

#[test]
fn a_litellm_config_loads_with_groups_settings_and_ignored_keys() {
    let cfg = load(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: sk-upstream
      rpm: 100
      temperature: 0.2
    model_info:
      id: dep-1
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-20250514
      api_key: ak
  - model_name: local
    litellm_params:
      model: hosted_vllm/llama
      api_base: http://127.0.0.1:8000/v1/
litellm_settings:
  num_retries: 3
  drop_params: true
  fallbacks: [{"gpt-4o": ["claude"]}]
router_settings:
  routing_strategy: least-busy
  cooldown_time: 10
  retry_policy: {RateLimitErrorRetries: 4}
general_settings:
  master_key: sk-master
  alerting: ["slack"]
"#,
    )
    .unwrap();
    assert_eq!(cfg.model_groups(), vec!["gpt-4o", "claude", "local"]);
    let d = &cfg.deployments[0];
    assert_eq!(d.id, "dep-1");
    assert_eq!(d.api_base, "https://api.openai.com/v1");
    assert_eq!(d.rpm, Some(100));
    assert_eq!(
        d.default_params.get("temperature"),
        Some(&serde_json::json!(0.2))
    );
    assert_eq!(cfg.deployments[2].api_base, "http://127.0.0.1:8000/v1");
    assert_eq!(cfg.router.num_retries, 3);
    assert_eq!(cfg.router.routing_strategy, RoutingStrategy::LeastBusy);
    assert_eq!(cfg.router.cooldown_time, Duration::from_secs(10));
    assert_eq!(
        cfg.router.fallbacks,
        vec![("gpt-4o".to_owned(), vec!["claude".to_owned()])]
    );
    assert_eq!(
        cfg.router
            .retry_policy
            .get(&crate::providers::ErrorClass::RateLimit),
        Some(&4)
    );
    assert_eq!(cfg.general.master_key.as_deref(), Some("sk-master"));
    assert!(cfg
        .ignored
        .contains(&"litellm_settings.drop_params".to_owned()));
    assert!(cfg
        .ignored
        .contains(&"general_settings.alerting".to_owned()));
}

#[test]
fn a_model_without_provider_prefix_names_the_field_and_the_fix() {
    let e = load("model_list:\n  - model_name: c\n    litellm_params:\n      model: claude-sonnet-4-20250514\n").unwrap_err();
    assert_eq!(e.file, "test.yaml");
    assert_eq!(e.field, "model_list[0].litellm_params.model");
    assert!(e.fix.contains("anthropic/claude-sonnet-4-20250514"), "{e}");
}

#[test]
fn an_unknown_provider_is_rejected_with_the_known_list() {
    let e = load("model_list:\n  - model_name: c\n    litellm_params:\n      model: nope/x\n")
        .unwrap_err();
    assert!(e.problem.contains("unknown provider \"nope\""), "{e}");
    assert!(e.fix.contains("anthropic"), "{e}");
}

#[test]
fn a_master_key_without_sk_prefix_is_rejected() {
    let e = load("general_settings:\n  master_key: hunter2\n").unwrap_err();
    assert_eq!(e.field, "general_settings.master_key");
}

#[test]
fn duplicate_model_ids_are_rejected() {
    let e = load(
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n    model_info: {id: x}\n  - model_name: b\n    litellm_params: {model: openai/b}\n    model_info: {id: x}\n",
    )
    .unwrap_err();
    assert_eq!(e.field, "model_list[1].model_info.id");
}

#[test]
fn os_environ_values_resolve_and_a_missing_variable_is_named() {
    std::env::set_var("SWITCHYARD_TEST_KEY_A1", "sk-from-env");
    let cfg = load("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/SWITCHYARD_TEST_KEY_A1\n").unwrap();
    assert_eq!(cfg.deployments[0].api_key.as_deref(), Some("sk-from-env"));
    let e = load("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/SWITCHYARD_TEST_MISSING_Z9\n").unwrap_err();
    assert_eq!(e.field, "model_list[0].litellm_params.api_key");
    assert!(e.problem.contains("SWITCHYARD_TEST_MISSING_Z9"));
}

#[test]
fn environment_variables_section_feeds_os_environ() {
    let cfg = load("environment_variables:\n  MY_BASE_Q7: http://10.0.0.1:9/v1\nmodel_list:\n  - model_name: a\n    litellm_params:\n      model: hosted_vllm/a\n      api_base: os.environ/MY_BASE_Q7\n").unwrap();
    assert_eq!(cfg.deployments[0].api_base, "http://10.0.0.1:9/v1");
}

#[test]
fn durations_use_litellm_units() {
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1mo"), Some(Duration::from_secs(30 * 86400)));
    assert_eq!(parse_duration("7x"), None);
}

#[test]
fn the_shipped_example_and_demo_configs_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let demo = Config::load(&dir.join("demo.yaml")).unwrap();
    assert_eq!(demo.model_groups(), vec!["echo"]);
    // The variables go in through `environment_variables`, not the process environment,
    // so parallel tests never see them.
    let text = std::fs::read_to_string(dir.join("example.yaml")).unwrap();
    let env = "\nenvironment_variables:\n  OPENAI_API_KEY: sk-o\n  ANTHROPIC_API_KEY: sk-a\n  AZURE_API_BASE: https://x.openai.azure.com\n  AZURE_API_KEY: az\n  LITELLM_MASTER_KEY: sk-master-example\n";
    let example = Config::from_yaml("config/example.yaml", &format!("{text}{env}")).unwrap();
    assert_eq!(
        example.model_groups(),
        vec!["gpt-4o", "gpt-4o-mini", "claude-sonnet", "local-llama"]
    );
    assert_eq!(
        example.general.master_key.as_deref(),
        Some("sk-master-example")
    );
    let azure = example
        .deployments
        .iter()
        .find(|d| d.provider == "azure")
        .unwrap();
    assert_eq!(azure.api_base, "https://x.openai.azure.com");
}

#[test]
fn ssl_verify_and_the_ssl_environment_variables_set_upstream_tls() {
    const MODELS: &str =
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/gpt-4o\n";
    let bundle = tempfile::NamedTempFile::new().unwrap();
    let path = bundle.path().display().to_string();
    let cfg = load(&format!(
        "{MODELS}litellm_settings:\n  ssl_verify: {path}\n"
    ))
    .unwrap();
    assert!(cfg.tls.extra_roots.iter().any(|p| p == bundle.path()));
    assert!(!cfg.tls.insecure);
    assert!(!cfg.ignored.iter().any(|k| k.contains("ssl_verify")));

    let cfg = load(&format!("{MODELS}litellm_settings:\n  ssl_verify: false\n")).unwrap();
    assert!(cfg.tls.insecure);
    // The environment wins over the file for verification on/off, as in LiteLLM.
    let cfg = load(&format!(
        "{MODELS}litellm_settings:\n  ssl_verify: false\nenvironment_variables:\n  SSL_VERIFY: \"True\"\n"
    ))
    .unwrap();
    assert!(!cfg.tls.insecure);
    let cfg = load(&format!(
        "{MODELS}environment_variables:\n  SSL_VERIFY: \"False\"\n  SSL_CERT_FILE: {path}\n"
    ))
    .unwrap();
    assert!(cfg.tls.insecure);
    assert!(cfg.tls.extra_roots.iter().any(|p| p == bundle.path()));

    let e = load(&format!(
        "{MODELS}environment_variables:\n  SSL_CERT_FILE: /nonexistent/ca.pem\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("SSL_CERT_FILE"), "{e}");
    let e = load(&format!("{MODELS}litellm_settings:\n  ssl_verify: 3\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("litellm_settings.ssl_verify"), "{e}");
}

#[test]
fn disable_spend_logs_is_read_and_must_be_a_boolean() {
    assert!(
        !load("general_settings: {}\n")
            .unwrap()
            .general
            .disable_spend_logs
    );
    let cfg = load("general_settings:\n  disable_spend_logs: true\n").unwrap();
    assert!(cfg.general.disable_spend_logs);
    assert!(cfg.ignored.is_empty(), "{:?}", cfg.ignored);
    let e = load("general_settings:\n  disable_spend_logs: sometimes\n").unwrap_err();
    assert_eq!(e.field, "general_settings.disable_spend_logs");
}

#[test]
fn busy_poll_us_is_read_defaults_on_and_zero_turns_it_off() {
    assert_eq!(
        load("general_settings: {}\n").unwrap().general.busy_poll,
        Duration::from_micros(settings::DEFAULT_BUSY_POLL_US)
    );
    let cfg = load("general_settings:\n  busy_poll_us: 250\n").unwrap();
    assert_eq!(cfg.general.busy_poll, Duration::from_micros(250));
    let cfg = load("general_settings:\n  busy_poll_us: 0\n").unwrap();
    assert!(cfg.general.busy_poll.is_zero());
    let e = load("general_settings:\n  busy_poll_us: -5\n").unwrap_err();
    assert_eq!(e.field, "general_settings.busy_poll_us");
}
