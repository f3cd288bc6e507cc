//! `guardian check PATH`: the file-based policies on a local checkout, offline.
//!
//! This module turns a directory into a [`Snapshot`] (no NATS, no GitHub), evaluates it
//! through the very same [`policy::evaluate`] the workers use, and renders the result as a
//! table for people, JSON for scripts, or SARIF 2.1.0 for code-scanning tools. Argument
//! parsing and printing stay in `main.rs`; everything here returns values so tests can
//! drive it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::json;

use crate::domain::{Finding, Input, RepoRef, Severity, Snapshot};
use crate::policy::{self, Selection};

/// Lines of the table fit a terminal this wide.
const TABLE_WIDTH: usize = 100;

/// `text` broken at spaces into lines of at most `width` characters (a longer word keeps
/// its line), continuation lines starting with `indent`; ends with a newline.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > indent.len() && len + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && !line.ends_with(' ') {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Output format of `guardian check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Aligned columns and numbered fix steps, for people.
    Table,
    /// `{"path": …, "findings": [...]}`, for scripts.
    Json,
    /// A SARIF 2.1.0 log, for code-scanning tools.
    Sarif,
}

/// Why a checkout could not be checked; every message names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The caller gave a path that exists but is not a directory.
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A file or directory could not be read (missing, permissions, …).
    #[error("cannot read `{}`", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The selection carries options a policy rejects.
    #[error("invalid options for policy `{policy}`: {message}")]
    Options { policy: String, message: String },
}

impl CheckError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The outcome of checking one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The directory as the caller named it, so output echoes what they typed.
    pub path: PathBuf,
    /// Findings sorted by fingerprint.
    pub findings: Vec<Finding>,
    /// Policies that could not be evaluated, with the reason.
    pub unknown: BTreeMap<String, String>,
    /// What was odd but did not stop the check (an unreadable directory, a broken `.git`).
    pub warnings: Vec<String>,
}

/// A local checkout as the policies see it, and what was odd about reading it.
#[derive(Debug, Clone)]
pub struct LocalSnapshot {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
}

/// Builds a snapshot of the checkout at `path` from what GitHub would see: inside a git
/// work tree, the files git tracks (`git ls-files`, so the index and `.gitignore` decide,
/// and a gitignored `LICENSE` on disk is no license); elsewhere, the files on disk minus
/// what `.gitignore` files exclude. The branch comes from git and is never invented.
pub fn snapshot_from_dir(path: &Path) -> Result<LocalSnapshot, CheckError> {
    let meta = fs::metadata(path).map_err(CheckError::io(path))?;
    if !meta.is_dir() {
        return Err(CheckError::NotADirectory(path.to_path_buf()));
    }
    let mut warnings = Vec::new();
    let (files, git) = match git_files(path) {
        Ok(Some(files)) => (files, true),
        Ok(None) => (walk(path, &mut warnings), false),
        Err(problem) => {
            warnings.push(format!(
                "`{}` looks like a git checkout but git cannot read it ({problem}); checked \
                 the files on disk instead",
                path.display()
            ));
            (walk(path, &mut warnings), false)
        }
    };
    // `.` has no name of its own; the canonical path does.
    let absolute = path.canonicalize().map_err(CheckError::io(path))?;
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned());
    let branch = if git {
        git_output(path, &["symbolic-ref", "-q", "--short", "HEAD"])
    } else {
        None
    };
    let mut snapshot = Snapshot::new(
        RepoRef {
            owner: "local".to_owned(),
            name,
        },
        branch.unwrap_or_default(),
    );
    if git {
        snapshot.head_sha = git_output(path, &["rev-parse", "-q", "--verify", "HEAD"]);
    }
    let (contents, unavailable) = read_contents(path, &files);
    snapshot.magic = magic(path, &files);
    snapshot.files = files;
    snapshot.contents = contents;
    snapshot.unavailable = unavailable;
    Ok(LocalSnapshot { snapshot, warnings })
}

