//! A deterministic OpenAI-compatible Chat Completions double.
//!
//! It serves `POST …/chat/completions` (under any prefix, so both `http://host/v1` and
//! `http://host` work as an `api_url`) the way OpenAI, Ollama, vLLM and llama.cpp's server
//! do: a `choices[0].message.content` string and a `usage` object. Answers are computed
//! from the request alone, so the same prompt always gets the same answer and the same
//! token counts, which lets tests compare counters exactly. Tests steer it: fixed answers
//! ([`LlmDouble::set_remediation`], [`LlmDouble::set_audit`]), faults ([`Fault`]: HTTP
//! errors, rate limits, garbage, schema-violating JSON, slow or no answers, refusing
//! `response_format`), and inspection ([`LlmDouble::calls`], [`LlmDouble::reported_usage`]).
//!
//! What the double does not do: judge anything. Its default audit answer merely points
//! at lines that interpolate `${{ github.event.… }}`, which is enough to see the whole
//! review path work in `guardian dev --demo` without a network.
//!
//! State lives behind one `std::sync::Mutex` never held across an `.await`, so several
//! worker processes may call the same double concurrently.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Schema name the client uses for the workflow audit; every other request is treated as
/// a remediation request.
pub const AUDIT_SCHEMA: &str = "workflow_audit";

/// How the double misbehaves, for the calls it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer with this HTTP status and an OpenAI-style error body.
    Status(u16),
    /// Answer 429 with `Retry-After` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// Answer 200 with a body that is not JSON at all.
    Garbage,
    /// Answer 200 with a well-formed completion whose content violates the schema (usage
    /// is still reported: the tokens were spent).
    SchemaViolation,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Answer 400 to requests that carry `response_format`, normally otherwise (as servers
    /// without structured output support do).
    RejectResponseFormat,
}

/// One call as the double saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub model: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// `workflow_audit` or `remediation`.
    pub kind: String,
    /// Whether the request asked for structured output with `response_format`.
    pub response_format: bool,
    /// All message contents, joined by blank lines.
    pub prompt: String,
    /// HTTP status answered; 0 while (or when) no answer was sent, e.g. the caller gave up.
    pub status: u16,
    /// Usage reported in the answer (zero when none was reported).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

struct State {
    fault: Fault,
    /// Applies the fault to this many more calls only; `None` = to every call.
    fault_calls: Option<usize>,
    remediation: Option<String>,
    audit: Option<Value>,
    calls: Vec<Call>,
}

/// A running double; the server task lives as long as the runtime.
#[derive(Clone)]
pub struct LlmDouble {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl LlmDouble {
    /// Starts a double on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<LlmDouble> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a double on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<LlmDouble> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            fault: Fault::None,
            fault_calls: None,
            remediation: None,
            audit: None,
            calls: Vec::new(),
        }));
        let router = Router::new()
            .fallback(axum::routing::post(completions))
            .with_state(state.clone());
        tokio::spawn(async move {
            // An error here means the listener broke, which callers see as failed requests.
            let _ = axum::serve(listener, router).await;
        });
        Ok(LlmDouble { state, addr })
    }

    /// Base URL to configure as `llm.api_url` (`http://127.0.0.1:PORT/v1`).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Misbehaves on every call from now on (`Fault::None` heals it).
    pub fn set_fault(&self, fault: Fault) {
        let mut s = self.lock();
        s.fault = fault;
        s.fault_calls = None;
    }

    /// Misbehaves on the next `calls` calls only, then answers normally.
    pub fn set_fault_for(&self, fault: Fault, calls: usize) {
        let mut s = self.lock();
        s.fault = fault;
        s.fault_calls = Some(calls);
    }

    /// Remediation text answered to every remediation request (`None`: the default answer).
    pub fn set_remediation(&self, text: Option<&str>) {
        self.lock().remediation = text.map(str::to_string);
    }

    /// JSON answered to every audit request (`None`: the default answer).
    pub fn set_audit(&self, answer: Option<Value>) {
        self.lock().audit = answer;
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn call_count(&self) -> usize {
        self.lock().calls.len()
    }

    /// Sum of the usage reported so far: (prompt, completion).
    pub fn reported_usage(&self) -> (u64, u64) {
        self.lock().calls.iter().fold((0, 0), |(p, c), call| {
            (p + call.prompt_tokens, c + call.completion_tokens)
        })
    }
}

/// Deterministic token count: one token per started group of four characters.
pub fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

