# `nix flake check`: build, clippy, formatting, the test suite with a real nats-server, and
# the rendering of every Nomad job and of the NATS configuration.
{
  lib,
  runCommand,
  writeText,
  jq,
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
  natsConfig = writeText "nats.conf" (
    import ../deploy/nats {
      env = "prod";
      image = "docker.io/library/nats@${dummyDigest}";
      output = "config";
    }
  );
in
{
  build = guardian;

  tests = guardianWithTests;

  clippy = guardian.overrideAttrs (old: {
    pname = "repo-guardian-clippy";
    nativeBuildInputs = (old.nativeBuildInputs or [ ]) ++ [ clippy ];
    buildPhase = ''
      runHook preBuild
      cargo clippy --workspace --all-targets --offline -- -D warnings
      runHook postBuild
    '';
    doCheck = false;
    installPhase = ''
      touch $out
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

  nats-config = runCommand "repo-guardian-nats-config" { nativeBuildInputs = [ nats-server ]; } ''
    nats-server -t -c ${natsConfig}
    cp ${natsConfig} $out
  '';
}
