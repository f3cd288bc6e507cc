//! The double as a GitHub App host: JWTs are verified (signature, issuer, expiry),
//! installation tokens are issued with a lifetime and then refused, and each installation
//! reads only its own repositories.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use github_double::{GithubDouble, RepoOptions};
use serde_json::{Value, json};

const APP_ID: u64 = 77;
/// Test-only key pair (see tests/fixtures/README.md at the repository root).
const PRIVATE_KEY: &str = include_str!("../../../tests/fixtures/github-app-test-key.pem");
const PUBLIC_KEY: &str = include_str!("../../../tests/fixtures/github-app-test-key.pub.pem");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A JWT over `claims`, signed with the test key.
fn jwt(claims: Value) -> String {
    github_double::sign_jwt(PRIVATE_KEY, &claims).expect("signed")
}

fn good_jwt() -> String {
    jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID}))
}

async fn call(d: &GithubDouble, method: &str, path: &str, bearer: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            format!("{}{path}", d.url()),
        )
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Two installations: `acme` with all its repositories, `octo` with only `b`.
async fn app_double() -> (GithubDouble, u64, u64) {
    let d = GithubDouble::start().await.expect("start");
    d.configure_app(APP_ID, PUBLIC_KEY).expect("public key");
    for (owner, name) in [("acme", "a"), ("octo", "b"), ("octo", "c")] {
        d.add_repo(owner, name, RepoOptions::default());
    }
    let acme = d.add_installation("acme", None);
    let octo = d.add_installation("octo", Some(&["b"]));
    (d, acme, octo)
}

async fn token(d: &GithubDouble, installation: u64) -> String {
    let (status, body) = call(
        d,
        "POST",
        &format!("/app/installations/{installation}/access_tokens"),
        &good_jwt(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn jwts_are_checked_for_signature_issuer_and_expiry() {
    let (d, _, _) = app_double().await;
    let (status, body) = call(&d, "GET", "/app/installations", &good_jwt()).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().map(Vec::len), Some(2));
    assert_eq!(body[0]["account"]["login"], "acme");
    let (status, body) = call(&d, "GET", "/app", &good_jwt()).await;
    assert_eq!((status, body["id"].clone()), (200, json!(APP_ID)));
    // The issuer may be a string too, as GitHub accepts.
    let as_text = jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID.to_string()}));
    assert_eq!(call(&d, "GET", "/app", &as_text).await.0, 200);

    let refused = [
        (
            "another app",
            jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": 78})),
        ),
        (
            "expired",
            jwt(json!({"iat": now() - 700, "exp": now() - 100, "iss": APP_ID})),
        ),
        (
            "too long",
            jwt(json!({"iat": now(), "exp": now() + 3600, "iss": APP_ID})),
        ),
        ("not a JWT", "ghp_personal".to_string()),
    ];
    for (what, bearer) in refused {
        let (status, body) = call(&d, "GET", "/app/installations", &bearer).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    // A valid token whose signature was made by another key.
    let good = good_jwt();
    let (signed, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
    assert_eq!(call(&d, "GET", "/app", &forged).await.0, 401);
    // An installation token is no JWT.
    let t = token(&d, d.add_installation("solo", None)).await;
    assert_eq!(call(&d, "GET", "/app/installations", &t).await.0, 401);
    assert_eq!(d.installation_tokens_issued(), 1);
}

#[tokio::test]
async fn installation_tokens_see_their_own_repositories_only() {
    let (d, acme, octo) = app_double().await;
    let acme_token = token(&d, acme).await;
    let octo_token = token(&d, octo).await;
    assert_eq!(call(&d, "GET", "/repos/acme/a", &acme_token).await.0, 200);
    assert_eq!(call(&d, "GET", "/repos/octo/b", &acme_token).await.0, 404);
    assert_eq!(call(&d, "GET", "/repos/octo/b", &octo_token).await.0, 200);
    // Installed on `octo` for `b` only.
    assert_eq!(call(&d, "GET", "/repos/octo/c", &octo_token).await.0, 404);
    let (status, body) = call(&d, "GET", "/installation/repositories", &octo_token).await;
    assert_eq!(status, 200);
    assert_eq!(body["total_count"], 1);
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(body["repositories"][0]["full_name"], "octo/b");
    // The installation of a repository, an organisation, a user; none where not installed.
    let jwt = good_jwt();
    let (status, body) = call(&d, "GET", "/repos/octo/b/installation", &jwt).await;
    assert_eq!((status, body["id"].clone()), (200, json!(octo)));
    assert_eq!(
        call(&d, "GET", "/repos/octo/c/installation", &jwt).await.0,
        404
    );
    assert_eq!(
        call(&d, "GET", "/orgs/acme/installation", &jwt).await.0,
        200
    );
    assert_eq!(
        call(&d, "GET", "/orgs/nobody/installation", &jwt).await.0,
        404
    );
    assert_eq!(
        call(&d, "GET", "/app/installations/999/access_tokens", &jwt)
            .await
            .0,
        404
    );
    let (status, _) = call(&d, "POST", "/app/installations/999/access_tokens", &jwt).await;
    assert_eq!(status, 404);
    // Unknown tokens are refused everywhere.
    assert_eq!(call(&d, "GET", "/repos/acme/a", "ghs_madeup").await.0, 401);
}

#[tokio::test]
async fn installation_tokens_expire_and_can_be_revoked() {
    let (d, acme, _) = app_double().await;
    d.set_installation_token_lifetime(Duration::from_secs(1));
    let t = token(&d, acme).await;
    assert_eq!(call(&d, "GET", "/repos/acme/a", &t).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = call(&d, "GET", "/repos/acme/a", &t).await;
    assert_eq!(
        (status, body["message"].clone()),
        (401, json!("Bad credentials"))
    );

    d.set_installation_token_lifetime(Duration::from_secs(3600));
    let t = token(&d, acme).await;
    assert_eq!(call(&d, "GET", "/repos/acme/a", &t).await.0, 200);
    d.revoke_installation_tokens();
    assert_eq!(call(&d, "GET", "/repos/acme/a", &t).await.0, 401);
    assert_eq!(d.installation_tokens_issued(), 2);
}
