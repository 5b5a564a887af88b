//! The real binary: config validation at startup, `check-config`, `os.environ/`
//! resolution, serving on a chosen port and a clean SIGTERM shutdown.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn yaml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("tempfile");
    f.write_all(text.as_bytes()).expect("write config");
    f
}

/// Runs the binary to completion (killed after 10 s so a wrong success cannot hang).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("LITELLM_MASTER_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn switchyard");
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Starting with `yaml` fails; returns stderr after checking it names the file.
fn rejected(yaml: &str) -> String {
    let f = yaml_file(yaml);
    let path = f.path().to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &[
            "--config",
            path,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with a bad config: {stderr}");
    assert!(stderr.contains(path), "stderr names the file: {stderr}");
    stderr
}

#[test]
fn a_model_without_provider_prefix_is_rejected_with_the_fix() {
    let e = rejected(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: claude-3-5-sonnet-20241022\n",
    );
    assert!(e.contains("model_list[0].litellm_params.model"), "{e}");
    assert!(
        e.contains("use anthropic/claude-3-5-sonnet-20241022"),
        "{e}"
    );
}

#[test]
fn an_unknown_provider_is_rejected_listing_known_ones() {
    let e = rejected(
        "model_list:\n  - model_name: x\n    litellm_params:\n      model: nosuchprovider/some-model\n",
    );
    assert!(e.contains("model_list[0].litellm_params.model"), "{e}");
    assert!(e.contains("nosuchprovider"), "{e}");
    assert!(e.contains("openai") && e.contains("anthropic"), "{e}");
}

#[test]
fn a_master_key_without_sk_is_rejected() {
    let e = rejected(
        "model_list:\n  - model_name: echo\n    litellm_params:\n      model: mock/echo\ngeneral_settings:\n  master_key: secret123\n",
    );
    assert!(e.contains("general_settings.master_key"), "{e}");
    assert!(e.contains("sk-"), "{e}");
    assert!(
        !e.contains("secret123"),
        "the key itself is never printed: {e}"
    );
}

#[test]
fn a_duplicate_model_info_id_is_rejected() {
    let e = rejected(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/echo\n    model_info:\n      id: same\n  - model_name: b\n    litellm_params:\n      model: mock/echo\n    model_info:\n      id: same\n",
    );
    assert!(e.contains("model_list[1].model_info.id"), "{e}");
    assert!(e.contains("same") && e.contains("unique"), "{e}");
}

#[test]
fn a_missing_environment_variable_is_named() {
    let e = rejected(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/SWITCHYARD_TEST_SURELY_UNSET_KEY\n",
    );
    assert!(e.contains("SWITCHYARD_TEST_SURELY_UNSET_KEY"), "{e}");
    assert!(e.contains("model_list[0].litellm_params.api_key"), "{e}");
    assert!(e.contains("export"), "{e}");
}

#[test]
fn check_config_prints_the_model_groups() {
    let f = yaml_file(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-x\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-3-5-haiku\n      api_key: sk-y\n",
    );
    let path = f.path().to_str().expect("utf-8");
    let out = run(&["check-config", path], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("gpt: openai/gpt-4o"), "{stdout}");
    assert!(
        stdout.contains("claude: anthropic/claude-3-5-haiku"),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-x"), "{stdout}");

    let bad =
        yaml_file("model_list:\n  - model_name: x\n    litellm_params:\n      model: gpt-4o\n");
    let out = run(&["check-config", bad.path().to_str().expect("utf-8")], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use openai/gpt-4o"));
}

#[tokio::test]
async fn the_binary_serves_resolves_os_environ_keys_and_stops_cleanly_on_sigterm() {
    serves_and_stops_cleanly("1").await;
}

#[tokio::test]
async fn the_multi_threaded_runtime_serves_and_stops_cleanly_too() {
    serves_and_stops_cleanly("2").await;
}

#[test]
fn zero_workers_is_refused() {
    let out = run(&["--num-workers", "0"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("num-workers"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the real binary with `--num-workers workers`, calls it once, stops it.
async fn serves_and_stops_cleanly(workers: &str) {
    let up = MockUpstream::openai().await;
    let f = yaml_file(&format!(
        "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: {}/v1\n      api_key: os.environ/SWITCHYARD_TEST_UPSTREAM_KEY\ngeneral_settings:\n  master_key: {MASTER_KEY}\n",
        up.url()
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--config",
            f.path().to_str().expect("utf-8"),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--num-workers",
            workers,
        ])
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("LITELLM_MASTER_KEY")
        .env("SWITCHYARD_TEST_UPSTREAM_KEY", "sk-from-env")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let t = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/health/liveliness")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never became live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&chat_json("gpt"))
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().header("authorization"),
        Some("Bearer sk-from-env"),
        "os.environ/ key reached the upstream"
    );
    assert!(
        dir.path().join("switchyard.redb").exists(),
        "store in --data-dir"
    );

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
}
