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

/// Where and how a repository's issues are filed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filing<'a> {
    /// Set when the issues live in a central repository rather than in the repository
    /// itself: the source repository, named in titles and in every marker
    /// (`repo=owner/name`), so two repositories' findings never meet.
    pub central: Option<&'a RepoRef>,
    /// Labels the owners want on every issue (besides the fleet's label).
    pub labels: &'a [String],
    /// Logins the owners want assigned to every issue.
    pub assignees: &'a [String],
}

impl Filing<'_> {
    /// The marker's `repo=` field: the source repository in a central repository.
    fn marker_repo(&self) -> Option<String> {
        self.central.map(|source| source.full_name().to_lowercase())
    }

    /// The finding's fingerprint and hash an issue body's marker names, when the issue
    /// belongs to this filing: in a central repository, its marker names this source
    /// repository (`repo=owner/name`); in the repository itself, it names none.
    pub fn fingerprint_in(&self, body: &str) -> Option<(String, String)> {
        let marker = Marker::parse(body)?;
        (marker.repo == self.marker_repo()).then_some((marker.fingerprint, marker.hash))
    }
}

/// The hidden marker at the end of an issue body.
struct Marker {
    fingerprint: String,
    hash: String,
    /// The source repository, on issues filed in a central repository.
    repo: Option<String>,
}

impl Marker {
    fn parse(body: &str) -> Option<Marker> {
        let start = body.rfind(MARKER_OPEN)? + MARKER_OPEN.len();
        let rest = &body[start..];
        let inner = &rest[..rest.find("-->")?];
        let field = |name: &str| {
            inner
                .split_whitespace()
                .find_map(|part| part.strip_prefix(name))
                .map(str::to_owned)
        };
        Some(Marker {
            fingerprint: field("fingerprint=")?,
            hash: field("hash=").unwrap_or_default(),
            repo: field("repo=").map(|r| r.to_lowercase()),
        })
    }
}

/// An issue as the fleet wants it to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The finding's fingerprint (unscoped, also in a central repository).
    pub fingerprint: String,
    pub title: String,
    pub body: String,
    pub hash: String,
}

pub fn render(repo: &RepoRef, finding: &Finding, filing: &Filing<'_>) -> Rendered {
    let fingerprint = finding.fingerprint();
    let title = match filing.central {
        Some(source) => format!("[repo-guardian] {source}: {}", finding.title),
        None => format!("[repo-guardian] {}", finding.title),
    };
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
    let hash = content_hash(&title, &text, filing);
    let repo_field = filing
        .marker_repo()
        .map(|r| format!(" repo={r}"))
        .unwrap_or_default();
    let body =
        format!("{text}\n\n{MARKER_OPEN}fingerprint={fingerprint} hash={hash}{repo_field} -->\n");
    Rendered {
        fingerprint,
        title,
        body,
        hash,
    }
}

