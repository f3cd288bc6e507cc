//! HTTP front of the double: one axum fallback handler that applies the cross-cutting
//! GitHub behaviour (latency, faults, token check, rate limit, ETag/304, rate-limit
//! headers, request log) and dispatches on path segments to the endpoint handlers.
//!
//! Dispatch is done by hand rather than with axum routes because GitHub paths contain
//! multi-segment parameters (branch names and file paths with slashes) and the double
//! wants one place where every request, matched or not, is logged the same way.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Shared;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::RecordedRequest;
use crate::render;
use crate::state::{Comment, GoneIssue, Issue, Label, State, epoch_secs, now_iso};

pub fn router(state: Arc<Mutex<State>>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn lock(st: &Mutex<State>) -> MutexGuard<'_, State> {
    st.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(
    Shared(st): Shared<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    // Read the latency under the lock, sleep without it. The request is in flight from
    // its arrival to its answer, as GitHub counts concurrent requests.
    let latency = {
        let mut guard = lock(&st);
        guard.secondary.enter();
        guard.latency
    };
    // Leaves on every path, a client that hung up during the latency included.
    let _arrival = Arrival(st.clone());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut guard = lock(&st);
    let default_base = guard.default_base.clone();
    let req = Req::new(method, &uri, &headers, body, default_base);
    process(&mut guard, &req)
}

/// A request in flight at the double, until dropped.
struct Arrival(Arc<Mutex<State>>);

impl Drop for Arrival {
    fn drop(&mut self) {
        lock(&self.0).secondary.leave();
    }
}

/// A parsed request.
pub(crate) struct Req {
    method: String,
    pub(crate) path: String,
    query: String,
    params: Vec<(String, String)>,
    pub(crate) base: String,
    pub(crate) authorization: Option<String>,
    if_none_match: Option<String>,
    body: Bytes,
}

impl Req {
    fn new(
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        default_base: String,
    ) -> Req {
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // Links and `url` fields are built from the host the client used, so a client
        // behind a proxy (or using another interface) is sent back to the same place.
        let base = header("host")
            .map(|h| format!("http://{h}"))
            .unwrap_or(default_base);
        let query = uri.query().unwrap_or("").to_string();
        let params = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Req {
            method: method.as_str().to_ascii_uppercase(),
            path: uri.path().to_string(),
            query,
            params,
            base,
            authorization: header("authorization"),
            if_none_match: header("if-none-match"),
            body,
        }
    }

    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value, Out> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| Out::error(400, "Problems parsing JSON"))
    }
}

/// An endpoint's answer before the cross-cutting headers are added.
pub(crate) struct Out {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Out {
    pub(crate) fn json(status: u16, body: Value) -> Out {
        Out {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    pub(crate) fn error(status: u16, message: &str) -> Out {
        Out::json(status, render::error(message, status))
    }
    pub(crate) fn not_found() -> Out {
        Out::error(404, "Not Found")
    }
    fn with(mut self, name: &'static str, value: String) -> Out {
        self.headers.push((name, value));
        self
    }
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(body)))
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |s: &str| s.trim().trim_start_matches("W/").to_string();
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

fn process(st: &mut State, req: &Req) -> Response<Body> {
    st.rate.refresh();
    let (out, counted) = match pre_checks(st, req) {
        Some(early) => early,
        None => (route(st, req), req.path != "/rate_limit"),
    };

    let mut status = out.status;
    let mut bytes = out
        .body
        .as_ref()
        .map(|v| serde_json::to_vec(v).unwrap_or_default())
        .unwrap_or_default();
    let mut etag = None;
    if req.method == "GET" && status == 200 {
        let tag = etag_of(&bytes);
        if req
            .if_none_match
            .as_deref()
            .is_some_and(|inm| etag_matches(inm, &tag))
        {
            status = 304;
            bytes.clear();
        }
        etag = Some(tag);
    }
    // A 304 is free on GitHub, which is the whole point of conditional requests.
    if counted && status != 304 {
        st.rate.remaining = st.rate.remaining.saturating_sub(1);
    }

    let mut resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let rate = &st.rate;
    let mut headers: Vec<(&str, String)> = vec![
        ("x-ratelimit-limit", rate.limit.to_string()),
        ("x-ratelimit-remaining", rate.remaining.to_string()),
        ("x-ratelimit-reset", rate.reset.to_string()),
        ("x-ratelimit-used", rate.used().to_string()),
        ("x-ratelimit-resource", "core".to_string()),
        ("x-github-api-version-selected", "2022-11-28".to_string()),
        ("x-github-request-id", format!("DBL:{:X}", st.log.len() + 1)),
    ];
    if let Some(tag) = etag {
        headers.push(("etag", tag));
        headers.push(("cache-control", "private, max-age=60, s-maxage=60".into()));
        headers.push(("vary", "Accept, Authorization, Cookie".into()));
    }
    if status != 304 && out.body.is_some() {
        headers.push(("content-type", "application/json; charset=utf-8".into()));
    }
    headers.extend(out.headers.iter().map(|(k, v)| (*k, v.clone())));
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp = resp.header(k, v);
        }
    }
    st.log.push(RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        status,
        if_none_match: req.if_none_match.is_some(),
        authorization: req.authorization.clone(),
    });
    resp.body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Faults, the token check and rate-limit exhaustion, in that order. Returns the
