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

use serde::Serialize;
use serde_json::json;

use crate::domain::{Finding, Input, Protection, RepoRef, Severity, Snapshot};
use crate::policy::{self, Selection};

/// Directories never walked: Git's own store and bulky build or dependency output, which is
/// not part of the repository's files on GitHub either.
const SKIPPED_DIRS: &[&str] = &[".git", "target", "node_modules"];

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

/// Branch assumed when the checkout does not say (no `.git`, or a detached head).
const FALLBACK_BRANCH: &str = "main";

/// Output format of `guardian check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Aligned columns and remediation summaries, for people.
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
}

/// Builds a snapshot of the checkout at `path`: every file below it (links included, as Git
/// stores them, but never followed) as a `/`-separated relative path.
pub fn snapshot_from_dir(path: &Path) -> Result<Snapshot, CheckError> {
    let meta = fs::metadata(path).map_err(CheckError::io(path))?;
    if !meta.is_dir() {
        return Err(CheckError::NotADirectory(path.to_path_buf()));
    }
    let mut files = BTreeSet::new();
    walk(path, "", &mut files)?;
    // `.` has no name of its own; the canonical path does.
    let absolute = path.canonicalize().map_err(CheckError::io(path))?;
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned());
    let (branch, head_sha) = git_head(path)?;
    let (contents, unavailable) = read_contents(path, &files);
    Ok(Snapshot {
        repo: RepoRef {
            owner: "local".to_owned(),
            name,
        },
        default_branch: branch.unwrap_or_else(|| FALLBACK_BRANCH.to_owned()),
        head_sha,
        archived: false,
        fork: false,
        private: false,
        license_spdx: None,
        files,
        protection: Protection::Unknown,
        from_github: false,
        contents,
        unavailable,
    })
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

fn walk(dir: &Path, prefix: &str, files: &mut BTreeSet<String>) -> Result<(), CheckError> {
    for entry in fs::read_dir(dir).map_err(CheckError::io(dir))? {
        let entry = entry.map_err(CheckError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = format!("{prefix}{name}");
        // `DirEntry::file_type` does not follow links, so a link to a directory is listed
        // like Git lists it (one blob) and can never make the walk loop.
        let kind = entry.file_type().map_err(CheckError::io(&entry.path()))?;
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                walk(&entry.path(), &format!("{relative}/"), files)?;
            }
        } else {
            files.insert(relative);
        }
    }
    Ok(())
}

/// The checked-out branch and commit, from `.git/HEAD`; `(None, None)` without Git.
fn git_head(root: &Path) -> Result<(Option<String>, Option<String>), CheckError> {
    let Some(git_dir) = git_dir(root)? else {
        return Ok((None, None));
    };
    let head_path = git_dir.join("HEAD");
    let head = match fs::read_to_string(&head_path) {
        Ok(head) => head,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(CheckError::io(&head_path)(e)),
    };
    let head = head.trim();
    match head.strip_prefix("ref: ") {
        Some(reference) => {
            let branch = reference
                .strip_prefix("refs/heads/")
                .unwrap_or(reference)
                .to_owned();
            Ok((Some(branch), resolve_ref(&git_dir, reference)))
        }
        // A detached head names a commit, not a branch.
        None => Ok((None, Some(head.to_owned()).filter(|h| !h.is_empty()))),
    }
}

/// `.git` is a directory in a plain clone and a `gitdir: …` file in worktrees and submodules.
fn git_dir(root: &Path) -> Result<Option<PathBuf>, CheckError> {
    let dot_git = root.join(".git");
    if dot_git.is_dir() {
        return Ok(Some(dot_git));
    }
    if !dot_git.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&dot_git).map_err(CheckError::io(&dot_git))?;
    Ok(text
        .trim()
        .strip_prefix("gitdir: ")
        .map(|dir| root.join(dir)))
}

