//! Finds where a typed value came from in a workflow's text: the line and column of a job,
//! a step, a `uses:` or an expression.
//!
//! `github-actions-models` gives typed values without positions, so this module reads the
//! YAML's block structure (indentation, `key:` lines, `- ` sequence items, block scalars
//! and comments) just far enough to narrow a search to the job or step a value belongs to,
//! then finds the value's text there. A value that is not in its region (it came through
//! an alias from an anchor elsewhere) is searched in the whole file, so every finding
//! gets a real position; YAML comments never match.

/// One line of the source, classified.
#[derive(Debug, Clone)]
struct Line<'a> {
    text: &'a str,
    indent: usize,
    /// Inside a block scalar (`run: |`), where `#` and `key:` are plain text.
    in_scalar: bool,
    /// A YAML comment or a blank line outside block scalars.
    ignorable: bool,
}

/// A half-open range of line indexes.
pub(crate) type Region = std::ops::Range<usize>;

/// The source of one workflow or action, ready for position queries.
#[derive(Debug, Clone)]
pub(crate) struct Locator<'a> {
    lines: Vec<Line<'a>>,
}

fn indent_of(text: &str) -> usize {
    text.len() - text.trim_start_matches(' ').len()
}

/// Whether a value after `key:` opens a block scalar (`|`, `>-`, `|2+`…).
fn opens_block_scalar(rest: &str) -> bool {
    let value = rest.split(" #").next().unwrap_or("").trim();
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| c.is_ascii_digit() || c == '-' || c == '+')
}

impl<'a> Locator<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let mut lines = Vec::new();
        // Indentation of the key that opened the current block scalar.
        let mut scalar_parent: Option<usize> = None;
        for text in source.lines() {
            let indent = indent_of(text);
            let blank = text.trim().is_empty();
            if let Some(parent) = scalar_parent {
                if blank || indent > parent {
                    lines.push(Line {
                        text,
                        indent,
                        in_scalar: true,
                        ignorable: false,
                    });
                    continue;
                }
                scalar_parent = None;
            }
            let trimmed = text.trim_start();
            let ignorable = blank || trimmed.starts_with('#');
            if !ignorable {
                // `key: |` or `- key: |` or `- |`.
                let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
                let rest = match key_of(body) {
                    Some(_) => body.split_once(':').map(|(_, r)| r).unwrap_or(""),
                    None => body,
                };
                if opens_block_scalar(rest) {
                    let item_indent = if trimmed.starts_with("- ") {
                        indent + 2
                    } else {
                        indent
                    };
                    // Content of `- key: |` is indented past the key, which sits at
                    // `indent + 2`; of `key: |` past `indent`.
                    scalar_parent = Some(if key_of(body).is_some() {
                        item_indent
                    } else {
                        indent
                    });
                }
            }
            lines.push(Line {
                text,
                indent,
                in_scalar: false,
                ignorable,
            });
        }
        Locator { lines }
    }

    pub(crate) fn whole(&self) -> Region {
        0..self.lines.len()
    }

    /// The region of the mapping value of `key` directly below `parent` (or at the top
    /// level when `parent` is the whole file): from the key's line to the next line that
    /// is indented as little as the key.
    pub(crate) fn child(&self, parent: &Region, key: &str) -> Option<Region> {
        let base = self.child_indent(parent)?;
        let start = parent.clone().find(|&i| {
            let l = &self.lines[i];
            !l.ignorable && !l.in_scalar && l.indent == base && key_of(l.text.trim()) == Some(key)
        })?;
        Some(start..self.end_of(start, base, parent.end))
    }

    /// The regions of the items of the sequence that is the value of `key` below `parent`.
    pub(crate) fn items(&self, parent: &Region, key: &str) -> Vec<Region> {
        let Some(seq) = self.child(parent, key) else {
            return Vec::new();
        };
        let body = seq.start + 1..seq.end;
        let Some(first) = body
            .clone()
            .find(|&i| !self.lines[i].ignorable && !self.lines[i].in_scalar)
        else {
            return Vec::new();
        };
        let dash = self.lines[first].indent;
        let starts: Vec<usize> = body
            .clone()
            .filter(|&i| {
                let l = &self.lines[i];
                !l.ignorable
                    && !l.in_scalar
                    && l.indent == dash
                    && l.text.trim_start().starts_with('-')
            })
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| s..starts.get(n + 1).copied().unwrap_or(body.end))
            .collect()
    }

    /// Indentation of the first content line below the region's first line (or of the
    /// top level for the whole file).
    fn child_indent(&self, parent: &Region) -> Option<usize> {
        let from = if parent.start == 0 && parent.end == self.lines.len() {
            0
        } else {
            parent.start + 1
        };
        (from..parent.end)
            .find(|&i| !self.lines[i].ignorable && !self.lines[i].in_scalar)
            .map(|i| {
                let l = &self.lines[i];
                // Keys of a sequence item start after its `- `.
                if l.text.trim_start().starts_with("- ") {
                    l.indent + 2
                } else {
                    l.indent
                }
            })
            .or(Some(0).filter(|_| from == 0))
    }

    /// First line after `start` indented at most `indent`, ignoring comments, blanks and
    /// block scalar content; `limit` when there is none.
    fn end_of(&self, start: usize, indent: usize, limit: usize) -> usize {
        (start + 1..limit)
            .find(|&i| {
                let l = &self.lines[i];
                !l.ignorable && !l.in_scalar && l.indent <= indent
            })
            .unwrap_or(limit)
    }

    /// 1-based line and column of the first occurrence of `needle` in `region` outside
    /// YAML comments; the whole file is searched when the region holds none.
    pub(crate) fn find(&self, region: &Region, needle: &str) -> Option<(u32, u32)> {
        self.find_all(region, needle)
            .into_iter()
            .next()
            .or_else(|| self.find_all(&self.whole(), needle).into_iter().next())
    }

    /// Every occurrence of `needle` in `region` outside YAML comments, in order.
    pub(crate) fn find_all(&self, region: &Region, needle: &str) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for i in region.clone() {
            let l = &self.lines[i];
            if l.ignorable || needle.is_empty() {
                continue;
            }
            let mut from = 0;
            while let Some(pos) = l.text[from..].find(needle) {
                let column = from + pos;
                if !in_trailing_comment(l, column) {
                    out.push((line_number(i), column_number(l.text, column)));
                }
                from = column + needle.len();
            }
        }
        out
    }

    /// 1-based position of the first non-blank character of the region's first line.
    pub(crate) fn start_of(&self, region: &Region) -> (u32, u32) {
        let i = region.start.min(self.lines.len().saturating_sub(1));
        let l = self.lines.get(i);
        let column = l.map(|l| l.indent).unwrap_or(0);
        (line_number(i), column as u32 + 1)
    }

    /// The text of a 1-based line, for quoting in issue bodies.
    pub(crate) fn line_text(&self, line: u32) -> &str {
        self.lines
            .get((line as usize).saturating_sub(1))
            .map(|l| l.text)
            .unwrap_or("")
    }
}

