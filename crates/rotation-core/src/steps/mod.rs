//! The four steps, as free functions over a [`StepContext`]. Each is idempotent: calling it again
//! with the same token after success, or after a crash at any point inside it, converges on the
//! same end state.

pub(crate) mod create;
pub(crate) mod finish;
pub(crate) mod recover;
pub(crate) mod set;
pub(crate) mod test;

use std::future::Future;

use crate::deadline::Deadline;
use crate::error::{CredentialSource, RotationError, Which};
use crate::options::Options;
use crate::policy::PasswordPolicy;
use crate::rotator::{EngineError, ErrorKind, Rotator};
use crate::secret::DatabaseSecret;
use crate::stage::Stage;
use crate::store::{SecretDescription, SecretStore, StoreError, VersionSelector};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The token is already `AWSCURRENT`: nothing to do (any step).
    AlreadyCurrent,
    /// createSecret: the pending value already existed.
    PendingExists,
    /// createSecret: a pending value was generated and stored.
    PendingCreated,
    /// setSecret: the pending credentials already logged in.
    AlreadySet,
    /// setSecret: the password was changed, acting with these credentials.
    PasswordSet(Credentials),
    /// testSecret passed.
    Tested,
    /// finishSecret moved `AWSCURRENT` to the token.
    Promoted,
}

/// Whose credentials performed a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// AWSCURRENT.
    Current,
    /// AWSPREVIOUS.
    Previous,
    /// A version kept without a label (recovery after an interrupted rotation, W6).
    Recovered,
    /// The pending version (abort restoring the current password).
    Pending,
    /// The master secret.
    Master,
}

/// Everything one step invocation works with: built once per invocation, the secret's
/// description read once (by the entry checks).
pub(crate) struct StepContext<'a, S, R> {
    pub store: &'a S,
    pub rotator: &'a R,
    pub policy: &'a PasswordPolicy,
    pub options: &'a Options,
    /// The secret's ARN (steps work on the ARN, as AWS's functions do).
    pub arn: &'a str,
    /// The version being rotated.
    pub token: &'a str,
    pub description: &'a SecretDescription,
    pub deadline: Deadline,
    /// The step belongs to a `rollback` run: its pending version is `AWSPREVIOUS` itself, not
    /// a value built from `AWSCURRENT`.
    pub rollback: bool,
}

