# nats-server configuration for one node of the Repo Guardian JetStream cluster, as text.
# Pure (builtins only). deploy/nats/default.nix embeds it in the Nomad job with secrets read
# from Nomad Variables; the delivery tests render it with test values and run a real
# 3-node cluster from it, over TLS, to prove the permissions below.
#
# TLS: the client port and the route port both require TLS (certificate, key and CA from
# files); routes additionally verify the peer's certificate (mutual TLS) and log in as the
# `route` user. The monitoring port stays plain HTTP: it serves /healthz to Nomad's checks.
#
# Accounts and users (least privilege; names from DESIGN §3 and src/bus/mod.rs):
# - GUARDIAN (JetStream enabled)
#   - `worker`: the fleet. Its own subjects (work, events, dead letters), the JetStream
#     API for its three streams and four buckets only, the micro service endpoints and
#     discovery of `repo-guardian`, request inboxes, and replies to requests it received.
#   - `trigger`: people and systems that start runs: `guardian.run`, `guardian.status` and
#     service discovery (`nats micro ls/info/stats`). No work subjects, no KV, no JetStream.
#   - `ops`: read-only inspection of streams, consumers and buckets (`nats stream info`,
#     `nats consumer info`, `nats kv get|watch`, `nats stream view`), the service, and the
#     kill switches (`nats kv put guardian_flags …`).
# - SYS: the system account, user `sys`, for `nats server …` operator commands.
let
  quote = s: "\"${s}\"";
  list = items: "[ ${builtins.concatStringsSep ", " (map quote items)} ]";
  concatMap = f: xs: builtins.concatLists (map f xs);

  # The names come from the worker's own definition of them (src/bus/mod.rs, DESIGN §3), so a
  # stream or bucket added there is covered here without retyping it.
  busSource = builtins.readFile ../../src/bus/mod.rs;
  constants =
    pattern:
    let
      found = builtins.filter builtins.isList (
        builtins.split "pub const ${pattern}: &str = \"([^\"]+)\";" busSource
      );
    in
    if found == [ ] then
      throw "deploy/nats: no constant matching ${pattern} in src/bus/mod.rs"
    else
      map builtins.head found;
  single = pattern: builtins.head (constants pattern);

  service = single "SERVICE_NAME";
  endpoints = [
    (single "RUN_ENDPOINT")
    (single "STATUS_ENDPOINT")
  ];
  ownStreams = constants "[A-Z_]+_STREAM";
  # A bucket B is the stream KV_B with subjects $KV.B.>.
  buckets = constants "[A-Z_]+_BUCKET";
  streams = ownStreams ++ map (b: "KV_${b}") buckets;

  # The micro service protocol: PING/INFO/STATS, for all services, by name, by name and id.
  serviceDiscovery = concatMap (verb: [
    "$SRV.${verb}"
    "$SRV.${verb}.${service}"
    "$SRV.${verb}.${service}.*"
  ]) [ "PING" "INFO" "STATS" ];

  # What a client of JetStream needs on one stream: manage it, read messages, and run its
  # own consumers (create, info, delete, pull, ack, flow control).
  streamApi =
    s: [
      "$JS.API.STREAM.CREATE.${s}"
      "$JS.API.STREAM.UPDATE.${s}"
      "$JS.API.STREAM.INFO.${s}"
      "$JS.API.STREAM.MSG.GET.${s}"
      "$JS.API.DIRECT.GET.${s}"
      "$JS.API.DIRECT.GET.${s}.>"
      "$JS.API.CONSUMER.CREATE.${s}"
      "$JS.API.CONSUMER.CREATE.${s}.>"
      "$JS.API.CONSUMER.DURABLE.CREATE.${s}.*"
      "$JS.API.CONSUMER.INFO.${s}.*"
      "$JS.API.CONSUMER.DELETE.${s}.*"
      "$JS.API.CONSUMER.MSG.NEXT.${s}.*"
      "$JS.ACK.${s}.>"
      "$JS.FC.${s}.>"
    ];

  workerPublish = [
    "guardian.work.>"
    "guardian.events.>"
    "guardian.dlq.>"
    "$JS.API.INFO"
    # `guardian dlq replay` removes a replayed dead letter.
    "$JS.API.STREAM.MSG.DELETE.${single "DLQ_STREAM"}"
  ]
  ++ concatMap streamApi streams
  ++ map (b: "$KV.${b}.>") buckets;
  workerSubscribe = endpoints ++ serviceDiscovery ++ [ "_INBOX.>" ];

  triggerPublish = endpoints ++ serviceDiscovery;
  triggerSubscribe = [ "_INBOX.>" ];

  # Inspection without changing anything but the kill switches: info and reads on every
  # stream, ephemeral consumers for `stream view` / `kv watch` (no durable ones, no deletes of
  # streams or messages).
  opsPublish = [
    "$JS.API.INFO"
    "$JS.API.STREAM.NAMES"
    "$JS.API.STREAM.LIST"
    "$KV.${single "FLAGS_BUCKET"}.>"
  ]
  ++ endpoints
  ++ serviceDiscovery
  ++ concatMap (s: [
    "$JS.API.STREAM.INFO.${s}"
    "$JS.API.STREAM.MSG.GET.${s}"
    "$JS.API.DIRECT.GET.${s}"
    "$JS.API.DIRECT.GET.${s}.>"
    "$JS.API.CONSUMER.NAMES.${s}"
    "$JS.API.CONSUMER.LIST.${s}"
    "$JS.API.CONSUMER.INFO.${s}.*"
    "$JS.API.CONSUMER.CREATE.${s}"
    "$JS.API.CONSUMER.CREATE.${s}.>"
    "$JS.API.CONSUMER.DELETE.${s}.*"
    "$JS.FC.${s}.>"
  ]) streams;
  opsSubscribe = [ "_INBOX.>" ];

  tlsBlock =
    { tls, verify }:
    ''
      tls {
          cert_file: ${quote tls.cert}
          key_file: ${quote tls.key}
          ca_file: ${quote tls.ca}
          verify: ${if verify then "true" else "false"}
          timeout: 2
        }'';
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
      # Paths of the PEM files: { cert, key, ca }. One certificate for the whole cluster,
      # valid for every peer name, used on both the client and the route port.
      tls,
      workerPassword,
      triggerPassword,
      opsPassword,
      sysPassword,
      routePassword,
      maxFileStore ? "10G",
      maxMemoryStore ? "512M",
      host ? "0.0.0.0",
      clientPort ? 4222,
      clusterPort ? 6222,
      monitorPort ? 8222,
    }:
    ''
      # Rendered by deploy/nats/config.nix: do not edit by hand.
      server_name: ${quote serverName}
      listen: "${host}:${toString clientPort}"
      http: "${host}:${toString monitorPort}"
      max_payload: 1MB
      # On SIGUSR2 (Nomad's kill signal for this job), stop accepting clients, then leave.
      lame_duck_duration: "30s"
      lame_duck_grace_period: "5s"

      # Clients must speak TLS; passwords never cross the network in clear.
      ${tlsBlock {
        inherit tls;
        verify = false;
      }}

      jetstream {
        store_dir: ${quote storeDir}
        max_file_store: ${maxFileStore}
        max_memory_store: ${maxMemoryStore}
      }

      cluster {
        name: ${quote clusterName}
        listen: "${host}:${toString clusterPort}"
        # Routes: mutual TLS (both ends present the cluster certificate) and a password.
        ${tlsBlock {
          inherit tls;
          verify = true;
        }}
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
                publish: { allow: ${list workerPublish} }
                subscribe: { allow: ${list workerSubscribe} }
                # Answers to the service requests it receives (reply subjects of any name).
                allow_responses: true
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
            {
              user: "ops"
              password: ${quote opsPassword}
              permissions: {
                publish: { allow: ${list opsPublish} }
                subscribe: { allow: ${list opsSubscribe} }
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

  inherit
    buckets
    ownStreams
    workerPublish
    workerSubscribe
    triggerPublish
    triggerSubscribe
    opsPublish
    opsSubscribe
    ;
}
