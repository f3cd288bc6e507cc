//! What a step handler returns to the bus: success, or a [`StepError`] saying whether the
//! failure is worth retrying. The bus decides ack / nak / terminate from it in
//! `consumer::decide`; *which* lower-level errors are transient is decided elsewhere, once,
//! by the conversions in `workflow::error`. This type lives in `bus` so that the bus needs
//! nothing from the workflow.

use std::time::Duration;

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

/// The lower-level error a step failed with, kept whole so logs show its cause chain.
#[derive(Debug)]
pub struct Cause(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth retrying: network, 5xx, NATS hiccups, a busy repository.
    #[error("{message}")]
    Transient {
        kind: ErrorKind,
        message: String,
        /// When the cause says how long to wait (`Retry-After`).
        retry_after: Option<Duration>,
        #[source]
        source: Option<Cause>,
    },
    /// GitHub's request budget is exhausted for `wait`: not a failure of the step. The
    /// message is handed back for after the wait without using up its delivery budget,
    /// and, when `fleet_wide`, the whole fleet stops calling GitHub until then (a wait for
    /// the write budget alone lets reads go on).
    #[error("{message}")]
    BudgetExhausted {
        message: String,
        wait: Duration,
        fleet_wide: bool,
        #[source]
        source: Option<Cause>,
    },
    /// Retrying cannot help: bad payload, missing repository, bad credentials.
    #[error("{message}")]
    Permanent {
        kind: ErrorKind,
        message: String,
        #[source]
        source: Option<Cause>,
    },
}

impl StepError {
    pub fn permanent(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError::Permanent {
            kind,
            message: message.into(),
            source: None,
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
            source: None,
        }
    }

    /// Keeps the lower-level error as the source, so logs show the whole cause chain.
    pub fn with_source(
        mut self,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        match &mut self {
            StepError::Transient { source, .. }
            | StepError::BudgetExhausted { source, .. }
            | StepError::Permanent { source, .. } => *source = Some(Cause(error.into())),
        }
        self
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StepError::Transient { kind, .. } | StepError::Permanent { kind, .. } => *kind,
            StepError::BudgetExhausted { .. } => ErrorKind::Github,
        }
    }
}

impl From<super::BusError> for StepError {
    fn from(e: super::BusError) -> Self {
        StepError::transient(ErrorKind::Nats, e.to_string(), None).with_source(e)
    }
}

impl From<super::envelope::DecodeError> for StepError {
    fn from(e: super::envelope::DecodeError) -> Self {
        StepError::permanent(ErrorKind::Decode, e.to_string()).with_source(e)
    }
}
