//! GitHub Actions expressions (`${{ … }}`): finding them in a string and deciding whether
//! one can expand into attacker-controlled text.
//!
//! A context is attacker-controlled when whoever opens an issue, a pull request, a comment
//! or pushes a branch chooses its text: titles, bodies, branch names, commit messages,
//! author names, labels, string inputs. Numbers, booleans, ids and SHAs from the same
//! payload are not: they cannot carry shell syntax. An expression whose result is a
//! boolean (a comparison, `contains(…)`, `startsWith(…)`) is not injectable either.

/// One `${{ … }}` in a string: its full text and its inner expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expression<'a> {
    /// `${{ github.event.issue.title }}`, as written.
    pub(crate) raw: &'a str,
    /// `github.event.issue.title`, trimmed.
    pub(crate) inner: &'a str,
}

/// Every `${{ … }}` in `text`, in order.
pub(crate) fn expressions(text: &str) -> Vec<Expression<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let Some(end) = closing(after) else { break };
        let raw = &text[offset + start..offset + start + 3 + end + 2];
        out.push(Expression {
            raw,
            inner: after[..end].trim(),
        });
        let consumed = start + 3 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out
}

/// Byte offset of the `}}` closing an expression, skipping string literals.
fn closing(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'}' if !in_string && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// What the policies know about a workflow's inputs: names of inputs declared with a type
/// that cannot carry text (`boolean`, `number`, `choice`, `environment`). Every other
/// input — declared `string` (the default), or not declared where it is used — is text.
/// Composite actions' inputs are always strings: their list is empty.
pub(crate) type FixedInputs<'a> = &'a [String];

/// The attacker-controlled contexts `inner` reads, unless its result is a boolean.
pub(crate) fn tainted(inner: &str, fixed_inputs: FixedInputs<'_>) -> Vec<String> {
    let tokens = tokenize(inner);
    // A comparison or negation at the top level yields a boolean.
    if tokens
        .iter()
        .any(|t| t.depth == 0 && matches!(t.kind, Kind::Operator(op) if op != "||" && op != "&&"))
    {
        return Vec::new();
    }
    tokens
        .iter()
        .filter_map(|t| match &t.kind {
            Kind::Context(path)
                if !t
                    .functions
                    .iter()
                    .any(|f| BOOLEAN_FUNCTIONS.contains(&f.as_str()))
                    && attacker_controlled(path, fixed_inputs) =>
            {
                Some(path.clone())
            }
            _ => None,
        })
        .collect()
}

/// Functions whose result is a boolean or a fixed-format value, whatever their arguments.
const BOOLEAN_FUNCTIONS: &[&str] = &[
    "contains",
    "startswith",
    "endswith",
    "success",
    "failure",
    "always",
    "cancelled",
    "hashfiles",
];

#[derive(Debug)]
enum Kind {
    Context(String),
    Operator(&'static str),
    Other,
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    /// Parenthesis depth.
    depth: usize,
    /// Enclosing function calls, innermost last, lower-case.
    functions: Vec<String>,
}

fn tokenize(inner: &str) -> Vec<Token> {
    let chars: Vec<char> = inner.chars().collect();
    let mut tokens = Vec::new();
    // One entry per open parenthesis: the function it calls (empty for grouping).
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let functions = || stack.iter().filter(|f| !f.is_empty()).cloned().collect();
        if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                if d.is_ascii_alphanumeric() || matches!(d, '_' | '-' | '.' | '*') {
                    i += 1;
                } else if d == '[' {
                    // `a['b']` and `a[0]` are part of the path.
                    while i < chars.len() && chars[i] != ']' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    break;
                }
            }
            let word: String = chars[start..i.min(chars.len())].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if chars.get(j) == Some(&'(') {
                stack.push(word.to_ascii_lowercase());
                i = j + 1;
            } else {
                let kind = match word.as_str() {
                    "true" | "false" | "null" => Kind::Other,
                    _ => Kind::Context(normalize(&word)),
                };
                tokens.push(Token {
                    kind,
                    depth: stack.len(),
                    functions: functions(),
                });
            }
        } else if c == '(' {
            stack.push(String::new());
            i += 1;
        } else if c == ')' {
            stack.pop();
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "==" => Some("=="),
                "!=" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                "&&" => Some("&&"),
                "||" => Some("||"),
                _ => None,
            };
            let (op, width) = match (op, c) {
                (Some(op), _) => (Some(op), 2),
                (None, '<') => (Some("<"), 1),
                (None, '>') => (Some(">"), 1),
                (None, '!') => (Some("!"), 1),
                _ => (None, 1),
            };
            tokens.push(Token {
                kind: op.map(Kind::Operator).unwrap_or(Kind::Other),
                depth: stack.len(),
                functions: functions(),
            });
            i += width;
        }
    }
    tokens
}

