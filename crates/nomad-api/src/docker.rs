//! The task `Config` of Nomad's docker driver (`drivers/docker/config.go`, `TaskConfig`),
//! for the keys these jobs use and their close relatives.
//!
//! Nomad passes `Config` to the driver as an opaque map; the docker driver decodes it with
//! its own schema and rejects unknown keys at submission, so a typo here would fail on the
//! cluster rather than silently. It is modelled anyway so the check happens offline.

use serde::Deserialize;

/// Docker driver task configuration (snake_case keys, as the driver's HCL schema names them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    pub image: String,
    pub args: Option<Vec<String>>,
    pub command: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub ports: Option<Vec<String>>,
    pub network_mode: Option<String>,
    pub readonly_rootfs: Option<bool>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub init: Option<bool>,
    pub force_pull: Option<bool>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub security_opt: Option<Vec<String>>,
    pub work_dir: Option<String>,
}
