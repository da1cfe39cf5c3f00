//! The Lambda function: Secrets Manager rotation of Redis ACL users. Environment:
//! `ROTATION_STRATEGY` (`single-user` | `alternating-users`), AWS's password variables,
//! `ALLOWED_MASTER_SECRETS`, `CA_BUNDLE_PATH`, `ALLOW_PLAINTEXT_FALLBACK`,
//! `CONNECT_TIMEOUT_SECONDS`, `SECRETS_MANAGER_ENDPOINT`.
//!
//! `rotation-lambda` without its default features: none of the built-in engines' drivers are
//! in this binary.

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    rotation_lambda::init_tracing();
    rotation_lambda::run(redis_acl_rotation::ENGINE).await
}