/// answer and whether it counts against the rate limit.
fn pre_checks(st: &mut State, req: &Req) -> Option<(Out, bool)> {
    if let Some(pos) = st.faults.iter().position(|(f, _)| {
        req.path.starts_with(&f.path_prefix)
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
    }) {
        let (fault, custom) = st.faults[pos].clone();
        if fault.times <= 1 {
            st.faults.remove(pos);
        } else {
            st.faults[pos].0.times -= 1;
        }
        let message = match fault.status {
            _ if custom.is_some() => custom.unwrap_or_default(),
            403 | 429 if fault.retry_after.is_some() => {
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
                    .to_string()
            }
            s => StatusCode::from_u16(s)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("Injected fault")
                .to_string(),
        };
        let mut out = Out::error(fault.status, &message);
        if let Some(secs) = fault.retry_after {
            out = out.with("retry-after", secs.to_string());
        }
        return Some((out, true));
    }
    let app = crate::app::authenticate(st, req);
    if let crate::app::Verdict::Refused(out) = app {
        return Some((out, true));
    }
    if let (crate::app::Verdict::NotApp, Some(token)) = (app, st.token.as_deref()) {
        let ok = req.authorization.as_deref().is_some_and(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .or_else(|| h.strip_prefix("token "))
                .is_some_and(|t| t.trim() == token)
        });
        if !ok {
            return Some((Out::error(401, "Bad credentials"), true));
        }
    }
    if let Err(retry_after) = st.secondary.admit(&req.method) {
        let out = Out::error(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
        .with("retry-after", retry_after.to_string());
        return Some((out, false));
    }
    if st.rate.remaining == 0 && req.path != "/rate_limit" {
        let wait = st.rate.reset.saturating_sub(epoch_secs()).max(1);
        let out = Out::json(
            403,
            json!({
                "message": "API rate limit exceeded for user ID 41898282. If you reach out to GitHub Support for help, please include the request ID.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403",
            }),
        )
        .with("retry-after", wait.to_string());
        return Some((out, false));
    }
    None
}

fn route(st: &mut State, req: &Req) -> Out {
    let segs: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    match (m, s.as_slice()) {
        ("GET", ["rate_limit"]) => Out::json(200, render::rate_limit(&st.rate)),
        (_, s) if crate::app::is_app_route(s) => crate::app::route(st, req, m, s),
        ("GET", ["orgs", org]) => get_org(st, req, org),
        ("GET", ["orgs", org, "repos"]) => list_repos(st, req, org, true),
        ("GET", ["users", user]) => get_user(st, req, user),
        ("GET", ["users", user, "repos"]) => list_repos(st, req, user, false),
        (_, ["repos", owner, repo, rest @ ..]) => {
            if st.repo(owner, repo).is_none() {
                return Out::not_found();
            }
            repo_route(st, req, m, owner, repo, rest)
        }
        _ => Out::not_found(),
    }
}

