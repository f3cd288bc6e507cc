//! `api.Job` and everything a job contains, as Nomad's `api` package defines them.
//!
//! Field names are Nomad's own (`LTarget`, `MemoryMB`, `Spreads`), so each struct reads
//! side by side with its Go original; optional Go pointers and `omitempty` fields are
//! `Option`s. Every struct refuses unknown fields.
#![allow(
    non_snake_case,
    reason = "field names are Nomad's JSON keys, kept verbatim so the model reads like api/*.go"
)]

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Nanos;
use crate::autoscaler::AutoscalerPolicy;
use crate::docker::DockerConfig;

/// What `nomad job run -json FILE` and `PUT /v1/jobs` read: `{ "Job": … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub Job: Job,
}

/// `api.Job` (api/jobs.go): the fields a job file sets, and the ones Nomad adds when it
/// answers `job inspect` / `job history`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub Region: Option<String>,
    pub Namespace: Option<String>,
    pub ID: Option<String>,
    pub Name: Option<String>,
    pub Type: Option<String>,
    pub Priority: Option<i32>,
    pub AllAtOnce: Option<bool>,
    pub Datacenters: Option<Vec<String>>,
    pub NodePool: Option<String>,
    pub Constraints: Option<Vec<Constraint>>,
    pub Affinities: Option<Vec<Affinity>>,
    pub TaskGroups: Option<Vec<TaskGroup>>,
    pub Update: Option<UpdateStrategy>,
    pub Spreads: Option<Vec<Spread>>,
    pub Reschedule: Option<ReschedulePolicy>,
    pub Migrate: Option<MigrateStrategy>,
    pub Meta: Option<BTreeMap<String, String>>,
    // Set by the server, not by a job file.
    pub Stop: Option<bool>,
    pub ParentID: Option<String>,
    pub Dispatched: Option<bool>,
    pub Status: Option<String>,
    pub StatusDescription: Option<String>,
    pub Stable: Option<bool>,
    pub Version: Option<u64>,
    pub SubmitTime: Option<i64>,
    pub CreateIndex: Option<u64>,
    pub ModifyIndex: Option<u64>,
    pub JobModifyIndex: Option<u64>,
}

/// `api.Constraint` (api/constraint.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    pub LTarget: Option<String>,
    pub RTarget: Option<String>,
    pub Operand: String,
}

/// `api.Affinity` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    pub LTarget: Option<String>,
    pub RTarget: Option<String>,
    pub Operand: Option<String>,
    pub Weight: Option<i8>,
}

/// `api.Spread` (api/tasks.go). The job and group field holding these is `Spreads`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub Attribute: String,
    pub Weight: Option<i8>,
    pub SpreadTarget: Option<Vec<SpreadTarget>>,
}

/// `api.SpreadTarget` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpreadTarget {
    pub Value: String,
    pub Percent: u8,
}

/// `api.UpdateStrategy` (api/jobs.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    pub Stagger: Option<Nanos>,
    pub MaxParallel: Option<i32>,
    pub HealthCheck: Option<String>,
    pub MinHealthyTime: Option<Nanos>,
    pub HealthyDeadline: Option<Nanos>,
    pub ProgressDeadline: Option<Nanos>,
    pub Canary: Option<i32>,
    pub AutoRevert: Option<bool>,
    pub AutoPromote: Option<bool>,
}

/// `api.ReschedulePolicy` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReschedulePolicy {
    pub Attempts: Option<i32>,
    pub Interval: Option<Nanos>,
    pub Delay: Option<Nanos>,
    pub DelayFunction: Option<String>,
    pub MaxDelay: Option<Nanos>,
    pub Unlimited: Option<bool>,
}

/// `api.MigrateStrategy` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateStrategy {
    pub MaxParallel: Option<i32>,
    pub HealthCheck: Option<String>,
    pub MinHealthyTime: Option<Nanos>,
    pub HealthyDeadline: Option<Nanos>,
}

/// `api.RestartPolicy` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub Interval: Option<Nanos>,
    pub Attempts: Option<i32>,
    pub Delay: Option<Nanos>,
    pub Mode: Option<String>,
    pub RenderTemplates: Option<bool>,
}

