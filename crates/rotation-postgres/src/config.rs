//! Connection settings read once from the environment.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rotation_core::policy::parse_env_bool;
use rotation_trust::{Trust, TrustError};

use crate::connect::Dialect;

/// `CA_BUNDLE_PATH`: extra trusted CAs (PEM), e.g. GovCloud's or China's RDS bundle.
pub const CA_BUNDLE_ENV: &str = "CA_BUNDLE_PATH";
/// `ALLOW_PLAINTEXT_FALLBACK`: AWS's behaviour for secrets without an explicit `ssl` key (retry
/// without TLS when TLS fails). Off by default (W1).
pub const PLAINTEXT_FALLBACK_ENV: &str = "ALLOW_PLAINTEXT_FALLBACK";
/// `CONNECT_TIMEOUT_SECONDS`: per connection attempt (AWS: 5).
pub const CONNECT_TIMEOUT_ENV: &str = "CONNECT_TIMEOUT_SECONDS";

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
        PgConfig::with_trust(default_trust())
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not a number of seconds.
    #[error("{name} must be a whole number of seconds between 1 and 300, got {value:?}")]
    BadTimeout {
        /// Variable.
        name: &'static str,
        /// Value.
        value: String,
    },
    /// The trust store cannot be built (`CA_BUNDLE_PATH` unreadable or without a certificate).
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// An ambient libpq variable is set.
    #[error(
        "environment variable {0} is set; rotation connects only with settings from the secret and its own configuration, so unset it"
    )]
    AmbientVariable(&'static str),
}

/// The trust store without `CA_BUNDLE_PATH`, built once per process.
fn default_trust() -> Arc<Trust> {
    static DEFAULT: OnceLock<Arc<Trust>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(Trust::load(None).expect("the embedded RDS bundle parses")))
        .clone()
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
        PgConfig {
            dialect: Dialect::POSTGRES,
            trust,
            allow_plaintext_fallback: false,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
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
        // One trust store per process: with CA_BUNDLE_PATH, only the one that includes it.
        let mut c = match lookup(CA_BUNDLE_ENV).filter(|p| !p.trim().is_empty()) {
            Some(path) => PgConfig::with_ca_bundle(Path::new(path.trim()))?,
            None => PgConfig::default(),
        };
        c.allow_plaintext_fallback =
            lookup(PLAINTEXT_FALLBACK_ENV).is_some_and(|v| parse_env_bool(&v));
        if let Some(v) = lookup(CONNECT_TIMEOUT_ENV) {
            let secs: u64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=300).contains(s))
                .ok_or(ConfigError::BadTimeout {
                    name: CONNECT_TIMEOUT_ENV,
                    value: v.clone(),
                })?;
            c.connect_timeout = Duration::from_secs(secs);
        }
        Ok(c)
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
            Err(ConfigError::BadTimeout { .. })
        ));
        assert!(matches!(
            PgConfig::from_lookup(|k| (k == "CA_BUNDLE_PATH").then(|| "/nonexistent.pem".into())),
            Err(ConfigError::Trust(_))
        ));
        // A file that holds no certificate is a configuration error too.
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let e = PgConfig::from_lookup(|k| {
            (k == "CA_BUNDLE_PATH").then(|| not_pem.display().to_string())
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::Trust(_)), "{e}");
        assert!(e.to_string().contains("not.pem"), "{e}");
        assert!(matches!(
            PgConfig::from_lookup(|k| (k == "PGOPTIONS").then(|| "-c x=y".into())),
            Err(ConfigError::AmbientVariable("PGOPTIONS"))
        ));
    }
}
