# Vector shipping the workers' logs to Loki, as a Nomad system job (pure: builtins only).
#
#   nix-instantiate --eval --strict --json deploy/logging/default.nix \
#     --argstr env prod --argstr image docker.io/timberio/vector@sha256:<64 hex>
#
# One allocation per Nomad client, in namespace repo-guardian. It reads the workers'
# stderr files (alloc/<id>/alloc/logs/guardian.stderr.<n>) through the host volume
# "nomad-alloc-logs", which each client declares read-only over its allocation directory:
#
#   client { host_volume "nomad-alloc-logs" { path = "/var/lib/nomad/alloc" read_only = true } }
#
# The Vector configuration is deploy/logging/vector.yaml, embedded verbatim.
{ env, image, overrides ? { }, ... }:
let
  helpers = import ../lib.nix;
  inherit (helpers) seconds minutes;

  common = {
    jobId = "repo-guardian-logs";
    namespace = "repo-guardian";
    hostVolume = "nomad-alloc-logs";
    lokiEndpoint = "http://loki.service.consul:3100";
  };
  # The same settings everywhere; only the site (region, datacenters) differs.
  cfg = helpers.configFor "deploy/logging" common { } env overrides;
  imageRef = helpers.requireDigest "deploy/logging" image;
in
builtins.seq cfg (
  builtins.seq imageRef {
    Job =
      helpers.jobHeader {
        inherit cfg env;
        image = imageRef;
        priority = 40;
      }
      // {
        Type = "system";
        Constraints = [
          {
            LTarget = "\${attr.kernel.name}";
            RTarget = "linux";
            Operand = "=";
          }
        ];
        TaskGroups = [
          {
            Name = "vector";
            Volumes = {
              alloc-logs = {
                Name = "alloc-logs";
                Type = "host";
                Source = cfg.hostVolume;
                ReadOnly = true;
              };
            };
            RestartPolicy = {
              Attempts = 10;
              Interval = minutes 30;
              Delay = seconds 15;
              Mode = "delay";
            };
            Tasks = [
              {
                Name = "vector";
                Driver = "docker";
                Config = {
                  image = imageRef;
                  args = [
                    "--config"
                    "/local/vector.yaml"
                  ];
                };
                VolumeMounts = [
                  {
                    Volume = "alloc-logs";
                    Destination = "/var/lib/nomad/alloc";
                    ReadOnly = true;
                  }
                ];
                Env = {
                  LOKI_ENDPOINT = cfg.lokiEndpoint;
                  VECTOR_DATA_DIR = "/alloc/data";
                  GUARDIAN_NOMAD_JOB = "repo-guardian";
                };
                # Vector's own {{ field }} templates must not be read by Nomad's engine.
                Templates = [
                  {
                    DestPath = "local/vector.yaml";
                    EmbeddedTmpl = builtins.readFile ./vector.yaml;
                    LeftDelim = "[[";
                    RightDelim = "]]";
                    ChangeMode = "signal";
                    ChangeSignal = "SIGHUP";
                    Perms = "0444";
                    ErrMissingKey = true;
                  }
                ];
                Resources = {
                  CPU = 200;
                  MemoryMB = 256;
                };
                KillTimeout = seconds 10;
              }
            ];
          }
        ];
      };
  }
)
