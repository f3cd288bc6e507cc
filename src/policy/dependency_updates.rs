//! `dependency-updates`: a bot keeps dependencies current — Dependabot version updates or
//! Renovate — and its configuration is valid.
//!
//! Satisfied by `.github/dependabot.yml|yaml` that parses as Dependabot's version 2
//! configuration (with `github-actions-models`' typed model) and lists at least one update,
//! or by a Renovate configuration file in one of the places Renovate reads. Dependabot
//! *security* updates alone are a repository setting not visible in the tree and do not
//! count: they patch known vulnerabilities, not stale dependencies.

use github_actions_models::dependabot::v2::Dependabot;

use super::{Policy, PolicyOptions, finding, located};
use crate::domain::{Finding, Input, Location, Severity, Snapshot};

pub(crate) const ID: &str = "dependency-updates";

/// Where Dependabot reads its configuration.
pub(crate) const DEPENDABOT: &[&str] = &[".github/dependabot.yml", ".github/dependabot.yaml"];

/// Where Renovate looks for its configuration (its documented list, minus `package.json`).
const RENOVATE: &[&str] = &[
    "renovate.json",
    "renovate.json5",
    ".github/renovate.json",
    ".github/renovate.json5",
    ".gitlab/renovate.json",
    ".gitlab/renovate.json5",
    ".renovaterc",
    ".renovaterc.json",
    ".renovaterc.json5",
];

pub(crate) const REMEDIATION: &str = "\
Dependencies that nobody updates collect known vulnerabilities; a bot that opens update \
pull requests keeps the fixes flowing with little effort.

1. Add `.github/dependabot.yml` with `version: 2` and one `updates:` entry per package \
ecosystem and directory (for example `package-ecosystem: cargo`, `directory: /`, \
`schedule: { interval: weekly }`), including `github-actions` for workflow pins.
2. Or configure Renovate (`renovate.json` at the root) if the organisation runs it.
3. Validate the file: GitHub shows errors under **Insights → Dependency graph → Dependabot**.

See [Configuring Dependabot version updates](https://docs.github.com/en/code-security/dependabot/dependabot-version-updates/configuring-dependabot-version-updates) \
and [Dependabot options reference](https://docs.github.com/en/code-security/dependabot/working-with-dependabot/dependabot-options-reference).";

pub struct DependencyUpdates;

impl Policy for DependencyUpdates {
    fn id(&self) -> &'static str {
        ID
    }

    fn description(&self) -> &'static str {
        "Dependabot version updates or Renovate keep dependencies current, and the Dependabot file is valid."
    }

    fn severity(&self) -> Severity {
        Severity::Medium
    }

    fn file_based(&self) -> bool {
        true
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Tree, Input::Contents]
    }

    fn evaluate(&self, snapshot: &Snapshot, _: &PolicyOptions) -> Vec<Finding> {
        if let Some(path) = DEPENDABOT.iter().find(|p| snapshot.files.contains(**p)) {
            let text = snapshot
                .contents
                .get(*path)
                .map(String::as_str)
                .unwrap_or("");
            return match yaml_serde::from_str::<Dependabot>(text) {
                Ok(config) if config.version == 2 && !config.updates.is_empty() => Vec::new(),
                Ok(config) => vec![self.invalid(
                    path,
                    &format!(
                        "version {} with {} update(s): Dependabot needs `version: 2` and at \
                         least one entry under `updates:`",
                        config.version,
                        config.updates.len()
                    ),
                    1,
                )],
                Err(e) => {
                    let line = e.location().map(|l| l.line() as u32).unwrap_or(1).max(1);
                    vec![self.invalid(path, &e.to_string(), line)]
                }
            };
        }
        if RENOVATE.iter().any(|p| snapshot.files.contains(*p)) {
            return Vec::new();
        }
        vec![finding(
            self,
            "missing",
            "No automated dependency updates".to_owned(),
            format!(
                "Neither Dependabot nor Renovate is configured.\n\n- Looked for: {}.\n- Looked \
                 for Renovate's files: {}.",
                DEPENDABOT
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                RENOVATE
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            REMEDIATION.to_owned(),
        )]
    }
}

impl DependencyUpdates {
    fn invalid(&self, path: &str, message: &str, line: u32) -> Finding {
        located(
            finding(
                self,
                "invalid-dependabot",
                format!("`{path}` is not a valid Dependabot configuration"),
                format!(
                    "Dependabot cannot use `{path}`, so no update pull requests are opened.\n\n\
                     - Parser: {message}"
                ),
                REMEDIATION.to_owned(),
            ),
            Location {
                path: path.to_owned(),
                line,
                column: 1,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys, snapshot};
    use super::*;

    #[test]
    fn dependabot_or_renovate_satisfy() {
        let ok = "version: 2\nupdates:\n  - package-ecosystem: cargo\n    directory: /\n    schedule:\n      interval: weekly\n";
        let snap = snapshot().file(".github/dependabot.yml", ok).build();
        assert!(keys(&DependencyUpdates, &snap).is_empty());
        let snap = snapshot().files(&["renovate.json"]).build();
        assert!(keys(&DependencyUpdates, &snap).is_empty());
        let snap = snapshot()
            .files(&["README.md", "docs/renovate.json"])
            .build();
        assert_eq!(keys(&DependencyUpdates, &snap), ["missing"]);
    }

    #[test]
    fn an_invalid_dependabot_file_is_a_finding_with_the_parsers_message() {
        let bad = "version: 2\nupdates:\n  - package-ecosystem: cargo\n    schedule: weekly\n";
        let snap = snapshot().file(".github/dependabot.yml", bad).build();
        let findings = DependencyUpdates.evaluate(&snap, &PolicyOptions::new());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].key, "invalid-dependabot");
        assert!(
            findings[0].details.contains("Parser: "),
            "{}",
            findings[0].details
        );
        let v1 = "version: 1\nupdates: []\n";
        let snap = snapshot().file(".github/dependabot.yaml", v1).build();
        assert_eq!(keys(&DependencyUpdates, &snap), ["invalid-dependabot"]);
    }
}
