//! `owner-config`: the repository's own configuration, `.github/repo-guardian.yml`, read
//! and applied; an invalid file is this policy's one finding.
//!
//! Owners may switch policies off (`disable: [license]`) or on, give options
//! (`policies: {pinned-actions: {options: {allow_ref_pins: ["actions/*"]}}}`), ask for
//! extra labels and assignees on the issues, and suppress findings with a typed reason:
//!
//! ```yaml
//! suppressions:
//!   - fingerprint: binary-artifacts/present
//!     reason: test-data          # test-data | remediated | not-applicable | accepted-risk
//!     note: fixtures for the parser tests
//!     until: 2027-06-30          # optional; the finding counts again after this day
//!   - policy: codeowners
//!     reason: not-applicable
//! ```
//!
//! A file that does not parse, names an unknown policy or gives an invalid option is
//! ignored as a whole (the fleet's settings apply) and reported with the parser's message;
//! it never stops the scan.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Policy, PolicyOptions, PolicySettings, finding, located};
use crate::domain::{Finding, Input, Location, Severity, Snapshot, Suppression, SuppressionReason};

pub(crate) const ID: &str = "owner-config";

/// Where owners put their configuration.
pub(crate) const PATHS: &[&str] = &[".github/repo-guardian.yml", ".github/repo-guardian.yaml"];

pub(crate) const REMEDIATION: &str = "\
Repo Guardian ignores an invalid `.github/repo-guardian.yml` as a whole and applies the \
organisation's settings instead, so the owners' choices (disabled policies, options, \
suppressions) are not in effect.

1. Fix the problem named in the details, at the line given.
2. Keys: `enabled` (opt in or out as a whole), `disable` (policy ids), `policies.<id>.enabled`, `policies.<id>.options`, \
`labels`, `assignees`, `suppressions` (each with `fingerprint` or `policy`, a `reason` of \
`test-data`, `remediated`, `not-applicable` or `accepted-risk`, an optional `note` and an \
optional `until: YYYY-MM-DD`).

See the policies reference in Repo Guardian's `docs/policies.md` and \
[About YAML for GitHub Actions](https://docs.github.com/en/actions/writing-workflows/workflow-syntax-for-github-actions#about-yaml-syntax-for-workflows) for the YAML syntax.";

/// The owners' configuration, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerConfig {
    /// The owners' opt-in (`true`) or opt-out (`false`) of Repo Guardian as a whole; the
    /// fleet's `targets.mode` says what silence means.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Policy ids switched off for this repository.
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySettings>,
    /// Labels added to every issue filed in this repository.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Logins assigned to every issue filed in this repository.
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub suppressions: Vec<Rule>,
}

/// One suppression: a finding (by fingerprint) or a whole policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub fingerprint: Option<String>,
    pub policy: Option<String>,
    pub reason: SuppressionReason,
    pub note: Option<String>,
    pub until: Option<String>,
}

/// Why the owners' file is unusable: the message and the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
    pub line: u32,
}

/// The owners' configuration of `snapshot`, if they have one.
pub fn read(snapshot: &Snapshot) -> Option<Result<OwnerConfig, Invalid>> {
    let path = PATHS.iter().find(|p| snapshot.files.contains(**p))?;
    let text = snapshot
        .contents
        .get(*path)
        .map(String::as_str)
        .unwrap_or("");
    let invalid = |message: String, line: u32| Invalid {
        path: (*path).to_owned(),
        message,
        line,
    };
    if text.trim().is_empty() {
        return Some(Ok(OwnerConfig::default()));
    }
    let config: OwnerConfig = match yaml_serde::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let line = e.location().map(|l| l.line() as u32).unwrap_or(1).max(1);
            return Some(Err(invalid(e.to_string(), line)));
        }
    };
    Some(validate(&config).map(|()| config).map_err(|m| {
        // Point at the first line that mentions what is wrong, when there is one.
        let line = m
            .split('`')
            .nth(1)
            .and_then(|needle| text.lines().position(|l| l.contains(needle)))
            .map(|i| i as u32 + 1)
            .unwrap_or(1);
        invalid(m, line)
    }))
}

fn validate(config: &OwnerConfig) -> Result<(), String> {
    let known = |id: &str| super::by_id(id).is_some();
    for id in config.disable.iter().chain(config.policies.keys()) {
        if !known(id) {
            return Err(format!("unknown policy `{id}`"));
        }
    }
    for (id, p) in &config.policies {
        if let Some(policy) = super::by_id(id) {
            policy
                .validate_options(&p.options)
                .map_err(|e| format!("`policies.{id}.options.{}`: {}", e.option, e.problem))?;
        }
    }
    for rule in &config.suppressions {
        match (&rule.fingerprint, &rule.policy) {
            (Some(_), None) => {}
            (None, Some(id)) if known(id) => {}
            (None, Some(id)) => return Err(format!("unknown policy `{id}` in a suppression")),
            _ => {
                return Err(
                    "each suppression needs exactly one of `fingerprint` or `policy`".into(),
                );
            }
        }
        if let Some(until) = &rule.until {
            parse_day(until)
                .ok_or_else(|| format!("`until: {until}` is not a day (YYYY-MM-DD)"))?;
        }
    }
    Ok(())
}