impl<S: SecretStore, R: Rotator> StepContext<'_, S, R> {
    /// Runs a store call within the step's deadline. The timeout is mapped here rather than
    /// through [`Deadline::store_call`]: one more async layer in every step's future pushed
    /// callers' deep futures past the compiler's default recursion limit.
    pub async fn store_call<T>(
        &self,
        operation: &'static str,
        context: impl FnOnce() -> String,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, RotationError> {
        match self.deadline.run(fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RotationError::store(context())(e)),
            Err(_) => Err(RotationError::store(context())(StoreError::Timeout(
                operation,
            ))),
        }
    }

    /// Loads and parses one version, validating the keys the engine needs.
    pub async fn load(
        &self,
        which: Which,
        token: Option<&str>,
    ) -> Result<DatabaseSecret, RotationError> {
        Ok(self.load_timed(which, token).await?.0)
    }

    /// [`StepContext::load`], with when the version was created (where the store says).
    pub async fn load_timed(
        &self,
        which: Which,
        token: Option<&str>,
    ) -> Result<(DatabaseSecret, Option<std::time::SystemTime>), RotationError> {
        let (secret, _, created) = match self.load_versioned_timed(self.arn, which, token).await {
            Ok(secret) => secret,
            // Reading this rotation's version at AWSPENDING is refused once the label has
            // moved to another version (another rotation wrote its pending value after this
            // step's entry checks): say so, rather than report a store failure.
            Err(
                e @ RotationError::Store {
                    source: StoreError::InvalidRequest(_),
                    ..
                },
            ) if which == Which::Pending && token == Some(self.token) => {
                self.recheck_pending().await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.validate(self.arn, which, &secret)?;
        Ok((secret, created))
    }

    /// Loads and parses a version of `secret_id` (this secret, or the master).
    pub async fn load_raw(
        &self,
        secret_id: &str,
        which: Which,
        token: Option<&str>,
    ) -> Result<DatabaseSecret, RotationError> {
        Ok(self.load_versioned(secret_id, which, token).await?.0)
    }

    /// [`StepContext::load_raw`], with the id of the version read.
    pub async fn load_versioned(
        &self,
        secret_id: &str,
        which: Which,
        token: Option<&str>,
    ) -> Result<(DatabaseSecret, String), RotationError> {
        let (secret, version, _) = self.load_versioned_timed(secret_id, which, token).await?;
        Ok((secret, version))
    }

    /// [`StepContext::load_versioned`], with when the version was created.
    async fn load_versioned_timed(
        &self,
        secret_id: &str,
        which: Which,
        token: Option<&str>,
    ) -> Result<(DatabaseSecret, String, Option<std::time::SystemTime>), RotationError> {
        let stage = match which {
            Which::Current | Which::Master => Stage::Current,
            Which::Pending => Stage::Pending,
            Which::Previous => Stage::Previous,
        };
        let selector = VersionSelector {
            version_id: token,
            stage: Some(stage),
        };
        let value = self
            .store_call(
                "GetSecretValue",
                || format!("reading the {which} value of secret {secret_id}"),
                self.store.get_value(secret_id, selector),
            )
            .await?;
        let secret =
            DatabaseSecret::parse(&value.value).map_err(|source| RotationError::InvalidSecret {
                which,
                secret: secret_id.to_string(),
                source,
            })?;
        Ok((secret, value.version_id, value.created))
    }

    pub fn validate(
        &self,
        secret_id: &str,
        which: Which,
        secret: &DatabaseSecret,
    ) -> Result<(), RotationError> {
        secret
            .require(self.rotator.profile().engines, true)
            .map_err(|source| RotationError::InvalidSecret {
                which,
                secret: secret_id.to_string(),
                source,
            })
    }

    /// Loads `AWSPREVIOUS`, treating absence and an unusable value as "no previous" (W13: AWS
    /// fails the step on invalid JSON there). Skipped without a call when no version holds it.
    pub async fn load_previous(&self) -> Option<DatabaseSecret> {
        self.description.version_with(Stage::Previous)?;
        match self.load(Which::Previous, None).await {
            Ok(s) => Some(s),
            Err(RotationError::Store {
                source: StoreError::NotFound(_),
                ..
            }) => None,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unusable AWSPREVIOUS version");
                None
            }
        }
    }

    /// Whether the database checks `secret`'s user's password: a login with a random password
    /// no version holds must be refused (`AuthFailed`). `Some(false)` when it logs in (trust
    /// authentication, a password-less user); `None` when the login failed otherwise (cannot
    /// tell). Leaves one failed login in the server's log, so it is made only where a login
    /// is about to be taken as proof of a password.
    pub(crate) async fn passwords_checked(&self, secret: &DatabaseSecret) -> Option<bool> {
        let decoy = secret.with_password(secrecy::SecretString::from(decoy_password()));
        match self.login(&CredentialSource::Pending, &decoy).await {
            Ok(session) => {
                self.rotator.close(session).await;
                Some(false)
            }
            Err(e) if e.kind() == ErrorKind::AuthFailed => {
                tracing::info!(
                    "a login of user {} with a random password was refused, as it must be (the server logs it as a failed login)",
                    secret.username().unwrap_or_default()
                );
                Some(true)
            }
            Err(e) => {
                tracing::info!(reason = %e.kind(), "a login with a random password failed otherwise: cannot tell whether passwords are checked");
                None
            }
        }
    }

    /// Logs in with `secret`, within the step's deadline.
    pub async fn login(
        &self,
        source: &CredentialSource,
        secret: &DatabaseSecret,
    ) -> Result<R::Session, EngineError> {
        if self.deadline.is_past() {
            return Err(EngineError::new(
                ErrorKind::Timeout,
                format!("no time left in the step to log in with the {source} credentials"),
            ));
        }
        // The engine bounds its own calls; this is the backstop for one that does not.
        match self
            .deadline
            .run(self.rotator.login(secret, self.deadline))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(EngineError::past_deadline(&format!(
                "logging in with the {source} credentials"
            ))),
        }
    }

    /// Runs an engine call on a session within the deadline.
    pub async fn engine_call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        self.deadline.engine_call(what, fut).await
    }

    /// Re-reads the stages right before the database is changed: refuses (changing nothing)
    /// when `AWSPENDING` has left this token, because another rotation took the secret.
    pub async fn recheck_pending(&self) -> Result<(), RotationError> {
        let d = self
            .store_call(
                "DescribeSecret",
                || format!("re-reading the stages of secret {}", self.arn),
                self.store.describe(self.arn),
            )
            .await?;
        if d.versions
            .get(self.token)
            .is_some_and(|s| s.has(Stage::Pending))
        {
            Ok(())
        } else {
            Err(RotationError::PendingMoved {
                token: self.token.to_string(),
                secret: self.arn.to_string(),
            })
        }
    }
}

/// A password no secret holds: 24 random bytes in hex (a fixed, unlikely one if the random
/// source fails: it only has to be wrong).
fn decoy_password() -> String {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() {
        return "Decoy-not-a-password-of-any-version-0".to_string();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