/// `api.DisconnectStrategy` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectStrategy {
    pub LostAfter: Option<Nanos>,
    pub StopOnClientAfter: Option<Nanos>,
    pub Replace: Option<bool>,
    pub Reconcile: Option<String>,
}

/// `api.EphemeralDisk` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EphemeralDisk {
    pub Sticky: Option<bool>,
    pub Migrate: Option<bool>,
    pub SizeMB: Option<i32>,
}

/// `api.VolumeRequest` (api/tasks.go), without CSI mount options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRequest {
    pub Name: String,
    pub Type: String,
    pub Source: String,
    pub ReadOnly: Option<bool>,
    pub AccessMode: Option<String>,
    pub AttachmentMode: Option<String>,
    pub PerAlloc: Option<bool>,
}

/// `api.VolumeMount` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    pub Volume: String,
    pub Destination: String,
    pub ReadOnly: Option<bool>,
    pub PropagationMode: Option<String>,
    pub SELinuxLabel: Option<String>,
}

/// `api.TaskGroup` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskGroup {
    pub Name: String,
    pub Count: Option<i32>,
    pub Constraints: Option<Vec<Constraint>>,
    pub Affinities: Option<Vec<Affinity>>,
    pub Tasks: Vec<Task>,
    pub Spreads: Option<Vec<Spread>>,
    pub Volumes: Option<BTreeMap<String, VolumeRequest>>,
    pub RestartPolicy: Option<RestartPolicy>,
    pub Disconnect: Option<DisconnectStrategy>,
    pub ReschedulePolicy: Option<ReschedulePolicy>,
    pub EphemeralDisk: Option<EphemeralDisk>,
    pub Update: Option<UpdateStrategy>,
    pub Migrate: Option<MigrateStrategy>,
    pub Networks: Option<Vec<NetworkResource>>,
    pub Meta: Option<BTreeMap<String, String>>,
    pub Services: Option<Vec<Service>>,
    pub ShutdownDelay: Option<Nanos>,
    pub Scaling: Option<ScalingPolicy>,
}

/// `api.NetworkResource` (api/resources.go), without DNS and CNI settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkResource {
    pub Mode: Option<String>,
    pub Device: Option<String>,
    pub CIDR: Option<String>,
    pub IP: Option<String>,
    pub Hostname: Option<String>,
    pub ReservedPorts: Option<Vec<Port>>,
    pub DynamicPorts: Option<Vec<Port>>,
    pub MBits: Option<i32>,
}

/// `api.Port` (api/resources.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub Label: String,
    pub Value: Option<i32>,
    pub To: Option<i32>,
    pub HostNetwork: Option<String>,
}

/// `api.Service` (api/services.go), without Consul Connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub Name: String,
    pub Tags: Option<Vec<String>>,
    pub CanaryTags: Option<Vec<String>>,
    pub EnableTagOverride: Option<bool>,
    pub PortLabel: Option<String>,
    pub AddressMode: Option<String>,
    pub Address: Option<String>,
    pub Checks: Option<Vec<ServiceCheck>>,
    pub CheckRestart: Option<CheckRestart>,
    pub Meta: Option<BTreeMap<String, String>>,
    pub CanaryMeta: Option<BTreeMap<String, String>>,
    pub TaskName: Option<String>,
    pub OnUpdate: Option<String>,
    pub Provider: Option<String>,
    pub Cluster: Option<String>,
}

