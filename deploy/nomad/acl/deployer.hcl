# Nomad ACL policy for the CI deployer (GitHub Actions via OIDC, or a deploy token).
# It may plan, submit, promote and revert jobs (the workers and the NATS cluster) in the
# repo-guardian namespace, and read them and their deployments. It cannot read Nomad Variables (the secrets), exec into
# allocations, read logs, or touch any other namespace, node or agent.
#
#   nomad acl policy apply -description "Repo Guardian deployer" repo-guardian-deployer deployer.hcl
namespace "repo-guardian" {
  # submit-job covers `job plan`, `job run`, `job revert` and `deployment promote/fail`.
  capabilities = [
    "list-jobs",
    "read-job",
    "parse-job",
    "submit-job",
    "read-job-scaling",
    "list-scaling-policies",
    "read-scaling-policy",
  ]

  variables {
    path "*" {
      capabilities = ["deny"]
    }
  }
}

# The NATS cluster job (deploy/nats) mounts this host volume read-write; submitting a job
# that uses a host volume needs the matching capability.
host_volume "nats-jetstream" {
  capabilities = ["mount-readwrite"]
}

# The log shipper (deploy/logging) reads the clients' allocation logs through this one.
host_volume "nomad-alloc-logs" {
  capabilities = ["mount-readonly"]
}
