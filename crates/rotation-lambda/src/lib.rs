//! The engine-free Lambda glue shared by every binary: a start-up check that this is Lambda,
//! JSON tracing, the invocation's deadline, and the mapping of rotation errors to Lambda error
//! reports with stable `errorType`s. Every function, built-in or custom, is [`run`] with its
//! [`Engine`]: it reads and validates the configuration once, builds the [`Rotation`] and calls
//! [`serve`]. The built-in engines' binaries need feature `engines` (on by default); a custom
//! engine's function turns default features off and links none of their drivers.

use std::fmt;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use rotation_core::engine::strategy_from;
use rotation_core::{
    AwsSecretStore, Deadline, ENGINE_ENV, Engine, EngineEnv, EngineSettings, Rotation,
    RotationError, RotationEvent, Rotator, SecretStore, error_chain,
};
use serde_json::{Value, json};

pub mod metrics;

/// Time kept back from the invocation's deadline to report a failure (W16).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// The variable the Lambda runtime sets; without it there is nothing to serve.
pub const RUNTIME_API_ENV: &str = "AWS_LAMBDA_RUNTIME_API";

/// Every variable the Lambda runtime sets and the runtime client needs (it panics without
/// them, so they are checked first).
pub const RUNTIME_ENV: [&str; 4] = [
    RUNTIME_API_ENV,
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// A problem found at start, before any event is accepted.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The process is not running under a Lambda runtime.
    #[error(
        "{0} is not set: this binary is a Lambda function and runs under the Lambda runtime (deploy it, or run it locally with `cargo lambda watch`); to rotate from a shell, use the `rotate` command"
    )]
    NotInLambda(&'static str),
    /// The engine's configuration is unusable.
    #[error(transparent)]
    Config(Box<dyn std::error::Error + Send + Sync>),
    /// `ROTATION_ENGINE` (the deployment's Engine parameter) names another engine than the
    /// code's: the wrong zip was uploaded, and the role grants another engine's calls.
    #[error(
        "{ENGINE_ENV} is {configured:?} but this code is the {code} rotation function: deploy the {configured} zip (target/lambda-zips/{configured}/bootstrap.zip) or correct the deployment's Engine"
    )]
    EngineMismatch {
        /// The variable's value.
        configured: String,
        /// The binary's engine.
        code: &'static str,
    },
}

/// Fails when `ROTATION_ENGINE` is set and names another engine than `engine`.
pub fn check_engine_env(
    engine: Engine,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), StartupError> {
    match lookup(ENGINE_ENV) {
        Some(v) if !v.trim().is_empty() && !engine.is_named(v.trim()) => {
            Err(StartupError::EngineMismatch {
                configured: v,
                code: engine.function_name,
            })
        }
        _ => Ok(()),
    }
}

/// The SDK configuration for a function: Lambda hands its role's credentials over in the
/// environment, so when they are there the SDK reads them directly instead of building its
/// default chain (which sets up STS and web-identity clients, a measurable part of a cold
/// start); otherwise the default chain. Its HTTPS client trusts the system store that
/// `rotation-trust` reads once for the whole process ([`rotation_trust::sdk::https_client`];
/// the SDK's own client, which reads it again, when a proxy variable is set).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::from_env();
    if let Some(client) = rotation_trust::sdk::https_client() {
        loader = loader.http_client(client);
    }
    let from_env = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some();
    if from_env {
        loader
            .credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            )
            .load()
            .await
    } else {
        loader.load().await
    }
}

impl StartupError {
    /// An engine's configuration error.
    pub fn config(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StartupError::Config(Box::new(e))
    }
}

/// Fails unless the Lambda runtime is there to serve (every variable it sets is).
pub fn require_lambda() -> Result<(), StartupError> {
    for var in RUNTIME_ENV {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {}
            _ => return Err(StartupError::NotInLambda(var)),
        }
    }
    match std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").map(|v| v.trim().parse::<i32>()) {
        Ok(Ok(_)) => Ok(()),
        _ => Err(StartupError::NotInLambda(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE (a number)",
        )),
    }
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
        .with_ansi(false)
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

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
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

/// Handles one invocation payload within `deadline`: parse, run the step, report the outcome;
/// prints the invocation's metric line ([`metrics`]) to standard output, which Lambda sends to
/// CloudWatch Logs.
pub async fn handle<S: SecretStore, R: Rotator>(
    rotation: &Rotation<S, R>,
    payload: &Value,
    deadline: Deadline,
) -> Result<Value, Failure> {
    if payload.get("Step").and_then(Value::as_str) == Some(PLAN_STEP) {
        return Box::pin(plan(rotation, payload, deadline)).await;
    }
    // Boxed: the step futures are deep (see `Rotation::handle_until`).
    let (result, metrics) = Box::pin(handle_measured(rotation, payload, deadline)).await;
    println!("{}", metrics.line());
    result
}