/// Trimmed standard output of a successful git command in `dir`.
fn git_output(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The files git tracks below `dir`, relative to it; `Ok(None)` when `dir` is not in a git
/// work tree (or git is not installed), `Err` when it seems to be but git fails.
fn git_files(dir: &Path) -> Result<Option<BTreeSet<String>>, String> {
    let inside = match Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
    {
        Ok(out) => out,
        Err(_) => return Ok(None),
    };
    if !inside.status.success() {
        // A `.git` here that git rejects is odd; no `.git` at all is just not a checkout.
        if dir.join(".git").exists() {
            let stderr = String::from_utf8_lossy(&inside.stderr);
            return Err(stderr.lines().next().unwrap_or("unknown error").to_owned());
        }
        return Ok(None);
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "-z", "--cached", "--", "."])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(Some(
        out.stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    ))
}

/// Every file below `root` that `.gitignore` files do not exclude (hidden files included,
/// `.git` itself excluded); unreadable entries become warnings.
fn walk(root: &Path, warnings: &mut Vec<String>) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        match entry {
            Ok(entry) => {
                if entry.file_type().is_some_and(|t| !t.is_dir())
                    && let Ok(relative) = entry.path().strip_prefix(root)
                {
                    let parts: Vec<String> = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    files.insert(parts.join("/"));
                }
            }
            Err(e) => warnings.push(format!("skipped: {e}")),
        }
    }
    files
}

/// The text of the files the policies read; a file that cannot be read as text makes the
/// contents unavailable (the policies that need them are then not evaluated) rather than
/// absent.
fn read_contents(
    root: &Path,
    files: &BTreeSet<String>,
) -> (BTreeMap<String, String>, BTreeMap<Input, String>) {
    let mut contents = BTreeMap::new();
    let mut unavailable = BTreeMap::new();
    for path in files.iter().filter(|p| policy::reads_contents(p)) {
        match fs::read_to_string(root.join(path)) {
            Ok(text) => {
                contents.insert(path.clone(), text);
            }
            Err(e) => {
                unavailable.insert(Input::Contents, format!("cannot read `{path}`: {e}"));
            }
        }
    }
    (contents, unavailable)
}

/// Executables among the files without an extension, by their first bytes (cheap on a
/// local disk; the fleet does not fetch blobs for this).
fn magic(root: &Path, files: &BTreeSet<String>) -> BTreeMap<String, String> {
    use std::io::Read as _;
    files
        .iter()
        .filter(|p| !p.rsplit('/').next().unwrap_or(p).contains('.'))
        .filter_map(|p| {
            let mut head = [0u8; 4];
            let n = fs::File::open(root.join(p))
                .and_then(|mut f| f.read(&mut head))
                .ok()?;
            policy::executable_kind(&head[..n]).map(|kind| (p.clone(), kind.to_owned()))
        })
        .collect()
}

/// Checks the checkout at `path` with the file-based policies of `selection`.
pub fn run(path: &Path, selection: &Selection) -> Result<CheckReport, CheckError> {
    for p in policy::all().iter().filter(|p| p.file_based()) {
        if let Some(options) = selection.options.get(p.id()) {
            p.validate_options(options)
                .map_err(|e| CheckError::Options {
                    policy: p.id().to_owned(),
                    message: e.to_string(),
                })?;
        }
    }
    let local = snapshot_from_dir(path)?;
    let mut selection = selection.clone();
    selection
        .today
        .get_or_insert_with(|| time::OffsetDateTime::now_utc().date());
    let mut evaluation = policy::evaluate(&local.snapshot, &selection, true);
    // Suppressed findings are accepted by the owners: not reported as findings here.
    evaluation.findings.retain(|f| f.suppressed.is_none());
    Ok(CheckReport {
        path: path.to_path_buf(),
        findings: evaluation.findings,
        unknown: evaluation.unknown,
        warnings: local.warnings,
    })
}

impl CheckReport {
    /// The report in `format`, ending with a newline.
    pub fn render(&self, format: CheckFormat) -> String {
        match format {
            CheckFormat::Table => self.table(),
            CheckFormat::Json => self.json(),
            CheckFormat::Sarif => pretty(&self.sarif()),
        }
    }

    /// Process exit code: 1 with findings; otherwise 2 when a policy could not be
    /// evaluated (the checkout could not be fully checked); 0 when clean. Errors that stop
    /// the check altogether are the caller's 2 as well.
    pub fn exit_code(&self) -> i32 {
        if !self.findings.is_empty() {
            1
        } else if !self.unknown.is_empty() {
            2
        } else {
            0
        }
    }

