//! The LLM boundary: a client for OpenAI-compatible Chat Completions servers (OpenAI,
//! Azure OpenAI, Ollama, vLLM, llama.cpp), the prompts it sends, the validation and
//! sanitising of what comes back, and the answer cache and token budgets it keeps in NATS.
//!
//! Nothing here decides what happens to an issue: the review step (`workflow::review`)
//! only adds text to findings and, for the `llm-audit` policy, findings whose quoted lines
//! were checked against the repository. Repository content reaches a prompt only fenced and
//! length-capped ([`prompt`]); model text reaches an issue only through [`sanitize`]. The
//! API key is held in a [`SecretString`] and leaves it only into the `Authorization` header.

pub mod answer;
pub mod prompt;
pub mod sanitize;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::LlmSettings;
pub use crate::store::runs::LlmTokens;
use crate::telemetry;
use prompt::Prompt;

/// A completion's text and what it cost.
#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    pub usage: LlmTokens,
}

/// Why a model call gave no usable text. Every kind degrades the same way (rule-based text
/// is kept); the kinds exist for logs and for the retry decision in [`LlmError::retryable`].
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("model server unreachable or too slow: {source}")]
    Transport {
        #[source]
        source: reqwest::Error,
    },
    #[error("model server answered HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("model server answered something that is not a chat completion: {source}")]
    Garbage {
        #[source]
        source: serde_json::Error,
    },
    #[error("model answer rejected: {reason}")]
    Invalid { reason: String },
}

impl LlmError {
    /// Worth another attempt: network trouble, timeouts, 429 and 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            LlmError::Transport { .. } => true,
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Garbage { .. } | LlmError::Invalid { .. } => false,
        }
    }
}

/// The wire shape of a chat completion, as much of it as is read.
#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// What the review step needs: the client and the fleet-wide cache and counters.
pub struct Llm {
    pub client: LlmClient,
    pub store: store::LlmStore,
}

impl Llm {
    /// The configured model with its bucket, or `None` when no model is configured.
    pub async fn connect(
        bus: &crate::bus::Bus,
        settings: &LlmSettings,
    ) -> anyhow::Result<Option<Arc<Llm>>> {
        let Some(client) = LlmClient::from_settings(settings)? else {
            return Ok(None);
        };
        let store = store::LlmStore::new(bus.kv(crate::bus::LLM_BUCKET).await?);
        Ok(Some(Arc::new(Llm { client, store })))
    }
}