/// The `Step` of the preflight event, `{"Step": "plan", "SecretId": ...}`: run where the
/// function runs (its role, its network), before the rotation contract's entry checks, which
/// it does not satisfy. It changes nothing and reports no metric.
pub const PLAN_STEP: &str = "plan";

/// Answers the preflight event with the plan ([`rotation_core::plan::Plan::to_json`]); a plan
/// with failed checks is still a successful invocation (its `passed` says so).
pub async fn plan<S: SecretStore, R: Rotator>(
    rotation: &Rotation<S, R>,
    payload: &Value,
    deadline: Deadline,
) -> Result<Value, Failure> {
    let secret_id = payload
        .get("SecretId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Failure::from(RotationError::from(
                rotation_core::EventError::MissingField("SecretId"),
            ))
        })?;
    let plan = rotation.plan_until(secret_id, deadline).await;
    tracing::info!(passed = plan.passed(), "preflight finished");
    Ok(plan.to_json())
}

/// [`handle`] without printing: the result and what the metric line would say.
pub async fn handle_measured<S: SecretStore, R: Rotator>(
    rotation: &Rotation<S, R>,
    payload: &Value,
    deadline: Deadline,
) -> (Result<Value, Failure>, metrics::StepMetrics) {
    let started = std::time::Instant::now();
    // Fields of a payload that is not a valid event are shown only when they are short
    // strings (they are echoed into logs).
    let field = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| s.len() <= 2048 && !s.chars().any(char::is_control))
            .unwrap_or("")
            .to_string()
    };
    let mut metrics = metrics::StepMetrics {
        engine: rotation.rotator().profile().name,
        strategy: rotation.rotator().strategy(),
        step: "invalid".into(),
        secret_id: field("SecretId"),
        version: field("ClientRequestToken"),
        outcome: "failed".into(),
        error_kind: None,
        duration_ms: 0.0,
        function: std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
    };
    let result: Result<Value, Failure> = async {
        let event = RotationEvent::from_json(payload).map_err(|e| {
            tracing::error!(error = %e, "invalid rotation event");
            Failure::from(RotationError::from(e))
        })?;
        // A dimension: only the four step names, so a stray name cannot make new metrics.
        metrics.step = match &event.step {
            rotation_core::EventStep::Known(step) => step.as_str(),
            rotation_core::EventStep::Unknown(_) => "unknown",
        }
        .to_string();
        let (outcome, rotation_started) = rotation.handle_timed(&event, deadline).await?;
        metrics.outcome = format!("{outcome:?}");
        // A function sees steps only: finishSecret done ends the rotation, its own event.
        if event.step == rotation_core::EventStep::Known(rotation_core::Step::FinishSecret) {
            // The rotation's duration: from its pending version's creation to its promotion.
            // (None on a retried finishSecret, which promotes nothing; a creation time ahead of
            // this clock counts as 0.)
            let rotation_ms = rotation_started.map(|t| {
                std::time::SystemTime::now()
                    .duration_since(t)
                    .unwrap_or_default()
                    .as_millis() as u64
            });
            tracing::info!(
                secret_id = %event.secret_id,
                token = %event.client_request_token,
                engine = metrics.engine,
                strategy = metrics.strategy.as_str(),
                outcome = "rotated",
                rotation_ms,
                "rotation complete"
            );
        }
        Ok(json!({ "step": event.step.to_string(), "outcome": format!("{outcome:?}") }))
    }
    .await;
    if let Err(f) = &result {
        metrics.error_kind = Some(f.kind());
    }
    metrics.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    (result, metrics)
}

/// The step's deadline from the invocation's (`Lambda-Runtime-Deadline-Ms`, milliseconds since
/// the Unix epoch), less [`DEADLINE_MARGIN`]. Some local emulators (`cargo lambda watch`) send
/// the function's timeout instead of a time; a value too small to be a time is read that way.
pub fn invocation_deadline(deadline_ms: u64) -> Deadline {
    /// 2001-09-09 in milliseconds: anything below is a duration, not a time.
    const EPOCH_FLOOR_MS: u64 = 1_000_000_000_000;
    if deadline_ms < EPOCH_FLOOR_MS {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        tracing::warn!(
            deadline_ms,
            "the runtime sent a deadline that is not a time; reading it as the function's timeout"
        );
        return Deadline::from_epoch_millis(now_ms + deadline_ms, DEADLINE_MARGIN);
    }
    Deadline::from_epoch_millis(deadline_ms, DEADLINE_MARGIN)
}