fn repo_route(st: &mut State, req: &Req, m: &str, owner: &str, name: &str, rest: &[&str]) -> Out {
    match (m, rest) {
        ("GET", []) => {
            let repo = st.repo(owner, name).expect("checked");
            Out::json(200, render::repo_full(&req.base, repo, st.account(owner)))
        }
        ("GET", ["branches", branch @ .., "protection"]) if !branch.is_empty() => {
            get_protection(st, req, owner, name, &branch.join("/"))
        }
        ("GET", ["branches", branch @ ..]) if !branch.is_empty() => {
            get_branch(st, req, owner, name, &branch.join("/"))
        }
        ("GET", ["git", "trees", tree @ ..]) if !tree.is_empty() => {
            get_tree(st, req, owner, name, &tree.join("/"))
        }
        ("GET", ["branches"]) => {
            let repo = st.repo(owner, name).expect("checked");
            let items = repo
                .branches
                .iter()
                .map(|(b, sha)| render::short_branch(&req.base, repo, b, sha))
                .collect();
            paginate(req, items)
        }
        ("GET", ["git", "blobs", sha]) => {
            let repo = st.repo(owner, name).expect("checked");
            match repo.blob(sha) {
                Some(b) => Out::json(200, render::blob(&req.base, repo, sha, &b.content)),
                None => Out::not_found(),
            }
        }
        ("GET", ["contents", path @ ..]) => get_contents(st, req, owner, name, &path.join("/")),
        ("GET", ["issues"]) => list_issues(st, req, owner, name),
        ("POST", ["issues"]) => create_issue(st, req, owner, name).unwrap_or_else(|e| e),
        ("GET", ["issues", n]) => with_issue(st, req, owner, name, n, |st, req, idx| {
            let repo = st.repo(owner, name).expect("checked");
            Out::json(200, render::issue(&req.base, repo, &repo.issues[idx]))
        }),
        ("PATCH", ["issues", n]) => with_issue(st, req, owner, name, n, |st, req, idx| {
            update_issue(st, req, owner, name, idx).unwrap_or_else(|e| e)
        }),
        ("GET", ["issues", n, "comments"]) => {
            with_issue(st, req, owner, name, n, |st, req, idx| {
                let repo = st.repo(owner, name).expect("checked");
                let issue = &repo.issues[idx];
                let items = issue
                    .comments
                    .iter()
                    .map(|c| render::comment(&req.base, repo, issue, c))
                    .collect();
                paginate(req, items)
            })
        }
        ("POST", ["issues", n, "comments"]) => {
            with_issue(st, req, owner, name, n, |st, req, idx| {
                create_comment(st, req, owner, name, idx).unwrap_or_else(|e| e)
            })
        }
        ("GET", ["labels"]) => {
            let repo = st.repo(owner, name).expect("checked");
            let items = repo
                .labels
                .values()
                .map(|l| render::label(&req.base, repo, l))
                .collect();
            paginate(req, items)
        }
        ("GET", ["labels", label]) => {
            let repo = st.repo(owner, name).expect("checked");
            match repo.labels.get(&label.to_lowercase()) {
                Some(l) => Out::json(200, render::label(&req.base, repo, l)),
                None => Out::not_found(),
            }
        }
        ("POST", ["labels"]) => create_label(st, req, owner, name).unwrap_or_else(|e| e),
        // Pull requests, checks, commit statuses and git tags live in their own module.
        _ => crate::activity::route(st, req, m, owner, name, rest).unwrap_or_else(Out::not_found),
    }
}

fn get_org(st: &State, req: &Req, org: &str) -> Out {
    match st.account(org).filter(|a| a.is_org) {
        Some(a) => {
            let (public, private) = repo_counts(st, &a.login);
            Out::json(200, render::org_full(&req.base, a, public, private))
        }
        None => Out::not_found(),
    }
}