/// One worker's model client: shared by all review steps of the worker.
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<SecretString>,
    settings: LlmSettings,
    /// Calls in flight at once in this worker (`llm.concurrency`).
    permits: Semaphore,
    /// Cleared after the server refused `response_format`; later calls ask for JSON in the
    /// instructions only.
    structured: AtomicBool,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// The client of the configured model, or `None` when no model is configured.
    pub fn from_settings(settings: &LlmSettings) -> Result<Option<LlmClient>, LlmError> {
        if !settings.configured() {
            return Ok(None);
        }
        let base = settings.api_url.as_deref().unwrap_or_default().trim();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("repo-guardian/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| LlmError::Transport { source })?;
        Ok(Some(LlmClient {
            http,
            endpoint: format!("{}/chat/completions", base.trim_end_matches('/')),
            model: settings
                .model
                .clone()
                .unwrap_or_default()
                .trim()
                .to_string(),
            api_key: settings.api_key.clone(),
            permits: Semaphore::new(settings.concurrency),
            structured: AtomicBool::new(true),
            settings: settings.clone(),
        }))
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// Asks the model one prompt, with retries on 429/5xx/network errors (honouring
    /// `Retry-After` up to `llm.max_retry_after`), and counts the reported usage in
    /// `guardian_llm_tokens_total`. The usage of every answered attempt is returned even
    /// when a later check rejects the text, because those tokens were spent.
    #[tracing::instrument(
        name = "llm chat",
        skip_all,
        fields(
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = %self.model,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            schema = prompt.schema_name,
        )
    )]
    pub async fn complete(&self, prompt: &Prompt) -> Result<Completion, LlmError> {
        let mut attempt = 0;
        loop {
            let result = self.attempt(prompt).await;
            let error = match result {
                Ok(c) => {
                    let span = tracing::Span::current();
                    span.record("gen_ai.usage.input_tokens", c.usage.prompt);
                    span.record("gen_ai.usage.output_tokens", c.usage.completion);
                    return Ok(c);
                }
                Err(e) if !e.retryable() || attempt >= self.settings.max_retries => return Err(e),
                Err(e) => e,
            };
            let scheduled = self.settings.retry_backoff * 2u32.saturating_pow(attempt);
            let delay = match &error {
                LlmError::Status {
                    retry_after: Some(after),
                    ..
                } if *after > self.settings.max_retry_after => return Err(error),
                LlmError::Status {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => scheduled,
            };
            tracing::debug!(attempt, ?delay, error.message = %error, "model call failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One HTTP request (two when the server refuses `response_format`).
    async fn attempt(&self, prompt: &Prompt) -> Result<Completion, LlmError> {
        let _permit = self.permits.acquire().await;
        let structured = self.structured.load(Ordering::Relaxed);
        match self.send(prompt, structured).await {
            Err(LlmError::Status { status, .. })
                if structured && matches!(status, 400 | 404 | 415 | 422 | 501) =>
            {
                // Servers without structured output support refuse the field itself;
                // the prompt already asks for the same JSON in words.
                self.structured.store(false, Ordering::Relaxed);
                tracing::info!(
                    status,
                    "model server refused response_format; asking for JSON in the instructions"
                );
                self.send(prompt, false).await
            }
            other => other,
        }
    }

    async fn send(&self, prompt: &Prompt, structured: bool) -> Result<Completion, LlmError> {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
            "temperature": 0,
            "max_tokens": self.settings.max_completion_tokens,
        });
        if structured {
            body["response_format"] = serde_json::json!({
                "type": "json_schema",
                "json_schema": {
                    "name": prompt.schema_name,
                    "strict": true,
                    "schema": prompt.schema,
                }
            });
        }
        let mut request = self.http.post(&self.endpoint).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|source| LlmError::Transport {
            source: source.without_url(),
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|source| LlmError::Transport {
                source: source.without_url(),
            })?;
        if !status.is_success() {
            return Err(LlmError::Status {
                status: status.as_u16(),
                message: error_message(&bytes),
                retry_after,
            });
        }
        let parsed: ChatResponse =
            serde_json::from_slice(&bytes).map_err(|source| LlmError::Garbage { source })?;
        let usage = parsed
            .usage
            .map(|u| LlmTokens {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
            })
            .unwrap_or_default();
        telemetry::metrics().llm_tokens(&self.model, usage.prompt, usage.completion);
        let content = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        Ok(Completion { content, usage })
    }
}

/// The `error.message` of an OpenAI-style error body, else a bounded excerpt of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    struct ErrorDetail {
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error.message.chars().take(300).collect(),
        Err(_) => String::from_utf8_lossy(body).chars().take(120).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_trouble_rate_limits_and_server_errors_are_retried() {
        let status = |status| LlmError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(429).retryable());
        assert!(status(503).retryable());
        assert!(!status(400).retryable());
        assert!(!status(401).retryable());
        let garbage = serde_json::from_str::<serde_json::Value>("<html>").unwrap_err();
        assert!(!LlmError::Garbage { source: garbage }.retryable());
    }

    async fn client(double: &llm_double::LlmDouble) -> LlmClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings = LlmSettings {
            api_url: Some(double.url()),
            model: Some("m".into()),
            retry_backoff: Duration::from_millis(10),
            ..LlmSettings::default()
        };
        LlmClient::from_settings(&settings).unwrap().unwrap()
    }

    fn prompt() -> Prompt {
        use prompt::tests::{finding, repo};
        prompt::remediation(&repo(), &finding("none found"), 1_000)
    }

    #[tokio::test]
    async fn rate_limits_are_retried_after_the_time_the_server_asks_for() {
        let double = llm_double::LlmDouble::start().await.unwrap();
        double.set_fault_for(
            llm_double::Fault::RateLimited {
                retry_after_secs: 1,
            },
            1,
        );
        let started = std::time::Instant::now();
        let answer = client(&double).await.complete(&prompt()).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After honoured"
        );
        assert_eq!(double.call_count(), 2);
        let (p, c) = double.reported_usage();
        assert_eq!(
            answer.usage,
            LlmTokens {
                prompt: p,
                completion: c
            }
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_up_to_the_limit_then_reported() {
        let double = llm_double::LlmDouble::start().await.unwrap();
        double.set_fault(llm_double::Fault::Status(503));
        let err = client(&double).await.complete(&prompt()).await.unwrap_err();
        assert!(matches!(err, LlmError::Status { status: 503, .. }), "{err}");
        assert_eq!(double.call_count(), 3, "one call and two retries");
        double.set_fault(llm_double::Fault::Status(401));
        let before = double.call_count();
        assert!(client(&double).await.complete(&prompt()).await.is_err());
        assert_eq!(double.call_count(), before + 1, "a 401 is not retried");
    }

    #[tokio::test]
    async fn a_server_without_structured_output_gets_the_json_instruction_only() {
        let double = llm_double::LlmDouble::start().await.unwrap();
        double.set_fault(llm_double::Fault::RejectResponseFormat);
        let client = client(&double).await;
        let first = client.complete(&prompt()).await.unwrap();
        assert!(answer::remediation(&first.content, 1_000).is_ok());
        client.complete(&prompt()).await.unwrap();
        let formats: Vec<bool> = double.calls().iter().map(|c| c.response_format).collect();
        assert_eq!(formats, [true, false, false], "the refusal is remembered");
        assert!(double.calls()[1].prompt.contains("JSON schema"));
    }

    #[test]
    fn error_messages_come_from_the_body_and_are_bounded() {
        assert_eq!(
            error_message(br#"{"error":{"message":"model not found"}}"#),
            "model not found"
        );
        assert_eq!(error_message(&[b'x'; 500]).len(), 120);
    }
}