    /// Warnings and policies that could not be evaluated, one line each, for stderr.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .collect();
        notes.extend(
            self.unknown
                .iter()
                .map(|(id, why)| format!("warning: policy `{id}` not evaluated: {why}")),
        );
        notes
    }

    fn table(&self) -> String {
        let path = self.path.display();
        if self.findings.is_empty() {
            return format!("No findings in {path}.\n");
        }
        let header = ("SEVERITY", "POLICY", "WHERE", "TITLE");
        let places: Vec<String> = self.findings.iter().map(place).collect();
        let rows: Vec<(&str, &str, &str, &str)> = self
            .findings
            .iter()
            .zip(&places)
            .map(|(f, at)| {
                (
                    severity_name(f.severity),
                    f.policy.as_str(),
                    at.as_str(),
                    f.title.as_str(),
                )
            })
            .collect();
        let width = |pick: fn(&(&str, &str, &str, &str)) -> usize| {
            rows.iter()
                .map(pick)
                .chain([pick(&header)])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (
            width(|r| r.0.len()),
            width(|r| r.1.len()),
            width(|r| r.2.len()),
        );
        let mut out = String::new();
        for (sev, pol, at, title) in std::iter::once(header).chain(rows) {
            // Writing to a `String` cannot fail.
            let _ = writeln!(out, "{sev:<w0$}  {pol:<w1$}  {at:<w2$}  {title}");
        }
        let _ = writeln!(out, "\nHow to fix:");
        for f in &self.findings {
            let _ = writeln!(out, "\n{} — {}", f.fingerprint(), f.title);
            for step in fix_steps(&f.remediation) {
                // `wrap` starts at column 0; the step is indented by two.
                out.push_str("  ");
                out.push_str(&wrap(&step, TABLE_WIDTH - 2, "     "));
            }
        }
        let count = self.findings.len();
        let noun = if count == 1 { "finding" } else { "findings" };
        let _ = writeln!(out, "\n{count} {noun} in {path}.");
        out
    }

    /// Typed rather than a `json!` map, so `path` comes first and each finding keeps the
    /// field order of [`Finding`].
    fn json(&self) -> String {
        #[derive(Serialize)]
        struct Report<'a> {
            path: String,
            findings: Vec<Entry<'a>>,
        }
        #[derive(Serialize)]
        struct Entry<'a> {
            #[serde(flatten)]
            finding: &'a Finding,
            fingerprint: String,
        }
        let report = Report {
            path: self.path.display().to_string(),
            findings: self
                .findings
                .iter()
                .map(|finding| Entry {
                    finding,
                    fingerprint: finding.fingerprint(),
                })
                .collect(),
        };
        pretty(&report)
    }

    /// A SARIF 2.1.0 log: one run, one rule per file-based policy, one result per finding,
    /// located at its file, line and column when it has one (workflow findings), at the
    /// repository root otherwise (findings about something absent).
    fn sarif(&self) -> serde_json::Value {
        let policies: Vec<_> = policy::all()
            .into_iter()
            .filter(|p| p.file_based())
            .collect();
        let rules: Vec<_> = policies
            .iter()
            .map(|p| {
                let help = policy::remediation(p.id()).unwrap_or(p.description());
                json!({
                    "id": p.id(),
                    "shortDescription": { "text": p.description() },
                    "help": { "text": help, "markdown": help },
                    "defaultConfiguration": { "level": sarif_level(p.severity()) },
                })
            })
            .collect();
        let results: Vec<_> = self
            .findings
            .iter()
            .map(|f| {
                let mut result = json!({
                    "ruleId": f.policy,
                    "level": sarif_level(f.severity),
                    "message": { "text": format!("{}\n\n{}", f.title, f.details) },
                    "locations": [{ "physicalLocation": physical_location(f) }],
                    // Lets code scanning track one alert per finding across runs.
                    "partialFingerprints": { "repoGuardian/v1": f.fingerprint() },
                });
                if let Some(index) = policies.iter().position(|p| p.id() == f.policy) {
                    result["ruleIndex"] = json!(index);
                }
                result
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "repo-guardian",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }},
                "results": results,
            }],
        })
    }
}

fn pretty(value: &impl Serialize) -> String {
    // Plain structs and `Value`s with string keys always serialise.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// SARIF knows three levels; high and critical both block, medium warns, low informs.
fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "note",
        Severity::Medium => "warning",
        Severity::High | Severity::Critical => "error",
    }
}