fn parse_day(day: &str) -> Option<time::Date> {
    time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

impl OwnerConfig {
    /// Marks the findings the owners suppressed, as of `today` (`None`: every suppression
    /// holds). An expired suppression marks nothing, so its issue is reopened.
    pub fn suppress(&self, findings: &mut [Finding], today: Option<time::Date>) {
        for f in findings {
            let fingerprint = f.fingerprint();
            let rule = self.suppressions.iter().find(|r| {
                let matches = r.fingerprint.as_deref() == Some(fingerprint.as_str())
                    || r.policy.as_deref() == Some(f.policy.as_str());
                let current = match (&r.until, today) {
                    (Some(until), Some(today)) => parse_day(until).is_some_and(|u| today <= u),
                    _ => true,
                };
                matches && current
            });
            f.suppressed = rule.map(|r| Suppression {
                reason: r.reason,
                note: r.note.clone(),
                until: r.until.clone(),
            });
        }
    }

    /// Options of policy `id` from the owners, if they gave any.
    pub fn options(&self, id: &str) -> Option<&PolicyOptions> {
        self.policies
            .get(id)
            .map(|p| &p.options)
            .filter(|o| !o.is_empty())
    }

    /// The owners' on/off for policy `id`, if they said.
    pub fn enabled(&self, id: &str) -> Option<bool> {
        if self.disable.iter().any(|d| d == id) {
            return Some(false);
        }
        self.policies.get(id).and_then(|p| p.enabled)
    }
}

pub struct OwnerConfigPolicy;

impl Policy for OwnerConfigPolicy {
    fn id(&self) -> &'static str {
        ID
    }

    fn description(&self) -> &'static str {
        "The repository's `.github/repo-guardian.yml`, when present, is valid."
    }

    fn severity(&self) -> Severity {
        Severity::Low
    }

    fn file_based(&self) -> bool {
        true
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Tree, Input::Contents]
    }

    fn evaluate(&self, snapshot: &Snapshot, _: &PolicyOptions) -> Vec<Finding> {
        let Some(Err(invalid)) = read(snapshot) else {
            return Vec::new();
        };
        vec![located(
            finding(
                self,
                "invalid",
                format!("`{}` is invalid and ignored", invalid.path),
                format!(
                    "Repo Guardian could not use `{}`, so the organisation's settings apply to \
                     this repository instead.\n\n- Parser: {}",
                    invalid.path, invalid.message
                ),
                REMEDIATION.to_owned(),
            ),
            Location {
                path: invalid.path.clone(),
                line: invalid.line,
                column: 1,
            },
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::snapshot;
    use super::*;

    fn config(text: &str) -> Option<Result<OwnerConfig, Invalid>> {
        read(&snapshot().file(".github/repo-guardian.yml", text).build())
    }

    #[test]
    fn a_valid_file_is_read() {
        let c = config(
            "disable: [license]\nlabels: [security]\nassignees: [octocat]\npolicies:\n  \
             pinned-actions:\n    options:\n      allow_ref_pins: ['actions/*']\n\
             suppressions:\n  - policy: codeowners\n    reason: not-applicable\n",
        )
        .expect("present")
        .expect("valid");
        assert_eq!(c.enabled("license"), Some(false));
        assert_eq!(c.enabled("readme"), None);
        assert!(c.options("pinned-actions").is_some());
        assert_eq!(c.labels, ["security"]);
        assert_eq!(c.enabled, None);
        let off = config("enabled: false\n").expect("present").expect("valid");
        assert_eq!(off.enabled, Some(false));
        assert!(config("").expect("present").is_ok());
        assert!(read(&snapshot().build()).is_none());
    }

    #[test]
    fn invalid_files_name_the_problem_and_line() {
        let bad = |text: &str| config(text).expect("present").unwrap_err();
        let e = bad("disable: [licence]\n");
        assert!(e.message.contains("unknown policy `licence`"), "{e:?}");
        assert_eq!(e.line, 1);
        let e = bad("labels: [a]\nsuppressions:\n  - policy: readme\n    reason: because\n");
        assert!(e.message.contains("unknown variant `because`"), "{e:?}");
        assert!(e.line >= 3, "{e:?}");
        let e = bad(
            "policies:\n  branch-protection:\n    options:\n      min_approving_reviews: two\n",
        );
        assert!(e.message.contains("min_approving_reviews"), "{e:?}");
        let e = bad("suppressions:\n  - reason: remediated\n");
        assert!(e.message.contains("exactly one"), "{e:?}");
        let e = bad("suppressions:\n  - policy: readme\n    reason: remediated\n    until: soon\n");
        assert!(e.message.contains("until: soon"), "{e:?}");
        let snap = snapshot()
            .file(".github/repo-guardian.yml", "disable: [\n")
            .build();
        let findings = OwnerConfigPolicy.evaluate(&snap, &PolicyOptions::new());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].fingerprint(), "owner-config/invalid");
        assert!(findings[0].details.contains("Parser: "));
    }

    #[test]
    fn suppressions_hold_until_their_day() {
        let c = config(
            "suppressions:\n  - fingerprint: license/missing\n    reason: accepted-risk\n    \
             note: internal tool\n    until: 2027-01-31\n",
        )
        .expect("present")
        .expect("valid");
        let snap = snapshot().build();
        let mut findings = super::super::evaluate(&snap, &Default::default(), true).findings;
        let day = |d: &str| parse_day(d);
        c.suppress(&mut findings, day("2027-01-31"));
        let license = findings
            .iter()
            .find(|f| f.policy == "license")
            .expect("license");
        let s = license.suppressed.as_ref().expect("suppressed");
        assert_eq!(s.reason, SuppressionReason::AcceptedRisk);
        assert_eq!(s.note.as_deref(), Some("internal tool"));
        assert!(findings.iter().filter(|f| f.suppressed.is_some()).count() == 1);
        c.suppress(&mut findings, day("2027-02-01"));
        assert!(findings.iter().all(|f| f.suppressed.is_none()));
    }
}
