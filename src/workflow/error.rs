//! The workflow's error boundary: every failure of a step is either transient (try again
//! later), a wait for GitHub's budget, or permanent (dead-letter it and record it on the
//! run). The classification happens here, once, when a lower-level error is converted;
//! the types live in `bus::outcome` and the consumer maps the result to ack / nak /
//! terminate in `bus::consumer::decide`.

pub use crate::bus::outcome::{ErrorKind, StepError};
use crate::github::GithubError;
use crate::store::StoreError;

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        if unreadable(&e) {
            StepError::permanent(ErrorKind::Decode, e.to_string()).with_source(e)
        } else {
            StepError::transient(ErrorKind::Nats, e.to_string(), None).with_source(e)
        }
    }
}

/// A record no retry can read; every other store failure may pass.
fn unreadable(e: &StoreError) -> bool {
    match e {
        StoreError::Shared(shared) => unreadable(shared),
        StoreError::Corrupt { .. } | StoreError::NewerVersion { .. } => true,
        StoreError::Bus(_) | StoreError::Contended { .. } | StoreError::LeaseLost { .. } => false,
    }
}

impl From<GithubError> for StepError {
    fn from(e: GithubError) -> Self {
        let message = e.to_string();
        // GitHub said the token's budget is used up and for how long: the fleet waits
        // instead of spending deliveries on it.
        if let Some((_, wait)) = e.rate_limited() {
            return StepError::BudgetExhausted {
                message,
                wait,
                fleet_wide: e.pauses_fleet(),
                source: None,
            }
            .with_source(e);
        }
        match (&e, e.retry()) {
            (_, crate::github::Retry::After(after)) => {
                StepError::transient(ErrorKind::Github, message, after).with_source(e)
            }
            (_, crate::github::Retry::Never) => {
                StepError::permanent(ErrorKind::Github, message).with_source(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Method, StatusCode};

    use super::*;
    use crate::github::Limit;

    fn status(status: StatusCode, limit: Option<Limit>, retry_after: Option<u64>) -> GithubError {
        GithubError::Status {
            method: Method::GET,
            path: "/repos/o/r".into(),
            status,
            message: "x".into(),
            retry_after: retry_after.map(Duration::from_secs),
            limit,
        }
    }

    #[test]
    fn an_exhausted_budget_is_a_wait_not_a_failure() {
        let e = StepError::from(status(
            StatusCode::FORBIDDEN,
            Some(Limit::Primary),
            Some(600),
        ));
        assert!(
            matches!(e, StepError::BudgetExhausted { wait, .. } if wait == Duration::from_secs(600)),
            "{e:?}"
        );
        let e = StepError::from(status(StatusCode::BAD_GATEWAY, None, None));
        assert!(matches!(e, StepError::Transient { .. }), "{e:?}");
        let e = StepError::from(status(StatusCode::NOT_FOUND, None, None));
        assert!(matches!(e, StepError::Permanent { .. }), "{e:?}");
    }

    #[test]
    fn the_cause_is_kept_as_the_source() {
        let e = StepError::from(status(StatusCode::BAD_GATEWAY, None, None));
        let source = std::error::Error::source(&e).expect("source kept");
        assert!(source.to_string().contains("/repos/o/r"), "{source}");
    }
}
