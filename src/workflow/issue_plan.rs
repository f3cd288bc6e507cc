//! Pure issue planning: findings + the issues that exist → the actions that make GitHub
//! match. No I/O here, so the whole decision table is unit-tested, and `--dry-run` plans
//! exactly what a real run would do.
//!
//! Each issue body ends with a hidden marker
//! `<!-- repo-guardian:fingerprint=license/missing hash=… -->`. The fingerprint finds the
//! issue again (even if the finding → issue map was lost); the hash of the rendered title
//! and body tells whether an update is needed, so an unchanged finding costs no write.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use crate::domain::{Finding, RepoRef, Suppression};
use crate::github::issues::Issue;

const MARKER_OPEN: &str = "<!-- repo-guardian:";

/// An issue as the fleet wants it to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub fingerprint: String,
    pub title: String,
    pub body: String,
    pub hash: String,
}

pub fn render(repo: &RepoRef, finding: &Finding) -> Rendered {
    let fingerprint = finding.fingerprint();
    let title = format!("[repo-guardian] {}", finding.title);
    let text = format!(
        "**Policy:** `{policy}` · **Severity:** {severity} · **Repository:** `{repo}`\n\n\
         {details}\n\n### How to fix\n\n{remediation}\n\n---\n\
         _This issue is kept up to date by Repo Guardian: it is updated when the finding \
         changes and closed when the finding is fixed._",
        policy = finding.policy,
        severity = format!("{:?}", finding.severity).to_lowercase(),
        details = finding.details.trim(),
        remediation = finding.remediation.trim(),
    );
    let hash = content_hash(&title, &text);
    let body = format!("{text}\n\n{MARKER_OPEN}fingerprint={fingerprint} hash={hash} -->\n");
    Rendered {
        fingerprint,
        title,
        body,
        hash,
    }
}

