# nats-server configuration for one node of the Repo Guardian JetStream cluster, as text.
# Pure (builtins only). deploy/nats/default.nix embeds it in the Nomad job with passwords
# read from Nomad Variables; `testConfig` renders it with dummy values so that
# `.ci/delivery.sh` can check it with `nats-server -t -c FILE`.
#
# Accounts:
# - GUARDIAN (JetStream enabled): users `worker` (the fleet) and `trigger` (people and
#   systems that start runs and read run records);
# - SYS: the system account, user `sys`, for `nats server ...` operator commands.
let
  quote = s: "\"${s}\"";
  list = items: "[ ${builtins.concatStringsSep ", " (map quote items)} ]";

  # The key-value buckets of DESIGN §3; a bucket B is the stream KV_B with subjects $KV.B.>.
  buckets = [
    "guardian_runs"
    "guardian_repos"
    "guardian_http"
    "guardian_flags"
  ];

  # Everything a worker publishes or subscribes to: its own subjects, the JetStream API,
  # acks and flow control, the KV subjects of its buckets, the micro service protocol and
  # request/reply inboxes.
  workerSubjects = [
    "guardian.>"
    "$JS.API.>"
    "$JS.ACK.>"
    "$JS.FC.>"
  ]
  ++ map (b: "$KV.${b}.>") buckets
  ++ [
    "$SRV.>"
    "_INBOX.>"
  ];

  # A trigger may call the service endpoints (and discover the service), and read the
  # run records of guardian_runs: stream info, direct/message get, and the ordered
  # consumer that `nats kv watch` creates. It cannot write anything.
  triggerPublish = [
    "guardian.run"
    "guardian.status"
    "$SRV.>"
    "$JS.API.INFO"
    "$JS.API.STREAM.INFO.KV_guardian_runs"
    "$JS.API.STREAM.MSG.GET.KV_guardian_runs"
    "$JS.API.DIRECT.GET.KV_guardian_runs"
    "$JS.API.DIRECT.GET.KV_guardian_runs.>"
    "$JS.API.CONSUMER.CREATE.KV_guardian_runs"
    "$JS.API.CONSUMER.CREATE.KV_guardian_runs.>"
    "$JS.API.CONSUMER.DELETE.KV_guardian_runs.>"
    "$JS.FC.KV_guardian_runs.>"
  ];
  triggerSubscribe = [ "_INBOX.>" ];
in
{
  # Renders the configuration. Every argument is a plain string or list (or a Nomad
  # template expression such as `{{ .worker_password }}` when rendered inside the job).
  render =
    {
      serverName,
      clusterName,
      # Peers as host:port of their cluster listener, this node included (it ignores itself).
      routes,
      storeDir,
      workerPassword,
      triggerPassword,
      sysPassword,
      routePassword,
      maxFileStore ? "10G",
      maxMemoryStore ? "512M",
      clientPort ? 4222,
      clusterPort ? 6222,
      monitorPort ? 8222,
    }:
    ''
      # Rendered by deploy/nats/config.nix: do not edit by hand.
      server_name: ${quote serverName}
      listen: "0.0.0.0:${toString clientPort}"
      http: "0.0.0.0:${toString monitorPort}"
      max_payload: 1MB
      # On SIGUSR2 (Nomad's kill signal for this job), stop accepting clients, then leave.
      lame_duck_duration: "30s"
      lame_duck_grace_period: "5s"

      jetstream {
        store_dir: ${quote storeDir}
        max_file_store: ${maxFileStore}
        max_memory_store: ${maxMemoryStore}
      }

      cluster {
        name: ${quote clusterName}
        listen: "0.0.0.0:${toString clusterPort}"
        authorization {
          user: "route"
          password: ${quote routePassword}
        }
        routes: [
      ${builtins.concatStringsSep "\n" (map (r: "    ${quote "nats-route://route:${routePassword}@${r}"}") routes)}
        ]
      }

      accounts {
        GUARDIAN {
          jetstream: enabled
          users: [
            {
              user: "worker"
              password: ${quote workerPassword}
              permissions: {
                publish: { allow: ${list workerSubjects} }
                subscribe: { allow: ${list workerSubjects} }
              }
            }
            {
              user: "trigger"
              password: ${quote triggerPassword}
              permissions: {
                publish: { allow: ${list triggerPublish} }
                subscribe: { allow: ${list triggerSubscribe} }
              }
            }
          ]
        }
        SYS {
          users: [ { user: "sys", password: ${quote sysPassword} } ]
        }
      }
      system_account: "SYS"
    '';

  inherit workerSubjects triggerPublish triggerSubscribe;
}
