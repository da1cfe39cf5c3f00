//! The five Secrets Manager operations rotation needs, behind one trait.
//!
//! [`AwsSecretStore`] talks to Secrets Manager (or any endpoint speaking its API);
//! [`LocalSecretStore`] keeps secrets in one JSON file with the same version and stage semantics;
//! [`AnyStore`] picks one at run time (the CLI's `--store`).

mod any;
mod aws;
mod local;
pub mod password;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use secrecy::SecretString;

pub use any::AnyStore;
pub use aws::{AwsSecretStore, ENDPOINT_ENV, store_error};
pub use local::{LocalSecretStore, PutOutcome, SecretSummary};

use crate::policy::PasswordPolicy;
use crate::stage::Stage;

/// The labels on one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionStages {
    /// AWS stages.
    pub stages: Vec<Stage>,
    /// Custom labels a user attached.
    pub other_labels: Vec<String>,
}

impl VersionStages {
    /// Whether `stage` is attached.
    pub fn has(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }
    /// All labels as strings, AWS stages first.
    pub fn labels(&self) -> Vec<String> {
        self.stages
            .iter()
            .map(|s| s.as_str().to_string())
            .chain(self.other_labels.iter().cloned())
            .collect()
    }
    /// Builds from label strings.
    pub fn from_labels<I: IntoIterator<Item = S>, S: AsRef<str>>(labels: I) -> Self {
        let mut v = VersionStages::default();
        for l in labels {
            match Stage::parse(l.as_ref()) {
                Some(s) => v.stages.push(s),
                None => v.other_labels.push(l.as_ref().to_string()),
            }
        }
        v.stages.sort();
        v
    }
}

/// What `DescribeSecret` says about a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDescription {
    /// The secret's ARN.
    pub arn: String,
    /// The secret's name.
    pub name: String,
    /// `RotationEnabled`; `None` when the service did not say.
    pub rotation_enabled: Option<bool>,
    /// `VersionIdsToStages`.
    pub versions: BTreeMap<String, VersionStages>,
    /// Tags (key, value).
    pub tags: Vec<(String, String)>,
}

impl SecretDescription {
    /// The version holding `stage`, if any.
    pub fn version_with(&self, stage: Stage) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, s)| s.has(stage))
            .map(|(v, _)| v.as_str())
    }
    /// An in-flight rotation: `AWSPENDING` on a version that is not `AWSCURRENT`.
    pub fn rotation_in_flight(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, s)| s.has(Stage::Pending) && !s.has(Stage::Current))
            .map(|(v, _)| v.as_str())
    }
}

/// One version's value.
pub struct SecretValue {
    /// Version id.
    pub version_id: String,
    /// Labels on it.
    pub stages: VersionStages,
    /// The `SecretString`.
    pub value: SecretString,
    /// When the version was created, where the store says (`CreatedDate`; whole seconds on
    /// the local store and moto).
    pub created: Option<std::time::SystemTime>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("version_id", &self.version_id)
            .field("stages", &self.stages)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// Which version to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionSelector<'a> {
    /// A version id.
    pub version_id: Option<&'a str>,
    /// A stage (checked against the version when both are given).
    pub stage: Option<Stage>,
}

impl<'a> VersionSelector<'a> {
    /// The version holding `stage`.
    pub fn stage(stage: Stage) -> Self {
        VersionSelector {
            version_id: None,
            stage: Some(stage),
        }
    }
    /// Version `id`, which must hold `stage`.
    pub fn version_at(id: &'a str, stage: Stage) -> Self {
        VersionSelector {
            version_id: Some(id),
            stage: Some(stage),
        }
    }
}

/// A stage move for `UpdateSecretVersionStage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageMove<'a> {
    /// The label.
    pub stage: Stage,
    /// Attach it to this version.
    pub move_to: Option<&'a str>,
    /// Detach it from this version.
    pub remove_from: Option<&'a str>,
}

/// One version as `ListSecretVersionIds` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version id.
    pub id: String,
    /// Labels on it (none for a version kept without a label).
    pub stages: VersionStages,
}

/// A per-secret claim: while it is held, no other `rotate run`, `resume` or `abort` on the same
/// store works on the secret. Released on drop, and by the operating system when the holder
/// dies (kill -9 included).
pub struct Claim(Option<Box<dyn Send + Sync>>);

impl Claim {
    /// A claim that guards nothing (stores that cannot offer one, such as Secrets Manager).
    pub fn none() -> Self {
        Claim(None)
    }
    /// A claim held by `guard` until it is dropped.
    pub fn held(guard: impl Send + Sync + 'static) -> Self {
        Claim(Some(Box::new(guard)))
    }
    /// Whether the store could give real exclusivity.
    pub fn is_exclusive(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Claim").field(&self.is_exclusive()).finish()
    }
}

