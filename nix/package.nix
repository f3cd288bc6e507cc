# The `guardian` binary (crate repo-guardian of the workspace).
#
# `withTests = true` is the same build with the test sources added and `cargo test` run
# after it; nix/checks.nix also runs clippy inside that one build, so `nix flake check`
# compiles the workspace twice (this package, which the image reuses, and the checks),
# not once per check.
#
# TLS is rustls with ring everywhere (no OpenSSL, no aws-lc), so the build needs nothing
# but the Rust toolchain. The test suite needs a real nats-server, so it is off here and
# runs in `checks.tests` (nix/checks.nix) with `withTests = true`.
{
  lib,
  rustPlatform,
  nats-server,
  prometheus,
  zizmor,
  revision ? "unknown",
  withTests ? false,
}:
let
  manifest = lib.importTOML ../Cargo.toml;
  inherit (lib.fileset) unions maybeMissing toSource;
  members = builtins.filter (m: m != ".") manifest.workspace.members;

  # What cargo reads to build the binary, and nothing else: the workspace manifests, the
  # sources of every member (cargo loads the whole workspace), the defaults compiled in
  # with include_str!, and the declared bench target. deploy/, docs/, workflows and every
  # tests/ folder stay out, so editing them gives the same derivation and the same image
  # digest.
  buildFiles = [
    ../Cargo.toml
    ../Cargo.lock
    ../src
    ../config
    ../benches
  ]
  ++ lib.concatMap (m: [
    (../. + "/${m}/Cargo.toml")
    (../. + "/${m}/src")
  ]) members;
  # The checks also compile and run the tests.
  testFiles = [
    (maybeMissing ../tests)
    ../crates
  ];
in
rustPlatform.buildRustPackage {
  pname = manifest.package.name;
  inherit (manifest.package) version;

  src = toSource {
    root = ../.;
    fileset = unions (buildFiles ++ lib.optionals withTests testFiles);
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
  # What the tests call: nats-server (integration tests), promtool (the metrics contract
  # test) and zizmor (the workflow-policy agreement test).
  nativeCheckInputs = lib.optionals withTests [
    nats-server
    (prometheus.cli or prometheus)
    zizmor
  ];
  # Integration tests start their own nats-server on a free loopback port. The delivery
  # checks (crates/delivery) need nix-instantiate and the deploy/ sources, which the build
  # sandbox lacks; they are not part of -p repo-guardian, and `checks.nomad-jobs` evaluates
  # the job functions instead.
  # GitHub's OpenAPI description comes from npm (`npm ci`), which the sandbox cannot reach
  # and nixpkgs does not package: the request-conformance checks run in the CI workflow's
  # test job and in scripts/test.sh, and are skipped here by name, never silently.
  preCheck = lib.optionalString withTests ''
    export HOME=$TMPDIR
    export GUARDIAN_SKIP_OPENAPI=1
  '';

  meta = {
    description = manifest.package.description;
    homepage = "https://github.com/OWNER/repo-guardian";
    license = lib.licenses.asl20;
    mainProgram = "guardian";
    platforms = lib.platforms.unix;
  };
}
