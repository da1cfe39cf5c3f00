//! Which rotator a deployment runs, and its configuration, in one place: the Lambda binaries,
//! the `rotate` CLI and the demo all build their [`Rotation`] here.
//!
//! Configuration is read once, at start, from the same environment variables as AWS's
//! functions (password policy) plus each engine's own (`CA_BUNDLE_PATH`, ...); a bad value is a
//! [`ConfigError`] before any event is accepted.

use std::fmt;

use rotation_core::{PasswordPolicy, PolicyError, Rotation, SecretStore, Strategy};
use rotation_postgres::{PgConfig, PostgresRotator};

/// `ROTATION_STRATEGY`: `single-user` or `alternating-users`.
pub const STRATEGY_ENV: &str = "ROTATION_STRATEGY";

/// A database engine this toolkit rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Amazon RDS / Aurora PostgreSQL.
    Postgres,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 1] = [Engine::Postgres];

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => rotation_postgres::PROFILE.name,
        }
    }

    /// From a command-line name.
    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The engine that handles a secret whose `engine` key is `value`.
    pub fn for_secret_engine(value: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| match e {
            Engine::Postgres => rotation_postgres::PROFILE.engines.contains(&value),
        })
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
    /// PostgreSQL connection settings are unusable.
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
    /// Connection settings.
    pub postgres: PgConfig,
}

impl Settings {
    /// Reads and validates `engine`'s settings from the process environment.
    pub fn from_env(engine: Engine) -> Result<Settings, ConfigError> {
        match engine {
            Engine::Postgres => Ok(Settings {
                engine,
                policy: PasswordPolicy::from_env(&rotation_postgres::PROFILE.password)?,
                postgres: PgConfig::from_env()?,
            }),
        }
    }
}

/// The rotator for `settings.engine` and `strategy`. With `sdk` (Secrets Manager deployments),
/// the engine may call other AWS APIs it needs (PostgreSQL: the RDS API for RDS-managed master
/// secrets and read replicas).
pub fn rotator(
    settings: &Settings,
    strategy: Strategy,
    sdk: Option<&aws_config::SdkConfig>,
) -> PostgresRotator {
    match settings.engine {
        Engine::Postgres => {
            let rotator = PostgresRotator::new(strategy, settings.postgres.clone());
            match sdk {
                Some(sdk) => rotator.with_rds(rotation_postgres::rds::Rds::from_sdk_config(sdk)),
                None => rotator,
            }
        }
    }
}

/// A [`Rotation`] over `store` for `settings.engine` and `strategy`.
pub fn rotation<S: SecretStore>(
    store: S,
    settings: &Settings,
    strategy: Strategy,
    sdk: Option<&aws_config::SdkConfig>,
) -> Rotation<S, PostgresRotator> {
    Rotation::new(
        store,
        rotator(settings, strategy, sdk),
        settings.policy.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_by_name_and_secret_key() {
        assert_eq!(Engine::parse("postgres"), Some(Engine::Postgres));
        assert_eq!(Engine::parse("mysql"), None);
        assert_eq!(
            Engine::for_secret_engine("aurora-postgresql"),
            Some(Engine::Postgres)
        );
        assert_eq!(Engine::for_secret_engine("redshift"), None);
        assert_eq!(Engine::Postgres.to_string(), "postgres");
    }
}
