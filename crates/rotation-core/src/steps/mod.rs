//! The four steps. Each is idempotent: calling it again with the same token after success, or
//! after a crash at any point inside it, converges on the same end state.

pub(crate) mod create;
pub(crate) mod finish;
pub(crate) mod set;
pub(crate) mod test;

use crate::error::{RotationError, Which};
use crate::rotation::Rotation;
use crate::rotator::Rotator;
use crate::secret::DatabaseSecret;
use crate::stage::Stage;
use crate::store::{SecretStore, StoreError, VersionSelector};

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
    /// The master secret.
    Master,
}

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    /// Loads and parses one version, validating the keys the engine needs.
    pub(crate) async fn load(
        &self,
        secret_id: &str,
        which: Which,
        token: Option<&str>,
    ) -> Result<DatabaseSecret, RotationError> {
        let secret = self.load_raw(secret_id, which, token).await?;
        self.validate(secret_id, which, &secret)?;
        Ok(secret)
    }

    pub(crate) async fn load_raw(
        &self,
        secret_id: &str,
        which: Which,
        token: Option<&str>,
    ) -> Result<DatabaseSecret, RotationError> {
        let stage = match which {
            Which::Current | Which::Master => Stage::Current,
            Which::Pending => Stage::Pending,
            Which::Previous => Stage::Previous,
        };
        let selector = VersionSelector {
            version_id: token,
            stage: Some(stage),
        };
        let value =
            self.store
                .get_value(secret_id, selector)
                .await
                .map_err(RotationError::store(format!(
                    "reading the {which} value of secret {secret_id}"
                )))?;
        DatabaseSecret::parse(&value.value).map_err(|source| RotationError::InvalidSecret {
            which,
            secret: secret_id.to_string(),
            source,
        })
    }

    pub(crate) fn validate(
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
    /// fails the step on invalid JSON there).
    pub(crate) async fn load_previous(&self, secret_id: &str) -> Option<DatabaseSecret> {
        match self.load(secret_id, Which::Previous, None).await {
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
}
