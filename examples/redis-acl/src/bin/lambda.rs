//! The Lambda function: Secrets Manager rotation of Redis ACL users. Environment:
//! `ROTATION_STRATEGY` (`single-user` | `alternating-users`), AWS's password variables,
//! `ALLOWED_MASTER_SECRETS`, `CA_BUNDLE_PATH`, `ALLOW_PLAINTEXT_FALLBACK`,
//! `CONNECT_TIMEOUT_SECONDS`, `SECRETS_MANAGER_ENDPOINT`.

use redis_acl_rotation::{PROFILE, RedisAclRotator};
use rotation_core::{AwsSecretStore, MasterAllowList, Options, PasswordPolicy, Rotation, Strategy};
use rotation_trust::ConnectSettings;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    rotation_lambda::init_tracing();
    rotation_lambda::require_lambda()?;
    let env = |k: &str| std::env::var(k).ok();
    let strategy = env("ROTATION_STRATEGY")
        .as_deref()
        .and_then(Strategy::parse)
        .ok_or("ROTATION_STRATEGY must be single-user or alternating-users")?;
    let rotator = RedisAclRotator::new(strategy, ConnectSettings::from_lookup(env)?);
    let options = Options {
        master_allow_list: MasterAllowList::from_lookup(env)?,
        ..Options::default()
    };
    let sdk = rotation_lambda::sdk_config().await;
    let store = AwsSecretStore::from_sdk_config(&sdk);
    let policy = PasswordPolicy::from_env(&PROFILE.password)?;
    let rotation = Rotation::new(store, rotator, policy).with_options(options);
    rotation_lambda::serve(rotation).await
}
