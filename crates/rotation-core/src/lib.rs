//! Engine-independent AWS Secrets Manager rotation: the four-step state machine, the secret
//! stores, the secret model and the password policy. An engine (a database, a cache, any
//! service with users and passwords) implements [`Rotator`]; this crate does everything else.
//!
//! # The rotation state machine
//!
//! Secrets Manager rotates a secret by calling a function four times with one
//! `ClientRequestToken`, the id of the new version ([`Rotation::handle`] answers each call; the
//! driver [`Rotation::rotate`] makes all four itself, for the CLI and for tests):
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
//! # Stages
//!
//! A secret's versions carry staging labels ([`Stage`]); each label is on at most one version.
//!
//! - `AWSCURRENT`: what applications read. After a rotation it is the new version.
//! - `AWSPENDING`: the version being rotated to, from `createSecret` until `finishSecret`
//!   (after which it may stay on the now-current version; a version that holds `AWSPENDING`
//!   without `AWSCURRENT` is a rotation in flight: [`SecretDescription::rotation_in_flight`]).
//! - `AWSPREVIOUS`: the version `AWSCURRENT` left. Single user: its password no longer logs
//!   in. Alternating users ([`Strategy`]): it names the other user of the pair, whose password
//!   still works until the next rotation changes it, so clients that read the secret before
//!   the rotation keep working.
//!
//! # Idempotency and no lockout
//!
//! Any step may run twice, be cut off at any point (a Lambda timeout, `kill -9`, a dropped
//! connection) and be run again, by the service or by `resume`. The rules that make that safe:
//!
//! - **The database changes only after the pending value is stored.** `setSecret` reads the
//!   pending value from the store; it never makes a password that is not already in the store.
//! - **Proof before change, proof before promotion.** `setSecret` logs in first with the
//!   pending value (done already: nothing to change, once a wrong password is seen refused,
//!   [`RotationError::PasswordsNotChecked`] otherwise), then with `AWSCURRENT`, then
//!   `AWSPREVIOUS`, then each unlabelled version the store keeps, newest first
//!   ([`RECOVERY_LIMIT`]): a change that landed without its step finishing is found again.
//!   `finishSecret` moves `AWSCURRENT` only to a version that logs in.
//! - **A change that cannot land late.** An engine makes a password change so that it takes
//!   effect before the call returns, or never ([`Rotator::set_own_password`]).
//! - **One rotation per secret.** The driver holds a claim ([`SecretStore::claim`]; the file
//!   store locks, Secrets Manager has its own rotation lock), and `createSecret` refuses a
//!   second pending version.
//! - **Abort undoes, or changes nothing.** [`Rotation::abort`] removes `AWSPENDING` only once
//!   `AWSCURRENT` is proven to log in, restoring its password first when it must.
//!
//! # The deadline
//!
//! Every network call (store and database) is bounded by a [`Deadline`]: the Lambda
//! invocation's remaining time less a margin, or the CLI's `--timeout` per step
//! ([`Options::step_timeout`]). A step that reaches it fails with a `Timeout` kind and leaves
//! the secret as the rules above allow; the next call goes on from there. An engine receives
//! the deadline at [`Rotator::login`] and must bound every call on the session by it.
//!
//! # Writing an engine
//!
//! Implement [`Rotator`] for one strategy: log in, set a password (as the user itself, or as
//! the master for alternating users), test a session, close it. An engine whose users cannot
//! change their own password sets [`EngineProfile::single_user_master`]: its single-user
//! rotations act through the master too, and [`Rotator::drop_other_passwords`] runs after
//! finishSecret and after an abort (for engines that keep several passwords per user).
//! Describe the engine with an [`EngineProfile`] (the secret's `engine` values, password rules,
//! user name limit, default port, the preflight's advice). Report failures as [`EngineError`]
//! with an [`ErrorKind`]; never put a secret value in a message.
//!
//! Then make it one value, an [`Engine`]: its profile, its function's name, the variables it
//! reads, and `configure`, which reads its settings once into an [`EngineConfig`] that makes
//! its rotator ([`AnyRotator::new`]) for a strategy. With it, `rotation_lambda::run(ENGINE)` is
//! a whole Lambda function and `rotation_cli::main(Engines::new([ENGINE])?)` the `rotate`
//! command with every verb (both crates without default features, so none of the built-in
//! engines' drivers are linked). Or wire it by hand: [`Rotation::new`] with a store
//! ([`AwsSecretStore`], [`LocalSecretStore`]) and a [`PasswordPolicy`], then
//! [`Rotation::handle`] from a Lambda handler or [`Rotation::rotate`] from anywhere else.
//!
//! What moved when engines became values (no release had the old API): `rotation_engines`'
//! `Engine` enum, `Settings`, `AnyRotator` enum and per-engine constructors became [`Engine`]
//! (each engine crate's `ENGINE`), [`EngineSettings`] and [`AnyRotator`] here;
//! `rotation_lambda::run_function` and `run_engine` became `rotation_lambda::run`; the
//! `rotate` binary's code became `rotation_cli::main`. With the MySQL engine, the alternate
//! user's name limit became the rotator's ([`Rotator::username_limit`], a [`UsernameLimit`] in
//! bytes or characters), and [`RotationError::UsernameTooLong`]'s `bytes` became `length` and
//! `unit`.
//!
//! A complete single-user engine, rotating a toy in-memory database through the file store:
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//!
//! use rotation_core::{
//!     DatabaseSecret, Deadline, EngineError, EngineProfile, ErrorKind, LocalSecretStore,
//!     PasswordDefaults, PasswordPolicy, RightsAdvice, Rotation, Rotator, SecretStore, Stage, Strategy,
//!     VersionSelector,
//! };
//! use secrecy::{ExposeSecret, SecretString};
//!
//! /// The "database": user name to password.
//! #[derive(Clone, Default)]
//! struct Toy(Arc<Mutex<HashMap<String, String>>>);
//!
//! const TOY: EngineProfile = EngineProfile {
//!     name: "toy",
//!     engines: &["toy"],
//!     password: PasswordDefaults::BASE,
//!     max_username_bytes: Some(63),
//!     default_port: None,
//!     single_user_master: false,
//!     advice: RightsAdvice::GENERIC,
//! };
//!
//! struct ToyRotator(Toy);
//!
//! impl Rotator for ToyRotator {
//!     /// A session is the name of the user who logged in.
//!     type Session = String;
//!
//!     fn profile(&self) -> &EngineProfile {
//!         &TOY
//!     }
//!
//!     fn strategy(&self) -> Strategy {
//!         Strategy::SingleUser
//!     }
//!
//!     async fn login(&self, secret: &DatabaseSecret, _: Deadline) -> Result<String, EngineError> {
//!         let user = secret.username().unwrap_or_default();
//!         let given = secret.password().map(|p| p.expose_secret());
//!         match self.0 .0.lock().unwrap().get(user) {
//!             Some(known) if Some(known.as_str()) == given => Ok(user.to_string()),
//!             // The message names the user, never a password.
//!             _ => Err(EngineError::new(ErrorKind::AuthFailed, format!("{user} cannot log in"))),
//!         }
//!     }
//!
//!     async fn set_own_password(
//!         &self,
//!         session: &mut String,
//!         target: &DatabaseSecret,
//!     ) -> Result<(), EngineError> {
//!         // Checked against the engine's rules before it reaches the database.
//!         let password = TOY.password_to_set(target)?;
//!         self.0 .0.lock().unwrap().insert(session.clone(), password.to_string());
//!         Ok(())
//!     }
//!
//!     async fn set_password_as_master(
//!         &self,
//!         _: &mut String,
//!         _: &DatabaseSecret,
//!         _: &DatabaseSecret,
//!     ) -> Result<(), EngineError> {
//!         Err(EngineError::new(ErrorKind::PermissionDenied, "the toy has no master"))
//!     }
//!
//!     async fn test_session(
//!         &self,
//!         _: &mut String,
//!         _: &DatabaseSecret,
//!         _: Option<&str>,
//!     ) -> Result<(), EngineError> {
//!         Ok(())
//!     }
//!
//!     async fn close(&self, _: String) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Toy::default();
//! db.0.lock().unwrap().insert("app".into(), "Initial-pw-1".into());
//! let dir = tempfile::tempdir()?;
//! let store = LocalSecretStore::new(dir.path().join("secrets.json"));
//! let value = r#"{"engine": "toy", "host": "toy.local", "username": "app", "password": "Initial-pw-1"}"#;
//! store.create_secret("app", &SecretString::from(value)).await?;
//!
//! let rotation = Rotation::new(
//!     store.clone(),
//!     ToyRotator(db.clone()),
//!     PasswordPolicy::defaults(&TOY.password),
//! );
//! let report = rotation.rotate("app").await?;
//!
//! // AWSCURRENT is the new version, and its password is the database's.
//! let current = store.get_value("app", VersionSelector::stage(Stage::Current)).await?;
//! assert_eq!(current.version_id, report.token);
//! let secret = DatabaseSecret::parse(&current.value)?;
//! let password = secret.password().unwrap().expose_secret().to_string();
//! assert_eq!(db.0.lock().unwrap()["app"], password);
//! assert_ne!(password, "Initial-pw-1");
//! # Ok(())
//! # }
//! ```
//!
//! `examples/redis-acl` in the repository is a fuller one against a real server, with both
//! strategies and its own Lambda binary.
//!
//! # Layout
//!
//! - [`event`]: the Lambda event ([`RotationEvent`], [`Step`]).
//! - [`stage`]: [`Stage`] labels and [`Strategy`].
//! - [`secret`]: the database secret JSON ([`DatabaseSecret`]).
//! - [`policy`]: password policy from AWS's environment variables ([`PasswordPolicy`]).
//! - [`store`]: the [`SecretStore`] trait, [`AwsSecretStore`], [`LocalSecretStore`], [`AnyStore`].
//! - [`rotator`]: what an engine implements ([`Rotator`]).
//! - [`engine`]: an engine as one value ([`Engine`], [`EngineSettings`], [`Engines`],
//!   [`AnyRotator`]).
//! - [`Rotation`]: `handle(event)` and the driver `rotate` / `resume` / `abort` / `rollback` /
//!   `status`; [`plan`]: the preflight.
//! - [`deadline`]: [`Deadline`]; [`tls`]: what a secret asks of TLS ([`TlsPlan`]).
//! - [`error`]: [`RotationError`] with stable kinds.

