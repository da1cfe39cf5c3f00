//! testSecret: prove the pending credentials work, on one connection. Read-only, and needs only
//! the pending version: for alternating users, the pair's other user is the alternate of the
//! pending user's name (`x` <-> `x_clone`), whose privileges the pending user must share.

use tracing::info;

use super::{StepContext, StepOutcome};
use crate::error::{CredentialSource, RotationError, Which};
use crate::rotator::{Rotator, alternate_username};
use crate::stage::Strategy;
use crate::store::SecretStore;

pub(crate) async fn run<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<StepOutcome, RotationError> {
    let arn = ctx.arn;
    let pending = ctx.load(Which::Pending, Some(ctx.token)).await?;
    let partner = match ctx.rotator.strategy() {
        Strategy::SingleUser => None,
        Strategy::AlternatingUsers => {
            alternate_username(pending.username().unwrap_or_default(), None).ok()
        }
    };
    let failed = |source| RotationError::PendingTestFailed {
        secret: arn.to_string(),
        source,
    };
    let mut session = ctx
        .login(&CredentialSource::Pending, &pending)
        .await
        .map_err(failed)?;
    let result = ctx
        .engine_call(
            "testing the pending credentials",
            ctx.rotator
                .test_session(&mut session, &pending, partner.as_deref()),
        )
        .await;
    ctx.rotator.close(session).await;
    result.map_err(failed)?;
    info!("testSecret: Successfully signed into the database with AWSPENDING secret in {arn}.");
    Ok(StepOutcome::Tested)
}
