# A 3-node NATS JetStream cluster for Repo Guardian, as a Nomad job (pure: builtins only).
#
#   nix-instantiate --eval --strict --json deploy/nats/default.nix \
#     --argstr env prod --argstr image docker.io/library/nats@sha256:<64 hex>
#
# prints `{ "Job": … }` for `nomad job run -json`. With `--argstr output config` it prints
# instead the nats-server configuration text (a JSON string) with the values of `--arg test
# { … }` in place of the Nomad template expressions: the delivery tests start a real 3-node
# cluster on loopback from it.
#
# Each node runs on its own Nomad client of node class "nats" (distinct hosts), with static
# ports 4222 (clients, TLS), 6222 (routes, mutual TLS) and 8222 (monitoring), host
# networking, and its JetStream store on the host volume "nats-jetstream". Its server_name
# is the Nomad node's name, so a name always goes with the same store (an allocation index
# would not: index 0 may land on another host after a reschedule).
#
# Secrets come from the Nomad Variable nomad/jobs/nats (see docs/operations/secrets.md):
# worker_password, trigger_password, ops_password, sys_password (plain or bcrypt hashes from
# `nats server passwd`), route_password (plain: also in the route URLs), and tls_cert,
# tls_key, tls_ca (PEM: one certificate for the cluster, valid for every peer name, for
# server and client authentication). A missing key fails the template instead of rendering
# `<no value>`.
{
  env,
  image,
  output ? "job",
  # For output = "config": the values that Nomad's templates fill in on a cluster.
  test ? { },
  overrides ? { },
  ...
}:
let
  inherit (import ../lib.nix)
    seconds
    minutes
    configFor
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
    # Inside the container: Nomad mounts the task's secrets/ directory at /secrets.
    tlsDir = "/secrets/tls";
    maxFileStore = "20G";
    maxMemoryStore = "1G";
  };

  # The three peers of each environment, as the DNS names of the NATS client nodes. The
  # worker job (deploy/nomad) connects to the same names on port 4222.
  environments = {
    dev = {
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

  cfg = configFor "deploy/nats" common environments env overrides;

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
  # `.key` (not `index . "key"`): with ErrMissingKey a missing key is a render error.
  fromVar = key: "{{ with nomadVar \"${varPath}\" }}{{ .${key} }}{{ end }}";

  tlsFiles = {
    cert = "cert.pem";
    key = "key.pem";
    ca = "ca.pem";
  };
  tlsPaths = builtins.mapAttrs (_: file: "${cfg.tlsDir}/${file}") tlsFiles;

  # Inside the job: names, passwords and certificates are filled in by Nomad's templates.
  jobConfig = renderFor {
    serverName = "{{ env \"node.unique.name\" }}";
    tls = tlsPaths;
    workerPassword = fromVar "worker_password";
    triggerPassword = fromVar "trigger_password";
    opsPassword = fromVar "ops_password";
    sysPassword = fromVar "sys_password";
    routePassword = fromVar "route_password";
  };

  # Outside Nomad: the same text with the caller's values (tests).
  testConfig = renderFor test;

  secretTemplate = args: {
    ChangeMode = "signal";
    ChangeSignal = "SIGHUP";
    Perms = "0400";
    ErrMissingKey = true;
  } // args;

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
      Spreads = [
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
                  # Plain /healthz fails until this node's JetStream has caught up (meta
                  # leader known, its streams and consumers current), so a rolling update
                  # waits for that before stopping the next node. `?js-enabled-only=true`
                  # would pass as soon as JetStream is switched on.
                  Name = "jetstream-current";
                  Type = "http";
                  Protocol = "http";
                  Path = "/healthz";
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
              # SIGHUP reloads users, passwords and certificates without a restart.
              Templates = [
                (secretTemplate {
                  DestPath = "secrets/nats.conf";
                  EmbeddedTmpl = jobConfig;
                })
              ]
              ++ map (key: secretTemplate {
                DestPath = "secrets/tls/${tlsFiles.${key}}";
                EmbeddedTmpl = fromVar "tls_${key}" + "\n";
              }) (builtins.attrNames tlsFiles);
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