fn content_hash(title: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(title.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Fingerprint and content hash from an issue body's marker.
pub fn parse_marker(body: &str) -> Option<(String, String)> {
    let start = body.rfind(MARKER_OPEN)? + MARKER_OPEN.len();
    let rest = &body[start..];
    let inner = &rest[..rest.find("-->")?];
    let mut fingerprint = None;
    let mut hash = None;
    for part in inner.split_whitespace() {
        if let Some(f) = part.strip_prefix("fingerprint=") {
            fingerprint = Some(f.to_string());
        } else if let Some(h) = part.strip_prefix("hash=") {
            hash = Some(h.to_string());
        }
    }
    Some((fingerprint?, hash.unwrap_or_default()))
}

/// The comment on an issue closed because its finding is gone.
pub const FIXED_COMMENT: &str = "Repo Guardian no longer finds this problem on the default branch, so the issue is closed. It is reopened if the problem comes back.";

/// The comment on an issue closed because the owners suppressed its finding, quoting them.
fn suppressed_comment(s: &Suppression) -> String {
    let mut text = format!(
        "The repository's owners suppressed this finding in `.github/repo-guardian.yml`:\n\n> reason: **{}**",
        s.reason
    );
    if let Some(note) = &s.note {
        text.push_str(&format!("\n> note: {note}"));
    }
    match &s.until {
        Some(until) => text.push_str(&format!(
            "\n\nThe suppression holds until {until}; the issue is reopened after that day if the problem is still there."
        )),
        None => text.push_str("\n\nRemove the suppression to have the issue reopened."),
    }
    text
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create(Rendered),
    /// Content changed on an open issue.
    Update {
        number: u64,
        issue: Rendered,
    },
    /// The finding is back: reopen (and refresh the content when it changed).
    Reopen {
        number: u64,
        issue: Rendered,
        changed: bool,
    },
    /// The finding is gone (or suppressed by the owners): close, then comment.
    Close {
        number: u64,
        fingerprint: String,
        /// GitHub's `state_reason`: `completed` when fixed, `not_planned` when suppressed.
        state_reason: &'static str,
        /// The closing comment; a suppression's quotes the owners' reason.
        comment: String,
    },
}

impl Action {
    pub fn fingerprint(&self) -> &str {
        match self {
            Action::Create(i)
            | Action::Update { issue: i, .. }
            | Action::Reopen { issue: i, .. } => &i.fingerprint,
            Action::Close { fingerprint, .. } => fingerprint,
        }
    }
}

/// The plan for one repository. `existing` are the issues found by label and by the stored
/// map; `evaluated` the policies that ran (issues of other policies are left alone).
/// Returns the actions and how many findings already match their issue.
pub fn plan(
    repo: &RepoRef,
    findings: &[Finding],
    evaluated: &BTreeSet<String>,
    existing: &[Issue],
) -> (Vec<Action>, u32) {
    // One issue per fingerprint: when several carry the same marker (filed by hand or by
    // an older tool), the open one with the lowest number is the one we keep.
    let mut by_fingerprint: BTreeMap<String, (&Issue, String)> = BTreeMap::new();
    let mut sorted: Vec<&Issue> = existing.iter().collect();
    sorted.sort_by_key(|i| (!i.open, i.number));
    for issue in sorted {
        if let Some((fp, hash)) = parse_marker(&issue.body) {
            by_fingerprint.entry(fp).or_insert((issue, hash));
        }
    }
    let mut actions = Vec::new();
    let mut unchanged = 0;
    let mut wanted = BTreeSet::new();
    for finding in findings {
        let rendered = render(repo, finding);
        wanted.insert(rendered.fingerprint.clone());
        if let Some(suppression) = &finding.suppressed {
            // Accepted by the owners: an open issue is closed with their reason; a closed
            // one stays closed. When the suppression expires the finding is plain again
            // and its issue is reopened below on the next run.
            match by_fingerprint.get(&rendered.fingerprint) {
                Some((issue, _)) if issue.open => actions.push(Action::Close {
                    number: issue.number,
                    fingerprint: rendered.fingerprint,
                    state_reason: "not_planned",
                    comment: suppressed_comment(suppression),
                }),
                _ => unchanged += 1,
            }
            continue;
        }
        match by_fingerprint.get(&rendered.fingerprint) {
            None => actions.push(Action::Create(rendered)),
            Some((issue, hash)) if !issue.open => actions.push(Action::Reopen {
                number: issue.number,
                changed: *hash != rendered.hash,
                issue: rendered,
            }),
            Some((issue, hash)) if *hash != rendered.hash => actions.push(Action::Update {
                number: issue.number,
                issue: rendered,
            }),
            Some(_) => unchanged += 1,
        }
    }
    for (fp, (issue, _)) in &by_fingerprint {
        let policy = fp.split('/').next().unwrap_or_default();
        if issue.open && !wanted.contains(fp) && evaluated.contains(policy) {
            actions.push(Action::Close {
                number: issue.number,
                fingerprint: fp.clone(),
                state_reason: "completed",
                comment: FIXED_COMMENT.to_owned(),
            });
        }
    }
    (actions, unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Severity;

    fn repo() -> RepoRef {
        RepoRef {
            owner: "o".into(),
            name: "r".into(),
        }
    }

    fn finding(policy: &str, details: &str) -> Finding {
        Finding {
            policy: policy.into(),
            key: "missing".into(),
            severity: Severity::Medium,
            title: format!("{policy} missing"),
            details: details.into(),
            remediation: "Add it.".into(),
            location: None,
            suppressed: None,
        }
    }

    fn issue(number: u64, f: &Finding, open: bool) -> Issue {
        let r = render(&repo(), f);
        Issue {
            number,
            title: r.title,
            body: r.body,
            open,
        }
    }

    fn evaluated(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn marker_round_trips() {
        let r = render(&repo(), &finding("license", "x"));
        assert_eq!(
            parse_marker(&r.body),
            Some((r.fingerprint.clone(), r.hash.clone()))
        );
        assert_eq!(parse_marker("no marker here"), None);
    }

    #[test]
    fn creates_new_findings_and_leaves_unchanged_ones_alone() {
        let f = finding("license", "x");
        let (actions, unchanged) = plan(
            &repo(),
            std::slice::from_ref(&f),
            &evaluated(&["license"]),
            &[],
        );
        assert!(matches!(&actions[..], [Action::Create(r)] if r.fingerprint == "license/missing"));
        assert_eq!(unchanged, 0);
        let (actions, unchanged) = plan(
            &repo(),
            std::slice::from_ref(&f),
            &evaluated(&["license"]),
            &[issue(1, &f, true)],
        );
        assert!(actions.is_empty());
        assert_eq!(unchanged, 1);
    }

    #[test]
    fn updates_only_when_the_content_changed() {
        let old = finding("license", "old details");
        let new = finding("license", "new details");
        let (actions, _) = plan(
            &repo(),
            &[new],
            &evaluated(&["license"]),
            &[issue(3, &old, true)],
        );
        assert!(matches!(&actions[..], [Action::Update { number: 3, .. }]));
    }

    #[test]
    fn reopens_on_regression_and_closes_when_fixed() {
        let f = finding("license", "x");
        let (actions, _) = plan(
            &repo(),
            std::slice::from_ref(&f),
            &evaluated(&["license"]),
            &[issue(4, &f, false)],
        );
        assert!(matches!(
            &actions[..],
            [Action::Reopen {
                number: 4,
                changed: false,
                ..
            }]
        ));
        let (actions, _) = plan(
            &repo(),
            &[],
            &evaluated(&["license"]),
            &[issue(4, &f, true)],
        );
        assert!(matches!(&actions[..], [Action::Close { number: 4, .. }]));
    }

    #[test]
    fn never_closes_issues_of_policies_that_did_not_run() {
        let f = finding("branch-protection", "x");
        let (actions, _) = plan(
            &repo(),
            &[],
            &evaluated(&["license"]),
            &[issue(5, &f, true)],
        );
        assert!(actions.is_empty());
    }

    #[test]
    fn keeps_one_issue_when_duplicates_exist() {
        let f = finding("license", "x");
        let existing = [issue(9, &f, true), issue(2, &f, false), issue(7, &f, true)];
        let (actions, unchanged) = plan(&repo(), &[f], &evaluated(&["license"]), &existing);
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(unchanged, 1);
    }

    #[test]
    fn a_suppressed_finding_closes_its_issue_quoting_the_reason_and_expiry_reopens() {
        use crate::domain::{Suppression, SuppressionReason};
        let plain = finding("license", "No license.");
        let mut suppressed = plain.clone();
        suppressed.suppressed = Some(Suppression {
            reason: SuppressionReason::AcceptedRisk,
            note: Some("internal tool".into()),
            until: Some("2027-01-31".into()),
        });
        let open = issue(7, &plain, true);
        let (actions, _) = plan(
            &repo(),
            &[suppressed.clone()],
            &evaluated(&["license"]),
            &[open],
        );
        let [
            Action::Close {
                number: 7,
                state_reason,
                comment,
                ..
            },
        ] = actions.as_slice()
        else {
            panic!("expected one close: {actions:?}");
        };
        assert_eq!(*state_reason, "not_planned");
        assert!(comment.contains("reason: **accepted-risk**") && comment.contains("internal tool"));
        assert!(comment.contains("until 2027-01-31"));
        // Still suppressed next run: the closed issue stays closed, no comment noise.
        let closed = issue(7, &plain, false);
        let (actions, unchanged) = plan(
            &repo(),
            &[suppressed],
            &evaluated(&["license"]),
            std::slice::from_ref(&closed),
        );
        assert!(actions.is_empty() && unchanged == 1, "{actions:?}");
        // Expired: the finding is plain again and its issue reopens.
        let (actions, _) = plan(&repo(), &[plain], &evaluated(&["license"]), &[closed]);
        assert!(
            matches!(actions.as_slice(), [Action::Reopen { number: 7, .. }]),
            "{actions:?}"
        );
    }
}
