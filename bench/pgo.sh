#!/usr/bin/env bash
# Profile-guided release build of the gateway: target/pgo/release/switchyard.
#
#   bash bench/pgo.sh            # ~4 min: instrumented build, training load, final build
#
# 1. builds the gateway with LLVM instrumentation (`-Cprofile-generate`, in
#    target/pgo-instrumented);
# 2. runs it against the bench's mock upstream under the bench's kinds of load (master key
#    and virtual key, whole answers and streams, concurrency 1 to 64, pinned to one core as
#    the benchmark runs it, then unpinned), plus the management and health routes, and
#    stops it with SIGINT so it writes its profile;
# 3. merges the profile with the toolchain's own `llvm-profdata` (rustup component
#    `llvm-tools`, added when missing: the merged format must match rustc's LLVM);
# 4. builds the release binary with the profile (`-Cprofile-use`, in target/pgo).
#
# Why: the request path is spread thin over many small functions (no user-space function
# over 1.3 % of the core, bench/RESULTS.md), which is what profile-guided layout and
# inlining help most. On the benchmark's request it cuts the gateway's instructions by
# ~14 % and its user-space CPU a request by ~1.3 µs. Same sources, same behaviour: only
# code placement, inlining and branch layout change. `BENCH_BUILD=pgo bash bench/run.sh`
# builds and measures it; the default there is the plain release build.
#
# Only 127.0.0.1 is contacted, except crates.io / the Rust distribution server when oha or
# llvm-tools have to be installed.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"

OUT_DIR="$ROOT/target/pgo"
GEN_DIR="$ROOT/target/pgo-instrumented"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-pgo.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- tools
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [[ ! -x "$PROFDATA" ]]; then
  log "adding the rustup component llvm-tools (for llvm-profdata)"
  rustup component add llvm-tools >&2 || rustup component add llvm-tools-preview >&2 \
    || die "llvm-profdata is missing and 'rustup component add llvm-tools' failed"
fi
[[ -x "$PROFDATA" ]] || die "no llvm-profdata at $PROFDATA"
build_mock
OHA=$(find_or_install_oha) || die "no load tool: cargo install oha failed"

# ---------------------------------------------------------------- instrumented build
log "building the instrumented gateway (target/pgo-instrumented)"
# Build scripts are instrumented too: their profiles go to the work dir's scratch.
(cd "$ROOT" && LLVM_PROFILE_FILE="$WORK/build-%p.profraw" \
  RUSTFLAGS="-Cprofile-generate=$WORK/raw" \
  cargo build --release --locked --quiet --target-dir "$GEN_DIR") \
  || die "instrumented build failed"
GEN_BIN="$GEN_DIR/release/switchyard"

# ---------------------------------------------------------------- training load
MPORT=$(free_port)
"${PIN_MOCK[@]}" "$MOCK_BIN" --port "$MPORT" >"$WORK/mock.log" 2>&1 &
PIDS+=("$!")
wait_http_200 "http://127.0.0.1:$MPORT/health" "$!" 15 || die "mock upstream did not start"
write_bench_config "$WORK/config.yaml" "$MPORT"

# train_load URL CONC SECONDS KEY BODY
train_load() {
  "${PIN_LOAD[@]}" "$OHA" --no-tui -z "${3}s" -c "$2" -m POST \
    -H "Content-Type: application/json" -H "Authorization: Bearer $4" -d "$5" "$1" \
    >/dev/null 2>&1 || die "training load failed ($2 connections)"
}

# train PIN... : one gateway run under every kind of load, ended by SIGINT.
train() {
  local port data pid key
  port=$(free_port)
  data="$WORK/data-$port"
  mkdir -p "$data"
  LLVM_PROFILE_FILE="$WORK/raw/gateway-%p-%m.profraw" "$@" "$GEN_BIN" \
    --config "$WORK/config.yaml" --host 127.0.0.1 --port "$port" --data-dir "$data" \
    >"$WORK/gateway-$port.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_http_200 "http://127.0.0.1:$port/health/liveliness" "$pid" 30 \
    || { tail -n 20 "$WORK/gateway-$port.log" >&2; die "instrumented gateway did not start"; }
  key=$(generate_bench_key "http://127.0.0.1:$port")
  local url="http://127.0.0.1:$port/v1/chat/completions"
  train_load "$url" 64 4 "$MASTER_KEY" "$BODY"
  train_load "$url" 1 2 "$MASTER_KEY" "$BODY"
  train_load "$url" 16 3 "$MASTER_KEY" "$STREAM_BODY"
  train_load "$url" 64 3 "$key" "$BODY"
  train_load "$url" 16 2 "$key" "$STREAM_BODY"
  python3 - "http://127.0.0.1:$port" "$MASTER_KEY" <<'PY'
import sys, urllib.request
for path in ["/v1/models", "/health/readiness", "/spend/logs?limit=20", "/key/list",
             "/global/spend/report"]:
    req = urllib.request.Request(sys.argv[1] + path,
                                 headers={"Authorization": "Bearer " + sys.argv[2]})
    urllib.request.urlopen(req, timeout=10).read()
PY
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
}
log "training: pinned as the benchmark runs it, then unpinned"
train "${PIN_GW[@]}"
train
shopt -s nullglob
RAW=("$WORK"/raw/gateway-*.profraw)
(( ${#RAW[@]} > 0 )) || die "the instrumented gateway wrote no profile"
"$PROFDATA" merge -o "$WORK/switchyard.profdata" "${RAW[@]}" || die "llvm-profdata merge failed"

# ---------------------------------------------------------------- optimized build
log "building the profile-guided gateway (target/pgo)"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$WORK/switchyard.profdata" \
  cargo build --release --locked --quiet --target-dir "$OUT_DIR") \
  || die "profile-guided build failed"
log "built $OUT_DIR/release/switchyard"
