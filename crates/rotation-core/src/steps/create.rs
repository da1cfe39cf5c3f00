//! createSecret: get or generate the pending version.
//!
//! Idempotency: an existing pending value for the token is kept as it is (no new password), so a
//! retry after a crash that followed PutSecretValue changes nothing.

use secrecy::{ExposeSecret, SecretString};
use tracing::info;

use super::{StepContext, StepOutcome};
use crate::error::{RotationError, Which};
use crate::rotator::{Rotator, alternate_username};
use crate::secret::DatabaseSecret;
use crate::stage::{Stage, Strategy};
use crate::store::{SecretStore, StoreError, VersionSelector};

pub(crate) async fn run<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    rotation_token: Option<&str>,
) -> Result<StepOutcome, RotationError> {
    let (arn, token) = (ctx.arn, ctx.token);
    // Checklist 9: current is loaded and validated first, even if pending exists.
    let (mut current, mut built_from) = load_current(ctx).await?;

    if pending_exists(ctx).await? {
        info!("createSecret: Successfully retrieved secret for {arn}.");
        return Ok(StepOutcome::PendingExists);
    }

    // Secrets Manager has no conditional write: refuse here when the description read at the
    // start of the step shows another rotation (stores that can also refuse atomically).
    if let Some(other) = ctx.description.rotation_in_flight()
        && other != token
    {
        return Err(RotationError::RotationInFlight {
            secret: arn.to_string(),
            version: other.to_string(),
        });
    }

    // Checked before the password is generated, and again on the value a retry builds from.
    let shape = build_pending(ctx, &current, SecretString::from(String::new()))?;
    if let Some(masterarn) = shape
        .masterarn()
        .filter(|_| ctx.rotator.profile().needs_master(ctx.rotator.strategy()))
    {
        // What can be told of the master without reading it, before anything is written
        // (checklist 30: the master is read only once the current credentials log in, at
        // setSecret): a master outside the deployment's allow-list, or the secret itself.
        check_master_unread(ctx, masterarn, current.username().unwrap_or_default())?;
    }
    let password = ctx
        .store_call(
            "GetRandomPassword",
            || "generating a password".to_string(),
            ctx.store.random_password(ctx.policy),
        )
        .await?;
    // The engine's own rules (length, classes, forbidden characters), checked before
    // anything is stored; the error names the rule, never the password.
    let rules = &ctx.rotator.profile().password;
    if let Err(source) = rules.check(password.expose_secret()) {
        return Err(RotationError::PasswordRejected {
            token: token.to_string(),
            secret: arn.to_string(),
            engine: rules.engine,
            source,
        });
    }
    // The write is conditional on AWSCURRENT still being the version read (stores that can
    // refuse atomically): a value put since wins, and the pending value is built again from
    // it, once; a second move in the same window is refused, nothing written.
    let mut rebuilt = false;
    loop {
        let pending = build_pending(
            ctx,
            &current,
            SecretString::from(password.expose_secret().to_owned()),
        )?;
        let written = ctx
            .store_call(
                "PutSecretValue",
                || format!("storing version {token} of secret {arn}"),
                ctx.store
                    .put_pending(arn, token, &pending.to_json(), &built_from, rotation_token),
            )
            .await;
        match written {
            Ok(()) => break,
            Err(RotationError::Store {
                source: StoreError::CurrentMoved { now, .. },
                ..
            }) if !rebuilt => {
                info!(
                    "createSecret: AWSCURRENT of {arn} moved to version {now} (a value put) since it was read; building the pending value from it"
                );
                rebuilt = true;
                (current, built_from) = load_current(ctx).await?;
            }
            // Another invocation of this rotation (Secrets Manager's retry, an operator's
            // resume) stored the version's value in between: the step's work is done, as when
            // the check above finds it.
            Err(RotationError::Store {
                source: StoreError::VersionExists(_),
                ..
            }) if pending_exists(ctx).await? => {
                info!(
                    "createSecret: version {token} of secret {arn} was stored meanwhile by another invocation of this rotation"
                );
                return Ok(StepOutcome::PendingExists);
            }
            // A second move: refused as the store said, nothing written.
            Err(e) => return Err(e),
        }
    }
    info!("createSecret: Successfully put secret for ARN {arn} and version {token}.");
    Ok(StepOutcome::PendingCreated)
}

/// The `AWSCURRENT` value, validated, and the version it is on.
async fn load_current<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<(DatabaseSecret, String), RotationError> {
    let (secret, version) = ctx.load_versioned(ctx.arn, Which::Current, None).await?;
    ctx.validate(ctx.arn, Which::Current, &secret)?;
    Ok((secret, version))
}

/// The master `masterarn` names, refused without reading it: outside the allow-list (W5), or
/// this secret itself (its own user, `user`, would be one of the pair).
fn check_master_unread<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    masterarn: &str,
    user: &str,
) -> Result<(), RotationError> {
    super::set::check_master_allowed(ctx, masterarn)?;
    if masterarn == ctx.arn || masterarn == ctx.description.name {
        return Err(RotationError::MasterInPair {
            user: user.to_string(),
            secret: ctx.arn.to_string(),
        });
    }
    Ok(())
}

/// The pending value built from `current` with `password`: refused before anything is
/// written when the rotation could never reach the database (checklist 31: no master secret,
/// where AWS fails at setSecret with AWSPENDING already stored) or the pair's other user would
/// be too long.
fn build_pending<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    current: &DatabaseSecret,
    password: SecretString,
) -> Result<DatabaseSecret, RotationError> {
    if ctx.rotator.profile().needs_master(ctx.rotator.strategy()) && current.masterarn().is_none() {
        return Err(RotationError::MissingMasterArn {
            secret: ctx.arn.to_string(),
        });
    }
    let username = current.username().expect("validated");
    let username = match ctx.rotator.strategy() {
        Strategy::SingleUser => username.to_string(),
        Strategy::AlternatingUsers => {
            let limit = ctx.rotator.username_limit(current);
            alternate_username(username, limit)
                .map_err(|clone| RotationError::too_long(clone, limit))?
        }
    };
    Ok(current.with_username(&username).with_password(password))
}

/// Whether the token's version already holds a pending value (checklist 12: one that is
/// unusable fails the step).
async fn pending_exists<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<bool, RotationError> {
    let (arn, token) = (ctx.arn, ctx.token);
    let existing = ctx
        .store_call(
            "GetSecretValue",
            || format!("reading version {token} of secret {arn}"),
            ctx.store
                .get_value(arn, VersionSelector::version_at(token, Stage::Pending)),
        )
        .await;
    match existing {
        Ok(value) => {
            let pending = DatabaseSecret::parse(&value.value).map_err(|source| {
                RotationError::InvalidSecret {
                    which: Which::Pending,
                    secret: arn.to_string(),
                    source,
                }
            })?;
            ctx.validate(arn, Which::Pending, &pending)?;
            Ok(true)
        }
        Err(RotationError::Store {
            source: StoreError::NotFound(_),
            ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}
