//! Checks that requests are real GitHub REST operations, using GitHub's OpenAPI
//! description (npm package `@octokit/openapi`, installed at the repository root by
//! `npm ci`).
//!
//! End-to-end tests record every request a worker sends to the double and pass the log
//! to [`check_requests`]; each request must match an operation of the description
//! (method plus a path template such as `/repos/{owner}/{repo}/issues`) and may only use
//! query parameters that operation declares, with enum and integer values respected.
//! This catches a client that drifts from the real API while the double stays lenient.
//! Response bodies are checked separately, by the crate's `openapi` test, which puts
//! Stoplight Prism in validating proxy mode in front of the double.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::RecordedRequest;

/// Where `npm ci` at the repository root installs GitHub's description.
pub fn default_spec_path() -> PathBuf {
    repo_root().join("node_modules/@octokit/openapi/generated/api.github.com.json")
}

/// The repository root: the nearest ancestor of the working directory (cargo runs tests in
/// the package's directory) that holds this crate, else two levels above the manifest this
/// crate was compiled from. The working directory comes first because a build directory
/// shared between checkouts may hold a copy compiled in another checkout.
pub fn repo_root() -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|dir| dir.join("crates/github-double/Cargo.toml").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// A path parameter; `multi` ones (GitHub's `x-multi-segment`) may span slashes,
    /// like file paths and branch names.
    Param {
        multi: bool,
    },
}

#[derive(Debug, Clone)]
struct QueryParam {
    name: String,
    enum_values: Option<Vec<String>>,
    kind: Option<String>,
}

#[derive(Debug, Clone)]
struct Operation {
    method: String,
    template: String,
    operation_id: String,
    segments: Vec<Segment>,
    query: Vec<QueryParam>,
}

/// GitHub's REST description, reduced to what request checks need.
#[derive(Debug, Clone)]
pub struct Spec {
    operations: Vec<Operation>,
}

/// A request matched to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// GitHub's operation id, e.g. `issues/create`.
    pub operation_id: String,
    /// The path template, e.g. `/repos/{owner}/{repo}/issues`.
    pub template: String,
}

