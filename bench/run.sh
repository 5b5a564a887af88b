#!/usr/bin/env bash
# Switchyard overhead benchmark: direct-to-mock vs through-the-gateway.
#
#   bash bench/run.sh                  # 5 rounds of 3 s runs
#   BENCH_ROUNDS=1 BENCH_SECONDS=8 bash bench/run.sh  # one 8 s run each (the old method)
#
# Each target (direct, baseline proxy, gateway) is loaded in ROUNDS short runs, the three
# interleaved round by round, and the report gives medians: per-round ratios and added
# latencies are taken against that round's direct run. This machine's speed swings by
# tens of percent within seconds (bench/RESULTS.md); interleaving puts the three under
# the same conditions and the median keeps one slow spell from deciding the verdict.
# The spread of the per-round ratios is printed with it.
#
# Environment knobs (all optional):
#   BENCH_ROUNDS        interleaved rounds per concurrency level (default 5)
#   BENCH_SECONDS       seconds per load run (default 3)
#   BENCH_WARMUP        seconds of warm-up per target, results discarded (default 1)
#   BENCH_CONCURRENCY   space-separated concurrency levels (default "1 16 64")
#   BENCH_STREAM_CONC   concurrency of the streaming run, "" to skip (default 16)
#   BENCH_SKIP_BUILD=1  do not run cargo build (use existing release binaries)
#   BENCH_BUILD=pgo     measure the profile-guided build (bench/pgo.sh, target/pgo) instead of
#                       the plain `cargo build --release` (default "plain")
#   BENCH_DIRECT_ONLY=1 only benchmark the mock upstream (no gateway)
#   BENCH_TOOL          force "oha" or "wrk"
#   BENCH_OUT           also write the raw results as JSON to this path
#   BENCH_KEEP=1        keep the temp dir (config, logs, raw outputs)
#   BENCH_KEY=virtual   load the gateway with a virtual key (budget, rpm/tpm and parallel
#                       limits set high) instead of the master key: the governance path
#   BENCH_BASELINE=0    skip the yardstick: a bare hyper pass-through proxy
#                       (bench/baseline-proxy) on the gateway's core, run like the gateway,
#                       that adds LiteLLM's response headers to each answer
#   BENCH_BASELINE_HEADERS=0  the yardstick without those headers (sessions 1-8)
#
# Only 127.0.0.1 is ever contacted, except crates.io / apt when the load tool
# has to be installed. Layout: gateway on core 0, mock upstream + load tool on
# core 1 (taskset), when the machine has at least 2 cores.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SECONDS_PER_RUN="${BENCH_SECONDS:-3}"
ROUNDS="${BENCH_ROUNDS:-5}"
WARMUP="${BENCH_WARMUP:-1}"
CONCURRENCY="${BENCH_CONCURRENCY:-1 16 64}"
STREAM_CONC="${BENCH_STREAM_CONC-16}"
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
BASE_BIN="$BENCH_DIR/baseline-proxy/target/release/baseline-proxy"
BASELINE="${BENCH_BASELINE:-1}"
BUILD="${BENCH_BUILD:-plain}"
case "$BUILD" in
  plain) GW_BIN="$ROOT/target/release/switchyard" ;;
  pgo) GW_BIN="$ROOT/target/pgo/release/switchyard" ;;
  *) echo "BENCH_BUILD must be plain or pgo, not '$BUILD'" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- cleanup
PIDS=()
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")"
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
    log "kept work dir: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
