//! Keeps the double honest against GitHub's OpenAPI description.
//!
//! `responses_follow_github_openapi` puts Stoplight Prism (`prism proxy --errors`) in
//! front of the double and drives a scripted session through it that touches every
//! endpoint the double serves, including 304s, pagination, 404s, creates, updates and
//! comments. Prism validates each request and each response against the description;
//! with `--errors` it turns any violation into a 500 whose `sl-violations` header lists
//! the problems, so a passing run means every body matched its operation's schema.
//! The recorded requests are then checked with `openapi::check_requests`, the function
//! end-to-end tests use for the workers' traffic.
//!
//! Prism and the description come from `npm ci` at the repository root. When they are
//! missing the tests fail and say so, unless `GUARDIAN_SKIP_OPENAPI=1` is set.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use github_double::openapi::{self, Spec};
use github_double::{GithubDouble, RecordedRequest, RepoOptions, seed_demo};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_openapiTestToken";

/// The description and the prism binary, or `None` when skipping was requested.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let spec = openapi::default_spec_path();
    let prism = openapi::repo_root().join("node_modules/.bin/prism");
    let missing: Vec<String> = [&spec, &prism]
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some((spec, prism));
    }
    if std::env::var("GUARDIAN_SKIP_OPENAPI").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: GUARDIAN_SKIP_OPENAPI=1 and {} missing",
            missing.join(", ")
        );
        return None;
    }
    panic!(
        "missing {}: run `npm ci` at the repository root (or set GUARDIAN_SKIP_OPENAPI=1 to skip deliberately)",
        missing.join(", ")
    );
}

