#!/usr/bin/env bash
# Instructions the gateway executes a request, by callgrind: the number bench/RESULTS.md
# tracks from session to session (the machine's speed swings too much for timings to
# show changes of a few percent; instruction counts repeat within ±0.2k).
#
# Usage: bash bench/instructions.sh [chat|stream|virtual] [REQUESTS]
#        BENCH_BUILD=pgo bash bench/instructions.sh ...   # the build of bench/pgo.sh
#
# Needs valgrind (`apt-get install valgrind`), a built gateway (`cargo build --release`),
# the mock upstream and oha as bench/run.sh builds and installs them. The gateway runs on
# one core (so the single-threaded runtime, as in the benchmark) with busy polling off
# (a spinning thread's instructions are not the request's), behind 200 warm-up requests;
# then REQUESTS (default 2000) requests at concurrency 4 are counted.
set -euo pipefail

KIND=${1:-chat}
N=${2:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GW=$ROOT/target/release/switchyard
# BENCH_BUILD=pgo: count the profile-guided build of bench/pgo.sh instead.
[[ "${BENCH_BUILD:-plain}" == pgo ]] && GW=$ROOT/target/pgo/release/switchyard
MOCK=$ROOT/bench/mock-upstream/target/release/mock-upstream
OHA=$ROOT/bench/.tools/bin/oha
for need in "$GW" "$MOCK" "$OHA"; do
  [[ -x "$need" ]] || { echo "missing $need: run cargo build --release and bench/run.sh once" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
MASTER=sk-bench-master
cat > "$WORK/config.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:$MOCK_PORT/v1
      api_key: sk-upstream
general_settings:
  master_key: $MASTER
  busy_poll_us: 0
EOF

taskset -c 1 "$MOCK" --port "$MOCK_PORT" >/dev/null 2>&1 &
PIDS+=($!)
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" --instr-atstart=no \
  "$GW" --config "$WORK/config.yaml" --port "$GW_PORT" --host 127.0.0.1 \
  --data-dir "$WORK/data" >"$WORK/gateway.log" 2>&1 &
VG=$!
PIDS+=($VG)
for _ in $(seq 1 150); do
  curl -sf -o /dev/null "http://127.0.0.1:$GW_PORT/health/liveliness" && break
  sleep 0.2
done

KEY=$MASTER
if [[ "$KIND" == virtual ]]; then
  KEY=$(curl -sf -H "Authorization: Bearer $MASTER" -H 'Content-Type: application/json' \
    -d '{"key_alias":"bench","max_budget":1e9,"rpm_limit":1000000000,"tpm_limit":1000000000000,"max_parallel_requests":100000}' \
    "http://127.0.0.1:$GW_PORT/key/generate" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
fi
BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
[[ "$KIND" == stream ]] && BODY='{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true}'
load() {
  "$OHA" -n "$1" -c "$2" --no-tui --output-format json -m POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$BODY" "http://127.0.0.1:$GW_PORT/v1/chat/completions"
}
load 200 1 >/dev/null
callgrind_control -i on "$VG" >/dev/null 2>&1
load "$N" 4 >"$WORK/oha.json"
callgrind_control -i off "$VG" >/dev/null 2>&1
callgrind_control -d "$VG" >/dev/null 2>&1
python3 - "$WORK/oha.json" "$N" <<'PY'
import json, sys
codes = json.load(open(sys.argv[1])).get("statusCodeDistribution", {})
ok = codes.get("200", 0)
if ok != int(sys.argv[2]):
    sys.exit(f"only {ok} of {sys.argv[2]} requests answered 200 ({codes}): the count would be wrong")
PY
kill "$VG" 2>/dev/null || true
wait "$VG" 2>/dev/null || true
python3 - "$WORK" "$N" "$KIND" <<'PY'
import glob, sys
work, n, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
total = 0
for f in glob.glob(f"{work}/cg.out*"):
    for line in open(f):
        if line.startswith("totals:"):
            total += int(line.split()[1])
print(f"{kind}: {total / n:.0f} instructions a request ({n} requests)")
PY
