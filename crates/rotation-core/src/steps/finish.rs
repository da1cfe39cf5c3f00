//! finishSecret: move `AWSCURRENT` to the token's version.
//!
//! Idempotency: when the token already holds `AWSCURRENT` nothing happens. Unlike AWS's
//! functions, the pending credentials are proven to log in first (W23), so a finishSecret
//! invoked out of order cannot promote a password the database does not know.

use tracing::{info, warn};

use super::{StepContext, StepOutcome};
use crate::error::{CredentialSource, RotationError, Which};
use crate::rotator::Rotator;
use crate::secret::DatabaseSecret;
use crate::stage::{Stage, Strategy};
use crate::store::{SecretStore, StageMove};

/// The outcome, and, where the store said, when the promoted version was created (the
/// rotation's start).
pub(crate) async fn run<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<(StepOutcome, Option<std::time::SystemTime>), RotationError> {
    let (arn, token) = (ctx.arn, ctx.token);
    // The description read by the entry checks of this invocation.
    let current = ctx.description.version_with(Stage::Current);
    if current == Some(token) {
        info!("finishSecret: Version {token} already marked as AWSCURRENT for {arn}");
        return Ok((StepOutcome::AlreadyCurrent, None));
    }
    let drops_others = drops_others(ctx);
    let (pending, created) = if ctx.options.verify_before_finish || drops_others {
        let (pending, created) = ctx.load_timed(Which::Pending, Some(token)).await?;
        (Some(pending), created)
    } else {
        (None, None)
    };
    if let Some(pending) = pending
        .as_ref()
        .filter(|_| ctx.options.verify_before_finish)
    {
        let session = ctx
            .login(&CredentialSource::Pending, pending)
            .await
            .map_err(|source| RotationError::PendingNotVerified {
                token: token.to_string(),
                secret: arn.to_string(),
                source,
            })?;
        ctx.rotator.close(session).await;
    }
    let moved = ctx
        .store_call(
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
        .await;
    if let Err(e) = moved {
        // Another invocation of this rotation (Secrets Manager's retry, an operator's resume)
        // may have promoted the token in between, so that `current` no longer held the stage,
        // or this move took effect and only its answer was lost: the stage is where this step
        // puts it, and the step is done (as when the entry check finds it so).
        let now = ctx
            .store_call(
                "DescribeSecret",
                || format!("re-reading the stages of secret {arn}"),
                ctx.store.describe(arn),
            )
            .await;
        if now.is_ok_and(|d| d.version_with(Stage::Current) == Some(token)) {
            info!(
                error = %crate::error_chain(&e),
                "finishSecret: moving AWSCURRENT failed, yet version {token} of secret {arn} holds it (another invocation of this rotation moved it, or the answer was lost)"
            );
            if let Some(current) = pending.filter(|_| drops_others) {
                drop_other_passwords(ctx, &current).await;
            }
            return Ok((StepOutcome::AlreadyCurrent, None));
        }
        return Err(e);
    }
    info!("finishSecret: Successfully set AWSCURRENT stage to version {token} for secret {arn}.");
    if let Some(current) = pending.filter(|_| drops_others) {
        drop_other_passwords(ctx, &current).await;
    }
    Ok((StepOutcome::Promoted, created))
}

/// Whether finishSecret drops the user's other passwords: single user on an engine whose
/// single user acts through a master.
fn drops_others<S: SecretStore, R: Rotator>(ctx: &StepContext<'_, S, R>) -> bool {
    ctx.rotator.strategy() == Strategy::SingleUser && ctx.rotator.profile().single_user_master
}

/// On an already promoted token: drops the other passwords again, for engines whose single
/// user acts through a master (idempotent; nothing for other engines).
pub(crate) async fn drop_if_due<S: SecretStore, R: Rotator>(ctx: &StepContext<'_, S, R>) {
    if drops_others(ctx)
        && let Ok(current) = ctx.load(Which::Pending, Some(ctx.token)).await
    {
        drop_other_passwords(ctx, &current).await;
    }
}

/// After an abort, for engines whose single user acts through a master: the abandoned
/// rotation's password (added beside the current one at setSecret) stops working; every
/// password but `AWSCURRENT`'s is dropped. A failure is logged: the next rotation drops it.
pub(crate) async fn drop_after_abort<S: SecretStore, R: Rotator>(ctx: &StepContext<'_, S, R>) {
    if drops_others(ctx)
        && let Ok(current) = ctx.load(Which::Current, None).await
    {
        drop_other_passwords(ctx, &current).await;
    }
}

/// Single user through the master: the replaced password stops working now that `current`
/// is `AWSCURRENT`. A failure only leaves it working until the next rotation's finishSecret:
/// logged, never the step's failure (the promotion has happened).
async fn drop_other_passwords<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    current: &DatabaseSecret,
) {
    let user = current.username().unwrap_or_default();
    let result = async {
        let (masterarn, master) = super::set::resolve_master(ctx, current, user).await?;
        let mut session = ctx
            .login(&CredentialSource::Master, &master)
            .await
            .map_err(|source| RotationError::MasterLoginFailed { masterarn, source })?;
        let dropped = ctx
            .engine_call(
                "dropping the user's other passwords as the master",
                ctx.rotator.drop_other_passwords(&mut session, current),
            )
            .await;
        ctx.rotator.close(session).await;
        dropped.map_err(|source| RotationError::SetPasswordFailed {
            username: user.to_string(),
            secret: ctx.arn.to_string(),
            source,
        })
    }
    .await;
    match result {
        Ok(()) => info!("dropped every password of user {user} but AWSCURRENT's"),
        Err(e) => warn!(
            error = %crate::error_chain(&e),
            kind = e.kind(),
            "a replaced or abandoned password of user {user} still works; the next rotation drops it"
        ),
    }
}
