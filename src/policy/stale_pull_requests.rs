//! `stale-pull-requests` (hygiene): open pull requests nobody has touched for `days` days.
//!
//! A forgotten pull request hides work, keeps branches (and their CI permissions) alive
//! and tells contributors nobody is listening. One finding per repository lists every
//! idle pull request with its link and the day of its last activity, so the issue follows
//! the list as it grows and shrinks; the day (not an age in days) keeps the text stable
//! from one day to the next, so an unchanged list costs no write.
//!
//! Off by default: like Allstar and Scorecard, which have no such check, an organisation
//! decides whether idle pull requests are a problem; owners or the fleet switch it on.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{OptionError, Policy, PolicyOptions, finding, parse_options};
use crate::domain::{Finding, Input, PullRequest, Severity, Snapshot};

pub(crate) const ID: &str = "stale-pull-requests";

/// Pull requests listed in the issue at most; the rest are counted.
const MAX_LISTED: usize = 50;

pub(crate) const REMEDIATION: &str = "\
Idle pull requests hide work nobody finishes, keep branches alive that nobody watches, \
and tell contributors that nobody is listening.

1. For each pull request listed: review and merge it, ask its author for what is missing, \
or close it with a comment saying why.
2. Convert work that is deliberately parked into a draft (and set the policy's \
`ignore_drafts` option), or into an issue.
3. Consider the `actions/stale` workflow to label and close idle pull requests \
automatically.

See [About pull requests](https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/proposing-changes-to-your-work-with-pull-requests/about-pull-requests) \
and [Closing inactive issues and pull requests](https://docs.github.com/en/actions/use-cases-and-examples/project-management/closing-inactive-issues).";

/// The policy's options.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Options {
    /// Days without activity after which an open pull request is idle.
    pub(crate) days: u32,
    /// Leave draft pull requests out.
    pub(crate) ignore_drafts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            days: 30,
            ignore_drafts: false,
        }
    }
}

impl Options {
    pub(crate) fn parse(options: &PolicyOptions) -> Result<Options, OptionError> {
        let parsed: Options = parse_options(options)?;
        if !(1..=3650).contains(&parsed.days) {
            return Err(OptionError {
                option: "days".into(),
                problem: format!("must be between 1 and 3650, got {}", parsed.days),
            });
        }
        Ok(parsed)
    }
}

/// The moment before which a pull request read at `read_at` counts as idle.
pub(crate) fn cutoff(read_at: OffsetDateTime, days: u32) -> OffsetDateTime {
    read_at - time::Duration::days(i64::from(days))
}

