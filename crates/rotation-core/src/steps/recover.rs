//! Recovery of passwords the database may hold that no labelled version holds any more (W6).
//!
//! An interrupted rotation can leave the database on a password whose version has since lost
//! its label: an operator removed `AWSPENDING` by hand (the documented way out of a stuck
//! rotation), or a late writer won a race. Wherever the algorithm finds that no labelled
//! credentials log in, it tries the versions Secrets Manager still keeps without a label, newest
//! first, at most [`crate::Options::recovery_limit`] of them (by default every version the
//! store keeps: a window of the ten newest could be pushed past the right version by ten
//! aborted rotations after a change that landed late), each held to the same user, host and
//! engine checks as `AWSPREVIOUS` (checklist 22-23). Every recovery is logged.

use tracing::{info, warn};

use super::StepContext;
use crate::error::{Attempts, CredentialSource, RotationError};
use crate::rotator::Rotator;
use crate::secret::DatabaseSecret;
use crate::store::{SecretStore, VersionSelector};

/// Tries unlabelled versions whose user, host and engine match `reference`, skipping the
/// versions in `tried`; connects as `reference` says about TLS. Failed logins go to `attempts`.
pub(crate) async fn login_with_unlabelled<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    reference: &DatabaseSecret,
    tried: &[Option<&str>],
    attempts: &mut Attempts,
) -> Result<Option<R::Session>, RotationError> {
    if ctx.options.recovery_limit == 0 {
        return Ok(None);
    }
    let versions = match ctx
        .store_call(
            "ListSecretVersionIds",
            || format!("listing the versions of secret {}", ctx.arn),
            ctx.store.list_versions(ctx.arn),
        )
        .await
    {
        Ok(v) => v,
        Err(e) => {
            // Recovery is a last resort: without the list, the step fails as it would have.
            warn!(error = %crate::error_chain(&e), "recovery: cannot list the secret's versions");
            return Ok(None);
        }
    };
    let candidates = versions
        .into_iter()
        .filter(|v| v.stages.stages.is_empty())
        .filter(|v| !tried.contains(&Some(v.id.as_str())))
        .take(ctx.options.recovery_limit);
    for version in candidates {
        let selector = VersionSelector {
            version_id: Some(&version.id),
            stage: None,
        };
        let value = match ctx
            .store_call(
                "GetSecretValue",
                || format!("reading version {} of secret {}", version.id, ctx.arn),
                ctx.store.get_value(ctx.arn, selector),
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                info!(version = %version.id, error = %crate::error_chain(&e), "recovery: version unreadable; skipped");
                continue;
            }
        };
        let Ok(candidate) = DatabaseSecret::parse(&value.value) else {
            info!(version = %version.id, "recovery: version is not a usable secret; skipped");
            continue;
        };
        let usable = candidate
            .require(ctx.rotator.profile().engines, false)
            .is_ok()
            && candidate
                .engine()
                .is_none_or(|e| Some(e) == reference.engine())
            && candidate.username() == reference.username()
            && candidate.same_server(reference, ctx.rotator.profile().default_port);
        if !usable {
            info!(version = %version.id, "recovery: version is for another user, host or engine; skipped");
            continue;
        }
        let candidate = candidate.with_ssl_of(reference);
        let source = CredentialSource::Recovered(version.id.clone());
        match ctx.login(&source, &candidate).await {
            Ok(session) => {
                warn!(
                    version = %version.id,
                    "recovery: the database holds the password of a version without a label; carrying on from it"
                );
                return Ok(Some(session));
            }
            Err(e) => attempts.push(source, e),
        }
    }
    Ok(None)
}