/// `api.ServiceCheck` (api/services.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCheck {
    pub Name: Option<String>,
    pub Type: String,
    pub Command: Option<String>,
    pub Args: Option<Vec<String>>,
    pub Path: Option<String>,
    pub Protocol: Option<String>,
    pub PortLabel: Option<String>,
    pub Expose: Option<bool>,
    pub AddressMode: Option<String>,
    pub Advertise: Option<String>,
    pub Interval: Nanos,
    pub Timeout: Nanos,
    pub InitialStatus: Option<String>,
    pub Notes: Option<String>,
    pub TLSServerName: Option<String>,
    pub TLSSkipVerify: Option<bool>,
    pub Header: Option<BTreeMap<String, Vec<String>>>,
    pub Method: Option<String>,
    pub CheckRestart: Option<CheckRestart>,
    pub GRPCService: Option<String>,
    pub GRPCUseTLS: Option<bool>,
    pub TaskName: Option<String>,
    pub SuccessBeforePassing: Option<i32>,
    pub FailuresBeforeCritical: Option<i32>,
    pub FailuresBeforeWarning: Option<i32>,
    pub Body: Option<String>,
    pub OnUpdate: Option<String>,
}

/// `api.CheckRestart` (api/services.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRestart {
    pub Limit: Option<i32>,
    pub Grace: Option<Nanos>,
    pub IgnoreWarnings: Option<bool>,
}

/// `api.Task` (api/tasks.go), for the docker driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub Name: String,
    pub Driver: String,
    pub User: Option<String>,
    pub Lifecycle: Option<TaskLifecycle>,
    /// `map[string]interface{}` in Nomad, handed to the driver; typed here as the docker
    /// driver's task configuration, the only driver these jobs use.
    pub Config: DockerConfig,
    pub Constraints: Option<Vec<Constraint>>,
    pub Affinities: Option<Vec<Affinity>>,
    pub Env: Option<BTreeMap<String, String>>,
    pub Services: Option<Vec<Service>>,
    pub Resources: Option<Resources>,
    pub RestartPolicy: Option<RestartPolicy>,
    pub Meta: Option<BTreeMap<String, String>>,
    pub KillTimeout: Option<Nanos>,
    pub LogConfig: Option<LogConfig>,
    pub Templates: Option<Vec<Template>>,
    pub VolumeMounts: Option<Vec<VolumeMount>>,
    pub Leader: Option<bool>,
    pub ShutdownDelay: Option<Nanos>,
    pub KillSignal: Option<String>,
    pub Kind: Option<String>,
}

/// `api.TaskLifecycle` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskLifecycle {
    pub Hook: String,
    pub Sidecar: Option<bool>,
}

/// `api.Resources` (api/resources.go), without devices and NUMA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub CPU: Option<i32>,
    pub Cores: Option<i32>,
    pub MemoryMB: Option<i32>,
    pub MemoryMaxMB: Option<i32>,
    pub DiskMB: Option<i32>,
}

/// `api.LogConfig` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub MaxFiles: Option<i32>,
    pub MaxFileSizeMB: Option<i32>,
    pub Disabled: Option<bool>,
}

/// `api.Template` (api/tasks.go). `ErrMissingKey` is the job specification's
/// `error_on_missing_key`: with it, `{{ .key }}` on a missing key fails the render instead
/// of writing `<no value>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub SourcePath: Option<String>,
    pub DestPath: String,
    pub EmbeddedTmpl: Option<String>,
    pub ChangeMode: Option<String>,
    pub ChangeSignal: Option<String>,
    pub Splay: Option<Nanos>,
    pub Perms: Option<String>,
    pub Uid: Option<i32>,
    pub Gid: Option<i32>,
    pub LeftDelim: Option<String>,
    pub RightDelim: Option<String>,
    pub Envvars: Option<bool>,
    pub Wait: Option<WaitConfig>,
    pub ErrMissingKey: Option<bool>,
}

/// `api.WaitConfig` (api/tasks.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitConfig {
    pub Min: Option<Nanos>,
    pub Max: Option<Nanos>,
}

/// `api.ScalingPolicy` (api/scaling.go). `Policy` is `map[string]interface{}` for Nomad,
/// read by the Nomad Autoscaler; typed here as the autoscaler reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicy {
    pub ID: Option<String>,
    pub Namespace: Option<String>,
    pub Type: Option<String>,
    pub Target: Option<BTreeMap<String, String>>,
    pub Min: Option<i64>,
    pub Max: Option<i64>,
    pub Policy: Option<AutoscalerPolicy>,
    pub Enabled: Option<bool>,
}