/// The commit a ref points at, from a loose ref or `packed-refs`; `None` when neither has
/// it (a fresh repository without commits). Unreadable refs only lose the commit id.
fn resolve_ref(git_dir: &Path, reference: &str) -> Option<String> {
    if let Ok(sha) = fs::read_to_string(git_dir.join(reference)) {
        return Some(sha.trim().to_owned());
    }
    let packed = fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (sha, name) = line.split_once(' ')?;
        (name == reference).then(|| sha.to_owned())
    })
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
    let snapshot = snapshot_from_dir(path)?;
    Ok(CheckReport {
        path: path.to_path_buf(),
        findings: policy::evaluate(&snapshot, selection, true).findings,
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

    /// Process exit code: 0 without findings, 1 with findings (errors are the caller's 2).
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.findings.is_empty())
    }

    fn table(&self) -> String {
        let path = self.path.display();
        if self.findings.is_empty() {
            return format!("No findings in {path}.\n");
        }
        let header = ("SEVERITY", "POLICY", "TITLE");
        let rows: Vec<(&str, &str, &str)> = self
            .findings
            .iter()
            .map(|f| {
                (
                    severity_name(f.severity),
                    f.policy.as_str(),
                    f.title.as_str(),
                )
            })
            .collect();
        let sev_width = rows.iter().map(|r| r.0.len()).chain([header.0.len()]).max();
        let pol_width = rows.iter().map(|r| r.1.len()).chain([header.1.len()]).max();
        let (sev_width, pol_width) = (sev_width.unwrap_or(0), pol_width.unwrap_or(0));
        let mut out = String::new();
        for (sev, pol, title) in std::iter::once(header).chain(rows) {
            // Writing to a `String` cannot fail.
            let _ = writeln!(out, "{sev:<sev_width$}  {pol:<pol_width$}  {title}");
        }
        let _ = writeln!(out, "\nHow to fix:");
        for f in &self.findings {
            let item = format!("- {}: {}", f.fingerprint(), summary(&f.remediation));
            out.push_str(&wrap(&item, TABLE_WIDTH, "  "));
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

    /// A minimal SARIF 2.1.0 log: one run, one rule per file-based policy, one result per
    /// finding located at the repository root (findings are about absence, not a line).
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
                    "locations": [{
                        "physicalLocation": { "artifactLocation": { "uri": "." } }
                    }],
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

/// The first paragraph of a remediation text, on one line.
fn summary(remediation: &str) -> String {
    let first = remediation.split("\n\n").next().unwrap_or_default();
    first.split_whitespace().collect::<Vec<_>>().join(" ")
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

    fn report(files: &[&str]) -> CheckReport {
        let dir = tree(files);
        run(dir.path(), &Selection::default()).expect("check runs")
    }

    #[test]
    fn walker_lists_relative_paths_and_skips_build_dirs() {
        let dir = tree(&[
            "README.md",
            "src/lib.rs",
            "docs/guide/intro.md",
            ".git/config",
            "target/debug/guardian",
            "web/node_modules/left-pad/index.js",
            ".github/CODEOWNERS",
        ]);
        let snap = snapshot_from_dir(dir.path()).expect("snapshot");
        let files: Vec<_> = snap.files.iter().map(String::as_str).collect();
        assert_eq!(
            files,
            [
                ".github/CODEOWNERS",
                "README.md",
                "docs/guide/intro.md",
                "src/lib.rs"
            ]
        );
        assert_eq!(snap.repo.owner, "local");
        let dir_name = dir.path().file_name().and_then(|n| n.to_str());
        assert_eq!(Some(snap.repo.name.as_str()), dir_name);
        assert_eq!(snap.default_branch, "main");
        assert_eq!(snap.protection, Protection::Unknown);
        assert!(!snap.from_github);
    }

    #[test]
    fn walker_reads_branch_and_commit_from_git_head() {
        let dir = tree(&["README.md"]);
        let git = dir.path().join(".git");
        fs::create_dir_all(git.join("refs/heads")).expect("mkdir");
        fs::write(git.join("HEAD"), "ref: refs/heads/trunk\n").expect("write");
        fs::write(git.join("refs/heads/trunk"), "abc123\n").expect("write");
        let snap = snapshot_from_dir(dir.path()).expect("snapshot");
        assert_eq!(snap.default_branch, "trunk");
        assert_eq!(snap.head_sha.as_deref(), Some("abc123"));

        fs::remove_file(git.join("refs/heads/trunk")).expect("rm");
        fs::write(
            git.join("packed-refs"),
            "# pack-refs\ndef456 refs/heads/trunk\n",
        )
        .expect("write");
        let snap = snapshot_from_dir(dir.path()).expect("snapshot");
        assert_eq!(snap.head_sha.as_deref(), Some("def456"));

        fs::write(git.join("HEAD"), "0123abcd\n").expect("write");
        let snap = snapshot_from_dir(dir.path()).expect("snapshot");
        assert_eq!(snap.default_branch, "main");
        assert_eq!(snap.head_sha.as_deref(), Some("0123abcd"));
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tree(&["README.md"]);
        let file = dir.path().join("README.md");
        let err = snapshot_from_dir(&file).unwrap_err();
        assert!(matches!(err, CheckError::NotADirectory(_)));
        assert!(err.to_string().contains("README.md"), "{err}");
        let missing = dir.path().join("nope");
        let err = run(&missing, &Selection::default()).unwrap_err();
        assert!(matches!(err, CheckError::Io { .. }));
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
    fn clean_checkout_has_no_findings() {
        let clean = report(&["LICENSE", "README.md", "SECURITY.md", ".github/CODEOWNERS"]);
        assert!(clean.findings.is_empty());
        assert_eq!(clean.exit_code(), 0);
        assert!(
            clean
                .render(CheckFormat::Table)
                .starts_with("No findings in ")
        );
    }

    #[test]
    fn table_aligns_columns_and_summarises_remediation() {
        let report = report(&["README.md", "SECURITY.md"]);
        assert_eq!(report.exit_code(), 1);
        let table = report.render(CheckFormat::Table);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines[0], "SEVERITY  POLICY      TITLE");
        assert_eq!(lines[1], "low       codeowners  No CODEOWNERS file");
        assert_eq!(lines[2], "medium    license     No license file");
        assert!(table.contains("- license/missing: Without a license"));
        let total = format!("\n2 findings in {}.\n", report.path.display());
        assert!(table.ends_with(&total), "{table}");
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
    fn json_parses_and_carries_fingerprints() {
        let report = report(&["README.md"]);
        let value: Value = serde_json::from_str(&report.render(CheckFormat::Json)).expect("JSON");
        assert_eq!(value["path"], report.path.display().to_string());
        let findings = value["findings"].as_array().expect("array");
        assert_eq!(findings.len(), 3);
        assert_eq!(findings[0]["fingerprint"], "codeowners/missing");
        assert_eq!(findings[0]["severity"], "low");
        for field in ["policy", "key", "title", "details", "remediation"] {
            assert!(findings[0][field].is_string(), "{field}");
        }
    }

    #[test]
    fn sarif_has_the_required_fields() {
        let report = report(&["README.md"]);
        let log: Value = serde_json::from_str(&report.render(CheckFormat::Sarif)).expect("JSON");
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        let driver = &run["tool"]["driver"];
        assert_eq!(driver["name"], "repo-guardian");
        let rules = driver["rules"].as_array().expect("rules");
        let rule_ids: Vec<_> = rules
            .iter()
            .map(|r| r["id"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            rule_ids,
            [
                "license",
                "readme",
                "security-policy",
                "codeowners",
                "dangerous-workflow",
                "workflow-permissions",
                "pinned-actions"
            ]
        );
        for rule in rules {
            assert!(rule["shortDescription"]["text"].is_string());
            assert!(
                rule["help"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("docs.github.com"))
            );
        }
        let results = run["results"].as_array().expect("results");
        assert_eq!(results.len(), 3);
        let license = &results[1];
        assert_eq!(license["ruleId"], "license");
        assert_eq!(license["level"], "warning");
        assert_eq!(
            rules[license["ruleIndex"].as_u64().expect("index") as usize]["id"],
            "license"
        );
        assert!(
            license["message"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("No license file"))
        );
        let uri = &license["locations"][0]["physicalLocation"]["artifactLocation"]["uri"];
        assert_eq!(uri, ".");
        assert_eq!(results[0]["level"], "note");
    }

    #[test]
    fn severities_map_to_sarif_levels() {
        assert_eq!(sarif_level(Severity::Critical), "error");
        assert_eq!(sarif_level(Severity::High), "error");
        assert_eq!(severity_name(Severity::Critical), "critical");
    }
}
