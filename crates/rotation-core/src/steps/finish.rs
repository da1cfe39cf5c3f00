//! finishSecret: move `AWSCURRENT` to the token's version.
//!
//! Idempotency: when the token already holds `AWSCURRENT` nothing happens. Unlike AWS's
//! functions, the pending credentials are proven to log in first (W23), so a finishSecret
//! invoked out of order cannot promote a password the database does not know.

use tracing::info;

use super::{StepContext, StepOutcome};
use crate::error::{CredentialSource, RotationError, Which};
use crate::rotator::Rotator;
use crate::stage::Stage;
use crate::store::{SecretStore, StageMove};

pub(crate) async fn run<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<StepOutcome, RotationError> {
    let (arn, token) = (ctx.arn, ctx.token);
    // The description read by the entry checks of this invocation.
    let current = ctx.description.version_with(Stage::Current);
    if current == Some(token) {
        info!("finishSecret: Version {token} already marked as AWSCURRENT for {arn}");
        return Ok(StepOutcome::AlreadyCurrent);
    }
    if ctx.options.verify_before_finish {
        let pending = ctx.load(Which::Pending, Some(token)).await?;
        let session = ctx
            .login(&CredentialSource::Pending, &pending)
            .await
            .map_err(|source| RotationError::PendingNotVerified {
                token: token.to_string(),
                secret: arn.to_string(),
                source,
            })?;
        ctx.rotator.close(session).await;
    }
    ctx.store_call(
        "UpdateSecretVersionStage",
        || format!("moving AWSCURRENT to version {token} of secret {arn}"),
        ctx.store.update_stage(
            arn,
            StageMove {
                stage: Stage::Current,
                move_to: Some(token),
                remove_from: current,
            },
        ),
    )
    .await?;
    info!("finishSecret: Successfully set AWSCURRENT stage to version {token} for secret {arn}.");
    Ok(StepOutcome::Promoted)
}