/// Whether `column` falls in a `# comment` at the end of a plain (non-scalar) line.
fn in_trailing_comment(line: &Line<'_>, column: usize) -> bool {
    if line.in_scalar {
        return false;
    }
    let before = &line.text[..column];
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for c in before.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return true,
            _ => {}
        }
        prev = c;
    }
    false
}

fn line_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// 1-based column in characters.
fn column_number(text: &str, byte: usize) -> u32 {
    u32::try_from(text[..byte].chars().count() + 1).unwrap_or(u32::MAX)
}

/// The key of a `key: value` or `key:` line (quotes removed), if it is one.
fn key_of(line: &str) -> Option<&str> {
    let line = line.strip_prefix("- ").unwrap_or(line);
    let (key, rest) = line.split_once(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let key = key.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    (!key.is_empty() && !key.contains(' ')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
# ${{ github.event.issue.title }} in a comment
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4 # uses: evil/x@v1
      - name: greet
        run: |
          # still script: ${{ github.event.issue.title }}
          echo hi
      - run: echo ${{ github.event.issue.title }}
  test:
    steps:
      - uses: actions/checkout@v4
";

    #[test]
    fn narrows_to_jobs_and_steps() {
        let loc = Locator::new(SOURCE);
        let jobs = loc.child(&loc.whole(), "jobs").expect("jobs");
        let build = loc.child(&jobs, "build").expect("build");
        assert_eq!(loc.start_of(&build), (4, 3));
        let steps = loc.items(&build, "steps");
        assert_eq!(steps.len(), 3);
        assert_eq!(loc.find(&steps[0], "actions/checkout@v4"), Some((7, 15)));
        let test = loc.child(&jobs, "test").expect("test");
        let steps = loc.items(&test, "steps");
        assert_eq!(loc.find(&steps[0], "actions/checkout@v4"), Some((15, 15)));
    }

    #[test]
    fn comments_never_match_but_scalar_lines_do() {
        let loc = Locator::new(SOURCE);
        let needle = "${{ github.event.issue.title }}";
        assert_eq!(
            loc.find_all(&loc.whole(), needle),
            [(10, 27), (12, 19)],
            "the YAML comment on line 1 is not part of any value"
        );
        assert!(loc.find_all(&loc.whole(), "evil/x@v1").is_empty());
    }
}
