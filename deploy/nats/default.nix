# A 3-node NATS JetStream cluster for Repo Guardian, as a Nomad job (pure: builtins only).
#
#   nix-instantiate --eval --strict --json deploy/nats/default.nix \
#     --argstr env prod --argstr image docker.io/library/nats@sha256:<64 hex>
#
# prints `{ "Job": … }` for `nomad job run -json`. With `--argstr output config` it prints
# instead the nats-server configuration of node 0 with dummy passwords (a JSON string),
# which `.ci/delivery.sh` checks with `nats-server -t -c FILE`.
#
# Each node runs on its own Nomad client of node class "nats" (distinct hosts), with static
# ports 4222 (clients), 6222 (routes) and 8222 (monitoring), host networking, and its
# JetStream store on the host volume "nats-jetstream". Passwords come from the Nomad
# Variable nomad/jobs/nats (keys worker_password, trigger_password, sys_password,
# route_password); user passwords may be stored as bcrypt hashes (`nats server passwd`).
{
  env,
  image,
  output ? "job",
  overrides ? { },
  ...
}:
let
  inherit (import ../lib.nix)
    seconds
    minutes
    merge
    pickEnv
    requireDigest
    jobHeader
    ;
  config = import ./config.nix;

  common = {
    jobId = "nats";
    namespace = "repo-guardian";
    nodeClass = "nats";
    clientPort = 4222;
    clusterPort = 6222;
    monitorPort = 8222;
    hostVolume = "nats-jetstream";
    storeDir = "/data/jetstream";
    maxFileStore = "20G";
    maxMemoryStore = "1G";
  };

  # The three peers of each environment, as the DNS names of the NATS client nodes. The
  # worker job (deploy/nomad) connects to the same names on port 4222.
  environments = {
    dev = {
      region = "dev";
      datacenters = [ "dev1" ];
      peers = [
        "nats-0.dev.internal"
        "nats-1.dev.internal"
        "nats-2.dev.internal"
      ];
      resources = {
        cpu = 250;
        memoryMb = 256;
      };
      maxFileStore = "5G";
      maxMemoryStore = "256M";
    };
    staging = {
      region = "staging";
      datacenters = [
        "stg1"
        "stg2"
      ];
      peers = [
        "nats-0.staging.internal"
        "nats-1.staging.internal"
        "nats-2.staging.internal"
      ];
      resources = {
        cpu = 500;
        memoryMb = 1024;
      };
    };
    prod = {
      region = "prod";
      datacenters = [
        "prod1"
        "prod2"
        "prod3"
      ];
      peers = [
        "nats-0.prod.internal"
        "nats-1.prod.internal"
        "nats-2.prod.internal"
      ];
      resources = {
        cpu = 1000;
        memoryMb = 2048;
      };
    };
  };

  cfg = merge (merge common (pickEnv "deploy/nats" environments env)) overrides;

  routes = map (peer: "${peer}:${toString cfg.clusterPort}") cfg.peers;

  renderFor =
    args:
    config.render (
      {
        clusterName = "guardian-${env}";
        inherit routes;
        inherit (cfg)
          storeDir
          maxFileStore
          maxMemoryStore
          clientPort
          clusterPort
          monitorPort
          ;
      }
      // args
    );

  varPath = "nomad/jobs/${cfg.jobId}";
  fromVar = key: "{{ with nomadVar \"${varPath}\" }}{{ .${key} }}{{ end }}";

  # Inside the job: names and passwords are filled in by Nomad's template engine.
  jobConfig = renderFor {
    serverName = "nats-{{ env \"NOMAD_ALLOC_INDEX\" }}";
    workerPassword = fromVar "worker_password";
    triggerPassword = fromVar "trigger_password";
    sysPassword = fromVar "sys_password";
    routePassword = fromVar "route_password";
  };

  # For `nats-server -t`: the same text with dummy values and a local store.
  testConfig = renderFor {
    serverName = "nats-0";
    storeDir = "/tmp/guardian-nats-config-check";
    workerPassword = "dummy-worker-password";
    triggerPassword = "dummy-trigger-password";
    sysPassword = "dummy-sys-password";
    routePassword = "dummy-route-password";
  };

  imageRef = requireDigest "deploy/nats" image;

  job = {
    Job = jobHeader {
      inherit cfg env;
      image = imageRef;
      priority = 80;
    }
    // {
      Constraints = [
        {
          LTarget = "\${node.class}";
          RTarget = cfg.nodeClass;
          Operand = "=";
        }
        {
          Operand = "distinct_hosts";
          RTarget = "true";
        }
      ];
      # One node at a time, and only after the previous one is healthy again: the
      # cluster keeps its quorum (2 of 3) through an update.
      Update = {
        MaxParallel = 1;
        Canary = 0;
        HealthCheck = "checks";
        MinHealthyTime = seconds 30;
        HealthyDeadline = minutes 5;
        ProgressDeadline = minutes 10;
        AutoRevert = true;
        AutoPromote = false;
        Stagger = seconds 30;
      };
      Spread = [
        {
          Attribute = "\${node.datacenter}";
          Weight = 100;
        }
      ];
      TaskGroups = [
        {
          Name = "nats";
          Count = builtins.length cfg.peers;
          Networks = [
            {
              Mode = "host";
              ReservedPorts = [
                {
                  Label = "client";
                  Value = cfg.clientPort;
                }
                {
                  Label = "cluster";
                  Value = cfg.clusterPort;
                }
                {
                  Label = "monitor";
                  Value = cfg.monitorPort;
                }
              ];
            }
          ];
          Volumes = {
            jetstream = {
              Name = "jetstream";
              Type = "host";
              Source = cfg.hostVolume;
              ReadOnly = false;
            };
          };
          Services = [
            {
              Name = "nats";
              Provider = "nomad";
              PortLabel = "client";
              Tags = [ "env-${env}" ];
              Checks = [
                {
                  Name = "jetstream-healthy";
                  Type = "http";
                  Protocol = "http";
                  Path = "/healthz?js-enabled-only=true";
                  PortLabel = "monitor";
                  Interval = seconds 10;
                  Timeout = seconds 2;
                }
              ];
            }
          ];
          RestartPolicy = {
            Attempts = 5;
            Interval = minutes 10;
            Delay = seconds 15;
            Mode = "delay";
          };
          Tasks = [
            {
              Name = "nats-server";
              Driver = "docker";
              Config = {
                image = imageRef;
                network_mode = "host";
                args = [
                  "--config"
                  "\${NOMAD_SECRETS_DIR}/nats.conf"
                ];
              };
              VolumeMounts = [
                {
                  Volume = "jetstream";
                  Destination = "/data";
                  ReadOnly = false;
                }
              ];
              Templates = [
                {
                  DestPath = "secrets/nats.conf";
                  EmbeddedTmpl = jobConfig;
                  ChangeMode = "signal";
                  ChangeSignal = "SIGHUP";
                  Perms = "0400";
                }
              ];
              Resources = {
                CPU = cfg.resources.cpu;
                MemoryMB = cfg.resources.memoryMb;
              };
              # Lame-duck mode (30s + 5s grace, see config.nix) fits in the kill timeout. The
              # Nomad clients of class "nats" need client.max_kill_timeout >= 45s (default 30s).
              KillSignal = "SIGUSR2";
              KillTimeout = seconds 45;
            }
          ];
        }
      ];
    };
  };
in
builtins.seq cfg (
  if output == "job" then
    job
  else if output == "config" then
    testConfig
  else
    throw "deploy/nats: output must be \"job\" or \"config\", not '${toString output}'"
)
