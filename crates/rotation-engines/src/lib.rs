//! Which rotator a deployment runs, and its configuration, in one place: the Lambda binaries,
//! the `rotate` CLI and the demo all build their [`Rotation`] here.
//!
//! Configuration is read once, at start, from the same environment variables as AWS's
//! functions (password policy) plus each engine's own (`CA_BUNDLE_PATH`, ...); a bad value is a
//! [`ConfigError`] before any event is accepted.
//!
//! [`AnyRotator`] picks the engine at run time (the CLI reads it from the secret's `engine`
//! key); a Lambda binary, which serves one engine, builds that engine's rotator directly
//! ([`postgres_rotator`], [`redshift_rotator`]).

use std::fmt;
use std::sync::Arc;

use rotation_core::{
    AllowListError, DatabaseSecret, Deadline, EngineError, EngineProfile, ErrorKind,
    MasterAllowList, Options, PasswordPolicy, PolicyError, Rotation, Rotator, SecretStore,
    Strategy,
};
use rotation_documentdb::{DocumentDbRotator, MongoSession};
use rotation_postgres::{PgConfig, PgSession, PostgresRotator};
use rotation_redshift::RedshiftRotator;

/// `ROTATION_STRATEGY`: `single-user` or `alternating-users`.
pub const STRATEGY_ENV: &str = "ROTATION_STRATEGY";

/// `ROTATION_ENGINE`: set by the deployment templates to the engine they deploy (their `Engine`
/// parameter), so that a function whose code serves another engine refuses to start.
pub const ENGINE_ENV: &str = "ROTATION_ENGINE";

/// Every variable a deployment of a rotation function may set, besides those the Lambda runtime
/// sets: the deployment templates offer each.
pub const SETTINGS_ENV: [&str; 14] = [
    ENGINE_ENV,
    STRATEGY_ENV,
    rotation_core::store::ENDPOINT_ENV,
    rotation_core::MASTER_ALLOW_LIST_ENV,
    rotation_core::policy::env::EXCLUDE_CHARACTERS,
    rotation_core::policy::env::PASSWORD_LENGTH,
    rotation_core::policy::env::EXCLUDE_NUMBERS,
    rotation_core::policy::env::EXCLUDE_PUNCTUATION,
    rotation_core::policy::env::EXCLUDE_UPPERCASE,
    rotation_core::policy::env::EXCLUDE_LOWERCASE,
    rotation_core::policy::env::REQUIRE_EACH_INCLUDED_TYPE,
    rotation_postgres::config::PLAINTEXT_FALLBACK_ENV,
    rotation_postgres::config::CONNECT_TIMEOUT_ENV,
    rotation_postgres::config::CA_BUNDLE_ENV,
];

