//! testSecret: prove the pending credentials work. Read-only, and needs only the pending
//! version (and, for alternating users, the current one to compare privileges).

use tracing::info;

use super::StepOutcome;
use crate::error::{RotationError, Which};
use crate::rotation::Rotation;
use crate::rotator::Rotator;
use crate::stage::Strategy;
use crate::store::SecretStore;

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    pub(crate) async fn test_secret(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<StepOutcome, RotationError> {
        let pending = self.load(secret_id, Which::Pending, Some(token)).await?;
        let current = match self.rotator.strategy() {
            Strategy::SingleUser => None,
            Strategy::AlternatingUsers => {
                let c = self.load(secret_id, Which::Current, None).await?;
                // A RotateImmediately=false probe stores a copy of current as pending.
                (c.username() != pending.username()).then_some(c)
            }
        };
        self.rotator
            .test_pending(&pending, current.as_ref())
            .await
            .map_err(|source| RotationError::PendingTestFailed {
                secret: secret_id.to_string(),
                source,
            })?;
        info!(
            "testSecret: Successfully signed into the database with AWSPENDING secret in {secret_id}."
        );
        Ok(StepOutcome::Tested)
    }
}
