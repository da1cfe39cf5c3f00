//! Secrets Manager rotation function for Amazon RDS / Aurora PostgreSQL.
//!
//! Environment: `ROTATION_STRATEGY` (`single-user` | `alternating-users`), AWS's password
//! variables (`EXCLUDE_CHARACTERS`, `PASSWORD_LENGTH`, ...), `SECRETS_MANAGER_ENDPOINT`,
//! `CA_BUNDLE_PATH`, `ALLOW_PLAINTEXT_FALLBACK`, `CONNECT_TIMEOUT_SECONDS`.

#![recursion_limit = "256"]

use lambda_runtime::{LambdaEvent, service_fn};
use rotation_core::{AwsSecretStore, PasswordPolicy, Rotation};
use rotation_lambda::{Failure, handle, init_tracing, strategy_from_env};
use rotation_postgres::rds::Rds;
use rotation_postgres::{PROFILE, PgConfig, PostgresRotator};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    run()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "rds-postgres failed"))
}

async fn run() -> Result<(), lambda_runtime::Error> {
    // Everything is read and validated once, before the first event.
    let strategy = strategy_from_env()?;
    let policy = PasswordPolicy::from_env(&PROFILE.password)?;
    let config = PgConfig::from_env()?;
    let sdk = aws_config::from_env().load().await;
    let store = AwsSecretStore::from_sdk_config(&sdk);
    let rotator = PostgresRotator::new(strategy, config).with_rds(Rds::from_sdk_config(&sdk));
    let rotation = Rotation::new(store, rotator, policy);
    tracing::info!(strategy = %strategy, "rds-postgres rotation function ready");
    let rotation = &rotation;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(rotation, &event.payload)
            .await
            .map_err(|e: Failure| e)
    }))
    .await
}