/// A prism process, killed on drop.
struct Prism {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_prism(prism: &PathBuf, spec: &PathBuf, upstream: &str) -> Prism {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("github-double-prism-{port}.log"));
    let file = std::fs::File::create(&log).expect("prism log file");
    let child = Command::new(prism)
        .arg("proxy")
        .arg("--errors")
        .arg(spec)
        .arg(upstream)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file)
        .spawn()
        .expect("spawn prism");
    let mut p = Prism {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!(
                "prism exited with {status} before listening; log:\n{}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "prism did not listen within 180 s; log:\n{}",
            std::fs::read_to_string(&p.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "prism loaded the description and listened after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    p
}

struct Session {
    client: reqwest::Client,
    base: String,
    failures: Vec<String>,
    undocumented_304: Vec<String>,
    steps: usize,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Session {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        etag: Option<&str>,
        expect: u16,
    ) -> Reply {
        self.steps += 1;
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        if let Some(tag) = etag {
            rb = rb.header("if-none-match", tag);
        }
        let resp = rb.send().await.expect("request through prism");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let violations: Vec<Value> = headers
            .get("sl-violations")
            .and_then(|v| serde_json::from_slice::<Vec<Value>>(v.as_bytes()).ok())
            .unwrap_or_default();
        // GitHub answers 304 to every conditional GET, but the description lists 304 only
        // for a few operations; prism then warns that the status is undocumented. That
        // one warning is accepted for expected 304s, and the double's own log must show
        // the 304 (checked at the end of the session).
        let (gap, real): (Vec<Value>, Vec<Value>) = violations.into_iter().partition(|v| {
            expect == 304
                && v["severity"] == "Warning"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Unable to match the returned status code"))
        });
        if !real.is_empty() {
            self.failures.push(format!(
                "{method} {path}: prism reported violations: {}",
                Value::Array(real)
            ));
        } else if !gap.is_empty() {
            self.undocumented_304.push(path.to_string());
        } else if status != expect {
            self.failures.push(format!(
                "{method} {path}: expected {expect}, got {status}: {text}"
            ));
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str, expect: u16) -> Reply {
        self.send("GET", path, None, None, expect).await
    }

    /// GETs `path`, then repeats with its ETag and expects a 304.
    async fn get_then_304(&mut self, path: &str) -> Reply {
        let first = self.get(path, 200).await;
        let tag = first
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match tag {
            Some(tag) => {
                let again = self.send("GET", path, None, Some(&tag), 304).await;
                if again.status == 304 && !again.body.is_null() {
                    self.failures
                        .push(format!("GET {path}: 304 carried a body"));
                }
            }
            None => self.failures.push(format!("GET {path}: no ETag")),
        }
        first
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_follow_github_openapi() {
    let Some((spec, prism)) = tools() else {
        return;
    };
    let double = GithubDouble::start().await.expect("double");
    seed_demo(&double);
    double.add_repo(
        "demo-org",
        "issues-off",
        RepoOptions {
            has_issues: false,
            ..Default::default()
        },
    );
    double.set_token(Some(TOKEN));
    let prism = start_prism(&prism, &spec, &double.url()).await;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut s = Session {
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        base: prism.url.clone(),
        failures: Vec::new(),
        undocumented_304: Vec::new(),
        steps: 0,
    };

    // Accounts and discovery.
    s.get_then_304("/rate_limit").await;
    s.get_then_304("/orgs/demo-org").await;
    s.get("/orgs/no-such-org", 404).await;
    s.get("/users/demo-user", 200).await;
    let org_as_user = s.get("/users/demo-org", 200).await;
    assert_eq!(org_as_user.body["type"], "Organization");
    s.get("/users/no-such-user", 404).await;

    // Repository listings with pagination.
    let page1 = s.get_then_304("/orgs/demo-org/repos?per_page=3").await;
    let link = page1
        .headers
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        link.contains("rel=\"next\"") && link.contains("rel=\"last\""),
        "{link}"
    );
    let page2 = s
        .get("/orgs/demo-org/repos?type=all&per_page=3&page=2", 200)
        .await;
    let link2 = page2
        .headers
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        link2.contains("rel=\"prev\"") && link2.contains("rel=\"first\""),
        "{link2}"
    );
    s.get("/orgs/demo-org/repos?per_page=100&page=9", 200).await;
    s.get("/users/demo-user/repos?type=owner&per_page=30", 200)
        .await;

    // Repositories: licenses detected, missing, unrecognised; a missing repository.
    let gw = s.get_then_304("/repos/demo-org/api-gateway").await;
    assert_eq!(gw.body["license"]["spdx_id"], "MIT");
    let billing = s.get("/repos/demo-org/billing-service", 200).await;
    assert!(billing.body["license"].is_null());
    let docs = s.get("/repos/demo-org/docs-site", 200).await;
    assert_eq!(docs.body["license"]["spdx_id"], "NOASSERTION");
    s.get("/repos/demo-org/legacy-monolith", 200).await;
    s.get("/repos/demo-org/forked-lib", 200).await;
    s.get("/repos/demo-org/no-such-repo", 404).await;

    // Branches and protection.
    let branch = s
        .get_then_304("/repos/demo-org/api-gateway/branches/main")
        .await;
    let head = branch.body["commit"]["sha"]
        .as_str()
        .unwrap_or("")
        .to_string();
    s.get("/repos/demo-org/billing-service/branches/main", 200)
        .await;
    s.get("/repos/demo-org/api-gateway/branches/no-such-branch", 404)
        .await;
    s.get_then_304("/repos/demo-org/api-gateway/branches/main/protection")
        .await;
    s.get("/repos/demo-org/web-frontend/branches/main/protection", 200)
        .await;
    s.get(
        "/repos/demo-org/billing-service/branches/main/protection",
        404,
    )
    .await;

    // Trees, by branch name and by commit SHA.
    s.get_then_304("/repos/demo-org/api-gateway/git/trees/main?recursive=1")
        .await;
    s.get(
        &format!("/repos/demo-org/api-gateway/git/trees/{head}?recursive=1"),
        200,
    )
    .await;
    s.get("/repos/demo-org/api-gateway/git/trees/main", 200)
        .await;
    s.get(
        "/repos/demo-org/api-gateway/git/trees/0000000000000000000000000000000000000000",
        404,
    )
    .await;

    // Branch listing and blobs by SHA (the scan reads workflow files this way).
    s.get_then_304("/repos/demo-org/api-gateway/branches?per_page=1")
        .await;
    let tree = s
        .get(
            &format!("/repos/demo-org/api-gateway/git/trees/{head}?recursive=1"),
            200,
        )
        .await;
    let blob_sha = tree.body["tree"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["type"] == "blob"))
        .and_then(|e| e["sha"].as_str())
        .unwrap_or("")
        .to_string();
    s.get_then_304(&format!("/repos/demo-org/api-gateway/git/blobs/{blob_sha}"))
        .await;
    s.get(
        "/repos/demo-org/api-gateway/git/blobs/0000000000000000000000000000000000000000",
        404,
    )
    .await;

    // Contents: files, a directory, a ref, a missing file. Prism cannot route GitHub's
    // multi-segment `{path}` (it decodes `%2F` before routing too), so nested files are
    // left to the behaviour tests; their bodies are built by the same code as these.
    s.get_then_304("/repos/demo-org/api-gateway/contents/README.md")
        .await;
    s.get("/repos/demo-org/api-gateway/contents/LICENSE?ref=main", 200)
        .await;
    s.get("/repos/demo-org/api-gateway/contents/.github", 200)
        .await;
    s.get(
        "/repos/demo-org/api-gateway/contents/SECURITY.md?ref=main",
        200,
    )
    .await;
    s.get("/repos/demo-org/billing-service/contents/SECURITY.md", 404)
        .await;

    // Labels.
    let label =
        json!({"name": "guardian", "color": "5319e7", "description": "Found by Repo Guardian"});
    s.send(
        "POST",
        "/repos/demo-org/billing-service/labels",
        Some(label.clone()),
        None,
        201,
    )
    .await;
    s.send(
        "POST",
        "/repos/demo-org/billing-service/labels",
        Some(label),
        None,
        422,
    )
    .await;
    s.get_then_304("/repos/demo-org/billing-service/labels/guardian")
        .await;
    s.get("/repos/demo-org/billing-service/labels/no-such-label", 404)
        .await;

    // Issues: create, list with filters and pagination, get, update, close, reopen.
    let issues = "/repos/demo-org/billing-service/issues";
    let created = s
        .send(
            "POST",
            issues,
            Some(json!({"title": "Add a LICENSE file", "body": "No license found.", "labels": ["guardian", "policy:license"]})),
            None,
            201,
        )
        .await;
    assert_eq!(created.body["number"], 1);
    s.send(
        "POST",
        issues,
        Some(json!({"title": "Protect the default branch", "labels": ["guardian"]})),
        None,
        201,
    )
    .await;
    s.send("POST", issues, Some(json!({"body": "no title"})), None, 422)
        .await;
    s.send(
        "POST",
        "/repos/demo-org/issues-off/issues",
        Some(json!({"title": "x"})),
        None,
        410,
    )
    .await;
    s.get_then_304(issues).await;
    s.get(
        &format!(
            "{issues}?state=all&labels=guardian&sort=created&direction=desc&per_page=1&page=2"
        ),
        200,
    )
    .await;
    s.get(&format!("{issues}?state=closed"), 200).await;
    s.get_then_304(&format!("{issues}/1")).await;
    s.get(&format!("{issues}/99"), 404).await;
    s.send(
        "PATCH",
        &format!("{issues}/1"),
        Some(json!({"title": "Add a LICENSE file (updated)", "body": "Still no license.", "labels": ["guardian"]})),
        None,
        200,
    )
    .await;
    let closed = s
        .send(
            "PATCH",
            &format!("{issues}/1"),
            Some(json!({"state": "closed", "state_reason": "completed"})),
            None,
            200,
        )
        .await;
    assert_eq!(closed.body["state"], "closed");
    let reopened = s
        .send(
            "PATCH",
            &format!("{issues}/1"),
            Some(json!({"state": "open"})),
            None,
            200,
        )
        .await;
    assert_eq!(reopened.body["state_reason"], "reopened");

    // Comments.
    s.send(
        "POST",
        &format!("{issues}/1/comments"),
        Some(json!({"body": "Still failing on the latest commit."})),
        None,
        201,
    )
    .await;
    s.get_then_304(&format!("{issues}/1/comments?per_page=10"))
        .await;
    s.get(&format!("{issues}/99/comments"), 404).await;

    // Assignees on create and update.
    let assigned = s
        .send(
            "POST",
            issues,
            Some(json!({"title": "Assigned", "labels": ["guardian"], "assignees": ["octocat"]})),
            None,
            201,
        )
        .await;
    assert_eq!(assigned.body["assignees"][0]["login"], "octocat");
    s.send(
        "PATCH",
        &format!("{issues}/{}", assigned.body["number"]),
        Some(json!({"assignees": ["octocat", "hubot"]})),
        None,
        200,
    )
    .await;

    // Pull requests, check runs, commit statuses and tags (the hygiene policies and the
    // tag lookups of pinned-actions).
    let gw = "/repos/demo-org/api-gateway";
    double.add_pull(
        "demo-org",
        "api-gateway",
        github_double::PullSpec {
            title: "Old change".into(),
            author: "contributor".into(),
            draft: true,
            idle_days: 60,
        },
    );
    double.add_check_run(
        "demo-org",
        "api-gateway",
        github_double::CheckRunSpec::completed("test", "failure"),
    );
    double.add_check_run(
        "demo-org",
        "api-gateway",
        github_double::CheckRunSpec {
            name: "lint".into(),
            status: "in_progress".into(),
            conclusion: None,
        },
    );
    double.set_commit_status("demo-org", "api-gateway", "ci/legacy", "error");
    let tagged = double.add_tag("demo-org", "api-gateway", "v1", true);
    double.add_tag("demo-org", "api-gateway", "v1.0.1", false);
    let pulls = s
        .get_then_304(&format!(
            "{gw}/pulls?state=open&sort=updated&direction=asc&per_page=100"
        ))
        .await;
    assert_eq!(pulls.body[0]["draft"], true);
    let runs = s
        .get_then_304(&format!(
            "{gw}/commits/main/check-runs?filter=latest&per_page=100"
        ))
        .await;
    assert_eq!(runs.body["total_count"], 2);
    let status = s
        .get_then_304(&format!("{gw}/commits/main/status?per_page=100"))
        .await;
    assert_eq!(status.body["state"], "failure");
    s.get(&format!("{gw}/commits/main/status"), 200).await;
    s.get("/repos/demo-org/billing-service/commits/main/status", 200)
        .await;
    // `{ref}` is `tags/v1`, one parameter holding a slash: GitHub takes it as is, prism
    // matches it only encoded, and the double serves both spellings.
    let annotated = s.get_then_304(&format!("{gw}/git/ref/tags%2Fv1")).await;
    assert_eq!(annotated.body["object"]["type"], "tag");
    let object = annotated.body["object"]["sha"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tag = s.get_then_304(&format!("{gw}/git/tags/{object}")).await;
    assert_eq!(tag.body["object"]["sha"], tagged.as_str());
    let light = s.get(&format!("{gw}/git/ref/tags%2Fv1.0.1"), 200).await;
    assert_eq!(light.body["object"]["type"], "commit");
    s.get(&format!("{gw}/git/ref/tags%2Fv9"), 404).await;

    let prism_log = std::fs::read_to_string(&prism.log).unwrap_or_default();
    drop(prism);
    assert!(
        s.failures.is_empty(),
        "{} of {} steps failed:\n{}\nprism log tail:\n{}",
        s.failures.len(),
        s.steps,
        s.failures.join("\n"),
        prism_log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Every request that reached the double is a declared GitHub operation.
    let requests = double.requests();
    for path in &s.undocumented_304 {
        let (p, q) = path.split_once('?').unwrap_or((path.as_str(), ""));
        assert!(
            requests
                .iter()
                .any(|r| r.path == p && r.query == q && r.status == 304 && r.if_none_match),
            "the double did not answer 304 for {path}"
        );
    }
    eprintln!(
        "{} steps validated by prism; 304 accepted although undocumented for: {:?}",
        s.steps, s.undocumented_304
    );
    assert!(requests.len() >= s.steps, "prism forwarded every step");
    let problems = openapi::check_requests(&spec, &requests);
    assert!(problems.is_empty(), "{problems:#?}");
}

fn recorded(method: &str, path: &str, query: &str) -> RecordedRequest {
    RecordedRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        status: 200,
        if_none_match: false,
        authorization: None,
    }
}

#[test]
fn check_requests_flags_what_github_does_not_have() {
    let Some((spec_path, _)) = tools() else {
        return;
    };
    let spec = Spec::load(&spec_path).expect("description loads");
    assert!(spec.len() > 500);

    let good = [
        recorded(
            "GET",
            "/orgs/demo-org/repos",
            "per_page=100&page=2&type=all",
        ),
        recorded(
            "GET",
            "/repos/o/r/contents/.github/workflows/ci.yml",
            "ref=main",
        ),
        recorded("GET", "/repos/o/r/branches/release/v1/protection", ""),
        recorded("GET", "/repos/o/r/git/trees/main", "recursive=1"),
        recorded("PATCH", "/repos/o/r/issues/3", ""),
        recorded(
            "GET",
            "/repos/o/r/issues",
            "state=all&labels=guardian&per_page=100",
        ),
    ];
    assert_eq!(spec.check_all(&good), Vec::<String>::new());
    assert_eq!(
        spec.match_request("GET", "/repos/o/r/issues/comments")
            .expect("matches")
            .operation_id,
        "issues/list-comments-for-repo"
    );

    let bad = [
        recorded("GET", "/repos/o/r/no-such-thing", ""),
        recorded("DELETE", "/rate_limit", ""),
        recorded("GET", "/repos/o/r/issues", "status=open"),
        recorded("GET", "/repos/o/r/issues", "state=everything"),
        recorded("GET", "/orgs/o/repos", "per_page=lots"),
    ];
    let problems = spec.check_all(&bad);
    assert_eq!(problems.len(), bad.len(), "{problems:#?}");

    let missing = openapi::check_requests("/nonexistent/api.github.com.json", &good);
    assert!(missing[0].contains("npm ci"), "{missing:?}");
}