# POSTs once and checks for a 200; prints status + body head on failure.
check_post() {
  local url=$1 body=$2 auth=${3:-}
  python3 - "$url" "$body" "$auth" <<'PY'
import sys, urllib.request, urllib.error
url, body, auth = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
req = urllib.request.Request(url, data=body, method="POST",
                             headers={"Content-Type": "application/json"})
if auth:
    req.add_header("Authorization", "Bearer " + auth)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
        if r.status != 200:
            sys.exit("HTTP %d from %s: %s" % (r.status, url, data[:300]))
except urllib.error.HTTPError as e:
    sys.exit("HTTP %d from %s: %s" % (e.code, url, e.read()[:300]))
except Exception as e:
    sys.exit("request to %s failed: %s" % (url, e))
PY
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- build
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  build_mock
  if [[ "$BASELINE" == 1 ]]; then
    log "building baseline proxy (release)"
    cargo build --release --quiet --manifest-path "$BENCH_DIR/baseline-proxy/Cargo.toml" \
      || die "baseline proxy build failed"
  fi
  if [[ "${BENCH_DIRECT_ONLY:-0}" != 1 ]]; then
    if [[ "$BUILD" == pgo ]]; then
      bash "$BENCH_DIR/pgo.sh" || die "profile-guided build failed"
    else
      log "building switchyard (release)"
      (cd "$ROOT" && cargo build --release --quiet) || die "switchyard build failed"
    fi
  fi
fi
[[ -x "$MOCK_BIN" ]] || die "missing $MOCK_BIN"
if [[ "${BENCH_DIRECT_ONLY:-0}" != 1 ]]; then [[ -x "$GW_BIN" ]] || die "missing $GW_BIN"; fi

# ---------------------------------------------------------------- load tool
TOOL="${BENCH_TOOL:-}"
OHA=""; WRK=""
if [[ -z "$TOOL" || "$TOOL" == oha ]]; then
  OHA=$(find_or_install_oha) || OHA=""
  if [[ -n "$OHA" ]]; then TOOL=oha
  elif [[ "$TOOL" == oha ]]; then die "oha unavailable"; fi
fi
if [[ -z "$TOOL" || "$TOOL" == wrk ]]; then
  if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk via apt-get"
    apt_install wrk || die "could not install a load tool (oha or wrk)"
  fi
  WRK="$(command -v wrk)"; TOOL=wrk
fi
log "load tool: $TOOL"

if [[ $TOOL == oha ]]; then
  # Newer oha spells JSON output --output-format json; older ones use --json.
  if "$OHA" --help 2>&1 | grep -q -- '--output-format'; then
    OHA_JSON=(--output-format json)
  else
    OHA_JSON=(--json)
  fi
else
  cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
done = function(summary, latency, requests)
  local e = summary.errors
  local errs = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format(
    '\n@@JSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%f,"p99_us":%f}\n',
    summary.requests, summary.duration, errs,
    latency:percentile(50), latency:percentile(99)))
end
LUA
fi

# run_load NAME URL CONC SECONDS BODY AUTH -> writes $WORK/NAME.json (normalised)
run_load() {
  local name=$1 url=$2 conc=$3 secs=$4 body=$5 auth=${6:-}
  local raw="$WORK/$name.raw" out="$WORK/$name.json"
  if [[ $TOOL == oha ]]; then
    local hdr=(-H "Content-Type: application/json")
    [[ -n "$auth" ]] && hdr+=(-H "Authorization: Bearer $auth")
    "${PIN_LOAD[@]}" "$OHA" --no-tui "${OHA_JSON[@]}" -z "${secs}s" -c "$conc" \
      -m POST "${hdr[@]}" -d "$body" "$url" >"$raw" 2>"$WORK/$name.err" \
      || { cat "$WORK/$name.err" >&2; die "oha failed ($name)"; }
    python3 - "$raw" "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d.get("summary", {})
lat = d.get("latencyPercentiles", {})
codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
ok = sum(v for k, v in codes.items() if k.startswith("2"))
bad = sum(v for k, v in codes.items() if not k.startswith("2"))
# With -z, requests still in flight at the deadline are reported as
# "aborted due to deadline"; those are not failures.
errors = {k: v for k, v in (d.get("errorDistribution") or {}).items()
          if "deadline" not in k}
errs = sum(errors.values())
total_t = s.get("total") or 0
json.dump({
    "rps": ok / total_t if total_t else float(s.get("requestsPerSec") or 0),
    "p50_ms": (lat.get("p50") or 0) * 1000.0,
    "p99_ms": (lat.get("p99") or 0) * 1000.0,
    "ok": ok, "failed": bad + errs, "codes": codes,
    "errors": errors,
}, open(sys.argv[2], "w"))
PY
  else
    local threads=1
    BENCH_BODY="$body" BENCH_AUTH="$auth" "${PIN_LOAD[@]}" "$WRK" -t "$threads" -c "$conc" \
      -d "${secs}s" --latency -s "$WORK/post.lua" "$url" >"$raw" 2>&1 \
      || { cat "$raw" >&2; die "wrk failed ($name)"; }
    python3 - "$raw" "$out" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("@@JSON ")][-1]
