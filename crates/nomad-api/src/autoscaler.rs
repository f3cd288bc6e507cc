//! The Nomad Autoscaler's scaling policy, as it reads `ScalingPolicy.Policy` from a job.
//!
//! The job JSON holds the policy the way Nomad's HCL parser turns blocks into JSON: every
//! block is a list, a labelled block is a map from its label to a list of bodies. So
//! `check "queue_pending" { strategy "pass-through" {} }` is
//! `"check": [{"queue_pending": [{"strategy": [{"pass-through": [{}]}]}]}]`. Durations
//! are Go duration strings, parsed by the autoscaler with `time.ParseDuration`
//! (nomad-autoscaler `policy/nomad/parse.go`, keys from `sdk/policy.go`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::GoDuration;

/// The top level of a scaling policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalerPolicy {
    pub cooldown: Option<GoDuration>,
    pub evaluation_interval: Option<GoDuration>,
    pub on_check_error: Option<String>,
    /// Labelled `check` blocks: name → bodies (exactly one each).
    pub check: Vec<BTreeMap<String, Vec<Check>>>,
}

/// One `check` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub source: Option<String>,
    pub query: String,
    pub query_window: Option<GoDuration>,
    pub query_window_offset: Option<GoDuration>,
    pub on_error: Option<String>,
    pub group: Option<String>,
    /// Labelled `strategy` blocks: plugin name → bodies, each a map of plugin settings.
    pub strategy: Vec<BTreeMap<String, Vec<BTreeMap<String, String>>>>,
}

impl AutoscalerPolicy {
    /// Every check with its name, flattening the HCL-as-JSON lists.
    pub fn checks(&self) -> impl Iterator<Item = (&str, &Check)> {
        self.check.iter().flat_map(|block| {
            block
                .iter()
                .flat_map(|(name, bodies)| bodies.iter().map(move |b| (name.as_str(), b)))
        })
    }
}

impl Check {
    /// The names of the strategy plugins of this check.
    pub fn strategies(&self) -> impl Iterator<Item = &str> {
        self.strategy
            .iter()
            .flat_map(|s| s.keys().map(String::as_str))
    }
}
