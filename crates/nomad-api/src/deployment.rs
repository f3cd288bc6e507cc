//! `api.Deployment` (api/deployments.go): what `nomad deployment status -json` and
//! `nomad job deployments -json` print. The delivery tests hold the answers of their fake
//! `nomad` to this model, so the scripts are tested against the shape Nomad really prints.
#![allow(
    non_snake_case,
    reason = "field names are Nomad's JSON keys, kept verbatim so the model reads like api/deployments.go"
)]

use std::collections::BTreeMap;

use serde::Deserialize;

/// A deployment of one job version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub ID: String,
    pub Namespace: String,
    pub JobID: String,
    pub JobVersion: u64,
    pub JobModifyIndex: u64,
    pub JobSpecModifyIndex: u64,
    pub JobCreateIndex: u64,
    pub IsMultiregion: bool,
    pub TaskGroups: BTreeMap<String, DeploymentState>,
    /// `running`, `paused`, `failed`, `successful`, `cancelled`, `pending`, `blocked`,
    /// `unblocking`, `initializing`.
    pub Status: String,
    pub StatusDescription: String,
    pub CreateIndex: u64,
    pub ModifyIndex: u64,
}

/// `api.DeploymentState`: the progress of one task group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentState {
    pub PlacedCanaries: Option<Vec<String>>,
    pub AutoRevert: bool,
    pub ProgressDeadline: i64,
    pub RequireProgressBy: String,
    pub Promoted: bool,
    pub DesiredCanaries: i64,
    pub DesiredTotal: i64,
    pub PlacedAllocs: i64,
    pub HealthyAllocs: i64,
    pub UnhealthyAllocs: i64,
    pub AutoPromote: bool,
}
