//! Looking for a required file — a license, a README, a security policy, a CODEOWNERS
//! file — in a snapshot, and the `missing` finding when there is none.
//!
//! The file-based policies differ only in *which* names they accept and *where*; this module
//! holds the one matching rule, the one way of reporting evidence and — through
//! [`RequiredFile`] — the one [`Policy`] implementation they share, so that every such
//! policy behaves and explains itself the same way. It knows nothing about any particular
//! policy.

use super::{Policy, PolicyOptions, finding};
use crate::domain::{Finding, Severity, Snapshot};

/// A policy that asks for one file: it states its constants, [`Policy`] follows.
pub(crate) trait RequiredFile {
    const ID: &'static str;
    const DESCRIPTION: &'static str;
    const SEVERITY: Severity;
    const WANTED: WantedFile;
    const REMEDIATION: &'static str;

    /// Other ways the policy can be satisfied than [`RequiredFile::WANTED`]: `Ok(())` when
    /// one holds, otherwise the evidence bullets saying what else was checked.
    fn alternatives(_snapshot: &Snapshot) -> Result<(), Vec<String>> {
        Err(Vec::new())
    }
}

impl<T: RequiredFile + Send + Sync> Policy for T {
    fn id(&self) -> &'static str {
        T::ID
    }

    fn description(&self) -> &'static str {
        T::DESCRIPTION
    }

    fn severity(&self) -> Severity {
        T::SEVERITY
    }

    fn file_based(&self) -> bool {
        true
    }

    fn evaluate(&self, snapshot: &Snapshot, _: &PolicyOptions) -> Vec<Finding> {
        match T::alternatives(snapshot) {
            Ok(()) => Vec::new(),
            Err(also_checked) => require(self, snapshot, &T::WANTED, T::REMEDIATION, &also_checked),
        }
    }
}

/// Where the repository root is listed in [`WantedFile::dirs`].
pub(crate) const ROOT: &str = "";

/// The places GitHub looks for community health files, in GitHub's order of precedence.
pub(crate) const COMMUNITY_DIRS: &[&str] = &[ROOT, ".github", "docs"];

/// What may follow the stem of an accepted file name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tail {
    /// Nothing, or one of these extensions (lower-case, without the dot).
    Extensions(&'static [&'static str]),
    /// Nothing, or any extension (`README.adoc`).
    AnyExtension,
    /// Nothing, or anything after `.`, `-` or `_` (`LICENSE-MIT`, `COPYING.LESSER`), the way
    /// projects with several licenses name their files.
    AnySuffix,
}

/// A file a policy requires: accepted names and the directories searched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WantedFile {
    /// What the file is, in prose ("license file"); the finding's title is "No {what}".
    pub what: &'static str,
    /// Directories searched, relative to the root ([`ROOT`] for the root itself).
    pub dirs: &'static [&'static str],
    /// Accepted names before the [`Tail`], written as documented (`LICENSE`).
    pub stems: &'static [&'static str],
    pub tail: Tail,
    /// GitHub finds most of these files in any letter case, but not all (`CODEOWNERS`).
    pub ignore_case: bool,
}

impl WantedFile {
    /// The first accepted file, in the order of [`WantedFile::dirs`].
    pub(crate) fn find<'a>(&self, snapshot: &'a Snapshot) -> Option<&'a str> {
        snapshot
            .files
            .iter()
            .filter_map(|path| {
                let (dir, name) = path.rsplit_once('/').unwrap_or((ROOT, path));
                let rank = self.dirs.iter().position(|d| *d == dir)?;
                self.accepts_name(name).then_some((rank, path.as_str()))
            })
            .min()
            .map(|(_, path)| path)
    }

    fn accepts_name(&self, name: &str) -> bool {
        let fold = |s: &str| {
            if self.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        let name = fold(name);
        self.stems.iter().any(|stem| {
            let Some(rest) = name.strip_prefix(&fold(stem)) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            match self.tail {
                Tail::Extensions(exts) => rest
                    .strip_prefix('.')
                    .is_some_and(|ext| exts.iter().any(|e| fold(e) == ext)),
                Tail::AnyExtension => rest.len() > 1 && rest.starts_with('.'),
                Tail::AnySuffix => rest.len() > 1 && rest.starts_with(['.', '-', '_']),
            }
        })
    }

    /// Markdown bullets saying which names were accepted and where they were looked for.
    fn evidence(&self) -> String {
        let names = join_or(self.stems.iter().map(|s| format!("`{s}`")).collect());
        let case = if self.ignore_case {
            "in any letter case"
        } else {
            "spelled exactly so"
        };
        let tail = match self.tail {
            Tail::Extensions([]) => "with no extension".to_owned(),
            Tail::Extensions(exts) => format!(
                "with no extension or with {}",
                join_or(exts.iter().map(|e| format!("`.{e}`")).collect())
            ),
            Tail::AnyExtension => "with or without an extension".to_owned(),
            Tail::AnySuffix => {
                "alone or followed by an extension or suffix (`.md`, `-MIT`)".to_owned()
            }
        };
        let places: Vec<String> = self
            .dirs
            .iter()
            .map(|d| match *d {
                ROOT => "the repository root".to_owned(),
                dir => format!("`{dir}/`"),
            })
            .collect();
        format!(
            "- Looked for: {names}, {case}, {tail}.\n- Looked in: {}.",
            places.join(", ")
        )
    }
}