d = json.loads(line[len("@@JSON "):])
secs = d["duration_us"] / 1e6
ok = d["requests"] - d["errors"]
json.dump({"rps": ok / secs if secs else 0.0,
           "p50_ms": d["p50_us"] / 1000.0, "p99_ms": d["p99_us"] / 1000.0,
           "ok": ok, "failed": d["errors"]}, open(sys.argv[2], "w"))
PY
  fi
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("[bench]   %-22s %9.0f rps  p50 %.3f ms  p99 %.3f ms  ok %d  failed %d" % (sys.argv[2], d["rps"], d["p50_ms"], d["p99_ms"], d["ok"], d["failed"]))' \
    "$out" "$name" >&2
}

# ---------------------------------------------------------------- start servers
MPORT="${BENCH_MOCK_PORT:-$(free_port)}"
log "starting mock upstream on 127.0.0.1:$MPORT (${PIN_MOCK[*]:-unpinned})"
"${PIN_MOCK[@]}" "$MOCK_BIN" --port "$MPORT" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!; PIDS+=("$MOCK_PID")
wait_http_200 "http://127.0.0.1:$MPORT/health" "$MOCK_PID" 15 || { cat "$WORK/mock.log" >&2; die "mock upstream did not start"; }
MOCK_URL="http://127.0.0.1:$MPORT/v1/chat/completions"
check_post "$MOCK_URL" "$BODY" || die "mock upstream sanity request failed"

BASE_URL=""
if [[ "$BASELINE" == 1 ]]; then
  [[ -x "$BASE_BIN" ]] || die "missing $BASE_BIN"
  BPORT="$(free_port)"
  log "starting baseline proxy on 127.0.0.1:$BPORT (${PIN_GW[*]:-unpinned})"
  BASE_ARGS=(--port "$BPORT" --upstream "127.0.0.1:$MPORT")
  # The answer a LiteLLM client gets carries LiteLLM's response headers, and parsing them
  # is work for the load tool on its core: the yardstick sends them too, so it measures
  # what any LiteLLM-compatible proxy pays (bench/RESULTS.md, ninth session).
  if [[ "${BENCH_BASELINE_HEADERS:-1}" == 1 ]]; then BASE_ARGS+=(--litellm-headers); fi
  "${PIN_GW[@]}" "$BASE_BIN" "${BASE_ARGS[@]}" >"$WORK/baseline.log" 2>&1 &
  PIDS+=("$!")
  BASE_URL="http://127.0.0.1:$BPORT/v1/chat/completions"
  for _ in $(seq 50); do check_post "$BASE_URL" "$BODY" 2>/dev/null && break; sleep 0.1; done
  check_post "$BASE_URL" "$BODY" || die "baseline proxy sanity request failed"
fi

GW_URL=""; GW_PID=""; RSS_IDLE=0; RSS_AFTER=0
if [[ "${BENCH_DIRECT_ONLY:-0}" != 1 ]]; then
  GPORT="${BENCH_GATEWAY_PORT:-$(free_port)}"
  CFG="$WORK/config.yaml"
  mkdir -p "$WORK/data"
  write_bench_config "$CFG" "$MPORT"
  log "starting switchyard on 127.0.0.1:$GPORT (${PIN_GW[*]:-unpinned})"
  GW_ARGS=(--config "$CFG" --port "$GPORT" --data-dir "$WORK/data")
  # Bind to loopback when the binary knows --host (its default may be 0.0.0.0).
  if "$GW_BIN" --help 2>/dev/null | grep -q -- '--host'; then GW_ARGS+=(--host 127.0.0.1); fi
  "${PIN_GW[@]}" "$GW_BIN" "${GW_ARGS[@]}" >"$WORK/gateway.log" 2>&1 &
  GW_PID=$!; PIDS+=("$GW_PID")
  if ! wait_http_200 "http://127.0.0.1:$GPORT/health/liveliness" "$GW_PID" 60; then
    tail -n 40 "$WORK/gateway.log" >&2 || true
    die "gateway did not become live"
  fi
  sleep 1
  RSS_IDLE=$(rss_kb "$GW_PID")
  log "gateway idle RSS: $RSS_IDLE kB"
  GW_URL="http://127.0.0.1:$GPORT/v1/chat/completions"
  GW_KEY="$MASTER_KEY"
  if [[ "${BENCH_KEY:-master}" == virtual ]]; then
    # Limits far above what the run can reach: every check runs, none refuses.
    GW_KEY=$(generate_bench_key "http://127.0.0.1:$GPORT") || die "could not create the virtual key"
    log "using a virtual key (governance path)"
  fi
  if ! check_post "$GW_URL" "$BODY" "$GW_KEY"; then
    tail -n 40 "$WORK/gateway.log" >&2 || true
    die "gateway sanity request failed (chat completions through the gateway)"
  fi
