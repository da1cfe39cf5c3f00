//! setSecret: make the database accept the pending credentials.
//!
//! Idempotency: the first thing tried is a login with the pending credentials; once they work,
//! the step ends without touching anything (checklist 17, 27, 40).

use tracing::{info, warn};

use super::{Credentials, StepOutcome};
use crate::error::{RotationError, Which};
use crate::rotation::Rotation;
use crate::rotator::{Acting, Rotator, alternate_username};
use crate::secret::DatabaseSecret;
use crate::stage::Strategy;
use crate::store::SecretStore;

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    pub(crate) async fn set_secret(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<StepOutcome, RotationError> {
        match self.rotator.strategy() {
            Strategy::SingleUser => self.set_single(secret_id, token).await,
            Strategy::AlternatingUsers => self.set_alternating(secret_id, token).await,
        }
    }

    async fn pending_already_works(&self, secret_id: &str, pending: &DatabaseSecret) -> bool {
        match self.rotator.check_login(pending).await {
            Ok(()) => {
                info!(
                    "setSecret: AWSPENDING secret is already set as password in the database for secret {secret_id}."
                );
                true
            }
            Err(e) => {
                info!(reason = %e.kind(), "setSecret: pending credentials do not log in yet");
                false
            }
        }
    }

    async fn set_single(&self, secret_id: &str, token: &str) -> Result<StepOutcome, RotationError> {
        let previous = self.load_previous(secret_id).await;
        let current = self.load(secret_id, Which::Current, None).await?;
        let pending = self.load(secret_id, Which::Pending, Some(token)).await?;

        if self.pending_already_works(secret_id, &pending).await {
            return Ok(StepOutcome::AlreadySet);
        }
        check_same_user(&pending, &current, "current user", "current")?;

        let (acting, via) = match self.rotator.check_login(&current).await {
            Ok(()) => (current, Credentials::Current),
            Err(current_err) => {
                warn!(reason = %current_err.kind(), "setSecret: current credentials do not log in; trying previous");
                let Some(previous) = previous else {
                    return Err(RotationError::NoWorkingCredentials {
                        secret: secret_id.to_string(),
                        source: current_err,
                    });
                };
                // Old versions may predate the `ssl` key: connect as current says (AWS cfc069e).
                let previous = previous.with_ssl_of(&current);
                check_same_user(&pending, &previous, "previous valid user", "previous")?;
                if let Err(e) = self.rotator.check_login(&previous).await {
                    warn!(reason = %e.kind(), "setSecret: previous credentials do not log in either");
                    return Err(RotationError::NoWorkingCredentials {
                        secret: secret_id.to_string(),
                        source: current_err,
                    });
                }
                (previous, Credentials::Previous)
            }
        };
        let username = pending.username().unwrap_or_default().to_string();
        self.rotator
            .set_password(Acting::Own(&acting), &pending)
            .await
            .map_err(|source| RotationError::SetPasswordFailed {
                username: username.clone(),
                secret: secret_id.to_string(),
                source,
            })?;
        info!(via = ?via, "setSecret: Successfully set password for user {username} for secret {secret_id}.");
        Ok(StepOutcome::PasswordSet(via))
    }

    async fn set_alternating(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<StepOutcome, RotationError> {
        let current = self.load(secret_id, Which::Current, None).await?;
        let pending = self.load(secret_id, Which::Pending, Some(token)).await?;

        if self.pending_already_works(secret_id, &pending).await {
            return Ok(StepOutcome::AlreadySet);
        }
        let current_user = current.username().unwrap_or_default();
        let pending_user = pending.username().unwrap_or_default();
        let alternate = alternate_username(current_user, None).unwrap_or_default();
        if pending_user != alternate {
            return Err(RotationError::UserMismatch {
                pending: pending_user.to_string(),
                expected: current_user.to_string(),
                expected_desc: "current user or clone",
            });
        }
        check_same_host(&pending, &current, "current")?;

        // Confused-deputy guard: whoever can write this secret must also hold working
        // credentials before the master secret is used on their behalf.
        self.rotator.check_login(&current).await.map_err(|source| {
            RotationError::CurrentLoginFailed {
                secret: secret_id.to_string(),
                source,
            }
        })?;

        let masterarn = current
            .masterarn()
            .ok_or_else(|| RotationError::MissingMasterArn {
                secret: secret_id.to_string(),
            })?
            .to_string();
        let mut master = self.load_raw(&masterarn, Which::Master, None).await?;
        let tags = if master.host().is_none() {
            let description =
                self.store
                    .describe(&masterarn)
                    .await
                    .map_err(RotationError::store(format!(
                        "describing master secret {masterarn}"
                    )))?;
            Some(description.tags)
        } else {
            None
        };
        master = self
            .rotator
            .resolve_master(master, &current, tags.as_deref())
            .await?;
        self.validate(&masterarn, Which::Master, &master)?;

        let (current_host, master_host) = (
            current.host().unwrap_or_default(),
            master.host().unwrap_or_default(),
        );
        if current_host != master_host && !self.rotator.is_replica_of(&current, &master).await? {
            return Err(RotationError::MasterHostMismatch {
                current: current_host.to_string(),
                master: master_host.to_string(),
            });
        }
        self.rotator.check_login(&master).await.map_err(|source| {
            RotationError::MasterLoginFailed {
                masterarn: masterarn.clone(),
                source,
            }
        })?;
        self.rotator
            .set_password(
                Acting::Master {
                    master: &master,
                    current: &current,
                },
                &pending,
            )
            .await
            .map_err(|source| RotationError::SetPasswordFailed {
                username: pending_user.to_string(),
                secret: secret_id.to_string(),
                source,
            })?;
        info!("setSecret: Successfully set password for {pending_user} for secret {secret_id}.");
        Ok(StepOutcome::PasswordSet(Credentials::Master))
    }
}

fn check_same_user(
    pending: &DatabaseSecret,
    other: &DatabaseSecret,
    user_desc: &'static str,
    host_desc: &'static str,
) -> Result<(), RotationError> {
    if pending.username() != other.username() {
        return Err(RotationError::UserMismatch {
            pending: pending.username().unwrap_or_default().to_string(),
            expected: other.username().unwrap_or_default().to_string(),
            expected_desc: user_desc,
        });
    }
    check_same_host(pending, other, host_desc)
}

fn check_same_host(
    pending: &DatabaseSecret,
    other: &DatabaseSecret,
    desc: &'static str,
) -> Result<(), RotationError> {
    if pending.host() != other.host() {
        return Err(RotationError::HostMismatch {
            pending: pending.host().unwrap_or_default().to_string(),
            expected: other.host().unwrap_or_default().to_string(),
            expected_desc: desc,
        });
    }
    Ok(())
}