async fn completions(
    AxState(state): AxState<Arc<Mutex<State>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error(400, "request body is not JSON"),
    };
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let prompt = request["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        })
        .unwrap_or_default();
    let response_format = request.get("response_format").is_some();
    let kind = if prompt.contains(AUDIT_SCHEMA) {
        AUDIT_SCHEMA
    } else {
        "remediation"
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let (fault, remediation, audit, index) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        // Recorded on arrival, so a call whose caller gave up before the answer counts too.
        s.calls.push(Call {
            model: model.clone(),
            authorization,
            kind: kind.to_string(),
            response_format,
            prompt: prompt.clone(),
            status: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        let index = s.calls.len() - 1;
        let fault = match s.fault_calls {
            Some(0) => Fault::None,
            Some(n) => {
                s.fault_calls = Some(n - 1);
                s.fault.clone()
            }
            None => s.fault.clone(),
        };
        (fault, s.remediation.clone(), s.audit.clone(), index)
    };
    if let Fault::Slow(delay) = fault {
        tokio::time::sleep(delay).await;
    }

    let record = |status: u16, prompt_tokens: u64, completion_tokens: u64| {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(call) = s.calls.get_mut(index) {
            call.status = status;
            call.prompt_tokens = prompt_tokens;
            call.completion_tokens = completion_tokens;
        }
    };

    let content = match fault {
        Fault::Status(code) => {
            record(code, 0, 0);
            return error(code, "the model server failed");
        }
        Fault::RateLimited { retry_after_secs } => {
            record(429, 0, 0);
            let mut r = error(429, "rate limit reached");
            if let Ok(v) = retry_after_secs.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
        }
        Fault::RejectResponseFormat if response_format => {
            record(400, 0, 0);
            return error(400, "response_format of type json_schema is not supported");
        }
        Fault::Garbage => {
            record(200, 0, 0);
            return (StatusCode::OK, "<html><body>upstream hiccup").into_response();
        }
        Fault::SchemaViolation => {
            json!({ "verdict": ["not", "the", "schema"], "remedy": 42 }).to_string()
        }
        _ if kind == AUDIT_SCHEMA => audit.unwrap_or_else(|| default_audit(&prompt)).to_string(),
        _ => json!({ "remediation": remediation.unwrap_or_else(|| default_remediation(&prompt)) })
            .to_string(),
    };
    let (prompt_tokens, completion_tokens) = (tokens(&prompt), tokens(&content));
    record(200, prompt_tokens, completion_tokens);
    axum::Json(json!({
        "id": format!("chatcmpl-double-{}", prompt_tokens * 31 + completion_tokens),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    }))
    .into_response()
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        axum::Json(json!({ "error": { "message": message, "type": "double_error" } })),
    )
        .into_response()
}

/// The value of the first `Label: value` line of the prompt.
fn field<'a>(prompt: &'a str, label: &str) -> Option<&'a str> {
    prompt
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}

fn default_remediation(prompt: &str) -> String {
    let title = field(prompt, "Finding:").unwrap_or("this finding");
    let repo = field(prompt, "Repository:").unwrap_or("this repository");
    format!(
        "For `{repo}`: address \"{title}\" in a small pull request, have a maintainer review \
         it, and keep the change covered by CI. See https://docs.github.com/en/code-security \
         for background."
    )
}

/// Flags every line that interpolates `${{ github.event.… }}`, per `File:` section.
fn default_audit(prompt: &str) -> Value {
    let mut findings = Vec::new();
    let mut path = None;
    for line in prompt.lines() {
        if let Some(p) = line.trim().strip_prefix("File:") {
            path = Some(p.trim().to_string());
            continue;
        }
        if let Some(path) = &path
            && line.contains("${{ github.event.")
        {
            findings.push(json!({
                "path": path,
                "title": "Event data interpolated into a script",
                "severity": "high",
                "explanation": "Text from the triggering event is pasted into a shell script, \
                                so whoever controls that text controls the script.",
                "quote": [line.trim()],
                "remediation": "Pass the value through an `env:` variable and quote it in the script."
            }));
        }
    }
    json!({ "findings": findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(double: &LlmDouble, body: Value) -> (u16, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::Client::new()
            .post(format!("{}/chat/completions", double.url()))
            .bearer_auth("k")
            .json(&body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    fn request(content: &str) -> Value {
        json!({ "model": "m", "messages": [{ "role": "user", "content": content }] })
    }

    #[tokio::test]
    async fn answers_deterministically_and_reports_usage() {
        let double = LlmDouble::start().await.expect("start");
        let (status, a) = post(&double, request("Finding: No licence\nRepository: o/r")).await;
        let (_, b) = post(&double, request("Finding: No licence\nRepository: o/r")).await;
        assert_eq!(status, 200);
        let a: Value = serde_json::from_str(&a).expect("json");
        let b: Value = serde_json::from_str(&b).expect("json");
        assert_eq!(a, b);
        let content = a["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        assert!(content.contains("No licence"), "{content}");
        let usage = double.reported_usage();
        assert_eq!(
            usage.0,
            2 * a["usage"]["prompt_tokens"].as_u64().expect("usage")
        );
        assert_eq!(double.calls()[0].authorization.as_deref(), Some("Bearer k"));
    }

    #[tokio::test]
    async fn faults_apply_to_the_configured_number_of_calls() {
        let double = LlmDouble::start().await.expect("start");
        double.set_fault_for(Fault::Status(500), 1);
        assert_eq!(post(&double, request("x")).await.0, 500);
        assert_eq!(post(&double, request("x")).await.0, 200);
        double.set_fault(Fault::Garbage);
        let (status, body) = post(&double, request("x")).await;
        assert_eq!(status, 200);
        assert!(serde_json::from_str::<Value>(&body).is_err());
        double.set_fault(Fault::RejectResponseFormat);
        let mut structured = request("x");
        structured["response_format"] = json!({ "type": "json_object" });
        assert_eq!(post(&double, structured).await.0, 400);
        assert_eq!(post(&double, request("x")).await.0, 200);
        assert_eq!(double.call_count(), 5);
    }

    #[tokio::test]
    async fn default_audit_quotes_event_interpolations() {
        let double = LlmDouble::start().await.expect("start");
        let prompt = format!(
            "{AUDIT_SCHEMA}\nFile: .github/workflows/ci.yml\n    run: echo \"${{{{ github.event.issue.title }}}}\"\n"
        );
        let (_, body) = post(&double, request(&prompt)).await;
        let body: Value = serde_json::from_str(&body).expect("json");
        let answer: Value = serde_json::from_str(
            body["choices"][0]["message"]["content"]
                .as_str()
                .expect("content"),
        )
        .expect("answer json");
        assert_eq!(answer["findings"][0]["path"], ".github/workflows/ci.yml");
        assert_eq!(
            answer["findings"][0]["quote"][0],
            "run: echo \"${{ github.event.issue.title }}\""
        );
    }
}