fi

# ---------------------------------------------------------------- load
ROWS=()
bench_pair() {  # LABEL CONC BODY
  local label=$1 conc=$2 body=$3 r
  if (( WARMUP > 0 )); then
    run_load "warmup-direct-$label" "$MOCK_URL" "$conc" "$WARMUP" "$body"
    if [[ -n "$BASE_URL" ]]; then run_load "warmup-baseline-$label" "$BASE_URL" "$conc" "$WARMUP" "$body"; fi
    if [[ -n "$GW_URL" ]]; then run_load "warmup-gateway-$label" "$GW_URL" "$conc" "$WARMUP" "$body" "$GW_KEY"; fi
  fi
  for r in $(seq "$ROUNDS"); do
    run_load "direct-$label-r$r" "$MOCK_URL" "$conc" "$SECONDS_PER_RUN" "$body"
    # The two proxies take turns going first, so neither always follows the direct run.
    if (( r % 2 )); then
      if [[ -n "$GW_URL" ]]; then run_load "gateway-$label-r$r" "$GW_URL" "$conc" "$SECONDS_PER_RUN" "$body" "$GW_KEY"; fi
      if [[ -n "$BASE_URL" ]]; then run_load "baseline-$label-r$r" "$BASE_URL" "$conc" "$SECONDS_PER_RUN" "$body"; fi
    else
      if [[ -n "$BASE_URL" ]]; then run_load "baseline-$label-r$r" "$BASE_URL" "$conc" "$SECONDS_PER_RUN" "$body"; fi
      if [[ -n "$GW_URL" ]]; then run_load "gateway-$label-r$r" "$GW_URL" "$conc" "$SECONDS_PER_RUN" "$body" "$GW_KEY"; fi
    fi
  done
  ROWS+=("$label:$conc")
}

log "load: $ROUNDS interleaved rounds of ${SECONDS_PER_RUN}s runs, concurrency: $CONCURRENCY${STREAM_CONC:+, stream @ $STREAM_CONC}"
for c in $CONCURRENCY; do bench_pair "c$c" "$c" "$BODY"; done
if [[ -n "$STREAM_CONC" ]]; then bench_pair "stream-c$STREAM_CONC" "$STREAM_CONC" "$STREAM_BODY"; fi

if [[ -n "$GW_PID" ]]; then
  RSS_AFTER=$(rss_kb "$GW_PID")
  kill -0 "$GW_PID" 2>/dev/null || die "gateway exited during the run"
fi

