# `nix flake check`: build, clippy + the test suite with a real nats-server (one build),
# formatting, and the rendering of every Nomad job and of the NATS configuration.
{
  lib,
  runCommand,
  writeText,
  jq,
  openssl,
  nats-server,
  clippy,
  rustfmt,
  guardian,
  guardianWithTests,
}:
let
  envs = [
    "dev"
    "staging"
    "prod"
  ];
  # A syntactically valid digest: the rendering checks never pull an image.
  dummyDigest = "sha256:${lib.concatStrings (lib.replicate 64 "0")}";
  workerJob =
    env:
    writeText "repo-guardian-${env}.json" (
      builtins.toJSON (
        import ../deploy/nomad {
          inherit env;
          image = "ghcr.io/OWNER/repo-guardian@${dummyDigest}";
        }
      )
    );
  natsJob =
    env:
    writeText "nats-${env}.json" (
      builtins.toJSON (
        import ../deploy/nats {
          inherit env;
          image = "docker.io/library/nats@${dummyDigest}";
        }
      )
    );
  # The configuration text of one node with placeholder values; `nats-server -t` also
  # loads the TLS files it names, so the check writes a throwaway certificate first.
  natsConfig =
    dir:
    import ../deploy/nats {
      env = "prod";
      image = "docker.io/library/nats@${dummyDigest}";
      output = "config";
      test = {
        serverName = "nats-0";
        storeDir = "${dir}/store";
        tls = {
          cert = "${dir}/cert.pem";
          key = "${dir}/key.pem";
          ca = "${dir}/cert.pem";
        };
        workerPassword = "check-worker";
        triggerPassword = "check-trigger";
        opsPassword = "check-ops";
        sysPassword = "check-sys";
        routePassword = "check-route";
      };
    };
in
{
  build = guardian;

  # Clippy, the build and the tests in one derivation: one set of compiled dependencies
  # instead of one per check (crane's dependency-only derivation would share even more, but
  # needs a flake input whose narHash cannot be verified offline here).
  rust = guardianWithTests.overrideAttrs (old: {
    pname = "repo-guardian-checks";
    nativeBuildInputs = (old.nativeBuildInputs or [ ]) ++ [ clippy ];
    preBuild = (old.preBuild or "") + ''
      cargo clippy --workspace --all-targets --offline -- -D warnings
    '';
  });

  fmt = runCommand "repo-guardian-fmt" { nativeBuildInputs = [ rustfmt ]; } ''
    cd ${guardian.src}
    find . -name '*.rs' -not -path './target/*' -print0 \
      | xargs -0 rustfmt --edition 2024 --check
    touch $out
  '';

  nomad-jobs = runCommand "repo-guardian-nomad-jobs" { nativeBuildInputs = [ jq ]; } (
    ''
      mkdir -p $out
    ''
    + lib.concatMapStrings (env: ''
      cp ${workerJob env} $out/repo-guardian-${env}.json
      cp ${natsJob env} $out/nats-${env}.json
      jq -e '.Job.Update.Canary >= 1 and .Job.Update.AutoRevert == true' $out/repo-guardian-${env}.json
      jq -e '.Job.Update.AutoPromote == ${lib.boolToString (env != "prod")}' $out/repo-guardian-${env}.json
      jq -e '[.Job.TaskGroups[].Tasks[].Config.image | test("@sha256:[0-9a-f]{64}$")] | all' $out/repo-guardian-${env}.json
      jq -e '.Job.TaskGroups[0].Count == 3' $out/nats-${env}.json
    '') envs
  );

  nats-config =
    runCommand "repo-guardian-nats-config"
      {
        nativeBuildInputs = [
          nats-server
          openssl
        ];
      }
      ''
        dir=$TMPDIR/nats
        mkdir -p $dir
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
          -subj /CN=nats -keyout $dir/key.pem -out $dir/cert.pem
        sed "s|@DIR@|$dir|g" ${writeText "nats.conf" (natsConfig "@DIR@")} > $dir/nats.conf
        nats-server -t -c $dir/nats.conf
        cp $dir/nats.conf $out
      '';
}
