# Shared by the bench scripts (run.sh, pgo.sh): sourced, not run. Expects BENCH_DIR.
# The layout every script uses: gateway on core 0, mock upstream and load tool on core 1.

MASTER_KEY="sk-bench-master"
BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true}'
TOOLS_DIR="$BENCH_DIR/.tools"
MOCK_BIN="$BENCH_DIR/mock-upstream/target/release/mock-upstream"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [[ $APT_UPDATED == 0 ]]; then $SUDO apt-get update -qq >&2 || return 1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}
command -v cargo >/dev/null 2>&1 || die "cargo not found (install the Rust toolchain)"
command -v python3 >/dev/null 2>&1 || apt_install python3 || die "python3 is required"
command -v taskset >/dev/null 2>&1 || apt_install util-linux || true

NCPU=$(nproc 2>/dev/null || echo 1)
if command -v taskset >/dev/null 2>&1 && (( NCPU >= 2 )); then
  PIN_GW=(taskset -c 0); PIN_MOCK=(taskset -c 1); PIN_LOAD=(taskset -c 1)
else
  log "warning: taskset unavailable or fewer than 2 cores; running unpinned"
  PIN_GW=(); PIN_MOCK=(); PIN_LOAD=()
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Blocks until GET url answers 200 or the timeout (s) expires; also fails if pid dies.
wait_http_200() {
  local url=$1 pid=$2 timeout=${3:-30}
  python3 - "$url" "$pid" "$timeout" <<'PY'
import os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + timeout
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("process %d exited before %s answered" % (pid, url))
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
sys.exit("timed out waiting for %s" % url)
PY
}

build_mock() {
  log "building mock upstream (release)"
  cargo build --release --quiet --manifest-path "$BENCH_DIR/mock-upstream/Cargo.toml" \
    || die "mock upstream build failed"
}

# Prints the path of oha, installing it into $TOOLS_DIR when it is nowhere.
find_or_install_oha() {
  if [[ -x "$TOOLS_DIR/bin/oha" ]]; then echo "$TOOLS_DIR/bin/oha"; return; fi
  if command -v oha >/dev/null 2>&1; then command -v oha; return; fi
  log "installing oha into $TOOLS_DIR (cargo install oha --locked)"
  cargo install oha --locked --root "$TOOLS_DIR" >&2 || return 1
  echo "$TOOLS_DIR/bin/oha"
}

# Prints a new virtual key of the gateway at BASE_URL, with limits far above what a run
# can reach: every check runs, none refuses.
generate_bench_key() {
  python3 - "$1/key/generate" "$MASTER_KEY" <<'PY'
import json, sys, urllib.request
body = json.dumps({"key_alias": "bench", "max_budget": 1e9, "rpm_limit": 10**9,
                   "tpm_limit": 10**12, "max_parallel_requests": 100000}).encode()
req = urllib.request.Request(sys.argv[1], data=body, method="POST", headers={
    "Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=10))["key"])
PY
}

# write_bench_config PATH MOCK_PORT: one model group `bench` -> the mock, the master key.
write_bench_config() {
  cat >"$1" <<YAML
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:$2/v1
      api_key: sk-x
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002

general_settings:
  master_key: $MASTER_KEY
YAML
}
