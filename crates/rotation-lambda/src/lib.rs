//! Shared plumbing of the Lambda binaries: configuration read once at start, JSON tracing, and
//! the mapping of rotation errors to Lambda error reports with stable `errorType`s.

use std::fmt;

use lambda_runtime::Diagnostic;
use rotation_core::{
    Rotation, RotationError, RotationEvent, Rotator, SecretStore, Strategy, error_chain,
};
use serde_json::{Value, json};

/// `ROTATION_STRATEGY`: `single-user` or `alternating-users`.
pub const STRATEGY_ENV: &str = "ROTATION_STRATEGY";

/// A configuration problem found at start, before any event is accepted.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `ROTATION_STRATEGY` is missing or unknown.
    #[error("{STRATEGY_ENV} must be `single-user` or `alternating-users`, got {0:?}")]
    Strategy(Option<String>),
    /// Password policy variables are unusable.
    #[error(transparent)]
    Policy(#[from] rotation_core::PolicyError),
    /// Engine configuration is unusable.
    #[error(transparent)]
    Postgres(#[from] rotation_postgres::ConfigError),
}

/// Reads `ROTATION_STRATEGY`.
pub fn strategy_from_env() -> Result<Strategy, StartupError> {
    let value = std::env::var(STRATEGY_ENV).ok();
    value
        .as_deref()
        .and_then(Strategy::parse)
        .ok_or(StartupError::Strategy(value))
}

/// JSON logs to stdout (CloudWatch), level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, INFO by
/// default. Span fields (secret id, token, step, engine, strategy) ride along on every line.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .init();
}

/// A failed invocation, reported to Lambda (and so to Secrets Manager, which retries).
pub struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    /// The stable error type.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
    /// The message with its cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl From<RotationError> for Failure {
    fn from(e: RotationError) -> Self {
        Failure {
            kind: e.kind(),
            message: error_chain(&e),
        }
    }
}

impl From<Failure> for Diagnostic {
    fn from(f: Failure) -> Self {
        Diagnostic {
            error_type: f.kind.to_string(),
            error_message: f.message,
        }
    }
}

/// Handles one invocation payload: parse, run the step, report the outcome.
pub async fn handle<S: SecretStore, R: Rotator>(
    rotation: &Rotation<S, R>,
    payload: &Value,
) -> Result<Value, Failure> {
    let event = RotationEvent::from_json(payload).map_err(|e| {
        tracing::error!(error = %e, "invalid rotation event");
        Failure::from(RotationError::from(e))
    })?;
    let outcome = rotation.handle(&event).await?;
    Ok(json!({ "step": event.step.to_string(), "outcome": format!("{outcome:?}") }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator};
    use rotation_core::{LocalSecretStore, PasswordPolicy};

    fn rotation(dir: &std::path::Path) -> Rotation<LocalSecretStore, FakeRotator> {
        Rotation::new(
            LocalSecretStore::new(dir.join("s.json")),
            FakeRotator::new(FakeDatabase::new(), Strategy::SingleUser),
            PasswordPolicy::defaults(&FAKE_PROFILE.password),
        )
    }

    #[tokio::test]
    async fn bad_payloads_fail_with_a_stable_error_type_before_any_call() {
        let dir = tempfile::tempdir().unwrap();
        let r = rotation(dir.path());
        let f = handle(&r, &json!({"Step": "createSecret", "SecretId": "s"}))
            .await
            .unwrap_err();
        assert_eq!(f.kind(), "InvalidEvent");
        assert_eq!(f.message(), "No value provided for \"ClientRequestToken\".");
        let d: Diagnostic = f.into();
        assert_eq!(d.error_type, "InvalidEvent");
        // No store file was created: nothing was called.
        assert!(!dir.path().join("s.json").exists());
    }

    #[tokio::test]
    async fn store_failures_carry_their_kind_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let r = rotation(dir.path());
        let payload = json!({"Step": "createSecret", "SecretId": "missing", "ClientRequestToken": "0123456789abcdef0123456789abcdef"});
        let f = handle(&r, &payload).await.unwrap_err();
        assert_eq!(f.kind(), "SecretNotFound");
        assert!(f.message().contains("describing secret missing"), "{f:?}");
    }
}
