//! Connection settings read once from the environment: the engine-independent ones
//! ([`ConnectSettings`]: trust, `ALLOW_PLAINTEXT_FALLBACK`, `CONNECT_TIMEOUT_SECONDS`) and the
//! PostgreSQL-protocol ones (dialect, server-side limits).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use rotation_trust::settings::{
    CONNECT_TIMEOUT_ENV, ENV as CONNECT_ENV, PLAINTEXT_FALLBACK_ENV,
};
pub use rotation_trust::{CA_BUNDLE_ENV, ConnectSettings, SettingsError};
use rotation_trust::{Trust, TrustError};

use crate::connect::Dialect;

/// Libpq variables sqlx would pick up that we cannot override per connection. Rotation refuses
/// to run with them set rather than connect with ambient settings.
pub const AMBIENT_VARS: [&str; 4] = ["PGSSLCERT", "PGSSLKEY", "PGOPTIONS", "PGSSLROOTCERT"];

/// How the engine connects.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The server's defaults and accepted session settings; each engine sets its own.
    pub dialect: Dialect,
    /// The CAs TLS connections trust: the embedded Amazon RDS bundle, the system store,
    /// `CA_BUNDLE_PATH`, and (added by the driver) the Mozilla roots. Built once per process.
    pub trust: Arc<Trust>,
    /// Retry without TLS when TLS fails and the secret has no explicit `ssl` key.
    pub allow_plaintext_fallback: bool,
    /// Per attempt.
    pub connect_timeout: Duration,
    /// `lock_timeout` for the rotation's own sessions (W24).
    pub lock_timeout: Duration,
    /// `statement_timeout` for the rotation's own sessions (W24).
    pub statement_timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig::with_settings(ConnectSettings::default())
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A connection setting shared by every engine is unusable.
    #[error(transparent)]
    Connect(#[from] SettingsError),
    /// An ambient libpq variable is set.
    #[error(
        "environment variable {0} is set; rotation connects only with settings from the secret and its own configuration, so unset it"
    )]
    AmbientVariable(&'static str),
}

impl From<TrustError> for ConfigError {
    fn from(e: TrustError) -> Self {
        ConfigError::Connect(SettingsError::Trust(e))
    }
}

impl PgConfig {
    /// The default settings, also trusting the CAs in the PEM file `ca_bundle`.
    pub fn with_ca_bundle(ca_bundle: &Path) -> Result<Self, ConfigError> {
        Ok(PgConfig::with_trust(Arc::new(Trust::load(Some(
            ca_bundle,
        ))?)))
    }

    /// The default settings with `trust`.
    pub fn with_trust(trust: Arc<Trust>) -> Self {
        PgConfig::with_settings(ConnectSettings::with_trust(trust))
    }

    /// PostgreSQL's defaults over the shared connection settings.
    pub fn with_settings(settings: ConnectSettings) -> Self {
        PgConfig {
            dialect: Dialect::POSTGRES,
            trust: settings.trust,
            allow_plaintext_fallback: settings.allow_plaintext_fallback,
            connect_timeout: settings.connect_timeout,
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
        }
    }

    /// The engine-independent part, for engines on other drivers.
    pub fn connect_settings(&self) -> ConnectSettings {
        ConnectSettings {
            trust: self.trust.clone(),
            allow_plaintext_fallback: self.allow_plaintext_fallback,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The same settings for another server dialect.
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        for var in AMBIENT_VARS {
            if lookup(var).is_some_and(|v| !v.is_empty()) {
                return Err(ConfigError::AmbientVariable(var));
            }
        }
        Ok(PgConfig::with_settings(ConnectSettings::from_lookup(
            lookup,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_validates() {
        let c = PgConfig::from_lookup(|k| match k {
            "ALLOW_PLAINTEXT_FALLBACK" => Some("yes".into()),
            "CONNECT_TIMEOUT_SECONDS" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.allow_plaintext_fallback);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert!(matches!(
            PgConfig::from_lookup(|k| (k == "CONNECT_TIMEOUT_SECONDS").then(|| "0".into())),
            Err(ConfigError::Connect(SettingsError::BadTimeout { .. }))
        ));
        assert!(matches!(
            PgConfig::from_lookup(|k| (k == "CA_BUNDLE_PATH").then(|| "/nonexistent.pem".into())),
            Err(ConfigError::Connect(SettingsError::Trust(_)))
        ));
        // A file that holds no certificate is a configuration error too.
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let e = PgConfig::from_lookup(|k| {
            (k == "CA_BUNDLE_PATH").then(|| not_pem.display().to_string())
        })
        .unwrap_err();
        assert!(
            matches!(e, ConfigError::Connect(SettingsError::Trust(_))),
            "{e}"
        );
        assert!(e.to_string().contains("not.pem"), "{e}");
        assert!(matches!(
            PgConfig::from_lookup(|k| (k == "PGOPTIONS").then(|| "-c x=y".into())),
            Err(ConfigError::AmbientVariable("PGOPTIONS"))
        ));
    }
}