fn get_user(st: &State, req: &Req, user: &str) -> Out {
    match st.account(user) {
        Some(a) => {
            let (public, _) = repo_counts(st, &a.login);
            Out::json(200, render::public_user(&req.base, a, public))
        }
        None => Out::not_found(),
    }
}

fn repo_counts(st: &State, owner: &str) -> (usize, usize) {
    let owned = st
        .repos
        .values()
        .filter(|r| r.owner.eq_ignore_ascii_case(owner));
    let private = owned.clone().filter(|r| r.private).count();
    (owned.count() - private, private)
}

fn list_repos(st: &State, req: &Req, owner: &str, org_route: bool) -> Out {
    let Some(account) = st.account(owner) else {
        return Out::not_found();
    };
    if org_route && !account.is_org {
        return Out::not_found();
    }
    let kind = req.param("type").unwrap_or("all");
    let mut repos: Vec<_> = st
        .repos
        .values()
        .filter(|r| r.owner.eq_ignore_ascii_case(owner))
        .filter(|r| match kind {
            "public" => !r.private,
            "private" => r.private,
            "forks" => r.fork,
            "sources" => !r.fork,
            _ => true,
        })
        .collect();
    // GitHub's defaults: organizations sort by creation, users by full name.
    let sort = req
        .param("sort")
        .unwrap_or(if org_route { "created" } else { "full_name" });
    let default_dir = if sort == "full_name" { "asc" } else { "desc" };
    let desc = req.param("direction").unwrap_or(default_dir) == "desc";
    match sort {
        "full_name" => repos.sort_by_key(|r| r.full_name().to_lowercase()),
        "pushed" => repos.sort_by(|a, b| (&a.pushed_at, a.id).cmp(&(&b.pushed_at, b.id))),
        "updated" => repos.sort_by(|a, b| (&a.pushed_at, a.id).cmp(&(&b.pushed_at, b.id))),
        _ => repos.sort_by_key(|r| r.id),
    }
    if desc {
        repos.reverse();
    }
    paginate_with(req, repos, |r| {
        render::repo_minimal(&req.base, r, Some(account))
    })
}

/// Slices `items` per `per_page`/`page` and adds GitHub's `Link` header.
pub(crate) fn paginate(req: &Req, items: Vec<Value>) -> Out {
    paginate_with(req, items, |v| v)
}

