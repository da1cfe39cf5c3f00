//! The connection settings every engine reads the same way, once, at start: the trust store
//! (with `CA_BUNDLE_PATH`), `ALLOW_PLAINTEXT_FALLBACK` and `CONNECT_TIMEOUT_SECONDS`.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rotation_core::rotator::BoxError;
use rotation_core::{AnyRotator, EngineConfig, EngineEnv, Strategy};

use crate::{CA_BUNDLE_ENV, Trust, TrustError};

/// `ALLOW_PLAINTEXT_FALLBACK`: AWS's behaviour for secrets without an explicit `ssl` key (retry
/// without TLS when TLS fails). Off by default (W1).
pub const PLAINTEXT_FALLBACK_ENV: &str = "ALLOW_PLAINTEXT_FALLBACK";
/// `CONNECT_TIMEOUT_SECONDS`: per connection attempt (AWS: 5).
pub const CONNECT_TIMEOUT_ENV: &str = "CONNECT_TIMEOUT_SECONDS";
/// Every variable [`ConnectSettings::from_lookup`] reads: an engine on these settings lists
/// them in its [`rotation_core::Engine::env`].
pub const ENV: [&str; 3] = [
    crate::CA_BUNDLE_ENV,
    PLAINTEXT_FALLBACK_ENV,
    CONNECT_TIMEOUT_ENV,
];

/// How an engine connects, whatever its driver.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The CAs TLS connections trust. Built once per process.
    pub trust: Arc<Trust>,
    /// Retry without TLS when TLS fails and the secret has no explicit `ssl` key.
    pub allow_plaintext_fallback: bool,
    /// Per connection attempt.
    pub connect_timeout: Duration,
}

/// A connection setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
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
}

/// The trust store without `CA_BUNDLE_PATH`, built once per process.
pub fn default_trust() -> Arc<Trust> {
    static DEFAULT: OnceLock<Arc<Trust>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(Trust::load(None).expect("the embedded RDS bundle parses")))
        .clone()
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings::with_trust(default_trust())
    }
}

impl ConnectSettings {
    /// The defaults with `trust`: verified TLS only, 5 s per connection attempt.
    pub fn with_trust(trust: Arc<Trust>) -> Self {
        ConnectSettings {
            trust,
            allow_plaintext_fallback: false,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Reads the settings through `lookup` (an environment, a config map, a test table).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        // One trust store per process: with CA_BUNDLE_PATH, only the one that includes it.
        let mut c = match lookup(CA_BUNDLE_ENV).filter(|p| !p.trim().is_empty()) {
            Some(path) => {
                ConnectSettings::with_trust(Arc::new(Trust::load(Some(Path::new(path.trim())))?))
            }
            None => ConnectSettings::default(),
        };
        c.allow_plaintext_fallback = lookup(PLAINTEXT_FALLBACK_ENV)
            .is_some_and(|v| rotation_core::policy::parse_env_bool(&v));
        if let Some(v) = lookup(CONNECT_TIMEOUT_ENV) {
            let secs: u64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=300).contains(s))
                .ok_or(SettingsError::BadTimeout {
                    name: CONNECT_TIMEOUT_ENV,
                    value: v.clone(),
                })?;
            c.connect_timeout = Duration::from_secs(secs);
        }
        Ok(c)
    }
}

/// The settings of an engine that needs only the shared connection settings (the MongoDB-wire
/// engine, the Redis example): its [`rotation_core::EngineConfig`], from the settings and the engine's
/// rotator constructor.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The shared settings.
    pub settings: ConnectSettings,
    /// Makes the engine's rotator for a strategy.
    pub rotator: fn(Strategy, ConnectSettings) -> AnyRotator,
}

impl ConnectConfig {
    /// Reads the shared settings through `env`; for an engine's
    /// [`configure`](rotation_core::Engine::configure).
    pub fn read(
        env: &EngineEnv<'_>,
        rotator: fn(Strategy, ConnectSettings) -> AnyRotator,
    ) -> Result<Arc<dyn EngineConfig>, BoxError> {
        Ok(Arc::new(ConnectConfig {
            settings: ConnectSettings::from_lookup(|k| env.var(k))?,
            rotator,
        }))
    }
}

impl EngineConfig for ConnectConfig {
    fn rotator(&self, strategy: Strategy) -> AnyRotator {
        (self.rotator)(strategy, self.settings.clone())
    }

    fn log(&self) {
        self.settings.trust.log_sources();
    }
}
