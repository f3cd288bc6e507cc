//! Exit codes and error reports: the one place where a failure of any command becomes
//! a message for a person (what happened, what to do next) and an exit code.
//!
//! The table [`EXIT_CODES`] is the single definition: `--help` prints it, `docs/cli.md`
//! documents it (a test compares them), and [`report`] only returns codes from it.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::client::ClientError;
use crate::config::ConfigError;
use crate::store::runs::RunStatus;

/// Every exit code `guardian` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked; a run `succeeded`; `check` found nothing.
    Success = 0,
    /// A run `failed` (or `stalled`), or `check` found something.
    Failed = 1,
    /// The command line or the configuration is wrong: nothing was done. For `check`, also
    /// a checkout it cannot check (unreadable, a policy that cannot be evaluated).
    Usage = 2,
    /// A run ended `partial`: some repositories failed.
    Partial = 3,
    /// A run was still going when the command stopped waiting (`--timeout`).
    Timeout = 4,
    /// The command could not do its job: NATS or GitHub unreachable, server not
    /// provisioned, no worker, request refused, run not found.
    Error = 5,
}

/// `(code, meaning)` for `--help` and `docs/cli.md`.
pub const EXIT_CODES: [(u8, &str); 6] = [
    (
        Exit::Success as u8,
        "success: the run succeeded; `check` found nothing",
    ),
    (
        Exit::Failed as u8,
        "the run failed or stalled; `check` found something",
    ),
    (
        Exit::Usage as u8,
        "usage error: bad arguments or configuration; `check` could not check the path",
    ),
    (
        Exit::Partial as u8,
        "the run ended partial: some repositories failed",
    ),
    (
        Exit::Timeout as u8,
        "timed out waiting for the run (`--timeout`)",
    ),
    (
        Exit::Error as u8,
        "could not do the job: NATS or GitHub unreachable, not provisioned, refused",
    ),
];

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// The exit code of a finished run.
pub fn for_status(status: RunStatus) -> Exit {
    match status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Partial => Exit::Partial,
        RunStatus::Queued | RunStatus::Running => Exit::Timeout,
        RunStatus::Failed | RunStatus::Stalled => Exit::Failed,
    }
}

/// A failure the CLI itself diagnosed, with the exit code and an optional hint on what
/// to do next. The cause, when there is one, stays attached as the source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Exit::Error, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// What to tell a person about `err`, and the exit code: the error's own message, its
/// causes (each once), and a hint when the kind of failure has an obvious next step.
pub fn report(err: &anyhow::Error) -> (Exit, String) {
    let (exit, mut text, hint) = classify(err);
    // Causes not already part of the message, once each (many errors embed their
    // source's text in their own). A configuration error's whole story is already told.
    if !err.is::<ConfigError>() {
        for cause in err.chain().skip(1) {
            let line = cause.to_string();
            if !text.contains(&line) {
                let _ = write!(text, ": {line}");
            }
        }
    }
    if let Some(hint) = hint {
        let _ = write!(text, "\n  hint: {hint}");
    }
    (exit, text)
}

fn classify(err: &anyhow::Error) -> (Exit, String, Option<String>) {
    if let Some(e) = err.downcast_ref::<CliError>() {
        return (e.exit, e.message.clone(), e.hint.clone());
    }
    if let Some(e) = err.downcast_ref::<ConfigError>() {
        return (
            Exit::Usage,
            format!("configuration: {}", config_message(e)),
            Some(
                "every key is listed in docs/configuration.md and by `guardian config defaults`"
                    .into(),
            ),
        );
    }
    if let Some(e) = err.downcast_ref::<crate::domain::TargetError>() {
        return (
            Exit::Usage,
            e.to_string(),
            Some(
                "a target is OWNER/REPO, org:NAME, user:NAME or installations (GitHub App)".into(),
            ),
        );
    }
    if let Some(e) = err.downcast_ref::<crate::check::CheckError>() {
        // `check` documents 2 for every checkout it cannot check.
        return (Exit::Usage, e.to_string(), None);
    }
    if let Some(e) = err.downcast_ref::<ClientError>() {
        return client_report(e);
    }
    (Exit::Error, err.to_string(), None)
}

fn client_report(e: &ClientError) -> (Exit, String, Option<String>) {
    let start = "start a worker (`guardian worker`) on this NATS server, or a local fleet with `guardian dev`";
    match e {
        ClientError::NoWorker => (
            Exit::Error,
            format!("{e}: no worker is connected to this NATS server"),
            Some(start.into()),
        ),
        ClientError::NoAnswer(_) => (
            Exit::Error,
            format!("{e}: workers are connected but busy or stuck"),
            Some("`guardian runs list` and the workers' logs show what they are doing".into()),
        ),
        ClientError::NotProvisioned { .. } => (
            Exit::Error,
            format!("{e}: the server has not been provisioned for Repo Guardian"),
            Some("run `guardian provision` or start a worker (it provisions on start)".into()),
        ),
        ClientError::Refused { code, .. } if code.starts_with('4') => {
            (Exit::Usage, e.to_string(), None)
        }
        ClientError::Timeout { run_id, .. } => (
            Exit::Timeout,
            e.to_string(),
            Some(format!(
                "it keeps going: `guardian runs show {run_id}` shows where it is"
            )),
        ),
        _ => (Exit::Error, e.to_string(), None),
    }
}

/// A configuration error in a person's terms: `key: problem (where)`, without the
/// configuration library's repetitions and Rust type names.
pub fn config_message(e: &ConfigError) -> String {
    match e {
        ConfigError::Load(inner) => load_message(inner),
        ConfigError::Invalid { key, problem } => format!("{key}: {problem}"),
        ConfigError::Policy { key, problem } => format!("{key}: {problem}"),
    }
}

fn load_message(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::At { error, origin, key } => {
            let inner = load_message(error);
            let mut text = match key {
                Some(key) if !inner.starts_with(key.as_str()) => format!("{key}: {inner}"),
                _ => inner,
            };
            if let Some(origin) = origin
                && !text.contains(origin.as_str())
            {
                let _ = write!(text, " (in {origin})");
            }
            text
        }
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => {
            let mut text = match key {
                Some(key) => format!("{key}: expected {expected}, got {unexpected}"),
                None => format!("expected {expected}, got {unexpected}"),
            };
            if let Some(origin) = origin {
                let _ = write!(text, " (in {origin})");
            }
            text
        }
        config::ConfigError::FileParse { uri, cause } => match uri {
            Some(uri) => format!("{uri}: {cause}"),
            None => cause.to_string(),
        },
        config::ConfigError::NotFound(key) => format!("{key}: missing"),
        config::ConfigError::Message(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> ConfigError {
        crate::config::Settings::load_from(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap_err()
    }

    #[test]
    fn configuration_errors_read_key_problem_once() {
        let text = config_message(&load(&[("GUARDIAN__TELEMETRY__LOG_FORMAT", "xml")]));
        assert_eq!(
            text,
            "telemetry.log_format: unknown value \"xml\", expected one of: json, human"
        );
        let text = config_message(&load(&[("GUARDIAN__NATS__ACK_WAIT", "soon")]));
        assert!(text.starts_with("nats.ack_wait: "), "{text}");
        assert_eq!(text.matches("soon").count(), 1, "{text}");
    }

    #[test]
    fn every_exit_code_is_in_the_table_once() {
        let codes: Vec<u8> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
        for status in [
            RunStatus::Succeeded,
            RunStatus::Partial,
            RunStatus::Failed,
            RunStatus::Stalled,
        ] {
            assert!(codes.contains(&(for_status(status) as u8)));
        }
    }
}
