//! Terminal rendering of runs and dead letters: aligned tables with a header, and the run
//! record as a short block. Everything returns a `String` so tests can compare output.

use std::fmt::Write as _;

use crate::store::runs::{IssueCounts, RepoProgress, RepoStatus, RunRecord};

/// Columns aligned to their widest cell (the last column is never padded), two spaces
/// apart, with a header row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned to the right (numbers).
    right: Vec<bool>,
}

impl Table {
    /// A table with these headers; a header starting with `>` is a right-aligned column.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header
                .iter()
                .map(|h| h.trim_start_matches('>').to_string())
                .collect(),
            right: header.iter().map(|h| h.starts_with('>')).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                let last = i + 1 == columns;
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `2026-12-01 12:20:22` in UTC: the run id already orders runs, the seconds are enough.
pub fn short_time(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// `3 created, 1 closed` (or, `planned`, `create 3, close 1`) — only the actions that
/// happen; `nothing to change` otherwise.
pub fn counts(c: &IssueCounts, planned: bool) -> String {
    let parts: Vec<String> = [
        (c.created, "created"),
        (c.updated, "updated"),
        (c.reopened, "reopened"),
        (c.closed, "closed"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| {
        if planned {
            format!("{} {n}", verb(what))
        } else {
            format!("{n} {what}")
        }
    })
    .collect();
    let mut text = if parts.is_empty() {
        "nothing to change".to_string()
    } else {
        parts.join(", ")
    };
    if c.unchanged > 0 {
        let _ = write!(text, " ({} unchanged)", c.unchanged);
    }
    text
}

/// The run record as a block of `label  value` lines.
pub fn record(record: &RunRecord) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<10}{value}");
    };
    line("run", record.run_id.clone());
    line(
        "target",
        format!(
            "{}{}",
            record.target,
            if record.dry_run { " (dry run)" } else { "" }
        ),
    );
    line("status", record.status.as_str().to_string());
    let mut repos = format!(
        "{} total, {} reconciled, {} failed",
        record.repos_total, record.repos_done, record.repos_failed
    );
    if record.repos_stalled > 0 {
        let _ = write!(repos, ", {} stalled", record.repos_stalled);
    }
    let settled = record.repos_done + record.repos_failed + record.repos_stalled;
    if !record.status.is_final() && record.repos_total > settled {
        let _ = write!(repos, ", {} pending", record.repos_total - settled);
    }
    line("repos", repos);
    if record.repos_unknown > 0 {
        line(
            "unknown",
            format!(
                "{} repositories with policies not evaluated (their issues left as they are)",
                record.repos_unknown
            ),
        );
    }
    if record.stale_skipped > 0 {
        line(
            "skipped",
            format!(
                "{} reconciles: a newer run had already reconciled the repository",
                record.stale_skipped
            ),
        );
    }
    line("findings", record.findings.to_string());
    if record.dry_run {
        // Issues already up to date are counted in `issues.unchanged`, dry run or not.
        let mut would = record.planned;
        would.unchanged += record.issues.unchanged;
        line("would", counts(&would, true));
    } else {
        line("issues", counts(&record.issues, false));
        if record.planned.writes() > 0 {
            // Writes held back by the `force_dry_run` kill switch.
            line("held back", counts(&record.planned, true));
        }
    }
    if record.deferred_writes > 0 {
        let resume = record
            .writes_resume_at
            .map(|t| format!(", resuming {} UTC", short_time(t)))
            .unwrap_or_default();
        line(
            "deferred",
            format!(
                "{} issue writes waiting for the GitHub write budget{resume}",
                record.deferred_writes
            ),
        );
    }
    if !record.llm_tokens.is_zero() {
        let t = record.llm_tokens;
        line(
            "llm",
            format!("{} prompt + {} completion tokens", t.prompt, t.completion),
        );
    }
    if let (Some(start), Some(end)) = (record.started_at, record.finished_at) {
        let took = (end - start).whole_milliseconds().max(0) as u64;
        line(
            "took",
            humantime::format_duration(std::time::Duration::from_millis(took)).to_string(),
        );
    }
    // Errors of a repository are listed with the repository (see [`repos`]).
    for e in record.errors.iter().filter(|e| e.repo.is_none()) {
        line("error", format!("[{}] {}", e.step, e.message));
    }
    if record.error_count as usize > record.errors.len() {
        line(
            "",
            format!(
                "… and {} more errors",
                record.error_count as usize - record.errors.len()
            ),
        );
    }
    out
}

