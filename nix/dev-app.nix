# `nix run`: a local all-in-one fleet. `guardian dev` starts a local nats-server with
# JetStream when none is reachable (hence nats-server on PATH), provisions the streams and
# buckets, runs the workers in-process and prints how to trigger runs.
{
  writeShellApplication,
  nats-server,
  guardian,
}:
writeShellApplication {
  name = "guardian-dev";
  runtimeInputs = [
    guardian
    nats-server
  ];
  text = ''
    exec guardian dev "$@"
  '';
  meta.description = "Run a local Repo Guardian fleet with its own nats-server";
}