/// A pull request's title as inert text: anyone who can open a pull request writes it,
/// so it must not become a link, an image, HTML, or a mention that notifies people.
fn inert(title: &str) -> String {
    title
        .chars()
        .filter(|c| !matches!(c, '[' | ']' | '<' | '>' | '`' | '\n' | '\r'))
        .collect::<String>()
        .replace('@', "@\u{200b}")
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

pub struct StalePullRequests;

impl Policy for StalePullRequests {
    fn id(&self) -> &'static str {
        ID
    }

    fn description(&self) -> &'static str {
        "No open pull request has been without activity for longer than `days` (default 30) days."
    }

    fn severity(&self) -> Severity {
        Severity::Low
    }

    fn default_enabled(&self) -> bool {
        false
    }

    fn file_based(&self) -> bool {
        false
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::PullRequests]
    }

    fn validate_options(&self, options: &PolicyOptions) -> Result<(), OptionError> {
        Options::parse(options).map(drop)
    }

    fn undecided(&self, snapshot: &Snapshot, _: &PolicyOptions) -> Option<String> {
        snapshot
            .pulls
            .is_none()
            .then(|| "the open pull requests were not read".to_owned())
    }

    fn evaluate(&self, snapshot: &Snapshot, options: &PolicyOptions) -> Vec<Finding> {
        let Some(pulls) = &snapshot.pulls else {
            return Vec::new();
        };
        let options = Options::parse(options).unwrap_or_default();
        // An empty repository has no pull requests and no time they were read at.
        let Some(read_at) = parse_time(&pulls.read_at) else {
            return Vec::new();
        };
        let cutoff = cutoff(read_at, options.days);
        let mut idle: Vec<&PullRequest> = pulls
            .idle
            .iter()
            .filter(|p| !(options.ignore_drafts && p.draft))
            .filter(|p| parse_time(&p.updated_at).is_some_and(|t| t < cutoff))
            .collect();
        if idle.is_empty() {
            return Vec::new();
        }
        idle.sort_by(|a, b| (&a.updated_at, a.number).cmp(&(&b.updated_at, b.number)));
        let count = idle.len();
        let mut list: Vec<String> = idle
            .iter()
            .take(MAX_LISTED)
            .map(|p| {
                let draft = if p.draft { " (draft)" } else { "" };
                let day = p.updated_at.get(..10).unwrap_or(&p.updated_at);
                format!(
                    "- [#{} {}]({}){draft} — last activity {day}",
                    p.number,
                    inert(&p.title),
                    p.html_url
                )
            })
            .collect();
        if count > MAX_LISTED {
            list.push(format!("- … and {} more", count - MAX_LISTED));
        }
        let plural = if count == 1 {
            "pull request has"
        } else {
            "pull requests have"
        };
        vec![finding(
            self,
            "idle",
            format!(
                "{count} open {plural} had no activity for {} days",
                options.days
            ),
            format!(
                "These open pull requests have had no activity (commits, comments, reviews) \
                 for more than {} days, oldest first:\n\n{}",
                options.days,
                list.join("\n")
            ),
            REMEDIATION.to_owned(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keys_with, options, snapshot};
    use super::*;
    use crate::domain::OpenPulls;
    use serde_json::json;

    fn pull(number: u64, updated_at: &str, draft: bool) -> PullRequest {
        PullRequest {
            number,
            title: format!("Change {number}"),
            html_url: format!("https://github.com/octo/demo/pull/{number}"),
            draft,
            updated_at: updated_at.into(),
        }
    }

    fn with_pulls(pulls: Vec<PullRequest>) -> Snapshot {
        let mut snap = snapshot().github().build();
        snap.pulls = Some(OpenPulls {
            read_at: "2026-12-01T12:00:00Z".into(),
            cutoff: "2026-11-01T12:00:00Z".into(),
            idle: pulls,
        });
        snap
    }

    #[test]
    fn idle_pull_requests_are_one_finding_listing_each_with_its_link() {
        let snap = with_pulls(vec![
            pull(7, "2026-10-31T08:00:00Z", false),
            pull(3, "2026-06-02T08:00:00Z", true),
            pull(9, "2026-11-20T08:00:00Z", false),
        ]);
        let findings = StalePullRequests.evaluate(&snap, &PolicyOptions::new());
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.fingerprint(), "stale-pull-requests/idle");
        assert_eq!(
            f.title,
            "2 open pull requests have had no activity for 30 days"
        );
        let d = &f.details;
        assert!(d.contains("[#3 Change 3](https://github.com/octo/demo/pull/3) (draft) — last activity 2026-06-02"), "{d}");
        assert!(
            d.find("#3 ").unwrap() < d.find("#7 ").unwrap(),
            "oldest first: {d}"
        );
        assert!(!d.contains("#9"), "{d}");
        assert_eq!(
            keys_with(&StalePullRequests, &snap, &PolicyOptions::new()),
            ["idle"]
        );
    }

    #[test]
    fn titles_cannot_link_embed_or_mention() {
        let mut evil = pull(4, "2026-01-02T08:00:00Z", false);
        evil.title = "fix ![x](https://evil.example/p.png) <img src=x> @octo/team `code`".into();
        let snap = with_pulls(vec![evil]);
        let details = &StalePullRequests.evaluate(&snap, &PolicyOptions::new())[0].details;
        assert!(
            !details.contains("![x]") && !details.contains("<img"),
            "{details}"
        );
        assert!(
            details.contains("@\u{200b}octo/team") && !details.contains(" @octo"),
            "{details}"
        );
    }

    #[test]
    fn options_set_the_threshold_and_leave_drafts_out() {
        let snap = with_pulls(vec![
            pull(3, "2026-06-02T08:00:00Z", true),
            pull(9, "2026-11-20T08:00:00Z", false),
        ]);
        let keys = |o| keys_with(&StalePullRequests, &snap, &options(o));
        assert_eq!(keys(json!({"days": 7})), ["idle"]);
        assert!(keys(json!({"ignore_drafts": true})).is_empty());
        assert_eq!(keys(json!({"days": 7, "ignore_drafts": true})), ["idle"]);
        assert!(with_pulls(vec![]).pulls.is_some());
        assert!(
            StalePullRequests
                .evaluate(&with_pulls(vec![]), &PolicyOptions::new())
                .is_empty()
        );
        // Not read (the policy was off when the snapshot was built): nothing to say.
        assert!(
            StalePullRequests
                .evaluate(&snapshot().github().build(), &PolicyOptions::new())
                .is_empty()
        );
    }

    #[test]
    fn the_text_does_not_change_from_one_day_to_the_next() {
        let pulls = vec![pull(3, "2026-06-02T08:00:00Z", false)];
        let today = with_pulls(pulls.clone());
        let mut tomorrow = with_pulls(pulls);
        tomorrow.pulls.as_mut().unwrap().read_at = "2026-12-02T12:00:00Z".into();
        assert_eq!(
            StalePullRequests.evaluate(&today, &PolicyOptions::new()),
            StalePullRequests.evaluate(&tomorrow, &PolicyOptions::new())
        );
    }

    #[test]
    fn bad_options_name_the_option() {
        let err = StalePullRequests
            .validate_options(&options(json!({"days": 0})))
            .unwrap_err();
        assert_eq!(err.option, "days");
        let err = StalePullRequests
            .validate_options(&options(json!({"drafts": false})))
            .unwrap_err();
        assert_eq!(err.option, "drafts");
    }
}
