#!/usr/bin/env bash
# Deploy and roll back Repo Guardian on Nomad from CI (or by hand).
#
#   deploy/nomad/ci.sh deploy   ENV IMAGE@sha256:<64 hex>
#   deploy/nomad/ci.sh rollback ENV [JOB_VERSION]
#
# Needs nomad, jq and nix-instantiate on PATH, and NOMAD_ADDR. Authentication: NOMAD_TOKEN
# when set; otherwise, inside GitHub Actions with `id-token: write`, a GitHub OIDC token
# exchanged through the Nomad JWT auth method named by NOMAD_AUTH_METHOD (default
# "github-actions"). No token is ever written to disk.
#
# The outcome is read from Nomad's records, never from a command's exit code: `nomad
# deployment status -monitor` exits 0 whatever happens, so this script polls the
# deployment's Status itself and exits non-zero unless it ends `successful` with the
# expected version running.
#
# deploy:   prod takes only an image that staging ran healthy (a stable staging job
#           version whose Meta.image is this digest), and in GitHub Actions only from
#           refs/heads/main. render → plan → run -check-index -preserve-counts → follow the
#           deployment; canaries that do not auto-promote (prod) are promoted only after
#           staying healthy for CANARY_SOAK_SECONDS (prod: 300) with no unhealthy
#           allocation; an unhealthy canary fails the deployment (AutoRevert takes over).
# rollback: `nomad job revert` to JOB_VERSION or the newest stable version before the
#           running one, then promotes the revert's canaries (that version already ran
#           healthy) and waits until it is the one running.
#
# Tunables (environment): POLL_SECONDS (10), DEPLOY_TIMEOUT_SECONDS (1800),
# CANARY_SOAK_SECONDS, STAGING_REGION (staging).
set -euo pipefail

JOB_ID=repo-guardian
NAMESPACE=${NOMAD_NAMESPACE:-repo-guardian}
export NOMAD_NAMESPACE=$NAMESPACE
POLL_SECONDS=${POLL_SECONDS:-10}
DEPLOY_TIMEOUT_SECONDS=${DEPLOY_TIMEOUT_SECONDS:-1800}
STAGING_REGION=${STAGING_REGION:-staging}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

die() {
  echo "error: $*" >&2
  exit 1
}
say() { echo "ci.sh: $*" >&2; }

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

# Prod only from main, and only a digest that staging ran healthy.
require_promotable() {
  local image=$1
  if [[ "${GITHUB_ACTIONS:-}" == true && "${GITHUB_REF:-}" != refs/heads/main ]]; then
    die "prod deploys only from refs/heads/main, not '${GITHUB_REF:-}'"
  fi
  local history
  history=$(nomad job history -json -region="$STAGING_REGION" "$JOB_ID") ||
    die "cannot read the staging job history (region $STAGING_REGION)"
  jq -e --arg image "$image" 'any(.[]; .Stable == true and .Meta.image == $image)' <<<"$history" >/dev/null ||
    die "$image never ran healthy in staging: no stable staging job version has Meta.image = it; deploy it to staging first"
  say "staging ran $image healthy (stable job version $(jq -r --arg image "$image" \
    '[.[] | select(.Stable == true and .Meta.image == $image) | .Version] | max' <<<"$history"))"
}

# The job as it is now: Version and Meta.image, one per line.
current_job() {
  nomad job inspect "$JOB_ID" | jq -r '.Job.Version, (.Job.Meta.image // "")'
}

# Waits for the deployment of job version $1 and prints its ID.
deployment_of() {
  local version=$1 deadline=$((SECONDS + 120)) id
  while ((SECONDS <= deadline)); do
    id=$(nomad job deployments -json "$JOB_ID" |
      jq -r --argjson v "$version" '[.[] | select(.JobVersion == $v)] | sort_by(-.CreateIndex) | .[0].ID // empty')
    if [[ -n "$id" ]]; then
      echo "$id"
      return
    fi
    sleep "$POLL_SECONDS"
  done
  die "no deployment appeared for job version $version"
}

# Follows deployment $1 to its end. Canaries waiting for manual promotion are promoted
# once every canary group has been healthy, with no unhealthy allocation, for $2 seconds.
# Returns 0 only when the deployment ends `successful`.
follow() {
  local id=$1 soak=$2 deadline=$((SECONDS + DEPLOY_TIMEOUT_SECONDS)) healthy_since="" status state
  while ((SECONDS <= deadline)); do
    status=$(nomad deployment status -json "$id")
    state=$(jq -r .Status <<<"$status")
    case $state in
      successful)
        say "deployment $id successful"
        return 0
        ;;
      failed | cancelled)
        say "deployment $id $state: $(jq -r .StatusDescription <<<"$status")"
        return 1
        ;;
    esac
    if jq -e '[.TaskGroups[] | .UnhealthyAllocs] | add > 0' <<<"$status" >/dev/null; then
      say "deployment $id has unhealthy allocations: failing it (Nomad reverts to the last stable version)"
      nomad deployment fail "$id" >&2
    elif jq -e '[.TaskGroups[] | select(.DesiredCanaries > 0 and (.Promoted | not) and (.AutoPromote | not))] | length > 0' \
      <<<"$status" >/dev/null; then
      if jq -e '[.TaskGroups[] | select(.DesiredCanaries > 0) | .HealthyAllocs >= .DesiredCanaries] | all' \
        <<<"$status" >/dev/null; then
        healthy_since=${healthy_since:-$SECONDS}
        if ((SECONDS - healthy_since >= soak)); then
          say "canaries of deployment $id healthy for ${soak}s: promoting"
          nomad deployment promote "$id" >&2
        else
          say "canaries healthy; soaking $((soak - (SECONDS - healthy_since)))s more before promotion"
        fi
      else
        healthy_since=""
      fi
    fi
    sleep "$POLL_SECONDS"
  done
  say "deployment $id did not finish within ${DEPLOY_TIMEOUT_SECONDS}s: failing it"
  nomad deployment fail "$id" >&2 || true
  return 1
}

