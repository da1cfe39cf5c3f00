//! finishSecret: move `AWSCURRENT` to the token's version.
//!
//! Idempotency: when the token already holds `AWSCURRENT` nothing happens. Unlike AWS's
//! functions, the pending credentials are proven to log in first (W23), so a finishSecret
//! invoked out of order cannot promote a password the database does not know.

use tracing::info;

use super::StepOutcome;
use crate::error::{RotationError, Which};
use crate::rotation::Rotation;
use crate::rotator::Rotator;
use crate::stage::Stage;
use crate::store::{SecretStore, StageMove};

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    pub(crate) async fn finish_secret(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<StepOutcome, RotationError> {
        let description = self
            .store
            .describe(secret_id)
            .await
            .map_err(RotationError::store(format!(
                "describing secret {secret_id}"
            )))?;
        let current = description.version_with(Stage::Current).map(str::to_string);
        if current.as_deref() == Some(token) {
            info!("finishSecret: Version {token} already marked as AWSCURRENT for {secret_id}");
            return Ok(StepOutcome::AlreadyCurrent);
        }
        if self.options.verify_before_finish {
            let pending = self.load(secret_id, Which::Pending, Some(token)).await?;
            self.rotator.check_login(&pending).await.map_err(|source| {
                RotationError::PendingNotVerified {
                    token: token.to_string(),
                    secret: secret_id.to_string(),
                    source,
                }
            })?;
        }
        self.store
            .update_stage(
                secret_id,
                StageMove {
                    stage: Stage::Current,
                    move_to: Some(token),
                    remove_from: current.as_deref(),
                },
            )
            .await
            .map_err(RotationError::store(format!(
                "moving AWSCURRENT to version {token} of secret {secret_id}"
            )))?;
        info!(
            "finishSecret: Successfully set AWSCURRENT stage to version {token} for secret {secret_id}."
        );
        Ok(StepOutcome::Promoted)
    }
}
