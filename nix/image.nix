# The OCI image of the worker, built by dockerTools (no Docker daemon, reproducible).
#
# - non-root numeric user 65532, no shell, nothing but the binary and CA certificates;
# - entrypoint `guardian worker`, ops port 9090 (/healthz, /readyz, /metrics);
# - a fixed creation date, so the same source gives the same image digest.
{
  lib,
  dockerTools,
  cacert,
  guardian,
  revision ? "unknown",
  source ? "https://github.com/OWNER/repo-guardian",
}:
dockerTools.streamLayeredImage {
  name = "repo-guardian";
  tag = guardian.version;
  # Fixed instead of the build time: no timestamps in the image.
  created = "1970-01-01T00:00:01Z";
  contents = [
    guardian
    cacert
  ];
  # /tmp for the odd temporary file; the root filesystem is read-only in Nomad.
  extraCommands = ''
    mkdir -p tmp
    chmod 1777 tmp
  '';
  config = {
    User = "65532:65532";
    Entrypoint = [
      "/bin/guardian"
      "worker"
    ];
    ExposedPorts = {
      "9090/tcp" = { };
    };
    Env = [
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
      "GUARDIAN__HTTP__LISTEN=0.0.0.0:9090"
      "GUARDIAN__TELEMETRY__LOG_FORMAT=json"
    ];
    WorkingDir = "/tmp";
    Labels = {
      "org.opencontainers.image.source" = source;
      "org.opencontainers.image.revision" = revision;
      "org.opencontainers.image.version" = guardian.version;
      "org.opencontainers.image.title" = "repo-guardian";
      "org.opencontainers.image.licenses" = "Apache-2.0";
    };
  };
}
