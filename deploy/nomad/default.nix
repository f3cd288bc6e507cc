# The Repo Guardian worker job for Nomad, as a pure function (builtins only, no nixpkgs).
#
#   nix-instantiate --eval --strict --json deploy/nomad/default.nix \
#     --argstr env prod --argstr image ghcr.io/OWNER/repo-guardian@sha256:<64 hex>
#
# prints the Nomad API JSON `{ "Job": … }` that `nomad job run -json` accepts.
#
# Choices (see deploy/nomad/README.md):
# - service provider "nomad" (Nomad-native service discovery): no Consul needed; Nomad runs
#   the HTTP checks itself and uses them for deployment health;
# - task driver "docker" with the image pinned by digest;
# - secrets only through templates reading Nomad Variables (workload identity), never in Env;
#   every template fails on a missing key (ErrMissingKey) instead of rendering `<no value>`;
# - NATS over TLS (`tls://` URLs of the cluster's peers, deploy/nats); the cluster's CA comes
#   from the variable key `nats_ca` and is added to the trust store through SSL_CERT_DIR;
# - every duration in nanoseconds, as the Nomad API wants; the only strings that look like
#   durations are inside `Scaling.Policy`, which the Nomad Autoscaler parses itself.
{
  env,
  image,
  # Attribute set merged (recursively) over the chosen environment, for one-off changes
  # such as `--arg overrides '{ count = 5; }'` without editing this file.
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

  # Values shared by every environment; the per-environment sets below win.
  common = {
    jobId = "repo-guardian";
    namespace = "repo-guardian";
    # Ops server of the worker (/healthz, /readyz, /metrics) inside the container.
    httpPort = 9090;
    # How long a worker lets in-flight steps finish after SIGTERM (GUARDIAN__WORKER__DRAIN_TIMEOUT).
    drainSeconds = 25;
    # Must stay above drainSeconds and at or below the client's max_kill_timeout (30s by default).
    killTimeoutSeconds = 30;
    githubApiUrl = "https://api.github.com";
    # "password": user/password from Nomad Variables (GUARDIAN__NATS__USER/PASSWORD), for the
    # config-mode cluster of deploy/nats. "creds": a JWT .creds file from Nomad Variables
    # (GUARDIAN__NATS__CREDS), for NATS in operator/JWT mode. Either way only templates see it.
    natsAuth = "password";
    # Backlog (messages pending over all steps) that one worker is expected to absorb.
    backlogPerWorker = 50;
    # Stream replicas: 3 on the 3-node JetStream cluster (deploy/nats), 1 on a single server.
    natsReplicas = 3;
    otlpEndpoint = "http://\${attr.unique.network.ip-address}:4318";
  };

  environments = {
    dev = {
      count = 1;
      scaling = {
        min = 1;
        max = 3;
      };
      resources = {
        cpu = 250;
        memoryMb = 256;
        memoryMaxMb = 512;
      };
      # The peers of the dev cluster of deploy/nats (one replica per stream is enough in dev).
      natsUrls = [
        "tls://nats-0.dev.internal:4222"
        "tls://nats-1.dev.internal:4222"
        "tls://nats-2.dev.internal:4222"
      ];
      natsReplicas = 1;
      autoPromote = true;
      otlpEndpoint = "http://\${attr.unique.network.ip-address}:4318";
      rustLog = "info,repo_guardian=debug";
    };
    staging = {
      count = 2;
      scaling = {
        min = 2;
        max = 6;
      };
      resources = {
        cpu = 500;
        memoryMb = 384;
        memoryMaxMb = 768;
      };
      natsUrls = [
        "tls://nats-0.staging.internal:4222"
        "tls://nats-1.staging.internal:4222"
        "tls://nats-2.staging.internal:4222"
      ];
      autoPromote = true;
      otlpEndpoint = "http://otel-collector.staging.internal:4318";
      rustLog = "info";
    };
    prod = {
      count = 3;
      scaling = {
        min = 3;
        max = 12;
      };
      resources = {
        cpu = 1000;
        memoryMb = 512;
        memoryMaxMb = 1024;
      };
      natsUrls = [
        "tls://nats-0.prod.internal:4222"
        "tls://nats-1.prod.internal:4222"
        "tls://nats-2.prod.internal:4222"
      ];
      # Production canaries wait for a human: `nomad deployment promote`.
      autoPromote = false;
      otlpEndpoint = "http://otel-collector.prod.internal:4318";
      rustLog = "info";
    };
  };

  cfg = configFor "deploy/nomad" common environments env overrides;

  imageRef = requireDigest "deploy/nomad" image;

  natsAuth =
    if builtins.elem cfg.natsAuth [
      "creds"
      "password"
    ] then
      cfg.natsAuth
    else
      throw "deploy/nomad: natsAuth must be \"creds\" or \"password\", not '${toString cfg.natsAuth}'";

  # Nomad Variables readable by this job through its workload identity.
  varPath = "nomad/jobs/${cfg.jobId}";

  natsUrlList = builtins.concatStringsSep "," cfg.natsUrls;


  # Every template reads the job's own variable (workload identity grants exactly
  # nomad/jobs/<job id>) with `.key`, and sets ErrMissingKey: a key missing from the
  # variable stops the task with a template error instead of starting it with `<no value>`.
  # The one optional key, llm_api_key, is found by ranging over the keys, which never fails.
  fromVar = body: "{{ with nomadVar \"${varPath}\" }}${body}{{ end }}";

  secretEnvTemplate = (
    builtins.concatStringsSep "\n" (
      [
        ""
        "GUARDIAN__GITHUB__TOKEN={{ .github_token }}"
      ]
      ++ (
        if natsAuth == "creds" then
          [ "GUARDIAN__NATS__CREDS={{ env \"NOMAD_SECRETS_DIR\" }}/nats.creds" ]
        else
          [
            "GUARDIAN__NATS__USER={{ .nats_user }}"
            "GUARDIAN__NATS__PASSWORD={{ .nats_password }}"
          ]
      )
      ++ [
        "{{- range $key, $value := . }}{{ if eq $key \"llm_api_key\" }}"
        "GUARDIAN__LLM__API_KEY={{ $value }}"
        "{{- end }}{{ end }}"
        ""
      ]
    )
  );

  secretFile = dest: body: extra: {
    DestPath = dest;
    EmbeddedTmpl = fromVar body + "\n";
    ChangeMode = "restart";
    Perms = "0400";
    ErrMissingKey = true;
  } // extra;

  templates = [
    (secretFile "secrets/guardian.env" secretEnvTemplate { Envvars = true; })
    # The CA of the NATS cluster's certificate, alone in its directory (SSL_CERT_DIR).
    (secretFile "secrets/nats-ca/ca.pem" "{{ .nats_ca }}" { })
  ]
  ++ (
    if natsAuth == "creds" then [ (secretFile "secrets/nats.creds" "{{ .nats_creds }}" { }) ] else [ ]
  );

  update = {
    MaxParallel = 1;
    Canary = 1;
    HealthCheck = "checks";
    MinHealthyTime = seconds 30;
    HealthyDeadline = minutes 5;
    ProgressDeadline = minutes 10;
    AutoRevert = true;
    AutoPromote = cfg.autoPromote;
    Stagger = seconds 30;
  };

  httpCheck = name: path: extra: {
    Name = name;
    Type = "http";
    Protocol = "http";
    Method = "GET";
    Path = path;
    PortLabel = "http";
    Interval = seconds 10;
    Timeout = seconds 2;
  }
  // extra;

  task = {
    Name = "guardian";
    Driver = "docker";
    # The image runs as the numeric non-root user 65532; its entrypoint is `guardian worker`.
    Config = {
      image = imageRef;
      ports = [ "http" ];
      readonly_rootfs = true;
      cap_drop = [ "all" ];
      init = true;
    };
    Env = {
      GUARDIAN__HTTP__LISTEN = "0.0.0.0:${toString cfg.httpPort}";
      GUARDIAN__WORKER__DRAIN_TIMEOUT = "${toString cfg.drainSeconds}s";
      GUARDIAN__GITHUB__API_URL = cfg.githubApiUrl;
      GUARDIAN__TELEMETRY__LOG_FORMAT = "json";
      GUARDIAN__NATS__REPLICAS = toString cfg.natsReplicas;
      # rustls-native-certs (used by the NATS client) reads SSL_CERT_FILE (the image's CA
      # bundle) and every file in SSL_CERT_DIR: the cluster's CA joins the public ones.
      SSL_CERT_DIR = "\${NOMAD_SECRETS_DIR}/nats-ca";
      OTEL_SERVICE_NAME = "repo-guardian";
      OTEL_EXPORTER_OTLP_ENDPOINT = cfg.otlpEndpoint;
      OTEL_EXPORTER_OTLP_PROTOCOL = "http/protobuf";
      OTEL_RESOURCE_ATTRIBUTES = "deployment.environment=${env},service.namespace=${cfg.namespace}";
      RUST_LOG = cfg.rustLog;
    }
    // {
      GUARDIAN__NATS__URL = natsUrlList;
    };
    Templates = templates;
    Resources = {
      CPU = cfg.resources.cpu;
      MemoryMB = cfg.resources.memoryMb;
      MemoryMaxMB = cfg.resources.memoryMaxMb;
    };
    KillSignal = "SIGTERM";
    KillTimeout = seconds cfg.killTimeoutSeconds;
    # Deregister from service discovery before SIGTERM so no new health probes race the drain.
    ShutdownDelay = seconds 5;
    LogConfig = {
      MaxFiles = 5;
      MaxFileSizeMB = 20;
    };
  };

  group = {
    Name = "worker";
    Count = cfg.count;
    Update = update;
    Networks = [
      {
        Mode = "host";
        DynamicPorts = [
          {
            Label = "http";
            To = cfg.httpPort;
          }
        ];
      }
    ];
    Services = [
      {
        Name = "repo-guardian";
        Provider = "nomad";
        PortLabel = "http";
        Tags = [
          "env-${env}"
          "metrics"
        ];
        Meta = {
          metrics_path = "/metrics";
        };
        Checks = [
          (httpCheck "readiness" "/readyz" { })
          (httpCheck "liveness" "/healthz" {
            # A worker whose /healthz keeps failing is restarted in place.
            CheckRestart = {
              Limit = 3;
              Grace = seconds 30;
              IgnoreWarnings = false;
            };
          })
        ];
      }
    ];
    RestartPolicy = {
      Attempts = 3;
      Interval = minutes 5;
      Delay = seconds 15;
      Mode = "fail";
    };
    ReschedulePolicy = {
      Attempts = 0;
      Interval = 0;
      Delay = seconds 30;
      DelayFunction = "exponential";
      MaxDelay = minutes 10;
      Unlimited = true;
    };
    # Never two workers of a group on one node when it can be helped.
    Spreads = [
      {
        Attribute = "\${node.unique.id}";
        Weight = 50;
      }
    ];
    EphemeralDisk = {
      SizeMB = 150;
    };
    Scaling = {
      Type = "horizontal";
      Enabled = true;
      Min = cfg.scaling.min;
      Max = cfg.scaling.max;
      # Nomad Autoscaler policy: one worker per `backlogPerWorker` pending messages.
      # guardian_queue_pending{step} is the same backlog seen by every worker, so the
      # query takes the max per step across workers, then sums the steps.
      Policy = {
        cooldown = "2m";
        evaluation_interval = "30s";
        check = [
          {
            queue_pending = [
              {
                source = "prometheus";
                query = "ceil(sum(max by (step) (guardian_queue_pending)) / ${toString cfg.backlogPerWorker})";
                query_window = "1m";
                strategy = [ { pass-through = [ { } ]; } ];
              }
            ];
          }
        ];
      };
    };
    Tasks = [ task ];
  };
in
# Refuse a bad env or image before printing anything.
builtins.seq cfg (builtins.seq imageRef (builtins.seq natsAuth {
  Job = jobHeader {
    inherit cfg env;
    image = imageRef;
    priority = 50;
  }
  // {
    Constraints = [
      {
        LTarget = "\${attr.kernel.name}";
        RTarget = "linux";
        Operand = "=";
      }
    ];
    Update = update;
    Spreads = [
      {
        Attribute = "\${node.datacenter}";
        Weight = 100;
      }
    ];
    TaskGroups = [ group ];
  };
}))
