# `nomad-job-ENV IMAGE@sha256:… [OUT]`: renders the Nomad API JSON of deploy/nomad for one
# environment with the image reference given (the digest is known only once the image is
# pushed), to OUT or stdout. The job function is pure, so this only needs nix-instantiate.
{
  lib,
  writeShellApplication,
  nix,
  env,
}:
let
  deploy = lib.fileset.toSource {
    root = ../deploy;
    fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ../deploy;
  };
in
writeShellApplication {
  name = "nomad-job-${env}";
  runtimeInputs = [ nix ];
  text = ''
    if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
      echo "usage: nomad-job-${env} REPOSITORY@sha256:<64 hex> [OUT.json]" >&2
      exit 2
    fi
    image="$1"
    out="''${2:-/dev/stdout}"
    nix-instantiate --eval --strict --json ${deploy}/nomad/default.nix \
      --argstr env ${lib.escapeShellArg env} --argstr image "$image" > "$out"
  '';
  meta.description = "Render the ${env} Nomad job of Repo Guardian for an image digest";
}
