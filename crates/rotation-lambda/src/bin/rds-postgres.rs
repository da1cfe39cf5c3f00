//! Secrets Manager rotation function for Amazon RDS / Aurora PostgreSQL.
//!
//! Environment: `ROTATION_STRATEGY` (`single-user` | `alternating-users`), AWS's password
//! variables (`EXCLUDE_CHARACTERS`, `PASSWORD_LENGTH`, ...), `SECRETS_MANAGER_ENDPOINT`,
//! `CA_BUNDLE_PATH`, `ALLOW_PLAINTEXT_FALLBACK`, `CONNECT_TIMEOUT_SECONDS`.

#![recursion_limit = "256"]

use rotation_core::AwsSecretStore;
use rotation_engines::{Engine, Settings, strategy_from_env};
use rotation_lambda::{StartupError, init_tracing, require_lambda, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    run()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "rds-postgres failed"))
}

async fn run() -> Result<(), lambda_runtime::Error> {
    // Everything is read and validated once, before the first event.
    require_lambda()?;
    let strategy = strategy_from_env().map_err(StartupError::config)?;
    let settings = Settings::from_env(Engine::Postgres).map_err(StartupError::config)?;
    settings.postgres.trust.log_sources();
    let sdk = rotation_lambda::sdk_config().await;
    let store = AwsSecretStore::from_sdk_config(&sdk);
    let rotation = rotation_engines::rotation(store, &settings, strategy, Some(&sdk));
    tracing::info!(strategy = %strategy, "rds-postgres rotation function ready");
    serve(rotation).await
}
