//! Engine-independent AWS Secrets Manager rotation.
//!
//! # The rotation state machine
//!
//! Secrets Manager rotates a secret by calling a function four times with one
//! `ClientRequestToken` (the new version's id):
//!
//! | step | does | idempotent because |
//! |---|---|---|
//! | `createSecret` | stores a new `AWSPENDING` value (new password; for alternating users, the other username) | an existing pending value is kept |
//! | `setSecret` | makes the database accept it, acting as the current user (else previous), or as the master | it first tries the pending login and stops if that works |
//! | `testSecret` | logs in with the pending value | read-only |
//! | `finishSecret` | moves `AWSCURRENT` to the token (the old version becomes `AWSPREVIOUS`) | nothing to do once the token is current |
//!
//! Every call first checks the secret: rotation not disabled, the token is a version, already
//! `AWSCURRENT` means success for any step, otherwise it must be `AWSPENDING`.
//!
//! # Layout
//!
//! - [`event`]: the Lambda event ([`RotationEvent`], [`Step`]).
//! - [`stage`]: [`Stage`] labels and [`Strategy`].
//! - [`secret`]: the database secret JSON ([`DatabaseSecret`]).
//! - [`policy`]: password policy from AWS's environment variables ([`PasswordPolicy`]).
//! - [`store`]: the [`SecretStore`] trait, [`AwsSecretStore`], [`LocalSecretStore`], [`AnyStore`].
//! - [`rotator`]: what an engine implements ([`Rotator`]).
//! - [`Rotation`]: `handle(event)` and the driver `rotate` / `resume` / `abort` / `status`.
//! - [`error`]: [`RotationError`] with stable kinds.

pub mod deadline;
mod driver;
pub mod error;
pub mod event;
mod options;
pub mod plan;
pub mod policy;
mod rotation;
pub mod rotator;
pub mod secret;
pub mod stage;
mod steps;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use deadline::Deadline;
pub use driver::{AbortMode, AbortReport, RotationReport};
pub use error::{
    Attempts, CredentialSource, ErrorCategory, LoginAttempt, RotationError, Which, error_chain,
};
pub use event::{EventError, EventStep, RotationEvent, Step};
pub use options::{
    AllowListError, MASTER_ALLOW_LIST_ENV, MasterAllowList, Options, RECOVERY_LIMIT,
};
pub use policy::{CharClass, PasswordDefaults, PasswordPolicy, PasswordRuleError, PolicyError};
pub use rotation::Rotation;
pub use rotator::{Direction, EngineError, EngineProfile, ErrorKind, Rotator};
pub use secret::{DatabaseSecret, DbName, SecretError, SslKey};
pub use stage::{Stage, Strategy};
pub use steps::{Credentials, StepOutcome};
pub use store::{
    AnyStore, AwsSecretStore, Claim, LocalSecretStore, SecretDescription, SecretStore, SecretValue,
    StageMove, StoreError, VersionInfo, VersionSelector, VersionStages,
};
pub use tls::TlsPlan;