# Every allocation Nomad wants running belongs to job version $1 and runs image $2.
require_running() {
  local version=$1 image=$2 allocs job
  allocs=$(nomad job allocs -json "$JOB_ID")
  jq -e --argjson v "$version" '[.[] | select(.DesiredStatus == "run")] as $run
      | ($run | length) > 0 and ($run | all(.JobVersion == $v and .ClientStatus == "running"))' \
    <<<"$allocs" >/dev/null ||
    die "not every wanted allocation runs job version $version: $(jq -c '[.[] | {ID, JobVersion, DesiredStatus, ClientStatus}]' <<<"$allocs")"
  mapfile -t job < <(current_job)
  [[ "${job[0]}" == "$version" && "${job[1]}" == "$image" ]] ||
    die "the job is at version ${job[0]} with ${job[1]}, expected $version with $image"
  say "running: $JOB_ID version $version, $image, $(jq '[.[] | select(.DesiredStatus == "run")] | length' <<<"$allocs") allocation(s)"
}

deploy() {
  local env=$1 image=$2 job plan rc index version id soak
  check_env "$env"
  [[ "$image" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$ ]] || die "image must be REPOSITORY@sha256:<64 hex>, got '$image'"
  login "$env"
  [[ "$env" != prod ]] || require_promotable "$image"
  soak=${CANARY_SOAK_SECONDS:-$([[ "$env" == prod ]] && echo 300 || echo 0)}

  job=$work/job.json
  plan=$work/plan.txt
  nix-instantiate --eval --strict --json "$here/default.nix" --argstr env "$env" --argstr image "$image" >"$job"

  # Exit code 0: no change; 1: changes planned; anything else is an error.
  rc=0
  nomad job plan -json "$job" >"$plan" || rc=$?
  cat "$plan" >&2
  if ((rc == 0)); then
    mapfile -t current < <(current_job)
    [[ "${current[1]}" == "$image" ]] || die "plan shows no change but the job runs ${current[1]}"
    say "$env already runs $image (job version ${current[0]}): nothing to deploy"
    require_running "${current[0]}" "$image"
    return
  fi
  ((rc == 1)) || die "nomad job plan failed ($rc)"
  index=$(sed -n 's/.*-check-index \([0-9]*\).*/\1/p' "$plan" | head -n1)
  [[ -n "$index" ]] || die "no job modify index in the plan output"

  # -check-index: refuse if someone changed the job between plan and run.
  # -preserve-counts: keep the count the autoscaler chose instead of resetting it.
  nomad job run -json -detach -preserve-counts -check-index="$index" "$job" >&2
  mapfile -t current < <(current_job)
  version=${current[0]}
  [[ "${current[1]}" == "$image" ]] || die "the job was changed by someone else (it runs ${current[1]})"
  id=$(deployment_of "$version")
  say "deployment $id of job version $version"
  follow "$id" "$soak" || die "deployment $id of $image to $env failed; Nomad reverts to the last stable version (AutoRevert)"
  require_running "$version" "$image"
}

rollback() {
  local env=$1 target=${2:-} history current image version id
  check_env "$env"
  login "$env"
  history=$(nomad job history -json "$JOB_ID")
  current=$(jq '[.[].Version] | max' <<<"$history")
  if [[ -z "$target" ]]; then
    target=$(jq -r --argjson cur "$current" \
      '[.[] | select(.Stable == true and .Version < $cur) | .Version] | max // empty' <<<"$history")
    [[ -n "$target" ]] || die "no earlier stable version to revert to"
  fi
  [[ "$target" =~ ^[0-9]+$ ]] || die "job version must be a number, got '$target'"
  jq -e --argjson v "$target" 'any(.[]; .Version == $v and .Stable == true)' <<<"$history" >/dev/null ||
    die "job version $target is not a stable version of $JOB_ID (see: nomad job history $JOB_ID)"
  image=$(jq -r --argjson v "$target" '.[] | select(.Version == $v) | .Meta.image' <<<"$history")
  say "reverting $JOB_ID in $env from version $current to version $target ($image)"
  nomad job revert -detach "$JOB_ID" "$target" >&2

  mapfile -t now < <(current_job)
  version=${now[0]}
  ((version > current)) || die "the revert created no new job version"
  [[ "${now[1]}" == "$image" ]] || die "the new version $version runs ${now[1]}, expected $image"
  id=$(deployment_of "$version")
  say "deployment $id of job version $version (revert to $target)"
  # The reverted version already ran healthy: promote its canaries as soon as they are.
  follow "$id" 0 || die "the rollback deployment $id failed"
  require_running "$version" "$image"
}

case "${1:-}" in
  deploy) [[ $# -eq 3 ]] || die "usage: $0 deploy ENV IMAGE@sha256:..."; deploy "$2" "$3" ;;
  rollback) [[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 rollback ENV [VERSION]"; rollback "$2" "${3:-}" ;;
  *) die "usage: $0 deploy ENV IMAGE | rollback ENV [VERSION]" ;;
esac
