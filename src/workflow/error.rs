//! The workflow's error boundary: every failure of a step is either transient (try again
//! later) or permanent (dead-letter it and record it on the run). The classification
//! happens here, once, when a lower-level error is converted; the consumer maps the
//! result to ack / nak / terminate in `bus::consumer::decide`.

use std::time::Duration;

use crate::bus::BusError;
use crate::bus::envelope::DecodeError;
use crate::github::GithubError;

/// Label value of `guardian_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Github,
    Llm,
    Nats,
    Decode,
    Config,
    Policy,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Github => "github",
            ErrorKind::Llm => "llm",
            ErrorKind::Nats => "nats",
            ErrorKind::Decode => "decode",
            ErrorKind::Config => "config",
            ErrorKind::Policy => "policy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth retrying: network, 5xx, rate limits, NATS hiccups, a busy repository.
    #[error("{message}")]
    Transient {
        kind: ErrorKind,
        message: String,
        /// When the cause says how long to wait (`Retry-After`, rate-limit reset).
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: bad payload, missing repository, bad credentials.
    #[error("{message}")]
    Permanent { kind: ErrorKind, message: String },
}

impl StepError {
    pub fn permanent(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError::Permanent {
            kind,
            message: message.into(),
        }
    }

    pub fn transient(
        kind: ErrorKind,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        StepError::Transient {
            kind,
            message: message.into(),
            retry_after,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StepError::Transient { kind, .. } | StepError::Permanent { kind, .. } => *kind,
        }
    }
}

impl From<BusError> for StepError {
    fn from(e: BusError) -> Self {
        StepError::transient(ErrorKind::Nats, e.to_string(), None)
    }
}

impl From<DecodeError> for StepError {
    fn from(e: DecodeError) -> Self {
        StepError::permanent(ErrorKind::Decode, e.to_string())
    }
}

impl From<GithubError> for StepError {
    fn from(e: GithubError) -> Self {
        let message = e.to_string();
        match e.retry() {
            crate::github::Retry::After(after) => {
                StepError::transient(ErrorKind::Github, message, after)
            }
            crate::github::Retry::Never => StepError::permanent(ErrorKind::Github, message),
        }
    }
}