/// `path:line:column` of a located finding, `-` otherwise.
fn place(f: &Finding) -> String {
    match &f.location {
        Some(l) => format!("{}:{}:{}", l.path, l.line, l.column),
        None => "-".to_owned(),
    }
}

/// SARIF `physicalLocation` of a finding: its file and region, or the repository root.
fn physical_location(f: &Finding) -> serde_json::Value {
    match &f.location {
        Some(l) => json!({
            "artifactLocation": { "uri": l.path, "uriBaseId": "%SRCROOT%" },
            "region": { "startLine": l.line, "startColumn": l.column },
        }),
        None => json!({ "artifactLocation": { "uri": ".", "uriBaseId": "%SRCROOT%" } }),
    }
}

/// The numbered steps of a remediation text (`1. …`), each on one line; the first
/// paragraph when it has none.
fn fix_steps(remediation: &str) -> Vec<String> {
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut steps: Vec<String> = Vec::new();
    for line in remediation.lines() {
        let trimmed = line.trim();
        let numbered = trimmed
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if numbered {
            steps.push(trimmed.to_owned());
        } else if let Some(last) = steps.last_mut()
            && !trimmed.is_empty()
        {
            last.push(' ');
            last.push_str(trimmed);
        } else if trimmed.is_empty() && !steps.is_empty() {
            break;
        }
    }
    if steps.is_empty() {
        let first = remediation.split("\n\n").next().unwrap_or_default();
        return vec![one_line(first)];
    }
    steps.iter().map(|s| one_line(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            fs::write(&path, "x\n").expect("write");
        }
        dir
    }

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    /// A copy of `tests/fixtures/check/<name>` in a fresh git repository, files staged.
    fn fixture_repo(name: &str) -> tempfile::TempDir {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/check")
            .join(name);
        let dir = tempfile::tempdir().expect("temporary directory");
        copy_dir(&src, dir.path());
        git(dir.path(), &["init", "-q", "-b", "trunk"]);
        git(dir.path(), &["add", "-A"]);
        dir
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in fs::read_dir(from).expect("fixture") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                fs::create_dir_all(&target).expect("mkdir");
                copy_dir(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }

    fn report(files: &[&str]) -> CheckReport {
        let dir = tree(files);
        run(dir.path(), &Selection::default()).expect("check runs")
    }

    fn listed(dir: &Path) -> Vec<String> {
        let local = snapshot_from_dir(dir).expect("snapshot");
        local.snapshot.files.into_iter().collect()
    }

    #[test]
    fn outside_git_the_walk_honours_gitignore_and_invents_no_branch() {
        let dir = tree(&[
            "README.md",
            "src/lib.rs",
            ".github/CODEOWNERS",
            "target/debug/guardian",
            "LICENSE",
        ]);
        fs::write(dir.path().join(".gitignore"), "target/\nLICENSE\n").expect("write");
        assert_eq!(
            listed(dir.path()),
            [
                ".github/CODEOWNERS",
                ".gitignore",
                "README.md",
                "src/lib.rs"
            ]
        );
        let local = snapshot_from_dir(dir.path()).expect("snapshot");
        assert_eq!(local.snapshot.repo.owner, "local");
        let dir_name = dir.path().file_name().and_then(|n| n.to_str());
        assert_eq!(Some(local.snapshot.repo.name.as_str()), dir_name);
        assert_eq!(local.snapshot.default_branch, "");
        assert_eq!(local.snapshot.head_sha, None);
        assert!(local.warnings.is_empty(), "{:?}", local.warnings);
    }

    #[test]
    fn in_git_only_tracked_files_count() {
        let dir = tree(&["README.md", "notes/draft.md"]);
        git(dir.path(), &["init", "-q", "-b", "trunk"]);
        git(dir.path(), &["add", "README.md"]);
        git(dir.path(), &["commit", "-q", "-m", "first"]);
        // On disk but gitignored, or untracked: GitHub would not see them.
        fs::write(dir.path().join(".git/info/exclude"), "LICENSE\n").expect("write");
        fs::write(dir.path().join("LICENSE"), "MIT\n").expect("write");
        assert_eq!(listed(dir.path()), ["README.md"]);
        let local = snapshot_from_dir(dir.path()).expect("snapshot");
        assert_eq!(local.snapshot.default_branch, "trunk");
        assert_eq!(local.snapshot.head_sha.as_ref().map(String::len), Some(40));
        let report = run(dir.path(), &Selection::default()).expect("check");
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.fingerprint() == "license/missing")
        );
    }

    #[test]
    fn an_odd_dot_git_is_a_warning_not_an_abort() {
        let dir = tree(&["README.md"]);
        fs::write(dir.path().join(".git"), "gitdir: /nowhere/at/all\n").expect("write");
        let local = snapshot_from_dir(dir.path()).expect("snapshot");
        assert_eq!(
            local.snapshot.files.iter().collect::<Vec<_>>(),
            ["README.md"]
        );
        assert_eq!(local.warnings.len(), 1, "{:?}", local.warnings);
        assert!(local.warnings[0].contains("git cannot read it"));
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tree(&["README.md"]);
        let file = dir.path().join("README.md");
        let err = snapshot_from_dir(&file).unwrap_err();
        assert!(matches!(err, CheckError::NotADirectory(_)));
        assert!(err.to_string().contains("README.md"), "{err}");
        let missing = dir.path().join("nope");
        let err = snapshot_from_dir(&missing).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn run_rejects_options_a_policy_does_not_know() {
        let dir = tree(&[]);
        let mut selection = Selection::default();
        selection.options.insert(
            "readme".into(),
            [("bogus".to_owned(), Value::Bool(true))].into(),
        );
        let err = run(dir.path(), &selection).unwrap_err();
        assert!(err.to_string().contains("`readme`") && err.to_string().contains("bogus"));
    }

    #[test]
    fn every_file_policy_violated_reports_exactly_the_expected_set() {
        let dir = fixture_repo("violations");
        fs::write(dir.path().join(".gitignore"), "LICENSE\n").expect("write");
        fs::write(dir.path().join("LICENSE"), "MIT\n").expect("write");
        let report = run(dir.path(), &Selection::default()).expect("check");
        let got: Vec<(String, Option<(u32, u32)>)> = report
            .findings
            .iter()
            .map(|f| {
                (
                    f.fingerprint(),
                    f.location.as_ref().map(|l| (l.line, l.column)),
                )
            })
            .collect();
        let triage = ".github/workflows/triage.yml";
        let expected: Vec<(String, Option<(u32, u32)>)> = vec![
            ("binary-artifacts/present".into(), None),
            ("codeowners/missing".into(), None),
            (
                "dangerous-workflow/injection:.github/workflows/triage.yml:triage:github.event.issue.title".into(),
                Some((10, 30)),
            ),
            ("dangerous-workflow/invalid:.github/workflows/broken.yml".into(), Some((6, 1))),
            ("dependency-updates/missing".into(), None),
            ("license/missing".into(), None),
            (format!("pinned-actions/unpinned:{triage}:actions/checkout"), Some((9, 15))),
            ("readme/missing".into(), None),
            ("security-policy/missing".into(), None),
            (format!("workflow-permissions/default-permissions:{triage}"), Some((6, 3))),
        ];
        assert_eq!(got, expected);
        assert_eq!(report.exit_code(), 1);
        assert!(report.unknown.is_empty() && report.warnings.is_empty());
        let binaries = &report.findings[0].details;
        assert!(binaries.contains("`tool` (ELF executable)") && binaries.contains("`vendor.jar`"));
    }

    #[test]
    fn the_clean_fixture_has_no_findings() {
        let dir = fixture_repo("clean");
        let report = run(dir.path(), &Selection::default()).expect("check");
        assert_eq!(report.findings, []);
        assert_eq!(report.exit_code(), 0);
        assert!(
            report
                .render(CheckFormat::Table)
                .starts_with("No findings in ")
        );
    }

    #[test]
    fn a_policy_that_could_not_be_evaluated_exits_2() {
        let dir = fixture_repo("clean");
        fs::write(
            dir.path().join(".github/workflows/triage.yml"),
            [0xff, 0xfe, 0x00],
        )
        .expect("write");
        let report = run(dir.path(), &Selection::default()).expect("check");
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert!(report.unknown.contains_key("pinned-actions"));
        assert_eq!(report.exit_code(), 2);
        assert!(report.notes().iter().any(|n| n.contains("not evaluated")));
    }

    #[test]
    fn remediation_lines_are_wrapped_to_the_table_width() {
        let text = wrap(&"word ".repeat(60), 40, "  ");
        assert!(text.lines().count() > 1);
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(
            text.lines().skip(1).all(|l| l.starts_with("  word")),
            "{text}"
        );
        assert_eq!(wrap("short", 40, "  "), "short\n");
    }

    #[test]
    fn table_shows_where_and_the_numbered_fix_steps() {
        let dir = fixture_repo("violations");
        let table = run(dir.path(), &Selection::default())
            .expect("check")
            .render(CheckFormat::Table);
        let lines: Vec<_> = table.lines().collect();
        assert!(lines[0].starts_with("SEVERITY  POLICY"), "{table}");
        assert!(
            table.contains(".github/workflows/triage.yml:10:30"),
            "{table}"
        );
        assert!(table.contains("\n  1. Choose a license"), "{table}");
        assert!(table.contains("\n  2. Add it as `LICENSE`"), "{table}");
        assert!(table.ends_with(&format!("\n10 findings in {}.\n", dir.path().display())));
    }

    #[test]
    fn json_parses_and_carries_fingerprints_and_locations() {
        let report = report(&["README.md"]);
        let value: Value = serde_json::from_str(&report.render(CheckFormat::Json)).expect("JSON");
        assert_eq!(value["path"], report.path.display().to_string());
        let findings = value["findings"].as_array().expect("array");
        assert_eq!(findings.len(), 4);
        assert_eq!(findings[0]["fingerprint"], "codeowners/missing");
        assert_eq!(findings[0]["severity"], "low");
        for field in ["policy", "key", "title", "details", "remediation"] {
            assert!(findings[0][field].is_string(), "{field}");
        }
    }

    #[test]
    fn sarif_validates_against_the_2_1_0_schema_and_carries_regions() {
        let dir = fixture_repo("violations");
        let report = run(dir.path(), &Selection::default()).expect("check");
        let log: Value = serde_json::from_str(&report.render(CheckFormat::Sarif)).expect("JSON");
        let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/check/sarif-schema-2.1.0.json");
        let schema: Value =
            serde_json::from_str(&fs::read_to_string(schema_path).expect("schema")).expect("JSON");
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let errors: Vec<String> = validator.iter_errors(&log).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // A deliberately broken log is rejected, so the validation above means something.
        let mut broken = log.clone();
        broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
            Value::from(0);
        assert!(!validator.is_valid(&broken) || report.findings[0].location.is_none());
        broken["version"] = Value::from("9.9");
        assert!(!validator.is_valid(&broken));

        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
        assert!(rules.iter().all(|r| {
            r["help"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("docs.github.com"))
        }));
        let results = run["results"].as_array().expect("results");
        assert_eq!(results.len(), 10);
        let injection = results
            .iter()
            .find(|r| {
                r["ruleId"] == "dangerous-workflow"
                    && r["message"]["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("expands"))
            })
            .expect("injection result");
        let location = &injection["locations"][0]["physicalLocation"];
        assert_eq!(
            location["artifactLocation"]["uri"],
            ".github/workflows/triage.yml"
        );
        assert_eq!(location["region"]["startLine"], 10);
        assert_eq!(location["region"]["startColumn"], 30);
        assert_eq!(injection["level"], "error");
        assert!(
            injection["partialFingerprints"]["repoGuardian/v1"]
                .as_str()
                .is_some_and(|f| f.starts_with("dangerous-workflow/injection:"))
        );
        let license = results
            .iter()
            .find(|r| r["ruleId"] == "license")
            .expect("license");
        assert_eq!(
            license["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "."
        );
    }

    #[test]
    fn severities_map_to_sarif_levels() {
        assert_eq!(sarif_level(Severity::Critical), "error");
        assert_eq!(sarif_level(Severity::High), "error");
        assert_eq!(severity_name(Severity::Critical), "critical");
    }

    #[test]
    fn fix_steps_are_the_numbered_lines() {
        let steps = fix_steps("Why.\n\n1. First\nstill first.\n2. Second.\n\nSee docs.");
        assert_eq!(steps, ["1. First still first.", "2. Second."]);
        assert_eq!(fix_steps("Just do it\nnow."), ["Just do it now."]);
    }
}