/// Serves invocations until the runtime stops: each one's deadline is the invocation's own,
/// less [`DEADLINE_MARGIN`].
pub async fn serve<S: SecretStore, R: Rotator>(
    rotation: Rotation<S, R>,
) -> Result<(), lambda_runtime::Error> {
    let rotation = &rotation;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = invocation_deadline(event.context.deadline);
        tracing::info!(
            request_id = %event.context.request_id,
            deadline_ms = event.context.deadline,
            step_budget_ms = deadline.remaining().as_millis() as u64,
            "invocation received"
        );
        handle(rotation, &event.payload, deadline).await
    }))
    .await
}

/// A rotation function's whole life, for any engine: everything is read and validated once,
/// before the first event (outside Lambda, or with a bad strategy or setting: an error that
/// says which), then events are served. Read from the environment: `ROTATION_ENGINE` (when
/// set, it must name `engine`), `ROTATION_STRATEGY`, AWS's password variables checked against
/// the engine's rules, `ALLOWED_MASTER_SECRETS`, and the engine's own settings
/// ([`Engine::env`]; on AWS, the engine may use the SDK configuration for its own APIs).
///
/// ```no_run
/// # async fn f(my_engine: rotation_core::Engine) {
/// rotation_lambda::run(my_engine).await.unwrap();
/// # }
/// ```
pub async fn run(engine: Engine) -> Result<(), lambda_runtime::Error> {
    let name = engine.name();
    let result = async {
        require_lambda()?;
        check_engine_env(engine, |k| std::env::var(k).ok())?;
        let strategy = strategy_from(&EngineEnv::process(None)).map_err(StartupError::config)?;
        let sdk = sdk_config().await;
        let settings = EngineSettings::read(engine, &EngineEnv::process(Some(&sdk)))
            .map_err(StartupError::config)?;
        settings.config.log();
        settings.warn_without_allow_list(strategy);
        let rotation = settings.rotation(AwsSecretStore::from_sdk_config(&sdk), strategy);
        tracing::info!(engine = name, strategy = %strategy, "rotation function ready");
        serve(rotation).await
    }
    .await;
    result.inspect_err(|e| tracing::error!(engine = name, error = %e, "rotation function failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator};
    use rotation_core::{LocalSecretStore, PasswordPolicy, Strategy};

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
        let deadline = Deadline::after(Duration::from_secs(5));
        let f = handle(
            &r,
            &json!({"Step": "createSecret", "SecretId": "s"}),
            deadline,
        )
        .await
        .unwrap_err();
        assert_eq!(f.kind(), "InvalidEvent");
        assert_eq!(f.message(), "No value provided for \"ClientRequestToken\".");
        let d: Diagnostic = f.into();
        assert_eq!(d.error_type, "InvalidEvent");
        // No store file was created: nothing was called.
        assert!(!dir.path().join("s.json").exists());
    }

    /// What CloudWatch requires of an EMF document: every metric a top-level number, every
    /// dimension a top-level string.
    fn assert_emf(doc: &Value) {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert!(doc["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(directive["Namespace"], json!(metrics::NAMESPACE));
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} in {doc}");
        }
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(doc[d.as_str().unwrap()].is_string(), "{d} in {doc}");
            }
        }
    }

    /// A local store with secret `app` for user `app` of a fake database, password
    /// `Initial-pw-1`.
    async fn one_secret() -> (tempfile::TempDir, FakeDatabase, LocalSecretStore) {
        use secrecy::SecretString;
        let dir = tempfile::tempdir().unwrap();
        let db = FakeDatabase::new();
        db.add_user("app", &SecretString::from("Initial-pw-1"));
        let store = LocalSecretStore::new(dir.path().join("s.json"));
        let value =
            json!({"engine": "fake", "host": "h", "username": "app", "password": "Initial-pw-1"});
        store
            .create_secret("app", &SecretString::from(value.to_string()))
            .await
            .unwrap();
        (dir, db, store)
    }

    #[tokio::test]
    async fn every_invocation_has_a_metric_line_and_no_secret_in_it() {
        use secrecy::ExposeSecret;
        let (_dir, db, store) = one_secret().await;
        let token = "t0000000000000000000000000000001";
        store.start_rotation("app", token).await.unwrap();
        let r = Rotation::new(
            store.clone(),
            FakeRotator::new(db, Strategy::SingleUser),
            PasswordPolicy::defaults(&FAKE_PROFILE.password),
        );
        let deadline = Deadline::after(Duration::from_secs(10));
        let mut lines = Vec::new();
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            let event = json!({"Step": step, "SecretId": "app", "ClientRequestToken": token});
            let (result, m) = handle_measured(&r, &event, deadline).await;
            result.unwrap();
            let doc: Value = serde_json::from_str(&m.line()).unwrap();
            assert_emf(&doc);
            assert_eq!(doc["Step"], json!(step));
            assert_eq!(doc["Engine"], json!("fake"));
            assert_eq!(doc["Strategy"], json!("single-user"));
            assert_eq!(doc["RotationFailed"], json!(0));
            assert_eq!(doc["Version"], json!(token));
            lines.push(doc.to_string());
        }
        let failures = [
            (
                json!({"Step": "setSecret", "SecretId": "nope", "ClientRequestToken": token}),
                "setSecret",
                "SecretNotFound",
            ),
            (
                json!({"Step": "setSecret", "SecretId": "app"}),
                "invalid",
                "InvalidEvent",
            ),
            (
                json!({"Step": "rollSecret", "SecretId": "app", "ClientRequestToken": "t0000000000000000000000000000002"}),
                "unknown",
                "TokenNotStaged",
            ),
        ];
        for (event, step, kind) in failures {
            let (result, m) = handle_measured(&r, &event, deadline).await;
            assert_eq!(result.unwrap_err().kind(), kind);
            let doc: Value = serde_json::from_str(&m.line()).unwrap();
            assert_emf(&doc);
            assert_eq!(doc["Step"], json!(step));
            assert_eq!(doc["RotationFailed"], json!(1));
            assert_eq!(doc["ErrorKind"], json!(kind));
            lines.push(doc.to_string());
        }
        use rotation_core::{SecretStore, Stage, VersionSelector};
        let now = store
            .get_value("app", VersionSelector::stage(Stage::Current))
            .await
            .unwrap();
        let now: Value = serde_json::from_str(now.value.expose_secret()).unwrap();
        let new_password = now["password"].as_str().unwrap();
        assert_ne!(new_password, "Initial-pw-1");
        for line in &lines {
            assert!(
                !line.contains("Initial-pw-1") && !line.contains(new_password),
                "{line}"
            );
        }
    }

    #[tokio::test]
    async fn the_plan_event_is_answered_with_the_plan_and_changes_nothing() {
        let (dir, db, store) = one_secret().await;
        let before = std::fs::read(dir.path().join("s.json")).unwrap();
        let r = Rotation::new(
            store,
            FakeRotator::new(db, Strategy::SingleUser),
            PasswordPolicy::defaults(&FAKE_PROFILE.password),
        );
        let deadline = Deadline::after(Duration::from_secs(10));
        // Not a rotation event (no ClientRequestToken): dispatched before the entry checks.
        let out = handle(&r, &json!({"Step": "plan", "SecretId": "app"}), deadline)
            .await
            .unwrap();
        assert_eq!(out["passed"], json!(true), "{out}");
        assert_eq!(out["engine"], json!("fake"));
        assert!(out["checks"].as_array().unwrap().len() >= 6);
        assert!(!out.to_string().contains("Initial-pw-1"));
        assert_eq!(std::fs::read(dir.path().join("s.json")).unwrap(), before);
        // Without a SecretId: refused as an event.
        let f = handle(&r, &json!({"Step": "plan"}), deadline)
            .await
            .unwrap_err();
        assert_eq!(f.kind(), "InvalidEvent");
    }

    #[tokio::test]
    async fn deadlines_from_the_runtime() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = invocation_deadline(now_ms + 30_000);
        assert!(
            d.remaining() > Duration::from_secs(26) && d.remaining() <= Duration::from_secs(27)
        );
        // cargo lambda watch sends the timeout itself.
        let d = invocation_deadline(600_000);
        assert!(d.remaining() > Duration::from_secs(596));
    }

    #[tokio::test]
    async fn store_failures_carry_their_kind_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let r = rotation(dir.path());
        let payload = json!({"Step": "createSecret", "SecretId": "missing", "ClientRequestToken": "0123456789abcdef0123456789abcdef"});
        let deadline = Deadline::after(Duration::from_secs(5));
        let f = handle(&r, &payload, deadline).await.unwrap_err();
        assert_eq!(f.kind(), "SecretNotFound");
        assert!(f.message().contains("describing secret missing"), "{f:?}");
    }
}
