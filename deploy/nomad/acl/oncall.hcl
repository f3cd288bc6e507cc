# Nomad ACL policy for on-call engineers: read-only. They can see jobs, deployments,
# allocations, logs, nodes and scaling policies of Repo Guardian, but cannot change
# anything, exec into a task, or read Nomad Variables (the secrets).
# Rollbacks go through the Rollback workflow (deployer policy), not through this token.
#
#   nomad acl policy apply -description "Repo Guardian on-call (read-only)" repo-guardian-oncall oncall.hcl
namespace "repo-guardian" {
  policy       = "read"
  capabilities = ["read-logs"]

  variables {
    path "*" {
      capabilities = ["deny"]
    }
  }
}

node {
  policy = "read"
}

agent {
  policy = "read"
}
