//! Behaviour of the double that workers rely on: conditional requests, pagination,
//! faults, the rate limit, the token check, issue state transitions, git state after
//! file changes, and the request log.

use std::time::{Duration, Instant};

use github_double::{Fault, GithubDouble, ProtectionRules, RepoOptions};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn double_with_repo() -> GithubDouble {
    let d = GithubDouble::start().await.expect("start");
    d.add_org("acme");
    d.add_repo("acme", "widgets", RepoOptions::default());
    d.put_file("acme", "widgets", "README.md", "# widgets\n");
    d
}

async fn get(d: &GithubDouble, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", d.url()))
        .send()
        .await
        .expect("get")
}

async fn send(d: &GithubDouble, method: &str, path: &str, body: Value) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = client()
        .request(m, format!("{}{path}", d.url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn etag_and_304_do_not_cost_rate_limit() {
    let d = double_with_repo().await;
    let first = get(&d, "/repos/acme/widgets").await;
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag");
    assert!(
        etag.starts_with('"') && etag.len() > 10,
        "strong ETag: {etag}"
    );
    let remaining: u64 = header(&first, "x-ratelimit-remaining").parse().unwrap();

    let again = client()
        .get(format!("{}/repos/acme/widgets", d.url()))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    assert_eq!(
        header(&again, "x-ratelimit-remaining")
            .parse::<u64>()
            .unwrap(),
        remaining,
        "a 304 is free"
    );
    assert!(again.bytes().await.unwrap().is_empty());

    // A change to the repository changes the body, hence the ETag.
    d.put_file("acme", "widgets", "LICENSE", "MIT License\n");
    let changed = client()
        .get(format!("{}/repos/acme/widgets", d.url()))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(header(&changed, "etag"), etag);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["license"]["spdx_id"], "MIT");
    let log = d.requests();
    assert!(log[1].if_none_match && log[1].status == 304);
}

#[tokio::test]
async fn pagination_link_headers() {
    let d = GithubDouble::start().await.unwrap();
    d.add_org("many");
    for i in 0..7 {
        d.add_repo("many", &format!("repo-{i}"), RepoOptions::default());
    }
    let p1 = get(&d, "/orgs/many/repos?per_page=3").await;
    let link = header(&p1, "link");
    let base = d.url();
    assert_eq!(
        link,
        format!(
            "<{base}/orgs/many/repos?per_page=3&page=2>; rel=\"next\", <{base}/orgs/many/repos?per_page=3&page=3>; rel=\"last\""
        )
    );
    let names: Vec<Value> = p1.json().await.unwrap();
    assert_eq!(names.len(), 3);
    // Organizations list newest first by default.
    assert_eq!(names[0]["name"], "repo-6");

    let p3 = get(&d, "/orgs/many/repos?per_page=3&page=3").await;
    let link = header(&p3, "link");
    assert!(link.contains("page=2>; rel=\"prev\""), "{link}");
    assert!(link.contains("page=1>; rel=\"first\""), "{link}");
    assert!(!link.contains("rel=\"next\""), "{link}");
    assert_eq!(p3.json::<Vec<Value>>().await.unwrap().len(), 1);

    let all = get(&d, "/orgs/many/repos?per_page=100").await;
    assert_eq!(header(&all, "link"), "");
    assert_eq!(all.json::<Vec<Value>>().await.unwrap().len(), 7);

    // Users list by full name; unknown owners are 404 with GitHub's error body.
    let missing = get(&d, "/orgs/nobody/repos").await;
    assert_eq!(missing.status(), 404);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["message"], "Not Found");
    assert!(err["documentation_url"].is_string());
}

