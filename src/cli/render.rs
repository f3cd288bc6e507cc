//! Terminal rendering of runs and dead letters: aligned tables with a header, and the run
//! record as a short block. Everything returns a `String` so tests can compare output.

use std::fmt::Write as _;

use crate::store::runs::{IssueCounts, RunRecord};

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

/// `3 created, 1 closed` — only the actions that happen; `nothing to do` otherwise.
pub fn counts(c: &IssueCounts) -> String {
    let parts: Vec<String> = [
        (c.created, "created"),
        (c.updated, "updated"),
        (c.reopened, "reopened"),
        (c.closed, "closed"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
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
    if !record.pending.is_empty() && !record.status.is_final() {
        let _ = write!(repos, ", {} pending", record.pending.len());
    }
    line("repos", repos);
    line("findings", record.findings.to_string());
    if record.dry_run {
        line("would", counts(&record.planned));
    } else {
        line("issues", counts(&record.issues));
        if record.planned.writes() > 0 {
            // Writes held back by the `force_dry_run` kill switch.
            line("held back", counts(&record.planned));
        }
    }
    if let (Some(start), Some(end)) = (record.started_at, record.finished_at) {
        let took = (end - start).whole_milliseconds().max(0) as u64;
        line(
            "took",
            humantime::format_duration(std::time::Duration::from_millis(took)).to_string(),
        );
    }
    for e in &record.errors {
        line(
            "error",
            format!(
                "[{}] {}: {}",
                e.step,
                e.repo.as_deref().unwrap_or("-"),
                e.message
            ),
        );
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
    fn counts_name_only_what_happens() {
        let c = IssueCounts {
            created: 3,
            closed: 1,
            unchanged: 2,
            ..Default::default()
        };
        assert_eq!(counts(&c), "3 created, 1 closed (2 unchanged)");
        assert_eq!(counts(&IssueCounts::default()), "nothing to change");
    }
}