/// Joins items as prose: `a`, `a or b`, `a, b or c`.
fn join_or(mut items: Vec<String>) -> String {
    match items.pop() {
        None => String::new(),
        Some(last) if items.is_empty() => last,
        Some(last) => format!("{} or {last}", items.join(", ")),
    }
}

/// The `missing` finding of `policy` when `wanted` is absent from `snapshot`, nothing when
/// it is present. `also_checked` adds evidence bullets for other ways the policy could
/// have been satisfied (markdown, without the leading `- `).
fn require(
    policy: &dyn Policy,
    snapshot: &Snapshot,
    wanted: &WantedFile,
    remediation: &str,
    also_checked: &[String],
) -> Vec<Finding> {
    if wanted.find(snapshot).is_some() {
        return Vec::new();
    }
    // No commit id in the text: details feed the content hash, and naming the head
    // would rewrite every open issue on every push.
    let place = match snapshot.default_branch.as_str() {
        "" => "in the checkout".to_owned(),
        branch => format!("on the default branch `{branch}`"),
    };
    let mut details = format!(
        "No {} was found {place}.\n\n{}",
        wanted.what,
        wanted.evidence()
    );
    for line in also_checked {
        details.push_str("\n- ");
        details.push_str(line);
    }
    vec![finding(
        policy,
        "missing",
        format!("No {}", wanted.what),
        details,
        remediation.to_owned(),
    )]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::snapshot;
    use super::*;

    const NOTES: WantedFile = WantedFile {
        what: "notes file",
        dirs: &[ROOT, "docs"],
        stems: &["NOTES", "MEMO"],
        tail: Tail::Extensions(&["md", "txt"]),
        ignore_case: true,
    };

    fn found(wanted: &WantedFile, files: &[&str]) -> Option<String> {
        wanted
            .find(&snapshot().files(files).build())
            .map(str::to_owned)
    }

    #[test]
    fn accepts_listed_names_in_listed_dirs_only() {
        assert_eq!(found(&NOTES, &["notes.MD"]).as_deref(), Some("notes.MD"));
        assert_eq!(found(&NOTES, &["docs/Memo"]).as_deref(), Some("docs/Memo"));
        assert_eq!(found(&NOTES, &["notes.rst"]), None);
        assert_eq!(found(&NOTES, &["notes.md.bak"]), None);
        assert_eq!(found(&NOTES, &["notesx"]), None);
        assert_eq!(found(&NOTES, &["src/notes.md", "docs/sub/NOTES"]), None);
    }

    #[test]
    fn prefers_directories_in_the_order_given() {
        let files = ["docs/NOTES.md", "notes.txt"];
        assert_eq!(found(&NOTES, &files).as_deref(), Some("notes.txt"));
    }

    #[test]
    fn tails_and_case_follow_the_rule() {
        let exact = WantedFile {
            ignore_case: false,
            tail: Tail::AnySuffix,
            ..NOTES
        };
        assert_eq!(found(&exact, &["notes"]), None);
        assert!(found(&exact, &["NOTES-2024"]).is_some());
        assert_eq!(found(&exact, &["NOTES-"]), None);
        let any_ext = WantedFile {
            tail: Tail::AnyExtension,
            ..NOTES
        };
        assert!(found(&any_ext, &["notes.adoc"]).is_some());
        assert_eq!(found(&any_ext, &["notes-old"]), None);
    }

    #[test]
    fn evidence_names_what_and_where() {
        let text = NOTES.evidence();
        assert!(text.contains("`NOTES` or `MEMO`, in any letter case"));
        assert!(text.contains("`.md` or `.txt`"));
        assert!(text.contains("the repository root, `docs/`"));
    }

    #[test]
    fn missing_finding_does_not_change_with_the_head_commit() {
        struct Notes;
        impl RequiredFile for Notes {
            const ID: &'static str = "notes";
            const DESCRIPTION: &'static str = "Has notes.";
            const SEVERITY: Severity = Severity::Low;
            const WANTED: WantedFile = NOTES;
            const REMEDIATION: &'static str = "Write notes.";
        }
        let mut before = snapshot().build();
        before.head_sha = Some("1111".into());
        let mut after = before.clone();
        after.head_sha = Some("2222".into());
        let options = PolicyOptions::new();
        let finding = Notes.evaluate(&before, &options);
        assert_eq!(finding, Notes.evaluate(&after, &options));
        assert_eq!(finding[0].fingerprint(), "notes/missing");
        assert_eq!(finding[0].title, "No notes file");
        assert!(
            Notes
                .evaluate(&snapshot().files(&["NOTES"]).build(), &options)
                .is_empty()
        );
    }

    #[test]
    fn join_or_reads_as_prose() {
        let words = |w: &[&str]| join_or(w.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(words(&[]), "");
        assert_eq!(words(&["a"]), "a");
        assert_eq!(words(&["a", "b", "c"]), "a, b or c");
    }
}
