# The `guardian` binary (crate repo-guardian of the workspace).
#
# TLS is rustls with ring everywhere (no OpenSSL, no aws-lc), so the build needs nothing
# but the Rust toolchain. The test suite needs a real nats-server, so it is off here and
# runs in `checks.tests` (nix/checks.nix) with `withTests = true`.
{
  lib,
  rustPlatform,
  nats-server,
  revision ? "unknown",
  withTests ? false,
}:
let
  manifest = lib.importTOML ../Cargo.toml;
  inherit (lib.fileset) unions maybeMissing toSource;
in
rustPlatform.buildRustPackage {
  pname = manifest.package.name;
  inherit (manifest.package) version;

  # Only what cargo reads: edits to docs, deploy/ or workflows do not rebuild the binary.
  src = toSource {
    root = ../.;
    fileset = unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../crates
      ../config
      (maybeMissing ../tests)
      (maybeMissing ../benches)
      (maybeMissing ../examples)
      (maybeMissing ../build.rs)
      (maybeMissing ../README.md)
      # tests/delivery.rs renders these job functions.
      (maybeMissing ../deploy)
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The workspace also holds the GitHub double (crates/github-double), a test helper.
  cargoBuildFlags = [
    "-p"
    "repo-guardian"
  ];
  cargoTestFlags = [
    "-p"
    "repo-guardian"
  ];

  # Reported by guardian_build_info{revision}.
  env.GUARDIAN_REVISION = revision;

  doCheck = withTests;
  nativeCheckInputs = lib.optionals withTests [ nats-server ];
  # Integration tests start their own nats-server on a free loopback port. The Nomad job
  # rendering (tests/delivery.rs) needs nix-instantiate, which the build sandbox lacks;
  # `checks.nomad-jobs` evaluates the same functions instead, so skip it here on purpose.
  preCheck = lib.optionalString withTests ''
    export GUARDIAN_SKIP_NIX=1
    export HOME=$TMPDIR
  '';

  meta = {
    description = manifest.package.description;
    homepage = "https://github.com/OWNER/repo-guardian";
    license = lib.licenses.asl20;
    mainProgram = "guardian";
    platforms = lib.platforms.unix;
  };
}