/// Longest line the per-repository listing writes: fits a 120-column terminal.
const WIDTH: usize = 120;

/// One repository of a run, as the listing shows it (built from the run's per-repository
/// progress).
#[derive(Debug, Clone, Default)]
pub struct RepoLine {
    pub repo: String,
    /// `pending`, `done`, `failed` or `stalled`.
    pub status: String,
    pub findings: u32,
    /// Skipped: a newer run had already reconciled the repository.
    pub stale: bool,
    pub actions: Vec<ActionLine>,
    /// Issue actions beyond the ones kept verbatim.
    pub more_actions: u32,
    /// Policy → why it could not be evaluated.
    pub unknown: Vec<(String, String)>,
    /// Step and reason of a failed or stalled repository.
    pub error: Option<(Option<String>, String)>,
}

/// One issue action, taken or (`planned`) only planned.
#[derive(Debug, Clone)]
pub struct ActionLine {
    /// `created`, `updated`, `reopened` or `closed`.
    pub action: String,
    pub title: String,
    pub number: Option<u64>,
    pub planned: bool,
}

/// The listing of a run's repositories from their progress; runs recorded before
/// progress was kept per repository fall back to the record's errors.
pub fn repo_lines(record: &RunRecord, progress: &[RepoProgress]) -> Vec<RepoLine> {
    if progress.is_empty() {
        return record
            .errors
            .iter()
            .filter_map(|e| {
                Some(RepoLine {
                    repo: e.repo.clone()?,
                    status: "failed".into(),
                    error: Some((Some(e.step.clone()), e.message.clone())),
                    ..Default::default()
                })
            })
            .collect();
    }
    progress.iter().map(repo_line).collect()
}

fn repo_line(p: &RepoProgress) -> RepoLine {
    let status = match p.status {
        RepoStatus::Pending => "pending",
        RepoStatus::Done => "done",
        RepoStatus::Failed => "failed",
        RepoStatus::Stalled => "stalled",
    };
    let taken = p.applied.writes() + p.planned.writes();
    RepoLine {
        repo: p.repo.clone(),
        status: status.into(),
        findings: p.findings,
        stale: p.stale,
        actions: p
            .actions
            .iter()
            .map(|a| ActionLine {
                action: a.action.as_str().into(),
                title: a.title.clone(),
                number: a.number,
                planned: a.planned,
            })
            .collect(),
        more_actions: taken.saturating_sub(p.actions.len() as u32),
        unknown: p
            .unknown
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        error: p.error.clone().map(|e| (p.step.clone(), e)),
    }
}

/// `created` → `create`, for "would create".
fn verb(action: &str) -> &str {
    action.strip_suffix("ed").map_or(action, |stem| match stem {
        "creat" => "create",
        "updat" => "update",
        "clos" => "close",
        _ => stem,
    })
}

