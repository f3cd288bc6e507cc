//! The NATS JetStream bus: names, connection, provisioning, step envelopes, consumers,
//! dead letters, the micro service and the fleet-wide flags.
//!
//! Every name an operator types (`GUARDIAN_WORK`, `guardian-scan`, `guardian_runs`, …) is
//! defined once here. Nothing in this module knows GitHub or the policies: the workflow
//! plugs its step handlers into [`consumer::run_step_consumer`].

pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod events;
pub mod flags;
pub mod latest;
pub mod outcome;
pub mod provision;

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use secrecy::ExposeSecret as _;

use crate::config::NatsSettings;

pub const WORK_STREAM: &str = "GUARDIAN_WORK";
pub const EVENTS_STREAM: &str = "GUARDIAN_EVENTS";
pub const DLQ_STREAM: &str = "GUARDIAN_DLQ";
pub const RUNS_BUCKET: &str = "guardian_runs";
pub const REPOS_BUCKET: &str = "guardian_repos";
pub const HTTP_BUCKET: &str = "guardian_http";
pub const FLAGS_BUCKET: &str = "guardian_flags";
pub const LEASES_BUCKET: &str = "guardian_leases";
pub const DEFERRALS_BUCKET: &str = "guardian_deferrals";
/// The fleet's shared GitHub API budget per token (`crate::github::budget`).
pub const BUDGET_BUCKET: &str = "guardian_budget";
/// LLM answer cache and token budgets (`crate::llm::store`).
pub const LLM_BUCKET: &str = "guardian_llm";
/// GitHub App installation tokens shared by the fleet, sealed with a key derived from the
/// App's private key (`crate::github::app`).
pub const TOKENS_BUCKET: &str = "guardian_tokens";
pub const SERVICE_NAME: &str = "repo-guardian";
pub const RUN_ENDPOINT: &str = "guardian.run";
pub const STATUS_ENDPOINT: &str = "guardian.status";

/// The steps of a run, each carried by its own subject and durable consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Plan,
    Scan,
    Review,
    Reconcile,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Plan, Step::Scan, Step::Review, Step::Reconcile];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Scan => "scan",
            Step::Review => "review",
            Step::Reconcile => "reconcile",
        }
    }

    /// `guardian.work.<step>`
    pub fn subject(self) -> String {
        format!("guardian.work.{}", self.as_str())
    }

    /// `guardian.dlq.<step>`, where its dead letters go.
    pub fn dlq_subject(self) -> String {
        format!("guardian.dlq.{}", self.as_str())
    }

    /// How the worker names this step's consumer task in logs and `/readyz`.
    pub fn consumer_task(self) -> String {
        format!("the {} consumer", self.consumer())
    }

    /// Durable consumer name, `guardian-<step>`.
    pub fn consumer(self) -> String {
        format!("guardian-{}", self.as_str())
    }

    pub fn from_subject(subject: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| subject == s.subject())
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failures talking to NATS; always worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// The server URL(s) with any user and password removed.
        url: String,
        #[source]
        source: Redacted,
    },
    #[error("cannot read NATS credentials file {path}")]
    Creds {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("NATS: {context}: {source}")]
    Nats {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    pub fn nats(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BusError::Nats {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// An error whose text (its whole cause chain, flattened) had every secret removed. Used
/// where a library's error may quote a connection string with its password.
#[derive(Debug)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(error: &(dyn std::error::Error + 'static), secrets: &[&str]) -> Redacted {
        let mut text = error.to_string();
        let mut next = error.source();
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret, "[REDACTED]");
        }
        Redacted(text)
    }
}

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// The secrets a NATS connection error might quote: the password given in settings and
/// the user info of every configured URL (raw and percent-decoded).
fn connection_secrets(settings: &NatsSettings) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(password) = &settings.password {
        secrets.push(password.expose_secret().to_string());
    }
    for raw in settings.url.split(',') {
        if let Ok(u) = url::Url::parse(raw.trim()) {
            if let Some(password) = u.password() {
                secrets.push(password.to_string());
                if let Some((decoded, _)) = url::form_urlencoded::parse(password.as_bytes()).next()
                {
                    secrets.push(decoded.into_owned());
                }
            }
            if !u.username().is_empty() && u.password().is_none() {
                // A bare token in the user part (`nats://TOKEN@host`) is a secret too.
                secrets.push(u.username().to_string());
            }
        }
    }
    secrets
}

/// A connected client with the JetStream context and the bucket handles every part uses.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Bus {
    /// Connects with the configured credentials. Fails fast with the URL in the message.
    pub async fn connect(settings: &NatsSettings, name: &str) -> Result<Bus, BusError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5));
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            opts = opts.user_and_password(user.clone(), password.expose_secret().to_string());
        }
        if let Some(path) = &settings.creds {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| BusError::Creds {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        // `retry_on_initial_connect` makes connect return at once and keep trying in the
        // background; wait a bounded time for the first connection so a wrong URL is reported.
        let client = opts
            .connect(settings.url.as_str())
            .await
            .map_err(|source| {
                let secrets = connection_secrets(settings);
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                BusError::Connect {
                    url: redact_url(&settings.url),
                    source: Redacted::new(&source, &secrets),
                }
            })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(BusError::nats(
                    format!("connecting to {}", redact_url(&settings.url)),
                    "no server answered within 10s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let js = jetstream::new(client.clone());
        Ok(Bus { client, js })
    }

    pub async fn kv(&self, bucket: &str) -> Result<kv::Store, BusError> {
        self.js
            .get_key_value(bucket)
            .await
            .map_err(|e| BusError::nats(format!("opening bucket {bucket}"), e))
    }

    /// Publishes onto a stream with `Nats-Msg-Id` and the current trace context, and waits
    /// for the stream's acknowledgement (so a returned `Ok` means the message is durable).
    pub async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        self.publish_with_headers(subject, msg_id, payload, async_nats::HeaderMap::new())
            .await
    }

    pub async fn publish_with_headers(
        &self,
        subject: String,
        msg_id: &str,
        payload: Vec<u8>,
        mut headers: async_nats::HeaderMap,
    ) -> Result<(), BusError> {
        crate::telemetry::inject(&mut headers);
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .headers(headers)
            .message_id(msg_id);
        let ack = self
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| BusError::nats(format!("publishing to {subject}"), e))?;
        ack.await
            .map_err(|e| BusError::nats(format!("acknowledgement for {subject}"), e))?;
        Ok(())
    }
}

/// Keeps secrets out of any connection string that gets logged: every URL of a
/// comma-separated list loses its user and password.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = match one.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, one),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..authority_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info() {
        assert_eq!(
            redact_url("nats://u:s3cret@a:4222,nats://t0ken@b:4222"),
            "nats://a:4222,nats://b:4222"
        );
        assert_eq!(redact_url("u:s3cret@host:4222"), "host:4222");
    }

    #[test]
    fn redacted_errors_hide_secrets_in_the_whole_chain() {
        let inner = std::io::Error::other("dial nats://u:s3cret@a:4222 refused");
        let outer = BusError::nats("connecting", inner);
        let redacted = Redacted::new(&outer, &["s3cret"]);
        assert!(!redacted.to_string().contains("s3cret"), "{redacted}");
        assert!(redacted.to_string().contains("refused"));
    }
}
