#!/usr/bin/env bash
# Deploy and roll back Repo Guardian on Nomad from CI (or by hand).
#
#   deploy/nomad/ci.sh deploy   ENV IMAGE@sha256:<64 hex>
#   deploy/nomad/ci.sh rollback ENV [JOB_VERSION]
#
# Needs nomad, jq and nix-instantiate on PATH (`nix develop .#deploy`), and NOMAD_ADDR.
# Authentication: NOMAD_TOKEN when set; otherwise, inside GitHub Actions with
# `id-token: write`, a GitHub OIDC token exchanged through the Nomad JWT auth method
# named by NOMAD_AUTH_METHOD (default "github-actions"). No token is ever written to disk.
set -euo pipefail

JOB_ID=repo-guardian
NAMESPACE=${NOMAD_NAMESPACE:-repo-guardian}
export NOMAD_NAMESPACE=$NAMESPACE
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
  echo "error: $*" >&2
  exit 1
}

check_env() {
  case "$1" in
    dev | staging | prod) ;;
    *) die "unknown environment '$1' (dev, staging or prod)" ;;
  esac
}

login() {
  : "${NOMAD_ADDR:?NOMAD_ADDR must be set (GitHub environment variable)}"
  export NOMAD_REGION="${NOMAD_REGION:-$1}"
  if [[ -n "${NOMAD_TOKEN:-}" ]]; then
    return
  fi
  [[ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ]] || die "no NOMAD_TOKEN and no GitHub OIDC token available"
  local jwt
  jwt=$(curl -sSf -H "Authorization: bearer ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}" \
    "${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=nomad" | jq -r .value)
  echo "::add-mask::${jwt}"
  NOMAD_TOKEN=$(nomad login -method="${NOMAD_AUTH_METHOD:-github-actions}" -login-token="$jwt" -json | jq -r .SecretID)
  [[ -n "$NOMAD_TOKEN" && "$NOMAD_TOKEN" != null ]] || die "Nomad login failed"
  echo "::add-mask::${NOMAD_TOKEN}"
  export NOMAD_TOKEN
}

latest_deployment() {
  nomad job deployments -json -latest "$JOB_ID" | jq -r '.ID'
}

# Waits until the deployment's canaries are healthy (or it ends); prints its status.
wait_for_canaries() {
  local id=$1 deadline=$((SECONDS + 900)) status
  while ((SECONDS < deadline)); do
    status=$(nomad deployment status -json "$id")
    case $(jq -r .Status <<<"$status") in
      successful) echo successful && return ;;
      failed | cancelled) echo failed && return ;;
    esac
    if jq -e '[.TaskGroups[] | select(.DesiredCanaries > 0) | (.HealthyAllocs >= .DesiredCanaries)] | all' \
      <<<"$status" >/dev/null && jq -e '[.TaskGroups[] | .DesiredCanaries] | add > 0' <<<"$status" >/dev/null; then
      echo canaries-healthy && return
    fi
    sleep 10
  done
  echo timeout
}

deploy() {
  local env=$1 image=$2 job index id state
  check_env "$env"
  [[ "$image" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$ ]] || die "image must be REPOSITORY@sha256:<64 hex>, got '$image'"
  login "$env"

  job=$(mktemp --suffix=.json)
  nix-instantiate --eval --strict --json "$here/default.nix" --argstr env "$env" --argstr image "$image" >"$job"

  # Exit code 1 only means "changes planned"; 255 is an error.
  set +e
  nomad job plan -json "$job" | tee plan.txt
  rc=${PIPESTATUS[0]}
  set -e
  ((rc == 0 || rc == 1)) || die "nomad job plan failed ($rc)"
  index=$(sed -n 's/.*-check-index \([0-9]*\).*/\1/p' plan.txt | head -n1)
  [[ -n "$index" ]] || die "no job modify index in the plan output"

  # -check-index: refuse if someone changed the job between plan and run.
  nomad job run -json -detach -check-index "$index" "$job"
  sleep 5
  id=$(latest_deployment)
  echo "deployment $id"

  state=$(wait_for_canaries "$id")
  case $state in
    successful) ;;
    canaries-healthy)
      if ! jq -e '.Job.Update.AutoPromote' "$job" >/dev/null; then
        echo "canaries healthy: promoting deployment $id"
        nomad deployment promote "$id"
      fi
      nomad deployment status -monitor "$id"
      ;;
    *)
      nomad deployment status "$id" || true
      die "deployment $id did not become healthy ($state); Nomad reverts to the last stable version (AutoRevert)"
      ;;
  esac
  nomad job status "$JOB_ID"
}

rollback() {
  local env=$1 version=${2:-}
  check_env "$env"
  login "$env"
  nomad job history "$JOB_ID" | head -n 40
  if [[ -z "$version" ]]; then
    # The newest stable version older than the running one.
    version=$(nomad job history -json "$JOB_ID" |
      jq -r 'sort_by(-.Version) | .[0].Version as $cur | map(select(.Stable and .Version < $cur)) | .[0].Version // empty')
    [[ -n "$version" ]] || die "no earlier stable version to revert to"
  fi
  [[ "$version" =~ ^[0-9]+$ ]] || die "job version must be a number, got '$version'"
  echo "reverting $JOB_ID in $env to version $version"
  nomad job revert "$JOB_ID" "$version"
  nomad deployment status -monitor "$(latest_deployment)"
}

case "${1:-}" in
  deploy) [[ $# -eq 3 ]] || die "usage: $0 deploy ENV IMAGE@sha256:..."; deploy "$2" "$3" ;;
  rollback) [[ $# -ge 2 ]] || die "usage: $0 rollback ENV [VERSION]"; rollback "$2" "${3:-}" ;;
  *) die "usage: $0 deploy ENV IMAGE | rollback ENV [VERSION]" ;;
esac