/// Cuts `text` to `max` characters, marking the cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// What happened (or would happen) in each repository: its issue actions with titles,
/// the policies that could not be evaluated, its failure. Repositories with nothing to
/// report are counted on one line at the end. Every line fits [`WIDTH`] columns.
pub fn repos(lines: &[RepoLine]) -> String {
    let mut out = String::new();
    let mut quiet = 0;
    for r in lines {
        let nothing = r.actions.is_empty()
            && r.unknown.is_empty()
            && r.error.is_none()
            && r.more_actions == 0
            && r.status == "done";
        if nothing {
            quiet += 1;
            continue;
        }
        let mut head = format!("{}  ", r.repo);
        match (&r.error, r.status.as_str()) {
            (Some((step, reason)), status) => {
                let step = step
                    .as_deref()
                    .map(|s| format!(" in {s}"))
                    .unwrap_or_default();
                let _ = write!(head, "{status}{step}: {reason}");
            }
            (None, "done") if r.stale => head.push_str("skipped: a newer run reconciled it"),
            (None, "done") => {
                let _ = write!(
                    head,
                    "{} finding{}",
                    r.findings,
                    if r.findings == 1 { "" } else { "s" }
                );
            }
            (None, status) => head.push_str(status),
        }
        let _ = writeln!(out, "{}", fit(&head, WIDTH));
        for a in &r.actions {
            let what = if a.planned {
                format!("would {}", verb(&a.action))
            } else {
                a.action.clone()
            };
            let number = a.number.map(|n| format!("#{n} ")).unwrap_or_default();
            let line = format!("  {what:<15} {number}{}", a.title);
            let _ = writeln!(out, "{}", fit(&line, WIDTH));
        }
        if r.more_actions > 0 {
            let _ = writeln!(out, "  … and {} more issue actions", r.more_actions);
        }
        for (policy, reason) in &r.unknown {
            let line = format!(
                "  {:<15} {policy}: {reason} (its issues left as they are)",
                "unknown"
            );
            let _ = writeln!(out, "{}", fit(&line, WIDTH));
        }
    }
    if quiet > 0 {
        let _ = writeln!(
            out,
            "{quiet} other repositor{} with nothing to change",
            if quiet == 1 { "y" } else { "ies" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_whatever_the_cell_widths() {
        let mut t = Table::new(&["RUN", "STATUS", ">REPOS", "TARGET"]);
        t.row(vec![
            "a".into(),
            "succeeded".into(),
            "6".into(),
            "org:demo-org".into(),
        ]);
        t.row(vec![
            "bbbb".into(),
            "failed".into(),
            "120".into(),
            "o/r".into(),
        ]);
        assert_eq!(
            t.render(),
            "RUN   STATUS     REPOS  TARGET\n\
             a     succeeded      6  org:demo-org\n\
             bbbb  failed       120  o/r\n"
        );
    }

    #[test]
    fn the_listing_names_each_action_with_its_title_and_fits_120_columns() {
        let action = |action: &str, title: &str, number, planned| ActionLine {
            action: action.into(),
            title: title.into(),
            number,
            planned,
        };
        let lines = vec![
            RepoLine {
                repo: "demo-org/web".into(),
                status: "done".into(),
                findings: 2,
                actions: vec![
                    action("created", "No license file", None, true),
                    action("closed", &"x".repeat(200), Some(7), true),
                ],
                unknown: vec![("branch-protection".into(), "403 from GitHub".into())],
                ..Default::default()
            },
            RepoLine {
                repo: "demo-org/api".into(),
                status: "done".into(),
                ..Default::default()
            },
            RepoLine {
                repo: "demo-org/gone".into(),
                status: "failed".into(),
                error: Some((Some("scan".into()), "404 Not Found".into())),
                ..Default::default()
            },
        ];
        let text = repos(&lines);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "demo-org/web  2 findings");
        assert_eq!(rows[1], "  would create    No license file");
        assert!(rows[2].starts_with("  would close     #7 xxx") && rows[2].ends_with('…'));
        assert!(rows[3].contains("branch-protection: 403 from GitHub"));
        assert_eq!(rows[4], "demo-org/gone  failed in scan: 404 Not Found");
        assert_eq!(rows[5], "1 other repository with nothing to change");
        assert!(rows.iter().all(|r| r.chars().count() <= WIDTH), "{text}");
    }

    #[test]
    fn counts_name_only_what_happens() {
        let c = IssueCounts {
            created: 3,
            closed: 1,
            unchanged: 2,
            ..Default::default()
        };
        assert_eq!(counts(&c, false), "3 created, 1 closed (2 unchanged)");
        assert_eq!(counts(&c, true), "create 3, close 1 (2 unchanged)");
        assert_eq!(counts(&IssueCounts::default(), true), "nothing to change");
    }
}
