//! A strict model of the Nomad job API, for checking Repo Guardian's rendered jobs.
//!
//! Nomad's HTTP API decodes jobs with Go's `encoding/json`, which silently drops every
//! field it does not know: a misspelt `Spread` (instead of `Spreads`) or a duration given
//! as `"30s"` is never reported, the job just runs without it. The types here mirror the
//! types of Nomad's `api` package (Nomad 1.10, `api/jobs.go`, `api/tasks.go`,
//! `api/services.go`, `api/resources.go`, `api/scaling.go`, `api/constraint.go`,
//! `api/deployments.go`) field for field, with the same names and JSON types, but every
//! struct refuses unknown fields and every `time.Duration` is an integer number of
//! nanoseconds. Decoding a rendered job into [`JobFile`] therefore proves that Nomad reads
//! every field the job sets, with the type it expects.
//!
//! Only the parts of the API that Repo Guardian's jobs (or the deployment records its
//! scripts read) could plausibly use are modelled; a field Nomad has but this model lacks
//! is reported as unknown, which errs on the safe side: add it here, checked against
//! Nomad's `api` package, when a job needs it.
//!
//! What does not live here: rendering (that is `deploy/`, in Nix) and the policy checks on
//! the values (the `delivery` test crate).

pub mod autoscaler;
pub mod deployment;
pub mod docker;
pub mod duration;
pub mod job;

pub use duration::{GoDuration, Nanos};
pub use job::JobFile;

/// Decodes a rendered job file (`{ "Job": … }`, what `nomad job run -json` reads),
/// refusing unknown fields and wrongly typed values anywhere in it, the autoscaler policy
/// and the docker driver configuration included.
pub fn decode_job(json: &str) -> Result<JobFile, serde_json::Error> {
    serde_json::from_str(json)
}