/// A database engine this toolkit rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Amazon RDS / Aurora PostgreSQL.
    Postgres,
    /// Amazon Redshift (provisioned and Serverless).
    Redshift,
    /// Amazon DocumentDB (MongoDB wire protocol).
    DocumentDb,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 3] = [Engine::Postgres, Engine::Redshift, Engine::DocumentDb];

    /// The engine's profile (names, password rules, limits).
    pub fn profile(self) -> &'static EngineProfile {
        match self {
            Engine::Postgres => &rotation_postgres::PROFILE,
            Engine::Redshift => &rotation_redshift::PROFILE,
            Engine::DocumentDb => &rotation_documentdb::PROFILE,
        }
    }

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        self.profile().name
    }

    /// The name of its Lambda function: its binary, its zip's directory and the deployment
    /// templates' `Engine` (`rds-postgres`, `redshift`, `documentdb`).
    pub fn function_name(self) -> &'static str {
        match self {
            Engine::Postgres => "rds-postgres",
            Engine::Redshift => "redshift",
            Engine::DocumentDb => "documentdb",
        }
    }

    /// From a command-line name.
    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The engine that handles a secret whose `engine` key is `value`.
    pub fn for_secret_engine(value: &str) -> Option<Engine> {
        Engine::ALL
            .into_iter()
            .find(|e| e.profile().engines.contains(&value))
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration that cannot be used; found at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `ROTATION_STRATEGY` is missing or unknown.
    #[error("{STRATEGY_ENV} must be `single-user` or `alternating-users`, got {0:?}")]
    Strategy(Option<String>),
    /// Password policy variables are unusable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The master secrets' allow-list is malformed.
    #[error(transparent)]
    AllowList(#[from] AllowListError),
    /// PostgreSQL-protocol connection settings are unusable.
    #[error(transparent)]
    Postgres(#[from] rotation_postgres::ConfigError),
}

/// Reads `ROTATION_STRATEGY`.
pub fn strategy_from_env() -> Result<Strategy, ConfigError> {
    let value = std::env::var(STRATEGY_ENV).ok();
    value
        .as_deref()
        .and_then(Strategy::parse)
        .ok_or(ConfigError::Strategy(value))
}

/// An engine's settings, read from the environment once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine.
    pub engine: Engine,
    /// Password generation.
    pub policy: PasswordPolicy,
    /// Connection settings of the PostgreSQL-protocol engines (PostgreSQL, Redshift); each
    /// rotator applies its own dialect. Their engine-independent part (trust, plaintext
    /// fallback, connect timeout) serves the other engines too.
    pub postgres: PgConfig,
    /// The master secrets alternating users may use (`ALLOWED_MASTER_SECRETS`); `None`: any.
    pub master_allow_list: Option<MasterAllowList>,
}

impl Settings {
    /// Reads and validates `engine`'s settings from the process environment.
    pub fn from_env(engine: Engine) -> Result<Settings, ConfigError> {
        Ok(Settings {
            engine,
            policy: PasswordPolicy::from_env(&engine.profile().password)?,
            postgres: PgConfig::from_env()?,
            master_allow_list: MasterAllowList::from_lookup(|k| std::env::var(k).ok())?,
        })
    }

    /// The engine's default settings (default password policy, trust and timeouts, no
    /// allow-list), for tests and tools that set the rest themselves.
    pub fn defaults(engine: Engine, postgres: PgConfig) -> Settings {
        Settings {
            engine,
            policy: PasswordPolicy::defaults(&engine.profile().password),
            postgres,
            master_allow_list: None,
        }
    }

    /// The rotation options these settings ask for (the master allow-list).
    pub fn options(&self) -> Options {
        Options {
            master_allow_list: self.master_allow_list.clone(),
            ..Options::default()
        }
    }
}

/// The PostgreSQL rotator for `strategy`. With `sdk` (Secrets Manager deployments), it uses the
/// RDS API for RDS-managed master secrets and read replicas.
pub fn postgres_rotator(
    settings: &Settings,
    strategy: Strategy,
    sdk: Option<&aws_config::SdkConfig>,
) -> PostgresRotator {
    let rotator = PostgresRotator::new(strategy, settings.postgres.clone());
    match sdk {
        Some(sdk) => rotator.with_rds(rotation_postgres::rds::Rds::from_sdk_config(sdk)),
        None => rotator,
    }
}

/// The Redshift rotator for `strategy`. With `sdk`, it uses the Redshift and Redshift
/// Serverless APIs for Redshift-managed admin secrets.
pub fn redshift_rotator(
    settings: &Settings,
    strategy: Strategy,
    sdk: Option<&aws_config::SdkConfig>,
) -> RedshiftRotator {
    let rotator = RedshiftRotator::new(strategy, settings.postgres.clone());
    match sdk {
        Some(sdk) => rotator.with_directory(Arc::new(
            rotation_redshift::SdkDirectory::from_sdk_config(sdk),
        )),
        None => rotator,
    }
}

/// The DocumentDB rotator for `strategy` (`sdk` is unused: DocumentDB needs no other AWS API).
pub fn documentdb_rotator(
    settings: &Settings,
    strategy: Strategy,
    _sdk: Option<&aws_config::SdkConfig>,
) -> DocumentDbRotator {
    DocumentDbRotator::new(strategy, settings.postgres.connect_settings())
}

/// The rotator for `settings.engine` and `strategy`, chosen at run time.
pub fn rotator(
    settings: &Settings,
    strategy: Strategy,
    sdk: Option<&aws_config::SdkConfig>,
) -> AnyRotator {
    match settings.engine {
        Engine::Postgres => AnyRotator::Postgres(postgres_rotator(settings, strategy, sdk)),
        Engine::Redshift => AnyRotator::Redshift(redshift_rotator(settings, strategy, sdk)),
        Engine::DocumentDb => AnyRotator::DocumentDb(documentdb_rotator(settings, strategy, sdk)),
    }
}

/// A [`Rotation`] over `store` for `settings.engine` and `strategy`.
pub fn rotation<S: SecretStore>(
    store: S,
    settings: &Settings,
    strategy: Strategy,
    sdk: Option<&aws_config::SdkConfig>,
) -> Rotation<S, AnyRotator> {
    Rotation::new(
        store,
        rotator(settings, strategy, sdk),
        settings.policy.clone(),
    )
    .with_options(settings.options())
}

/// A rotator of any engine, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyRotator {
    /// PostgreSQL.
    Postgres(PostgresRotator),
    /// Redshift.
    Redshift(RedshiftRotator),
    /// DocumentDB.
    DocumentDb(DocumentDbRotator),
}

