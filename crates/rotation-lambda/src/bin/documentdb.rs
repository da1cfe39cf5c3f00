//! Secrets Manager rotation function for Amazon DocumentDB (MongoDB wire protocol).
//!
//! Environment: `ROTATION_STRATEGY` (`single-user` | `alternating-users`), AWS's password
//! variables (`EXCLUDE_CHARACTERS`, `PASSWORD_LENGTH`, ...), `SECRETS_MANAGER_ENDPOINT`,
//! `CA_BUNDLE_PATH`, `ALLOW_PLAINTEXT_FALLBACK`, `CONNECT_TIMEOUT_SECONDS`.

#![recursion_limit = "256"]

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation_lambda::init_tracing();
    rotation_lambda::run(rotation_engines::DOCUMENTDB).await
}
