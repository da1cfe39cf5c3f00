//! createSecret: get or generate the pending version.
//!
//! Idempotency: an existing pending value for the token is kept as it is (no new password), so a
//! retry after a crash that followed PutSecretValue changes nothing.

use tracing::info;

use super::StepOutcome;
use crate::error::{RotationError, Which};
use crate::rotation::Rotation;
use crate::rotator::{Rotator, alternate_username};
use crate::stage::{Stage, Strategy};
use crate::store::{SecretStore, StoreError, VersionSelector};

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    pub(crate) async fn create_secret(
        &self,
        secret_id: &str,
        token: &str,
        rotation_token: Option<&str>,
    ) -> Result<StepOutcome, RotationError> {
        // Checklist 9: current is loaded and validated first, even if pending exists.
        let current = self.load(secret_id, Which::Current, None).await?;

        match self
            .store
            .get_value(
                secret_id,
                VersionSelector::version_at(token, Stage::Pending),
            )
            .await
        {
            Ok(_) => {
                // Checklist 12: an existing but unusable pending value fails the step.
                self.load(secret_id, Which::Pending, Some(token)).await?;
                info!("createSecret: Successfully retrieved secret for {secret_id}.");
                return Ok(StepOutcome::PendingExists);
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                return Err(RotationError::store(format!(
                    "reading version {token} of secret {secret_id}"
                ))(e));
            }
        }

        let username = current.username().expect("validated");
        let username = match self.rotator.strategy() {
            Strategy::SingleUser => username.to_string(),
            Strategy::AlternatingUsers => {
                let limit = self.rotator.profile().max_username_bytes;
                alternate_username(username, limit).map_err(|clone| {
                    RotationError::UsernameTooLong {
                        bytes: clone.len(),
                        username: clone,
                        limit: limit.unwrap_or(0),
                    }
                })?
            }
        };
        let password = self
            .store
            .random_password(&self.policy)
            .await
            .map_err(RotationError::store("generating a password"))?;
        let pending = current.with_username(&username).with_password(password);
        self.store
            .put_value(
                secret_id,
                token,
                &pending.to_json(),
                &[Stage::Pending],
                rotation_token,
            )
            .await
            .map_err(RotationError::store(format!(
                "storing version {token} of secret {secret_id}"
            )))?;
        info!("createSecret: Successfully put secret for ARN {secret_id} and version {token}.");
        Ok(StepOutcome::PendingCreated)
    }
}