/// Hash of what the issue should be: title, text, and the owners' labels and assignees
/// when they asked for any (left out otherwise, so issues filed before owners could ask
/// keep their hash and cost no write).
fn content_hash(title: &str, text: &str, filing: &Filing<'_>) -> String {
    let mut h = Sha256::new();
    h.update(title.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    if !filing.labels.is_empty() || !filing.assignees.is_empty() {
        for list in [filing.labels, filing.assignees] {
            let mut sorted: Vec<String> = list.iter().map(|s| s.to_lowercase()).collect();
            sorted.sort();
            h.update([1]);
            h.update(sorted.join(",").as_bytes());
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// Fingerprint and content hash from an issue body's marker.
pub fn parse_marker(body: &str) -> Option<(String, String)> {
    Marker::parse(body).map(|m| (m.fingerprint, m.hash))
}

/// The comment on an issue closed because the repository opted out of Repo Guardian.
pub const OPTED_OUT_COMMENT: &str = "This repository is not checked by Repo Guardian any more (its owners opted out in `.github/repo-guardian.yml`, or it is not opted in), so the issue is closed. The problem was not verified as fixed; it is reopened if the repository is checked again and the problem is still there.";

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
    filing: &Filing<'_>,
) -> (Vec<Action>, u32) {
    let by_fingerprint = ours(existing, filing);
    let mut actions = Vec::new();
    let mut unchanged = 0;
    let mut wanted = BTreeSet::new();
    for finding in findings {
        let rendered = render(repo, finding, filing);
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

/// The issues of this filing by fingerprint. One issue per fingerprint: when several
/// carry the same marker (filed by hand or by an older tool), the open one with the
/// lowest number is the one we keep.
fn ours<'i>(existing: &'i [Issue], filing: &Filing<'_>) -> BTreeMap<String, (&'i Issue, String)> {
    let mut by_fingerprint: BTreeMap<String, (&Issue, String)> = BTreeMap::new();
    let mut sorted: Vec<&Issue> = existing.iter().collect();
    sorted.sort_by_key(|i| (!i.open, i.number));
    for issue in sorted {
        if let Some((fp, hash)) = filing.fingerprint_in(&issue.body) {
            by_fingerprint.entry(fp).or_insert((issue, hash));
        }
    }
    by_fingerprint
}

/// The comment on a central repository's issue whose source repository files in itself
/// again (its issues were enabled).
pub const MOVED_COMMENT: &str = "The repository this issue is about has issues enabled again, so Repo Guardian files its findings there and closes this one here. A problem that is still there has its own issue in that repository.";

/// Closes every open issue of ours with `comment` — never as fixed: for a repository that
/// is not checked (opted out, or not opted in; [`OPTED_OUT_COMMENT`]), and for a central
/// repository's issues of a source that files in itself again ([`MOVED_COMMENT`]).
pub fn close_all(existing: &[Issue], filing: &Filing<'_>, comment: &str) -> Vec<Action> {
    ours(existing, filing)
        .into_iter()
        .filter(|(_, (issue, _))| issue.open)
        .map(|(fingerprint, (issue, _))| Action::Close {
            number: issue.number,
            fingerprint,
            state_reason: "not_planned",
            comment: comment.to_owned(),
        })
        .collect()
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
        let r = render(&repo(), f, &Filing::default());
        Issue {
            number,
            title: r.title,
            body: r.body,
            open,
            labels: vec![],
            assignees: vec![],
            comments: 0,
        }
    }

    /// [`super::plan`] for issues filed in the repository itself, without owners' extras.
    fn plan(
        repo: &RepoRef,
        findings: &[Finding],
        evaluated: &BTreeSet<String>,
        existing: &[Issue],
    ) -> (Vec<Action>, u32) {
        super::plan(repo, findings, evaluated, existing, &Filing::default())
    }

    fn evaluated(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn marker_round_trips() {
        let mut colon = finding("pinned-actions", "x");
        colon.key = "unpinned:.github/workflows/ci.yml:actions/checkout".into();
        let r = render(&repo(), &colon, &Filing::default());
        assert_eq!(
            Filing::default().fingerprint_in(&r.body),
            Some((r.fingerprint.clone(), r.hash.clone()))
        );
        let r = render(&repo(), &finding("license", "x"), &Filing::default());
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

    #[test]
    fn a_central_repository_keeps_each_source_repositorys_issues_apart() {
        let app = repo();
        let web = RepoRef {
            owner: "o".into(),
            name: "web".into(),
        };
        let f = finding("license", "x");
        let central = |source| Filing {
            central: Some(source),
            ..Default::default()
        };
        let rendered = render(&app, &f, &central(&app));
        assert_eq!(rendered.title, "[repo-guardian] o/r: license missing");
        assert!(
            rendered.body.contains("fingerprint=license/missing hash=")
                && rendered.body.contains(" repo=o/r -->"),
            "{}",
            rendered.body
        );
        assert_eq!(
            central(&app).fingerprint_in(&rendered.body),
            Some((rendered.fingerprint.clone(), rendered.hash.clone()))
        );
        // The other repository's reconcile neither sees it nor closes it.
        assert_eq!(central(&web).fingerprint_in(&rendered.body), None);
        assert_eq!(Filing::default().fingerprint_in(&rendered.body), None);
        let filed = Issue {
            number: 12,
            title: rendered.title.clone(),
            body: rendered.body.clone(),
            open: true,
            labels: vec![],
            assignees: vec![],
            comments: 0,
        };
        let (actions, unchanged) = super::plan(
            &web,
            &[],
            &evaluated(&["license"]),
            std::slice::from_ref(&filed),
            &central(&web),
        );
        assert!(actions.is_empty() && unchanged == 0, "{actions:?}");
        let (actions, unchanged) = super::plan(
            &app,
            std::slice::from_ref(&f),
            &evaluated(&["license"]),
            std::slice::from_ref(&filed),
            &central(&app),
        );
        assert!(actions.is_empty() && unchanged == 1, "{actions:?}");
        // Fixed in o/r: only its issue closes.
        let (actions, _) = super::plan(
            &app,
            &[],
            &evaluated(&["license"]),
            &[filed],
            &central(&app),
        );
        assert!(
            matches!(actions.as_slice(), [Action::Close { number: 12, .. }]),
            "{actions:?}"
        );
    }

    #[test]
    fn owners_labels_and_assignees_change_the_hash_only_when_asked_for() {
        let f = finding("license", "x");
        let plain = render(&repo(), &f, &Filing::default());
        let labels = vec!["security".to_owned()];
        let assignees = vec!["octocat".to_owned()];
        let asked = Filing {
            labels: &labels,
            assignees: &assignees,
            ..Default::default()
        };
        let with = render(&repo(), &f, &asked);
        assert_ne!(plain.hash, with.hash);
        // Asking for them on an existing issue is an update; asking again is not.
        let (actions, _) = super::plan(
            &repo(),
            std::slice::from_ref(&f),
            &evaluated(&["license"]),
            &[issue(3, &f, true)],
            &asked,
        );
        assert!(
            matches!(actions.as_slice(), [Action::Update { number: 3, .. }]),
            "{actions:?}"
        );
        let updated = Issue {
            number: 3,
            title: with.title.clone(),
            body: with.body.clone(),
            open: true,
            labels: vec![],
            assignees: vec![],
            comments: 0,
        };
        let (actions, unchanged) =
            super::plan(&repo(), &[f], &evaluated(&["license"]), &[updated], &asked);
        assert!(actions.is_empty() && unchanged == 1, "{actions:?}");
    }

    #[test]
    fn an_opted_out_repository_closes_its_open_issues_not_as_fixed() {
        let open = issue(1, &finding("license", "x"), true);
        let closed = issue(2, &finding("readme", "x"), false);
        let actions = close_all(&[open, closed], &Filing::default(), OPTED_OUT_COMMENT);
        let [
            Action::Close {
                number: 1,
                state_reason,
                comment,
                ..
            },
        ] = actions.as_slice()
        else {
            panic!("one close: {actions:?}");
        };
        assert_eq!(*state_reason, "not_planned");
        assert!(comment.contains("opted out") && comment.contains("not verified as fixed"));
    }
}
