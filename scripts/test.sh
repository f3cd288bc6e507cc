#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, unit and integration
# tests (real nats-server, worker processes, the GitHub double), delivery checks (Nix,
# Nomad, NATS config, workflows) and the observability end-to-end check (real Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "set-up"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

step "delivery checks"
bash .ci/delivery.sh

step "observability end to end"
bash scripts/observability-e2e.sh

step "all checks passed"
