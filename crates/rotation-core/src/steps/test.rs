//! testSecret: prove the pending credentials work, on one connection. Read-only, and needs only
//! the pending version (and, for alternating users, the current one to compare privileges).

use tracing::info;

use super::{StepContext, StepOutcome};
use crate::error::{CredentialSource, RotationError, Which};
use crate::rotator::Rotator;
use crate::stage::Strategy;
use crate::store::SecretStore;

pub(crate) async fn run<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<StepOutcome, RotationError> {
    let arn = ctx.arn;
    let pending = ctx.load(Which::Pending, Some(ctx.token)).await?;
    let current = match ctx.rotator.strategy() {
        Strategy::SingleUser => None,
        Strategy::AlternatingUsers => {
            let c = ctx.load(Which::Current, None).await?;
            // A RotateImmediately=false probe stores a copy of current as pending.
            (c.username() != pending.username()).then_some(c)
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
                .test_session(&mut session, &pending, current.as_ref()),
        )
        .await;
    ctx.rotator.close(session).await;
    result.map_err(failed)?;
    info!("testSecret: Successfully signed into the database with AWSPENDING secret in {arn}.");
    Ok(StepOutcome::Tested)
}