/// A session of an [`AnyRotator`].
#[derive(Debug)]
pub enum AnySession {
    /// PostgreSQL.
    Postgres(PgSession),
    /// Redshift.
    Redshift(PgSession),
    /// DocumentDB.
    DocumentDb(MongoSession),
}

fn mismatched() -> EngineError {
    EngineError::new(
        ErrorKind::Other,
        "a session of one engine was handed to another engine's rotator",
    )
}

impl Rotator for AnyRotator {
    type Session = AnySession;

    fn profile(&self) -> &EngineProfile {
        match self {
            AnyRotator::Postgres(r) => r.profile(),
            AnyRotator::Redshift(r) => r.profile(),
            AnyRotator::DocumentDb(r) => r.profile(),
        }
    }

    fn strategy(&self) -> Strategy {
        match self {
            AnyRotator::Postgres(r) => r.strategy(),
            AnyRotator::Redshift(r) => r.strategy(),
            AnyRotator::DocumentDb(r) => r.strategy(),
        }
    }

    async fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<AnySession, EngineError> {
        match self {
            AnyRotator::Postgres(r) => r.login(secret, deadline).await.map(AnySession::Postgres),
            AnyRotator::Redshift(r) => r.login(secret, deadline).await.map(AnySession::Redshift),
            AnyRotator::DocumentDb(r) => {
                r.login(secret, deadline).await.map(AnySession::DocumentDb)
            }
        }
    }

    async fn set_own_password(
        &self,
        session: &mut AnySession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        match (self, session) {
            (AnyRotator::Postgres(r), AnySession::Postgres(s)) => {
                r.set_own_password(s, target).await
            }
            (AnyRotator::Redshift(r), AnySession::Redshift(s)) => {
                r.set_own_password(s, target).await
            }
            (AnyRotator::DocumentDb(r), AnySession::DocumentDb(s)) => {
                r.set_own_password(s, target).await
            }
            _ => Err(mismatched()),
        }
    }

    async fn set_password_as_master(
        &self,
        session: &mut AnySession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        match (self, session) {
            (AnyRotator::Postgres(r), AnySession::Postgres(s)) => {
                r.set_password_as_master(s, current, target).await
            }
            (AnyRotator::Redshift(r), AnySession::Redshift(s)) => {
                r.set_password_as_master(s, current, target).await
            }
            (AnyRotator::DocumentDb(r), AnySession::DocumentDb(s)) => {
                r.set_password_as_master(s, current, target).await
            }
            _ => Err(mismatched()),
        }
    }

