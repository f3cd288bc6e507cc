#!/usr/bin/env bash
# Installs HashiCorp's prebuilt Nomad CLI, verified, into DIR (default ~/.local/bin).
#
#   deploy/nomad/install-nomad.sh [DIR]
#
# The deploy workflows use it instead of `nix develop`: nixpkgs marks Nomad unfree, so the
# Nix binary cache has no build of it and every run compiled it from source.
#
# Verification, as HashiCorp documents it: the SHA256SUMS file of the release must carry a
# valid signature by HashiCorp's release key, whose fingerprint is pinned below (the same
# fingerprint is published by HashiCorp and quoted by independent installers); the zip must
# match its line in SHA256SUMS. Nothing unverified is ever executed.
set -euo pipefail

NOMAD_VERSION=${NOMAD_VERSION:-1.10.0}
HASHICORP_KEY_FINGERPRINT=C874011F0AB405110D02105534365D9472D7468F
dir=${1:-$HOME/.local/bin}

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
base="https://releases.hashicorp.com/nomad/${NOMAD_VERSION}"
zip="nomad_${NOMAD_VERSION}_linux_${arch}.zip"
sums="nomad_${NOMAD_VERSION}_SHA256SUMS"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"

curl -fsSL --retry 3 -o hashicorp.asc https://www.hashicorp.com/.well-known/pgp-key.txt
gpg --batch --quiet --import hashicorp.asc
gpg --batch --with-colons --fingerprint "$HASHICORP_KEY_FINGERPRINT" | grep -q "^fpr:::::::::${HASHICORP_KEY_FINGERPRINT}:" ||
  { echo "HashiCorp's key does not have the pinned fingerprint" >&2; exit 1; }

curl -fsSL --retry 3 -O "$base/$zip" -O "$base/$sums" -O "$base/$sums.72D7468F.sig"
gpg --batch --verify "$sums.72D7468F.sig" "$sums"
grep " ${zip}\$" "$sums" | sha256sum -c -

mkdir -p "$dir"
unzip -o -q "$zip" nomad -d "$dir"
"$dir/nomad" version
