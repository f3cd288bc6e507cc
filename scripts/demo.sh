#!/usr/bin/env bash
# The main job on a fresh machine, without GitHub access: an embedded fleet of its own
# (its own nats-server on a free port with a temporary store, a worker in-process) checks
# the demo organisation served by the built-in GitHub double and files its issues there. Extra arguments are passed on,
# e.g. `scripts/demo.sh --format json`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --minimal
exec cargo run --locked --bin guardian -- scan org:demo-org --demo --apply "$@"