    async fn test_session(
        &self,
        session: &mut AnySession,
        pending: &DatabaseSecret,
        partner: Option<&str>,
    ) -> Result<(), EngineError> {
        match (self, session) {
            (AnyRotator::Postgres(r), AnySession::Postgres(s)) => {
                r.test_session(s, pending, partner).await
            }
            (AnyRotator::Redshift(r), AnySession::Redshift(s)) => {
                r.test_session(s, pending, partner).await
            }
            (AnyRotator::DocumentDb(r), AnySession::DocumentDb(s)) => {
                r.test_session(s, pending, partner).await
            }
            _ => Err(mismatched()),
        }
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        match self {
            AnyRotator::Postgres(r) => r.check_tls(current).await,
            AnyRotator::Redshift(r) => r.check_tls(current).await,
            AnyRotator::DocumentDb(r) => r.check_tls(current).await,
        }
    }

    async fn check_rights(
        &self,
        session: &mut AnySession,
        current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        match (self, session) {
            (AnyRotator::Postgres(r), AnySession::Postgres(s)) => r.check_rights(s, current).await,
            (AnyRotator::Redshift(r), AnySession::Redshift(s)) => r.check_rights(s, current).await,
            (AnyRotator::DocumentDb(r), AnySession::DocumentDb(s)) => {
                r.check_rights(s, current).await
            }
            _ => Err(mismatched()),
        }
    }

    async fn close(&self, session: AnySession) {
        match (self, session) {
            (AnyRotator::Postgres(r), AnySession::Postgres(s)) => r.close(s).await,
            (AnyRotator::Redshift(r), AnySession::Redshift(s)) => r.close(s).await,
            (AnyRotator::DocumentDb(r), AnySession::DocumentDb(s)) => r.close(s).await,
            (_, AnySession::Postgres(s) | AnySession::Redshift(s)) => s.close().await,
            (_, AnySession::DocumentDb(s)) => {
                rotation_documentdb::connect::close(
                    s.into_client(),
                    rotation_core::Deadline::after(std::time::Duration::from_secs(2)),
                )
                .await
            }
        }
    }

    async fn resolve_master(
        &self,
        master: DatabaseSecret,
        current: &DatabaseSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<DatabaseSecret, EngineError> {
        match self {
            AnyRotator::Postgres(r) => r.resolve_master(master, current, tags).await,
            AnyRotator::Redshift(r) => r.resolve_master(master, current, tags).await,
            AnyRotator::DocumentDb(r) => r.resolve_master(master, current, tags).await,
        }
    }

    async fn is_replica_of(
        &self,
        current: &DatabaseSecret,
        master: &DatabaseSecret,
    ) -> Result<bool, EngineError> {
        match self {
            AnyRotator::Postgres(r) => r.is_replica_of(current, master).await,
            AnyRotator::Redshift(r) => r.is_replica_of(current, master).await,
            AnyRotator::DocumentDb(r) => r.is_replica_of(current, master).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_by_name_and_secret_key() {
        assert_eq!(Engine::parse("postgres"), Some(Engine::Postgres));
        assert_eq!(Engine::parse("redshift"), Some(Engine::Redshift));
        assert_eq!(Engine::parse("mysql"), None);
        assert_eq!(
            Engine::for_secret_engine("aurora-postgresql"),
            Some(Engine::Postgres)
        );
        assert_eq!(
            Engine::for_secret_engine("redshift"),
            Some(Engine::Redshift)
        );
        assert_eq!(Engine::for_secret_engine("Redshift"), None);
        assert_eq!(Engine::Postgres.to_string(), "postgres");
        assert_eq!(Engine::Redshift.to_string(), "redshift");
    }
}