impl Spec {
    /// Loads the description; the error says how to install it when missing.
    pub fn load(path: &Path) -> Result<Spec, String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read GitHub's OpenAPI description at {}: {e}; run `npm ci` at the repository root",
                path.display()
            )
        })?;
        let doc: Value = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
        Self::from_value(&doc)
    }

    /// Builds the operation table from a parsed description.
    pub fn from_value(doc: &Value) -> Result<Spec, String> {
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or("the description has no `paths`")?;
        let shared_params = doc.pointer("/components/parameters");
        let resolve = |p: &Value| -> Option<Value> {
            match p.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.rsplit('/').next()?;
                    shared_params?.get(name).cloned()
                }
                None => Some(p.clone()),
            }
        };
        let mut operations = Vec::new();
        for (template, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let path_level: Vec<Value> = item
                .get("parameters")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(&resolve).collect())
                .unwrap_or_default();
            for (method, op) in item {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
                ) {
                    continue;
                }
                let mut params = path_level.clone();
                if let Some(a) = op.get("parameters").and_then(Value::as_array) {
                    params.extend(a.iter().filter_map(&resolve));
                }
                let multi: BTreeSet<String> = params
                    .iter()
                    .filter(|p| p.get("x-multi-segment").and_then(Value::as_bool) == Some(true))
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect();
                let segments = template
                    .trim_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => Segment::Param {
                                multi: multi.contains(name),
                            },
                            None => Segment::Literal(s.to_string()),
                        },
                    )
                    .collect();
                let query = params
                    .iter()
                    .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
                    .filter_map(|p| {
                        let schema = p.get("schema");
                        Some(QueryParam {
                            name: p.get("name")?.as_str()?.to_string(),
                            enum_values: schema
                                .and_then(|s| s.get("enum"))
                                .and_then(Value::as_array)
                                .map(|a| {
                                    a.iter()
                                        .map(|v| match v {
                                            Value::String(s) => s.clone(),
                                            other => other.to_string(),
                                        })
                                        .collect()
                                }),
                            kind: schema
                                .and_then(|s| s.get("type"))
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        })
                    })
                    .collect();
                operations.push(Operation {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    operation_id: op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    segments,
                    query,
                });
            }
        }
        if operations.is_empty() {
            return Err("the description declares no operations".into());
        }
        Ok(Spec { operations })
    }

    /// Number of operations in the description.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the description declares no operation (never true for a loaded spec).
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    fn best<'a>(&'a self, method: &str, path: &str) -> Result<&'a Operation, String> {
        let segs: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut any_method = Vec::new();
        let mut best: Option<(usize, &Operation)> = None;
        for op in &self.operations {
            if !matches_segments(&op.segments, &segs) {
                continue;
            }
            if !op.method.eq_ignore_ascii_case(method) {
                any_method.push(op.method.as_str());
                continue;
            }
            // Prefer the most specific template: `/issues/comments` over `/issues/{n}`.
            let literals = op
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            if best.is_none_or(|(n, _)| literals > n) {
                best = Some((literals, op));
            }
        }
        match best {
            Some((_, op)) => Ok(op),
            None if !any_method.is_empty() => Err(format!(
                "{method} {path}: the path exists but only for {}",
                any_method.join(", ")
            )),
            None => Err(format!(
                "{method} {path}: no GitHub REST operation has this path"
            )),
        }
    }

    /// Finds the operation a request targets.
    pub fn match_request(&self, method: &str, path: &str) -> Result<Matched, String> {
        self.best(method, path).map(|op| Matched {
            operation_id: op.operation_id.clone(),
            template: op.template.clone(),
        })
    }

    /// Problems with one request: unknown operation, unknown query parameters, or
    /// values outside a parameter's enum/type.
    pub fn check(&self, method: &str, path: &str, query: &str) -> Vec<String> {
        let op = match self.best(method, path) {
            Ok(op) => op,
            Err(e) => return vec![e],
        };
        let mut problems = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let Some(p) = op.query.iter().find(|p| p.name == name) else {
                problems.push(format!(
                    "{method} {path}: query parameter `{name}` is not declared by {} ({})",
                    op.operation_id, op.template
                ));
                continue;
            };
            if let Some(values) = p
                .enum_values
                .as_ref()
                .filter(|vs| !vs.iter().any(|v| *v == value))
            {
                problems.push(format!(
                    "{method} {path}: `{name}={value}` is not one of {values:?} ({})",
                    op.operation_id
                ));
            }
            let type_ok = match p.kind.as_deref() {
                Some("integer") => value.parse::<i64>().is_ok(),
                Some("boolean") => value == "true" || value == "false",
                _ => true,
            };
            if !type_ok {
                problems.push(format!(
                    "{method} {path}: `{name}={value}` is not a valid {} ({})",
                    p.kind.as_deref().unwrap_or("value"),
                    op.operation_id
                ));
            }
        }
        problems
    }

    /// Problems across a request log, one string per problem.
    pub fn check_all(&self, requests: &[RecordedRequest]) -> Vec<String> {
        requests
            .iter()
            .flat_map(|r| self.check(&r.method, &r.path, &r.query))
            .collect()
    }
}

fn matches_segments(template: &[Segment], path: &[&str]) -> bool {
    match (template.first(), path.first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Segment::Literal(l)), Some(p)) => {
            l == p && matches_segments(&template[1..], &path[1..])
        }
        (Some(Segment::Param { multi: false }), Some(_)) => {
            matches_segments(&template[1..], &path[1..])
        }
        (Some(Segment::Param { multi: true }), Some(_)) => {
            (1..=path.len()).any(|n| matches_segments(&template[1..], &path[n..]))
        }
    }
}

/// Loads the description at `spec_path` and checks every recorded request against it.
/// An empty result means every request was a declared GitHub operation with declared
/// query parameters. A missing description is reported as a problem, never skipped.
pub fn check_requests(spec_path: impl AsRef<Path>, requests: &[RecordedRequest]) -> Vec<String> {
    match Spec::load(spec_path.as_ref()) {
        Ok(spec) => spec.check_all(requests),
        Err(e) => vec![e],
    }
}