/// A store failure. Kinds are stable; messages carry ids, never values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `ResourceNotFoundException`: no such secret, version, or value (a value-less stub).
    #[error("not found: {0}")]
    NotFound(String),
    /// `ResourceExistsException`: the token already holds a different value.
    #[error("version {0} already exists with a different value")]
    VersionExists(String),
    /// `InvalidParameterException` / `InvalidRequestException` / `ValidationException`.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `AccessDeniedException` or a KMS refusal.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Network, timeout, credentials or any other service failure.
    #[error("secrets manager call {operation} failed: {message}")]
    Service {
        /// The API operation.
        operation: &'static str,
        /// The SDK's description (no secret values: request bodies are not echoed).
        message: String,
        /// The SDK error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The local store file could not be read or written.
    #[error("local secret store {path}: {action} failed")]
    Io {
        /// The file.
        path: String,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The call did not finish before the step's deadline.
    #[error("secrets manager call {0} did not finish before the step's deadline")]
    Timeout(&'static str),
    /// Another process holds the secret's rotation claim.
    #[error("{0}")]
    Busy(String),
    /// A conditional write found the secret changed (another rotation is in flight).
    #[error("{0}")]
    Conflict(String),
    /// A pending value's write found `AWSCURRENT` moved off the version it was built from (a
    /// value put meanwhile).
    #[error(
        "AWSCURRENT of secret {secret} moved to version {now} after the pending value was built from version {built_from}"
    )]
    CurrentMoved {
        /// The secret.
        secret: String,
        /// The version the pending value was built from.
        built_from: String,
        /// The version `AWSCURRENT` is on now (`-` when none).
        now: String,
    },
    /// The local store file is not in the expected format.
    #[error("local secret store {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why (no values).
        reason: String,
    },
}

impl StoreError {
    /// Whether this is `ResourceNotFoundException`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}

/// The Secrets Manager operations rotation needs.
///
/// Implementations must give AWS's semantics: `put_value` with a token that holds the same value
/// is a no-op, with a different value `VersionExists`; moving `AWSCURRENT` makes the old current
/// `AWSPREVIOUS`; reading a value-less `AWSPENDING` stub is `NotFound`.
pub trait SecretStore: Send + Sync {
    /// `DescribeSecret`.
    fn describe(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<SecretDescription, StoreError>> + Send;

    /// `GetSecretValue`.
    fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> impl Future<Output = Result<SecretValue, StoreError>> + Send;

    /// `PutSecretValue` with `ClientRequestToken = token`; `rotation_token` is forwarded.
    fn put_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        rotation_token: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `UpdateSecretVersionStage`.
    fn update_stage(
        &self,
        secret_id: &str,
        change: StageMove<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `GetRandomPassword`.
    fn random_password(
        &self,
        policy: &PasswordPolicy,
    ) -> impl Future<Output = Result<SecretString, StoreError>> + Send;

    /// `ListSecretVersionIds` with deprecated versions included: every version the store still
    /// keeps, labelled or not, newest first.
    fn list_versions(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<Vec<VersionInfo>, StoreError>> + Send;

    /// Stores this rotation's pending value (`PutSecretValue` with `AWSPENDING`), built from
    /// the `AWSCURRENT` version `built_from`. Stores with a conditional write refuse, in the
    /// same operation, with [`StoreError::Conflict`] when `AWSPENDING` is on another version
    /// that is not `AWSCURRENT` (another rotation in flight), and with
    /// [`StoreError::CurrentMoved`] when `AWSCURRENT` is no longer on `built_from` (a value
    /// put since the step read it, which the pending value would silently undo). Secrets
    /// Manager has no conditional write: core checks what it read first (RELIABILITY.md says
    /// what remains). Required, so that a wrapping store cannot silently drop the condition.
    fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        built_from: &str,
        rotation_token: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes the per-secret claim, or fails at once with [`StoreError::Busy`]. Stores that
    /// cannot offer exclusivity return [`Claim::none`]. Required, so that a wrapping store
    /// cannot silently drop the claim.
    fn claim(&self, arn: &str) -> impl Future<Output = Result<Claim, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_means_pending_apart_from_current() {
        let mut d = SecretDescription {
            arn: "a".into(),
            name: "n".into(),
            rotation_enabled: None,
            versions: BTreeMap::new(),
            tags: vec![],
        };
        d.versions.insert(
            "v1".into(),
            VersionStages::from_labels(["AWSCURRENT", "AWSPENDING"]),
        );
        assert_eq!(d.rotation_in_flight(), None);
        d.versions
            .insert("v2".into(), VersionStages::from_labels(["AWSPENDING", "x"]));
        assert_eq!(d.rotation_in_flight(), Some("v2"));
        assert_eq!(d.versions["v2"].other_labels, vec!["x".to_string()]);
        assert_eq!(d.version_with(Stage::Current), Some("v1"));
    }
}