#[tokio::test]
async fn faults_hit_matching_requests_then_wear_off() {
    let d = double_with_repo().await;
    d.inject_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/repos/acme/".into(),
        status: 502,
        retry_after: None,
        times: 2,
    });
    d.inject_fault(Fault {
        method: Some("POST".into()),
        path_prefix: "/repos/acme/widgets/issues".into(),
        status: 403,
        retry_after: Some(7),
        times: 1,
    });
    assert_eq!(
        get(&d, "/orgs/acme").await.status(),
        200,
        "prefix must match"
    );
    assert_eq!(get(&d, "/repos/acme/widgets").await.status(), 502);
    assert_eq!(
        get(&d, "/repos/acme/widgets/branches/main").await.status(),
        502
    );
    assert_eq!(get(&d, "/repos/acme/widgets").await.status(), 200);

    let resp = client()
        .post(format!("{}/repos/acme/widgets/issues", d.url()))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "retry-after"), "7");
    let (status, _) = send(
        &d,
        "POST",
        "/repos/acme/widgets/issues",
        json!({"title": "x"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        d.issues("acme", "widgets").len(),
        1,
        "the faulted POST wrote nothing"
    );
    assert_eq!(d.write_count(), 2);
}

#[tokio::test]
async fn latency_delays_responses() {
    let d = double_with_repo().await;
    d.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(get(&d, "/rate_limit").await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn rate_limit_runs_out() {
    let d = double_with_repo().await;
    d.set_rate_limit(100, 2);
    let a = get(&d, "/repos/acme/widgets").await;
    assert_eq!(header(&a, "x-ratelimit-limit"), "100");
    assert_eq!(header(&a, "x-ratelimit-remaining"), "1");
    assert_eq!(header(&a, "x-ratelimit-used"), "99");
    assert_eq!(header(&a, "x-ratelimit-resource"), "core");
    assert!(header(&a, "x-ratelimit-reset").parse::<u64>().unwrap() > 1_700_000_000);
    let b = get(&d, "/repos/acme/widgets").await;
    assert_eq!(header(&b, "x-ratelimit-remaining"), "0");
    let c = get(&d, "/repos/acme/widgets").await;
    assert_eq!(c.status(), 403);
    assert!(header(&c, "retry-after").parse::<u64>().unwrap() > 0);
    let body: Value = c.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("rate limit exceeded")
    );

    // The overview stays reachable and reports the exhausted window.
    let overview: Value = get(&d, "/rate_limit").await.json().await.unwrap();
    assert_eq!(overview["resources"]["core"]["remaining"], 0);
    assert_eq!(overview["rate"]["limit"], 100);
}

#[tokio::test]
async fn token_is_required_when_set() {
    let d = double_with_repo().await;
    d.set_token(Some("s3cret"));
    let anon = get(&d, "/repos/acme/widgets").await;
    assert_eq!(anon.status(), 401);
    let body: Value = anon.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    for value in ["Bearer s3cret", "token s3cret"] {
        let ok = client()
            .get(format!("{}/repos/acme/widgets", d.url()))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{value}");
    }
    let wrong = client()
        .get(format!("{}/repos/acme/widgets", d.url()))
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let log = d.requests();
    assert_eq!(log[0].authorization, None);
    assert_eq!(log[1].authorization.as_deref(), Some("Bearer s3cret"));
    d.clear_requests();
    assert!(d.requests().is_empty());
}

#[tokio::test]
async fn issue_lifecycle() {
    let d = double_with_repo().await;
    let path = "/repos/acme/widgets/issues";
    let (status, created) = send(
        &d,
        "POST",
        path,
        json!({"title": "Add LICENSE", "body": "missing", "labels": ["guardian", "policy:license"]}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["number"], 1);
    assert_eq!(created["state"], "open");
    assert_eq!(created["labels"][1]["name"], "policy:license");
    assert!(created.get("pull_request").is_none());
    assert!(created["closed_at"].is_null());
    let (_, second) = send(&d, "POST", path, json!({"title": "Protect main"})).await;
    assert_eq!(second["number"], 2);

    // Newest first by default; label filters need every label.
    let list: Vec<Value> = get(&d, path).await.json().await.unwrap();
    assert_eq!(list[0]["number"], 2);
    let filtered: Vec<Value> = get(&d, &format!("{path}?labels=guardian,policy:license"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);

    let (status, closed) = send(
        &d,
        "PATCH",
        &format!("{path}/1"),
        json!({"state": "closed", "state_reason": "not_planned"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["state_reason"], "not_planned");
    assert!(closed["closed_at"].is_string());
    let open: Vec<Value> = get(&d, path).await.json().await.unwrap();
    assert_eq!(open.len(), 1);
    let all: Vec<Value> = get(&d, &format!("{path}?state=all&direction=asc"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all[0]["number"], 1);

    let (_, reopened) = send(
        &d,
        "PATCH",
        &format!("{path}/1"),
        json!({"state": "open", "title": "Add a LICENSE", "labels": ["guardian"]}),
    )
    .await;
    assert_eq!(reopened["state"], "open");
    assert_eq!(reopened["state_reason"], "reopened");
    assert!(reopened["closed_at"].is_null());

    let (status, comment) = send(
        &d,
        "POST",
        &format!("{path}/1/comments"),
        json!({"body": "still missing"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(comment["body"], "still missing");
    let issue: Value = get(&d, &format!("{path}/1")).await.json().await.unwrap();
    assert_eq!(issue["comments"], 1);

    let views = d.issues("acme", "widgets");
    assert_eq!(views[0].title, "Add a LICENSE");
    assert_eq!(views[0].state, "open");
    assert_eq!(views[0].labels, vec!["guardian".to_string()]);
    assert_eq!(views[0].comments, vec!["still missing".to_string()]);
    assert_eq!(views[1].body, "");

    assert_eq!(
        send(&d, "PATCH", &format!("{path}/9"), json!({})).await.0,
        404
    );
    assert_eq!(
        send(&d, "PATCH", &format!("{path}/1"), json!({"state": "done"}))
            .await
            .0,
        422
    );
}

#[tokio::test]
async fn issues_disabled_and_archived_repositories_refuse_writes() {
    let d = GithubDouble::start().await.unwrap();
    d.add_repo(
        "acme",
        "no-issues",
        RepoOptions {
            has_issues: false,
            ..Default::default()
        },
    );
    d.add_repo(
        "acme",
        "old",
        RepoOptions {
            archived: true,
            ..Default::default()
        },
    );
    let (status, body) = send(
        &d,
        "POST",
        "/repos/acme/no-issues/issues",
        json!({"title": "x"}),
    )
    .await;
    assert_eq!(status, 410);
    assert_eq!(body["message"], "Issues are disabled for this repo");
    assert_eq!(
        send(&d, "POST", "/repos/acme/old/issues", json!({"title": "x"}))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn labels_are_created_once() {
    let d = double_with_repo().await;
    let path = "/repos/acme/widgets/labels";
    let body = json!({"name": "guardian", "color": "5319e7"});
    assert_eq!(send(&d, "POST", path, body.clone()).await.0, 201);
    let (status, err) = send(&d, "POST", path, body).await;
    assert_eq!(status, 422);
    assert_eq!(err["errors"][0]["code"], "already_exists");
    let label: Value = get(&d, &format!("{path}/Guardian"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(label["color"], "5319e7");
    assert_eq!(get(&d, &format!("{path}/other")).await.status(), 404);
}

#[tokio::test]
async fn files_trees_branches_and_protection() {
    let d = double_with_repo().await;
    let branch: Value = get(&d, "/repos/acme/widgets/branches/main")
        .await
        .json()
        .await
        .unwrap();
    let head1 = branch["commit"]["sha"].as_str().unwrap().to_string();
    let tree1 = branch["commit"]["commit"]["tree"]["sha"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(branch["protected"], false);

    d.put_file("acme", "widgets", ".github/workflows/ci.yml", "on: push\n");
    let branch: Value = get(&d, "/repos/acme/widgets/branches/main")
        .await
        .json()
        .await
        .unwrap();
    let head2 = branch["commit"]["sha"].as_str().unwrap().to_string();
    assert_ne!(head1, head2);
    assert_eq!(branch["commit"]["parents"][0]["sha"], head1.as_str());

    let tree: Value = get(
        &d,
        &format!("/repos/acme/widgets/git/trees/{head2}?recursive=1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(tree["sha"], tree1.as_str());
    let paths: Vec<&str> = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            ".github",
            ".github/workflows",
            ".github/workflows/ci.yml",
            "README.md"
        ]
    );
    // The old commit keeps its tree.
    let old: Value = get(
        &d,
        &format!("/repos/acme/widgets/git/trees/{head1}?recursive=1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(old["tree"].as_array().unwrap().len(), 1);

    let file: Value = get(&d, "/repos/acme/widgets/contents/.github/workflows/ci.yml")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(file["encoding"], "base64");
    assert_eq!(file["content"], "b246IHB1c2gK\n");

    d.delete_file("acme", "widgets", "README.md");
    assert_eq!(
        get(&d, "/repos/acme/widgets/contents/README.md")
            .await
            .status(),
        404
    );
    let old_readme = get(
        &d,
        &format!("/repos/acme/widgets/contents/README.md?ref={head2}"),
    )
    .await;
    assert_eq!(old_readme.status(), 200);

    assert_eq!(
        get(&d, "/repos/acme/widgets/branches/main/protection")
            .await
            .status(),
        404
    );
    d.set_protection(
        "acme",
        "widgets",
        Some(ProtectionRules {
            required_approving_reviews: Some(2),
            dismiss_stale_reviews: true,
            required_status_checks: vec!["ci".into()],
            ..Default::default()
        }),
    );
    let p: Value = get(&d, "/repos/acme/widgets/branches/main/protection")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        p["required_pull_request_reviews"]["required_approving_review_count"],
        2
    );
    assert_eq!(
        p["required_pull_request_reviews"]["dismiss_stale_reviews"],
        true
    );
    assert_eq!(p["enforce_admins"]["enabled"], false);
    assert_eq!(p["required_status_checks"]["contexts"][0], "ci");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_issue_creation_numbers_are_unique() {
    let d = double_with_repo().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &d,
                "POST",
                "/repos/acme/widgets/issues",
                json!({"title": format!("t{i}")}),
            )
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 201);
    }
    let mut numbers: Vec<u64> = d
        .issues("acme", "widgets")
        .iter()
        .map(|i| i.number)
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
}
