# Small pure helpers shared by the Nomad job functions under deploy/ (builtins only).
rec {
  # Nomad's API wants every duration as an integer number of nanoseconds.
  seconds = n: n * 1000000000;
  minutes = n: seconds (n * 60);

  # Recursive attribute-set update (nixpkgs' lib.recursiveUpdate, without nixpkgs).
  merge =
    base: extra:
    base
    // builtins.mapAttrs (
      name: value:
      if builtins.isAttrs value && builtins.isAttrs (base.${name} or null) then
        merge base.${name} value
      else
        value
    ) extra;

  # Where each environment runs: one Nomad region per environment, and its datacenters.
  # Every job of this repository (workers, NATS, log shipper) uses the same sites.
  sites = {
    dev = {
      region = "dev";
      datacenters = [ "dev1" ];
    };
    staging = {
      region = "staging";
      datacenters = [
        "stg1"
        "stg2"
      ];
    };
    prod = {
      region = "prod";
      datacenters = [
        "prod1"
        "prod2"
        "prod3"
      ];
    };
  };

  # The configuration of one job for `env`: its common settings, the environment's site,
  # the job's settings for that environment (if any), then the caller's overrides.
  # An unknown environment is refused with the list of known ones.
  configFor =
    what: common: environments: env: overrides:
    merge (merge (merge common (pickEnv what sites env)) (environments.${env} or { })) overrides;

  # The settings of one environment, or a clear refusal naming the known ones.
  pickEnv =
    what: environments: env:
    if builtins.isString env && builtins.hasAttr env environments then
      environments.${env}
    else
      throw "${what}: unknown env '${toString env}'; expected one of: ${builtins.concatStringsSep ", " (builtins.attrNames environments)}";

  # An image reference pinned by digest (REPOSITORY@sha256:<64 hex>), or a clear refusal.
  requireDigest =
    what: image:
    if !(builtins.isString image) then
      throw "${what}: image must be a string"
    else if builtins.match "[^@[:space:]]+@sha256:[0-9a-f]{64}" image == null then
      throw "${what}: image '${image}' is not pinned by digest; expected REPOSITORY@sha256:<64 hex> (tags are mutable and cannot be promoted safely)"
    else
      image;

  # The identity fields every job of this repository starts with.
  jobHeader =
    {
      cfg,
      env,
      image,
      priority,
    }:
    {
      ID = cfg.jobId;
      Name = cfg.jobId;
      Type = "service";
      Namespace = cfg.namespace;
      Region = cfg.region;
      Datacenters = cfg.datacenters;
      Priority = priority;
      Meta = {
        environment = env;
        inherit image;
      };
    };
}