# ---------------------------------------------------------------- report
python3 - "$WORK" "$TOOL" "$SECONDS_PER_RUN" "$RSS_IDLE" "$RSS_AFTER" "${BENCH_OUT:-}" "$ROUNDS" "${ROWS[@]}" <<'PY'
import json, os, statistics, sys
work, tool, secs, rss_idle, rss_after, out, rounds = sys.argv[1:8]
rows, rounds = sys.argv[8:], int(rounds)
def load(name):
    p = os.path.join(work, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

# Per target and level: the medians of its rounds, and of its per-round comparisons with
# that round's direct run.
summary = {}
for r in rows:
    label, conc = r.split(":")
    per = {t: [load("%s-%s-r%d" % (t, label, i)) for i in range(1, rounds + 1)]
           for t in ("direct", "gateway", "baseline")}
    s = {"concurrency": int(conc), "rounds": per}
    for t in ("direct", "gateway", "baseline"):
        runs = [x for x in per[t] if x]
        s[t] = {"rps": med(x["rps"] for x in runs), "p50_ms": med(x["p50_ms"] for x in runs),
                "p99_ms": med(x["p99_ms"] for x in runs),
                "failed": sum(x["failed"] for x in runs)} if runs else None
    for t in ("gateway", "baseline"):
        pairs = [(d, x) for d, x in zip(per["direct"], per[t]) if d and x and d["rps"]]
        ratios = [x["rps"] / d["rps"] for d, x in pairs]
        s[t + "_vs_direct"] = {
            "ratio": med(ratios), "ratio_min": min(ratios, default=None),
            "ratio_max": max(ratios, default=None),
            "added_p50": med(x["p50_ms"] - d["p50_ms"] for d, x in pairs),
            "added_p99": med(x["p99_ms"] - d["p99_ms"] for d, x in pairs),
        } if pairs else None
    summary[label] = s

hdr = ["run", "conc", "direct rps", "gw rps", "ratio", "ratio range",
       "direct p50", "direct p99", "gw p50", "gw p99", "added p50", "added p99", "failed d/gw",
       "base rps", "base ratio", "base +p50", "base +p99"]
lines = []
for label, s in summary.items():
    d, g, b = s["direct"], s["gateway"], s["baseline"]
    gv, bv = s["gateway_vs_direct"], s["baseline_vs_direct"]
    lines.append([label.split("-c")[0] if label.startswith("stream") else "chat", s["concurrency"],
                  f(d and d["rps"], ".0f"), f(g and g["rps"], ".0f"), f(gv and gv["ratio"], ".2f"),
                  "%s-%s" % (f(gv and gv["ratio_min"], ".2f"), f(gv and gv["ratio_max"], ".2f")),
                  f(d and d["p50_ms"], ".3f"), f(d and d["p99_ms"], ".3f"),
                  f(g and g["p50_ms"], ".3f"), f(g and g["p99_ms"], ".3f"),
                  f(gv and gv["added_p50"], "+.3f"), f(gv and gv["added_p99"], "+.3f"),
                  "%s/%s" % (d["failed"] if d else "-", g["failed"] if g else "-"),
                  f(b and b["rps"], ".0f"), f(bv and bv["ratio"], ".2f"),
                  f(bv and bv["added_p50"], "+.3f"), f(bv and bv["added_p99"], "+.3f")])
w = [max(len(str(x)) for x in col) for col in zip(hdr, *lines)]
print()
print("Switchyard overhead benchmark  (tool: %s; %s build; medians of %d interleaved rounds of "
      "%s s runs; latencies in ms)" % (tool, os.environ.get("BENCH_BUILD", "plain"), rounds, secs))
print("  ".join(str(h).rjust(n) for h, n in zip(hdr, w)))
print("  ".join("-" * n for n in w))
for l in lines:
    print("  ".join(str(x).rjust(n) for x, n in zip(l, w)))
print()
ri, ra = int(rss_idle), int(rss_after)
if ri:
    print("gateway RSS: idle %.1f MB, after load %.1f MB" % (ri / 1024, ra / 1024))
ok = lambda b: "PASS" if b else "FAIL"
def verdict(who):
    c64 = summary.get("c64", {}).get(who + "_vs_direct")
    runs = [s[who + "_vs_direct"] for k, s in summary.items()
            if s[who + "_vs_direct"] and not k.startswith("stream")]
    if not c64 or not runs:
        return None
    return (c64["ratio"], max(v["added_p50"] for v in runs), max(v["added_p99"] for v in runs))
v = verdict("gateway")
if v:
    ratio, a50, a99 = v
    print("targets: ratio@c64 %.2f >= 0.80 %s | worst added p50 %.3f ms <= 0.2 %s | "
          "worst added p99 %.3f ms <= 1.0 %s | idle RSS %.1f MB <= 25 %s" % (
              ratio, ok(ratio >= 0.8), a50, ok(a50 <= 0.2), a99, ok(a99 <= 1.0),
              ri / 1024, ok(0 < ri <= 25 * 1024)))
# The same targets for the bare proxy in the same rounds: when it misses them too, the
# machine was slow, not the gateway.
v = verdict("baseline")
if v:
    ratio, a50, a99 = v
    which = ("with LiteLLM's response headers"
             if os.environ.get("BENCH_BASELINE_HEADERS", "1") == "1" else "bare")
    print("baseline proxy (%s), same targets: ratio@c64 %.2f %s | worst added p50 %.3f ms %s | "
          "worst added p99 %.3f ms %s" % (
              which, ratio, ok(ratio >= 0.8), a50, ok(a50 <= 0.2), a99, ok(a99 <= 1.0)))
if out:
    json.dump({"tool": tool, "seconds": int(secs), "build": os.environ.get("BENCH_BUILD", "plain"),
               "baseline_headers": os.environ.get("BENCH_BASELINE_HEADERS", "1") == "1", "rounds": rounds, "rss_idle_kb": ri,
               "rss_after_kb": ra, "runs": summary}, open(out, "w"), indent=2)
    print("raw results written to", out)
PY
