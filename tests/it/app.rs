//! The GitHub App flow end to end: workers holding only the App's id and private key run
//! the `installations` target across two installations, renewing installation tokens
//! that expire mid-run without a failed step, and no token ends up anywhere it could leak.

use std::time::Duration;

use futures::StreamExt as _;
use repo_guardian::store::runs::RunStatus;

use crate::helpers::{Harness, open_and_duplicates};

/// The App the double knows; the key pair is a test-only fixture.
const APP_ID: &str = "4242";
const PRIVATE_KEY: &str = include_str!("../fixtures/github-app-test-key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/github-app-test-key.pub.pem");

impl Harness {
    /// Makes the double a GitHub App host and configures workers started from now on as
    /// that App (no personal token).
    fn as_app(&mut self, token_refresh_margin: &str) {
        self.double
            .configure_app(APP_ID.parse().unwrap(), PUBLIC_KEY)
            .expect("public key");
        for (k, v) in [
            ("GUARDIAN__GITHUB__APP__APP_ID", APP_ID),
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", PRIVATE_KEY),
            (
                "GUARDIAN__GITHUB__APP__TOKEN_REFRESH_MARGIN",
                token_refresh_margin,
            ),
        ] {
            self.worker_env.insert(k.into(), v.into());
        }
    }

