//! JSON Schemas of the public payloads — what other programs send to or read from the
//! fleet: the `guardian.run` request and answer, the run record and each repository's
//! progress in `guardian_runs`, the events in `GUARDIAN_EVENTS` and the step envelopes in
//! `GUARDIAN_WORK`. They are generated from the Rust types (`schemars`), published in
//! `docs/schemas/`, and a test fails when the published ones differ from the generated
//! ones (`UPDATE_SCHEMAS=1 cargo test --test it docs::` rewrites them).

use std::path::{Path, PathBuf};

use schemars::schema_for;

use crate::bus::envelope::Envelope;
use crate::service::{RunAccepted, RunRequest};
use crate::store::runs::{RepoProgress, RunRecord};

/// `(file name, schema)` of every published schema.
pub fn all() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("run-request.json", schema_for!(RunRequest)),
        ("run-accepted.json", schema_for!(RunAccepted)),
        ("run-record.json", schema_for!(RunRecord)),
        ("repo-progress.json", schema_for!(RepoProgress)),
        ("event.json", crate::bus::events::payload_schema()),
        ("step-envelope.json", schema_for!(Envelope)),
    ]
}

/// A schema as published: pretty JSON ending with a newline.
pub fn render(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes every schema into `dir`; returns the files written.
pub fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    all()
        .into_iter()
        .map(|(name, schema)| {
            let path = dir.join(name);
            std::fs::write(&path, render(&schema))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_request_schema_requires_a_target_string() {
        let schemas = all();
        let (_, request) = schemas
            .iter()
            .find(|(name, _)| *name == "run-request.json")
            .expect("run request");
        let value = request.as_value();
        assert_eq!(value["properties"]["target"]["type"], "string");
        assert_eq!(value["required"], serde_json::json!(["target"]));
    }
}