#![warn(missing_docs)]

pub mod calls;
pub mod deadline;
mod driver;
pub mod engine;
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
pub use engine::{
    AnyRotator, BoxFuture, ConfigError, DynRotator, DynSession, ENGINE_ENV, Engine, EngineConfig,
    EngineEnv, EngineListError, EngineSettings, Engines, STRATEGY_ENV,
};
pub use error::{
    Attempts, CredentialSource, ErrorCategory, LoginAttempt, RotationError, Which, error_chain,
};
pub use event::{EventError, EventStep, RotationEvent, Step};
pub use options::{
    AllowListError, MASTER_ALLOW_LIST_ENV, MasterAllowList, Options, RECOVERY_LIMIT,
};
pub use policy::{CharClass, PasswordDefaults, PasswordPolicy, PasswordRuleError, PolicyError};
pub use rotation::Rotation;
pub use rotator::{
    DeadSessions, Direction, EngineError, EngineProfile, ErrorKind, RightsAdvice, Rotator,
    UsernameLimit, close_without_waiting,
};
pub use secret::{DatabaseSecret, DbName, SecretError, SslKey};
pub use stage::{Stage, Strategy};
pub use steps::{Credentials, StepOutcome};
pub use store::{
    AnyStore, AwsSecretStore, Claim, LocalSecretStore, SecretDescription, SecretStore, SecretValue,
    StageMove, StoreError, VersionInfo, VersionSelector, VersionStages,
};
pub use tls::TlsPlan;