    /// Every credential the double saw (installation tokens and JWTs), without `Bearer `.
    fn credentials_seen(&self) -> Vec<String> {
        let mut seen: Vec<String> = self
            .double
            .requests()
            .into_iter()
            .filter_map(|r| r.authorization)
            .filter_map(|h| h.strip_prefix("Bearer ").map(str::to_string))
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installations_run_spans_token_expiry_without_a_failed_step() {
    let mut h = Harness::start().await;
    // Every repository misses a licence: one issue each.
    let alpha = h.seed_org("app-alpha", 3, 3);
    let beta = h.seed_org("app-beta", 3, 3);
    h.double
        .add_repo("not-installed", "elsewhere", Default::default());
    h.double.add_installation("app-alpha", None);
    h.double
        .add_installation("app-beta", Some(&["repo-00", "repo-01", "repo-02"]));
    // Tokens live two seconds and each answer takes a quarter of one: the run outlives
    // several tokens of each installation.
    h.double
        .set_installation_token_lifetime(Duration::from_secs(2));
    h.double.set_latency(Duration::from_millis(250));
    // No refresh margin: tokens are used until GitHub refuses them, and each refusal
    // (401) is answered by minting a new token and sending the request again.
    h.as_app("0s");
    h.spawn_worker().await;
    h.spawn_worker().await;

    let run = h.run("installations", false).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}\n{}", h.logs());
    assert_eq!(run.repos_total, 6, "{run:?}");
    assert_eq!((run.repos_failed, run.error_count), (0, 0), "{run:?}");
    assert_eq!(run.issues.created, 6, "{run:?}");
    for (owner, repos) in [("app-alpha", &alpha), ("app-beta", &beta)] {
        let (open, dups) = open_and_duplicates(&h.issues(owner, repos));
        assert_eq!((open, dups), (3, 0), "{owner}");
    }
    assert!(h.double.issues("not-installed", "elsewhere").is_empty());

    let issued = h.double.installation_tokens_issued();
    assert!(
        issued > 2,
        "the run should outlive the first token of each installation; {issued} issued"
    );
    let dead = h.bus.js.get_stream("GUARDIAN_DLQ").await.unwrap();
    assert_eq!(
        dead.cached_info().state.messages,
        0,
        "no step dead-lettered"
    );

    // No credential anywhere it could leak: run record, events, logs, metrics, and the
    // token bucket holds them sealed.
    let credentials = h.credentials_seen();
    assert!(credentials.iter().any(|c| c.starts_with("ghs_")));
    assert!(
        credentials.iter().any(|c| c.starts_with("eyJ")),
        "JWTs were sent"
    );
    let record = serde_json::to_string(&run).unwrap();
    let events = h.events().await.join("\n");
    let logs = h.logs();
    let metrics = h.metrics(0).await.unwrap_or_default() + &h.metrics(1).await.unwrap_or_default();
    let kv = h.bus.kv("guardian_tokens").await.expect("token bucket");
    let stored: String = bucket_entries(&kv)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert!(!stored.is_empty(), "tokens are shared through the bucket");
    let key_body = PRIVATE_KEY.lines().nth(1).unwrap();
    for (place, text) in [
        ("run record", &record),
        ("events", &events),
        ("logs", &logs),
        ("metrics", &metrics),
        ("token bucket", &stored),
    ] {
        for secret in credentials.iter().map(String::as_str).chain([key_body]) {
            assert!(
                !text.contains(secret),
                "a credential leaked into the {place}"
            );
        }
    }
    assert!(logs.contains("minted an installation token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installations_run_without_an_app_fails_and_says_why() {
    let mut h = Harness::start().await;
    h.seed_org("pat-org", 1, 0);
    h.spawn_worker().await;
    let run = h.run("installations", false).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    let record = serde_json::to_string(&run).unwrap();
    assert!(record.contains("needs a GitHub App"), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_installation_tokens_sealed_in_the_bucket() {
    let h = Harness::start().await;
    h.double
        .configure_app(APP_ID.parse().unwrap(), PUBLIC_KEY)
        .unwrap();
    h.double.add_repo("shared-org", "one", Default::default());
    h.double.add_installation("shared-org", None);
    let settings = repo_guardian::config::Settings::load_from(
        None,
        [
            ("GUARDIAN__NATS__URL", h.nats.url.as_str()),
            ("GUARDIAN__GITHUB__API_URL", h.double.url().as_str()),
            ("GUARDIAN__GITHUB__APP__APP_ID", APP_ID),
            ("GUARDIAN__GITHUB__APP__PRIVATE_KEY", PRIVATE_KEY),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    repo_guardian::bus::provision::provision(&h.bus, &settings)
        .await
        .unwrap();
    let bucket = h.bus.kv(repo_guardian::bus::TOKENS_BUCKET).await.unwrap();
    // Two workers' clients: the second finds the first one's token in the bucket.
    let client = || {
        repo_guardian::github::GithubClient::new(&settings.github, None)
            .unwrap()
            .share_tokens(bucket.clone())
    };
    let first = client();
    assert!(reads(&first).await);
    let second = client();
    assert!(reads(&second).await);
    assert_eq!(
        h.double.installation_tokens_issued(),
        1,
        "minted once for the fleet"
    );

    let token = h
        .credentials_seen()
        .into_iter()
        .find(|c| c.starts_with("ghs_"))
        .expect("an installation token was used");
    let entries = bucket_entries(&bucket).await;
    assert_eq!(entries.len(), 1);
    for (key, value) in entries {
        assert!(
            !value.contains(&token),
            "{key} holds the token in the clear"
        );
    }

    // GitHub refuses the shared token: a worker drops it from the bucket too, and the
    // next one it mints is what the other worker then uses.
    h.double.revoke_installation_tokens();
    assert!(reads(&second).await);
    assert_eq!(h.double.installation_tokens_issued(), 2);
    let third = client();
    assert!(reads(&third).await);
    assert_eq!(h.double.installation_tokens_issued(), 2);
}

/// Whether `client` reads the repository of `workers_share_installation_tokens_…`.
async fn reads(client: &repo_guardian::github::GithubClient) -> bool {
    let policy = repo_guardian::github::CachePolicy::Revalidate;
    client
        .get("/repos/shared-org/one", policy)
        .await
        .unwrap()
        .is_some()
}

/// Every entry of a bucket as (key, text).
async fn bucket_entries(kv: &async_nats::jetstream::kv::Store) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut keys = kv.keys().await.unwrap();
    while let Some(Ok(key)) = keys.next().await {
        if let Ok(Some(v)) = kv.get(&key).await {
            entries.push((key, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_scan_runs_as_the_app_and_a_wrong_app_id_is_told() {
    let h = Harness::start().await;
    let repos = h.seed_org("scan-org", 2, 2);
    h.double
        .configure_app(APP_ID.parse().unwrap(), PUBLIC_KEY)
        .unwrap();
    h.double.add_installation("scan-org", None);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    std::fs::write(&key, PRIVATE_KEY).unwrap();
    let api = h.double.url();
    let scan = |app_id: &'static str| {
        let env = [
            ("GUARDIAN__GITHUB__API_URL", api.as_str()),
            ("GUARDIAN__GITHUB__APP__APP_ID", app_id),
            (
                "GUARDIAN__GITHUB__APP__PRIVATE_KEY_FILE",
                key.to_str().unwrap(),
            ),
            ("GUARDIAN__GITHUB__WRITE_INTERVAL", "0s"),
        ];
        crate::cli::guardian(
            dir.path(),
            &["scan", "installations", "--apply", "--format", "json"],
            &env,
        )
    };
    let wrong = tokio::task::block_in_place(|| scan("999"));
    assert_eq!(wrong.code, 5, "{wrong:#?}");
    assert!(wrong.stderr.contains("App's JWT"), "{}", wrong.stderr);

    let run = tokio::task::block_in_place(|| scan(APP_ID));
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains("\"target\": \"installations\""),
        "{}",
        run.stdout
    );
    let (open, dups) = open_and_duplicates(&h.issues("scan-org", &repos));
    assert_eq!((open, dups), (2, 0), "{run:#?}");
    assert!(!run.stdout.contains("ghs_") && !run.stderr.contains("ghs_"));
}