/// Like [`paginate`], rendering only the items of the page asked for (listing an
/// organisation of tens of thousands of repositories renders 100 per page, not all).
pub(crate) fn paginate_with<T>(req: &Req, items: Vec<T>, render: impl Fn(T) -> Value) -> Out {
    let per_page = req
        .param("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = req
        .param("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(render)
        .collect();
    let mut out = Out::json(200, Value::Array(slice));
    let link_to = |n: usize| {
        let mut pairs: Vec<(String, String)> = req
            .params
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        pairs.push(("page".into(), n.to_string()));
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{}{}?{q}", req.base, req.path)
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    if !links.is_empty() {
        out = out.with("link", links.join(", "));
    }
    out
}

fn get_branch(st: &State, req: &Req, owner: &str, name: &str, branch: &str) -> Out {
    let repo = st.repo(owner, name).expect("checked");
    match repo
        .branches
        .get(branch)
        .and_then(|sha| repo.commits.get(sha))
    {
        Some(c) => Out::json(200, render::branch(&req.base, repo, branch, c)),
        None => Out::error(404, "Branch not found"),
    }
}

fn get_protection(st: &State, req: &Req, owner: &str, name: &str, branch: &str) -> Out {
    let repo = st.repo(owner, name).expect("checked");
    if !repo.branches.contains_key(branch) {
        return Out::error(404, "Branch not found");
    }
    match render::protection_of(repo, branch) {
        Some(rules) => Out::json(200, render::protection(&req.base, repo, branch, rules)),
        None => Out::error(404, "Branch not protected"),
    }
}

fn get_tree(st: &State, req: &Req, owner: &str, name: &str, tree: &str) -> Out {
    let repo = st.repo(owner, name).expect("checked");
    // GitHub treats any value of `recursive` as "yes".
    let recursive = req.param("recursive").is_some();
    match repo.resolve(tree) {
        Some(c) => Out::json(200, render::tree(&req.base, repo, c, recursive)),
        None => Out::not_found(),
    }
}

fn get_contents(st: &State, req: &Req, owner: &str, name: &str, path: &str) -> Out {
    let repo = st.repo(owner, name).expect("checked");
    let reference = req.param("ref").unwrap_or(&repo.default_branch);
    let Some(c) = repo.resolve(reference) else {
        return Out::error(404, &format!("No commit found for the ref {reference}"));
    };
    let path = path.trim_matches('/');
    render::content_file(&req.base, repo, path, reference, c)
        .or_else(|| render::content_dir(&req.base, repo, path, reference, c))
        .map(|v| Out::json(200, v))
        .unwrap_or_else(Out::not_found)
}

fn issues_gone() -> Out {
    Out::error(410, "Issues are disabled for this repo")
}

fn read_only() -> Out {
    Out::error(403, "Repository was archived so is read-only.")
}

/// The JSON body of a write, refused when the repository is archived (read-only).
fn writable_body(st: &State, req: &Req, owner: &str, name: &str) -> Result<Value, Out> {
    let body = req.json()?;
    if st.repo(owner, name).expect("checked").archived {
        return Err(read_only());
    }
    Ok(body)
}

fn list_issues(st: &State, req: &Req, owner: &str, name: &str) -> Out {
    let repo = st.repo(owner, name).expect("checked");
    if !repo.has_issues {
        return issues_gone();
    }
    let state = req.param("state").unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Out::json(422, render::validation_error("Issue", "state", "invalid"));
    }
    let wanted: Vec<String> = req
        .param("labels")
        .map(|l| {
            l.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let since = req.param("since");
    let mut issues: Vec<&Issue> = repo
        .issues
        .iter()
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| {
            wanted
                .iter()
                .all(|w| i.labels.iter().any(|l| l.to_lowercase() == *w))
        })
        .filter(|i| since.is_none_or(|s| i.updated_at.as_str() >= s))
        .collect();
    match req.param("sort").unwrap_or("created") {
        "updated" => {
            issues.sort_by(|a, b| (&a.updated_at, a.number).cmp(&(&b.updated_at, b.number)))
        }
        "comments" => issues.sort_by_key(|i| (i.comments.len(), i.number)),
        _ => issues.sort_by_key(|i| i.number),
    }
    if req.param("direction").unwrap_or("desc") != "asc" {
        issues.reverse();
    }
    let items = issues
        .into_iter()
        .map(|i| render::issue(&req.base, repo, i))
        .collect();
    paginate(req, items)
}

/// Label names from a request's `labels` array (strings or `{name}` objects), creating
/// missing labels as GitHub does.
fn take_labels(st: &mut State, owner: &str, name: &str, value: &Value) -> Result<Vec<String>, Out> {
    let Some(arr) = value.as_array() else {
        return Err(Out::json(
            422,
            render::validation_error("Issue", "labels", "invalid"),
        ));
    };
    let mut names = Vec::new();
    for v in arr {
        let n = v
            .as_str()
            .or_else(|| v.get("name").and_then(Value::as_str))
            .ok_or_else(|| {
                Out::json(422, render::validation_error("Issue", "labels", "invalid"))
            })?;
        if !names.iter().any(|x: &String| x.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    let mut resolved = Vec::new();
    for n in names {
        let key = n.to_lowercase();
        let exists = st
            .repo(owner, name)
            .is_some_and(|r| r.labels.contains_key(&key));
        if !exists {
            let id = st.fresh_id();
            let repo = st.repo_mut(owner, name).expect("checked");
            repo.labels.insert(
                key.clone(),
                Label {
                    id,
                    name: n.clone(),
                    color: "ededed".into(),
                    description: None,
                },
            );
        }
        let repo = st.repo(owner, name).expect("checked");
        resolved.push(repo.labels[&key].name.clone());
    }
    Ok(resolved)
}

/// The `assignees` of an issue write (logins), when given; GitHub replaces the whole set.
fn assignees_of(body: &Value) -> Result<Option<Vec<String>>, Out> {
    let Some(value) = body.get("assignees") else {
        return Ok(None);
    };
    let invalid = || {
        Out::json(
            422,
            render::validation_error("Issue", "assignees", "invalid"),
        )
    };
    let logins = value.as_array().ok_or_else(invalid)?;
    let mut out: Vec<String> = Vec::new();
    for login in logins {
        let login = login.as_str().ok_or_else(invalid)?;
        if !out.iter().any(|l| l.eq_ignore_ascii_case(login)) {
            out.push(login.to_owned());
        }
    }
    Ok(Some(out))
}

fn create_issue(st: &mut State, req: &Req, owner: &str, name: &str) -> Result<Out, Out> {
    let body = writable_body(st, req, owner, name)?;
    if !st.repo(owner, name).expect("checked").has_issues {
        return Err(issues_gone());
    }
    let Some(title) = body.get("title").and_then(|t| match t {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }) else {
        return Err(Out::json(
            422,
            render::validation_error("Issue", "title", "missing_field"),
        ));
    };
    let labels = match body.get("labels") {
        Some(v) => take_labels(st, owner, name, v)?,
        None => Vec::new(),
    };
    let assignees = assignees_of(&body)?.unwrap_or_default();
    let id = st.fresh_id();
    let now = now_iso();
    let repo = st.repo_mut(owner, name).expect("checked");
    let number = repo.next_issue_number();
    repo.issues.push(Issue {
        id,
        number,
        title,
        body: body.get("body").and_then(Value::as_str).map(str::to_string),
        state: "open".into(),
        state_reason: None,
        labels,
        assignees,
        comments: Vec::new(),
        created_at: now.clone(),
        updated_at: now,
        closed_at: None,
    });
    let repo = st.repo(owner, name).expect("checked");
    let v = render::issue(&req.base, repo, repo.issues.last().expect("just pushed"));
    let location = v["url"].as_str().unwrap_or_default().to_string();
    Ok(Out::json(201, v).with("location", location))
}

fn with_issue(
    st: &mut State,
    req: &Req,
    owner: &str,
    name: &str,
    number: &str,
    f: impl FnOnce(&mut State, &Req, usize) -> Out,
) -> Out {
    let repo = st.repo(owner, name).expect("checked");
    if !repo.has_issues {
        return issues_gone();
    }
    let Ok(number) = number.parse::<u64>() else {
        return Out::not_found();
    };
    match repo.gone_issues.get(&number) {
        Some(GoneIssue::Deleted) => return Out::error(410, "This issue was deleted"),
        Some(GoneIssue::Transferred { repo: to, number }) => {
            let location = format!("{}/repos/{to}/issues/{number}", req.base);
            return Out::json(
                301,
                json!({
                    "message": "Moved Permanently",
                    "url": location,
                    "documentation_url": "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects",
                }),
            )
            .with("location", location);
        }
        None => {}
    }
    let Some(idx) = repo.issues.iter().position(|i| i.number == number) else {
        return Out::not_found();
    };
    f(st, req, idx)
}

fn update_issue(
    st: &mut State,
    req: &Req,
    owner: &str,
    name: &str,
    idx: usize,
) -> Result<Out, Out> {
    let body = writable_body(st, req, owner, name)?;
    let state_ok = body
        .get("state")
        .is_none_or(|s| matches!(s.as_str(), Some("open" | "closed")));
    if !state_ok {
        return Err(Out::json(
            422,
            render::validation_error("Issue", "state", "invalid"),
        ));
    }
    let reason_ok = body.get("state_reason").is_none_or(|r| {
        r.is_null()
            || matches!(
                r.as_str(),
                Some("completed" | "not_planned" | "reopened" | "duplicate")
            )
    });
    if !reason_ok {
        return Err(Out::json(
            422,
            render::validation_error("Issue", "state_reason", "invalid"),
        ));
    }
    let labels = match body.get("labels") {
        Some(v) => Some(take_labels(st, owner, name, v)?),
        None => None,
    };
    let assignees = assignees_of(&body)?;
    let now = now_iso();
    let repo = st.repo_mut(owner, name).expect("checked");
    let issue = &mut repo.issues[idx];
    if let Some(a) = assignees {
        issue.assignees = a;
    }
    if let Some(t) = body.get("title").and_then(Value::as_str) {
        issue.title = t.to_string();
    }
    match body.get("body") {
        Some(Value::String(b)) => issue.body = Some(b.clone()),
        Some(Value::Null) => issue.body = None,
        _ => {}
    }
    if let Some(l) = labels {
        issue.labels = l;
    }
    let reason = body
        .get("state_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    match body.get("state").and_then(Value::as_str) {
        Some("closed") if issue.state != "closed" => {
            issue.state = "closed".into();
            issue.closed_at = Some(now.clone());
            issue.state_reason = Some(reason.unwrap_or_else(|| "completed".into()));
        }
        Some("open") if issue.state != "open" => {
            issue.state = "open".into();
            issue.closed_at = None;
            issue.state_reason = Some("reopened".into());
        }
        _ => {
            if let Some(r) = reason {
                issue.state_reason = Some(r);
            }
        }
    }
    issue.updated_at = now;
    let repo = st.repo(owner, name).expect("checked");
    Ok(Out::json(
        200,
        render::issue(&req.base, repo, &repo.issues[idx]),
    ))
}

fn create_comment(
    st: &mut State,
    req: &Req,
    owner: &str,
    name: &str,
    idx: usize,
) -> Result<Out, Out> {
    let body = writable_body(st, req, owner, name)?;
    let Some(text) = body.get("body").and_then(Value::as_str) else {
        return Err(Out::json(
            422,
            render::validation_error("IssueComment", "body", "missing_field"),
        ));
    };
    let id = st.fresh_id();
    let now = now_iso();
    let repo = st.repo_mut(owner, name).expect("checked");
    let issue = &mut repo.issues[idx];
    issue.comments.push(Comment {
        id,
        body: text.to_string(),
        created_at: now.clone(),
        updated_at: now.clone(),
    });
    issue.updated_at = now;
    let repo = st.repo(owner, name).expect("checked");
    let issue = &repo.issues[idx];
    let v = render::comment(
        &req.base,
        repo,
        issue,
        issue.comments.last().expect("pushed"),
    );
    let location = v["url"].as_str().unwrap_or_default().to_string();
    Ok(Out::json(201, v).with("location", location))
}

fn create_label(st: &mut State, req: &Req, owner: &str, name: &str) -> Result<Out, Out> {
    let body = req.json()?;
    let Some(label) = body.get("name").and_then(Value::as_str) else {
        return Err(Out::json(
            422,
            render::validation_error("Label", "name", "missing_field"),
        ));
    };
    let key = label.to_lowercase();
    if st
        .repo(owner, name)
        .expect("checked")
        .labels
        .contains_key(&key)
    {
        return Err(Out::json(
            422,
            render::validation_error("Label", "name", "already_exists"),
        ));
    }
    let color = body
        .get("color")
        .and_then(Value::as_str)
        .unwrap_or("ededed")
        .trim_start_matches('#')
        .to_string();
    let id = st.fresh_id();
    let repo = st.repo_mut(owner, name).expect("checked");
    repo.labels.insert(
        key.clone(),
        Label {
            id,
            name: label.to_string(),
            color,
            description: body
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
    );
    let repo = st.repo(owner, name).expect("checked");
    let v = render::label(&req.base, repo, &repo.labels[&key]);
    let location = v["url"].as_str().unwrap_or_default().to_string();
    Ok(Out::json(201, v).with("location", location))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = etag_of(b"{}");
        assert!(etag_matches(&tag, &tag));
        assert!(etag_matches(&format!("\"other\", W/{tag}"), &tag));
        assert!(etag_matches("*", &tag));
        assert!(!etag_matches("\"other\"", &tag));
        assert_ne!(etag_of(b"{}"), etag_of(b"[]"));
    }
}