/// `github.event.commits[0].message` → `github.event.commits.*.message`, lower-case.
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '[' {
            let mut inside = String::new();
            for d in chars.by_ref() {
                if d == ']' {
                    break;
                }
                inside.push(d);
            }
            let inside = inside.trim().trim_matches('\'').trim_matches('"');
            out.push('.');
            if inside.chars().all(|d| d.is_ascii_digit()) || inside == "*" {
                out.push('*');
            } else {
                out.push_str(&inside.to_ascii_lowercase());
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out.split('.')
        .map(|s| {
            if s.chars().all(|d| d.is_ascii_digit()) && !s.is_empty() {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Last path segments of event fields that are numbers, booleans, ids, SHAs or
/// timestamps: never free text.
const FIXED_FIELDS: &[&str] = &[
    "number",
    "id",
    "node_id",
    "sha",
    "before",
    "after",
    "merged",
    "draft",
    "locked",
    "size",
    "additions",
    "deletions",
    "changed_files",
    "commits",
    "comments",
    "review_comments",
    "run_number",
    "run_attempt",
    "forced",
    "deleted",
    "created",
    "private",
    "fork",
    "state",
    "author_association",
    "maintainer_can_modify",
    "rebaseable",
    "mergeable",
    "stargazers_count",
];

/// Whether the context `path` (normalised) may hold attacker-chosen text.
pub(crate) fn attacker_controlled(path: &str, fixed_inputs: FixedInputs<'_>) -> bool {
    let input_is_text = |name: &str| !fixed_inputs.iter().any(|n| n.eq_ignore_ascii_case(name));
    if let Some(name) = path.strip_prefix("inputs.") {
        return input_is_text(name.split('.').next().unwrap_or(name));
    }
    if let Some(name) = path.strip_prefix("github.event.inputs.") {
        return input_is_text(name.split('.').next().unwrap_or(name));
    }
    // Logins (`github.actor`, like `sender.login` below) are letters, digits and hyphens
    // on github.com today, but nothing in the payload promises a format (bots are
    // `name[bot]`, Enterprise Server maps directory names): they are text.
    if matches!(
        path,
        "github.head_ref"
            | "github.ref"
            | "github.ref_name"
            | "github.base_ref"
            | "github.actor"
            | "github.triggering_actor"
    ) {
        return true;
    }
    let Some(field) = path
        .strip_prefix("github.event")
        .filter(|r| r.is_empty() || r.starts_with('.'))
    else {
        return false;
    };
    let last = field.rsplit('.').next().unwrap_or("");
    let fixed = FIXED_FIELDS.contains(&last)
        || last.ends_with("_sha")
        || last.ends_with("_id")
        || last.ends_with("_at")
        || last.ends_with("_count")
        || path.ends_with("head_commit.id")
        || path.ends_with("commits.*.id");
    !fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(inner: &str) -> bool {
        !tainted(inner, &["count".to_owned()]).is_empty()
    }

    #[test]
    fn finds_expressions_and_skips_braces_in_strings() {
        let found = expressions("a ${{ x }} b ${{ format('}}{0}', y) }}");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].raw, "${{ x }}");
        assert_eq!(found[1].inner, "format('}}{0}', y)");
        assert!(expressions("${{ unterminated").is_empty());
    }

    #[test]
    fn attacker_text_is_flagged() {
        for inner in [
            "github.event.issue.title",
            "github.event.pull_request.body",
            "github.event.comment.body",
            "github.event.review.body",
            "github.event.discussion.title",
            "github.event.pull_request.head.ref",
            "github.head_ref",
            "github.event.head_commit.message",
            "github.event.commits[0].message",
            "github.event.head_commit.author.name",
            "github.event.workflow_run.head_branch",
            "inputs.name",
            "github.event.inputs.name",
            "toJSON(github.event)",
            "format('{0}', github.event.issue.title)",
            "github.event.issue.title || 'untitled'",
            "github.event['issue']['title']",
            "github.actor",
            "github.triggering_actor",
            "github.event.sender.login",
        ] {
            assert!(flagged(inner), "{inner}");
        }
    }

    #[test]
    fn numbers_booleans_and_safe_contexts_are_not() {
        for inner in [
            "github.event.issue.number",
            "github.event.pull_request.head.sha",
            "github.event.pull_request.merged",
            "github.event.workflow_run.id",
            "inputs.count",
            "matrix.os",
            "env.TITLE",
            "secrets.TOKEN",
            "steps.meta.outputs.tags",
            "github.sha",
            "github.repository",
            "github.event.issue.title == 'bug'",
            "contains(github.event.issue.title, 'bug')",
            "!github.event.pull_request.draft",
            "'github.event.issue.title'",
        ] {
            assert!(!flagged(inner), "{inner}");
        }
    }

    #[test]
    fn inputs_are_text_unless_declared_otherwise() {
        assert_eq!(tainted("inputs.anything", &[]), ["inputs.anything"]);
        assert_eq!(
            tainted("github.event.inputs.undeclared", &["count".to_owned()]),
            ["github.event.inputs.undeclared"]
        );
        assert!(tainted("inputs.COUNT", &["count".to_owned()]).is_empty());
    }
}
