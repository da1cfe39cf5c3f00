//! The in-process driver: a whole rotation (`rotate`), finishing one in flight (`resume`),
//! abandoning one (`abort`), and `status`. It takes the secret's claim first (one rotation per
//! secret at a time, where the store can give that), then runs the same step functions as the
//! Lambda contract, each step with its own deadline.

use tracing::{Instrument, info, info_span, warn};

use crate::deadline::Deadline;
use crate::error::{Attempts, CredentialSource, ErrorCategory, RotationError, Which};
use crate::event::{RotationEvent, Step};
use crate::rotation::Rotation;
use crate::rotator::{DeadSessions, EngineError, ErrorKind, Rotator};
use crate::stage::{Stage, Strategy};
use crate::steps::recover::login_with_unlabelled;
use crate::steps::set::{check_same_host, check_same_user};
use crate::steps::{self, Credentials, StepContext, StepOutcome};
use crate::store::{Claim, SecretDescription, SecretStore, StageMove};

/// What a whole rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Secret ARN.
    pub secret: String,
    /// The rotated version.
    pub token: String,
    /// Each step and its outcome.
    pub steps: Vec<(Step, StepOutcome)>,
}

/// How hard an abort tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AbortMode {
    /// Change nothing unless the `AWSCURRENT` credentials are proven to log in afterwards.
    #[default]
    Safe,
    /// Remove `AWSPENDING` even when that cannot be proven (a database gone for good).
    Force,
}

/// What an abort did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortReport {
    /// Secret ARN.
    pub secret: String,
    /// The abandoned version.
    pub token: String,
    /// Whether the database had to be set back to the current password, and with whose
    /// credentials.
    pub restored_with: Option<Credentials>,
    /// Whether the `AWSCURRENT` credentials were proven to log in.
    pub current_verified: bool,
    /// For a forced abort that could not verify: what may be left behind.
    pub left_behind: Option<String>,
}

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    fn driver_deadline(&self) -> Deadline {
        Deadline::after(self.options.step_timeout)
    }

    /// The secret's versions and stages, and any rotation in flight. Takes no claim and
    /// waits for nobody.
    pub async fn status(&self, secret_id: &str) -> Result<SecretDescription, RotationError> {
        self.describe(secret_id, self.driver_deadline()).await
    }

    /// Claims the secret and reads it afresh under the claim.
    async fn claimed(&self, secret_id: &str) -> Result<(Claim, SecretDescription), RotationError> {
        let deadline = self.driver_deadline();
        let first = self.describe(secret_id, deadline).await?;
        let claim = match deadline.run(self.store.claim(&first.arn)).await {
            Ok(Ok(c)) => c,
            Ok(Err(crate::store::StoreError::Busy(_))) => {
                return Err(RotationError::Busy { secret: first.arn });
            }
            Ok(Err(e)) => {
                return Err(RotationError::store(format!(
                    "claiming secret {}",
                    first.arn
                ))(e));
            }
            Err(_) => {
                return Err(RotationError::store(format!(
                    "claiming secret {}",
                    first.arn
                ))(crate::store::StoreError::Timeout(
                    "claim",
                )));
            }
        };
        if !claim.is_exclusive() {
            return Ok((claim, first));
        }
        let fresh = self.describe(&first.arn, deadline).await?;
        Ok((claim, fresh))
    }

    /// Performs a whole rotation in-process: refuses when rotation is disabled, another
    /// rotation is in flight or another process holds the secret, then runs the four steps
    /// with a new token.
    pub async fn rotate(&self, secret_id: &str) -> Result<RotationReport, RotationError> {
        let (_claim, description) = self.claimed(secret_id).await?;
        if description.rotation_enabled == Some(false) {
            return Err(RotationError::NotEnabled {
                secret: description.arn,
            });
        }
        if let Some(version) = description.rotation_in_flight() {
            return Err(RotationError::RotationInFlight {
                secret: description.arn.clone(),
                version: version.to_string(),
            });
        }
        let token = uuid::Uuid::new_v4().to_string();
        self.drive(&description, &token, true, false).await
    }

    /// Finishes the rotation in flight, from whatever step it reached.
    pub async fn resume(&self, secret_id: &str) -> Result<RotationReport, RotationError> {
        let (_claim, description) = self.claimed(secret_id).await?;
        if description.rotation_enabled == Some(false) {
            return Err(RotationError::NotEnabled {
                secret: description.arn,
            });
        }
        let token = description
            .rotation_in_flight()
            .ok_or_else(|| RotationError::NoRotationInFlight {
                secret: description.arn.clone(),
            })?
            .to_string();
        self.drive(&description, &token, false, false).await
    }

    /// Puts the previous credentials back after a rotation that clients could not follow, with
    /// the claim and no-lockout rules of a rotation: the `AWSPREVIOUS` version becomes the
    /// pending version of a rotation that then runs its steps as any rotation does. Single
    /// user: the database password is set back to the previous one (logged in with the
    /// current credentials, or found already set); alternating users: the previous user's
    /// password is set again through the master and its privileges synchronised. It ends with
    /// the previous version `AWSCURRENT` and the rolled-back one `AWSPREVIOUS` (a second
    /// rollback rolls forward). Until then `AWSCURRENT` or `AWSPENDING` logs in; a run that
    /// stops half-way leaves a rotation in flight that `resume` finishes and `abort` undoes.
    ///
    /// Refused, changing nothing, when rotation is disabled, a rotation is in flight, there is
    /// no `AWSPREVIOUS`, or it is not usable in place of the current credentials (another
    /// engine, host or user; for alternating users, not the current user's partner).
    pub async fn rollback(&self, secret_id: &str) -> Result<RotationReport, RotationError> {
        let (_claim, description) = self.claimed(secret_id).await?;
        let arn = description.arn.clone();
        if description.rotation_enabled == Some(false) {
            return Err(RotationError::NotEnabled { secret: arn });
        }
        if let Some(version) = description.rotation_in_flight() {
            return Err(RotationError::RotationInFlight {
                secret: arn,
                version: version.to_string(),
            });
        }
        let previous = description
            .version_with(Stage::Previous)
            .filter(|p| Some(*p) != description.version_with(Stage::Current))
            .ok_or_else(|| RotationError::NoPreviousVersion {
                secret: arn.clone(),
            })?
            .to_string();
        let deadline = self.driver_deadline();
        let ctx = self.context(&description, &previous, deadline);
        let current = ctx.load(Which::Current, None).await?;
        ctx.validate(&arn, Which::Current, &current)?;
        let target = ctx.load(Which::Previous, None).await?;
        ctx.validate(&arn, Which::Previous, &target)?;
        let default_port = self.rotator.profile().default_port;
        match self.rotator.strategy() {
            Strategy::SingleUser => {
                check_same_user(&target, &current, "current user", "current", default_port)?;
            }
            Strategy::AlternatingUsers => {
                let current_user = current.username().unwrap_or_default();
                let partner =
                    crate::rotator::alternate_username(current_user, None).unwrap_or_default();
                if target.username() != Some(partner.as_str()) {
                    return Err(RotationError::UserMismatch {
                        pending: target.username().unwrap_or_default().to_string(),
                        expected: partner,
                        expected_desc: "current user's partner",
                    });
                }
                check_same_host(&target, &current, "current", default_port)?;
                // The master setSecret will use, checked now: nothing is changed for a rollback
                // that setSecret would refuse.
                let (_, _master) =
                    crate::steps::set::resolve_master(&ctx, &current, &partner).await?;
            }
        }
        // The same database too, as setSecret requires.
        crate::steps::set::check_same_database(&target, &current)?;
        // A password that breaks the engine's rules (which setSecret refuses to set where the
        // engine enforces them): the fault is in the value, said before anything is written.
        self.rotator
            .profile()
            .password_to_set(&target)
            .map_err(|e| {
                RotationError::Engine(EngineError::new(
                    ErrorKind::InvalidInput,
                    format!("AWSPREVIOUS of secret {arn} cannot be rolled back to: {e}"),
                ))
            })?;
        let span = info_span!("rollback", secret_id = %arn, to = %previous);
        span.in_scope(|| {
            info!("rollback: the previous version becomes the pending version of a rotation");
        });
        ctx.store_call(
            "UpdateSecretVersionStage",
            || format!("attaching AWSPENDING to version {previous} of secret {arn}"),
            self.store.update_stage(
                &arn,
                StageMove {
                    stage: Stage::Pending,
                    move_to: Some(&previous),
                    remove_from: description.version_with(Stage::Pending),
                },
            ),
        )
        .await?;
        let fresh = self.describe(&arn, deadline).await?;
        self.drive(&fresh, &previous, false, true)
            .instrument(span)
            .await
    }

    async fn drive(
        &self,
        description: &SecretDescription,
        token: &str,
        fresh: bool,
        rollback: bool,
    ) -> Result<RotationReport, RotationError> {
        let arn = description.arn.as_str();
        let span = info_span!(
            "rotation",
            secret_id = %arn,
            token = %token,
            engine = self.rotator.profile().name,
            strategy = %self.rotator.strategy(),
        );
        let started = std::time::Instant::now();
        let result = async {
            let mut steps = Vec::with_capacity(4);
            // createSecret first: with a new token there is no stub to pass the entry checks
            // (RotateSecret would have made one); it stores the AWSPENDING version itself.
            let ctx = self.context(description, token, self.driver_deadline());
            let step_started = std::time::Instant::now();
            let create = Box::pin(steps::create::run(&ctx, None))
                .instrument(info_span!("rotation_step", step = "createSecret"));
            let created = create.await;
            // The same event as the later steps' (Rotation::handle_until).
            let duration_ms = step_started.elapsed().as_secs_f64() * 1000.0;
            match &created {
                Ok(outcome) => {
                    info!(step = "createSecret", outcome = ?outcome, duration_ms, "step finished")
                }
                Err(e) => warn!(
                    step = "createSecret",
                    error_kind = e.kind(),
                    engine_error = e.engine_kind().map(|k| k.as_str()),
                    error = %crate::error::error_chain(e),
                    duration_ms,
                    "step failed"
                ),
            }
            let outcome = created?;
            steps.push((Step::CreateSecret, outcome));
            if fresh {
                info!("pending version stored; the next step re-reads the stages before acting");
            }
            // Each later step re-reads the secret (entry checks): if AWSPENDING is no longer on
            // this run's token, it stops before touching the database.
            let mut changed = false;
            for step in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
                let event = RotationEvent::new(step, arn, token);
                let deadline = Deadline::after(self.options.step_timeout);
                let outcome = match self
                    .handle_step(&event, deadline, rollback)
                    .await
                    .map(|(outcome, _)| outcome)
                {
                    Ok(o) => o,
                    // Refused after this run changed the password: say so, not "nothing changed".
                    Err(e) if changed && e.category() == ErrorCategory::Refused => {
                        return Err(RotationError::Superseded {
                            token: token.to_string(),
                            secret: arn.to_string(),
                            source: Box::new(e),
                        });
                    }
                    Err(e) => return Err(e),
                };
                changed |= matches!(outcome, StepOutcome::PasswordSet(_));
                steps.push((step, outcome));
            }
            Ok(RotationReport {
                secret: arn.to_string(),
                token: token.to_string(),
                steps,
            })
        }
        .instrument(span.clone())
        .await;
        // One event per rotation, beside the steps' own.
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        span.in_scope(|| match &result {
            Ok(_) => info!(outcome = "rotated", duration_ms, "rotation complete"),
            Err(e) => warn!(
                outcome = "failed",
                error_kind = e.kind(),
                engine_error = e.engine_kind().map(|k| k.as_str()),
                duration_ms,
                "rotation failed"
            ),
        });
        result
    }

    /// Abandons the rotation in flight by removing `AWSPENDING` from its version, but only
    /// once the `AWSCURRENT` credentials are proven to log in: single user, when they do not
    /// (setSecret already changed the password), the password is first set back to the current
    /// one, logged in with the pending, previous or a recent unlabelled version (W6); alternating
    /// users, the current user must log in (the other user's new password may stay: the next
    /// rotation sets it through the master). Otherwise it fails and changes nothing, unless
    /// `mode` is [`AbortMode::Force`]. Engines whose single user acts through a master
    /// ([`EngineProfile::single_user_master`](crate::EngineProfile::single_user_master)) then
    /// drop every password but `AWSCURRENT`'s, the abandoned one among them (a failure is
    /// logged; the next rotation drops it).
    pub async fn abort(
        &self,
        secret_id: &str,
        mode: AbortMode,
    ) -> Result<AbortReport, RotationError> {
        let (claim, description) = self.claimed(secret_id).await?;
        let arn = description.arn.clone();
        let token = description
            .rotation_in_flight()
            .ok_or_else(|| RotationError::NoRotationInFlight {
                secret: arn.clone(),
            })?
            .to_string();
        let ctx = self.context(&description, &token, self.driver_deadline());
        let span = info_span!("abort", secret_id = %arn, token = %token);
        let proof = Box::pin(prove_current(&ctx, claim.is_exclusive()))
            .instrument(span.clone())
            .await;
        let mut report = AbortReport {
            secret: arn.clone(),
            token: token.clone(),
            restored_with: None,
            current_verified: false,
            left_behind: None,
        };
        match proof {
            Ok(restored_with) => {
                report.restored_with = restored_with;
                report.current_verified = true;
            }
            Err(e) if mode == AbortMode::Force => {
                let _g = span.enter();
                warn!(error = %crate::error_chain(&e), "abort --force: the AWSCURRENT credentials are not proven to log in; removing AWSPENDING anyway");
                report.left_behind = Some(format!(
                    "the AWSCURRENT credentials were not proven to log in ({}); if the database holds the password of version {token}, that version is kept without a label and the next rotation recovers it",
                    e.kind()
                ));
            }
            Err(e) => return Err(e),
        }
        ctx.store_call(
            "UpdateSecretVersionStage",
            || format!("removing AWSPENDING from version {token} of secret {arn}"),
            self.store.update_stage(
                &arn,
                StageMove {
                    stage: Stage::Pending,
                    move_to: None,
                    remove_from: Some(&token),
                },
            ),
        )
        .await?;
        if report.current_verified {
            // Engines whose single user acts through a master added the abandoned password
            // beside the current one: it stops working now.
            Box::pin(crate::steps::finish::drop_after_abort(&ctx))
                .instrument(span.clone())
                .await;
        }
        let _g = span.enter();
        info!(restored = ?report.restored_with, "abort: rotation abandoned");
        Ok(report)
    }
}

/// Proves that the `AWSCURRENT` credentials log in, restoring them first where the strategy
/// allows. Returns whose credentials restored the password, if that was needed. `exclusive`:
/// the claim proves no other run of the secret is alive, so the sessions of runs that died are
/// ended at once; otherwise they are waited out ([`Rotator::end_dead_sessions`]).
async fn prove_current<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    exclusive: bool,
) -> Result<Option<Credentials>, RotationError> {
    let which = if exclusive {
        DeadSessions::Any
    } else {
        DeadSessions::PastDeadline
    };
    let current = ctx.load(Which::Current, None).await?;
    let mut attempts = Attempts::default();
    match ctx.login(&CredentialSource::Current, &current).await {
        Ok(mut session) => {
            // Engines commit a password change only once it has answered in time, so a run that
            // timed out cannot change the password after this proof; a run that died may have
            // left its change on its way in an open session, which ends here first.
            let fenced = end_dead_sessions(ctx, &mut session, which).await;
            ctx.rotator.close(session).await;
            fenced?;
            // A dead run's change could have landed after that login, before its session was
            // ended: the proof comes after. Should it fail now, the change landed, and the
            // credentials that restore the password are looked for below.
            match ctx.login(&CredentialSource::Current, &current).await {
                Ok(session) => {
                    ctx.rotator.close(session).await;
                    return Ok(None);
                }
                Err(e) => attempts.push(CredentialSource::Current, e),
            }
        }
        Err(e) => attempts.push(CredentialSource::Current, e),
    }
    let unsafe_abort = |attempts| RotationError::AbortUnsafe {
        token: ctx.token.to_string(),
        secret: ctx.arn.to_string(),
        attempts,
    };
    if ctx.rotator.strategy() == Strategy::AlternatingUsers {
        return Err(unsafe_abort(attempts));
    }
    // Single user: find credentials the database accepts for the user, and set the current
    // password back with them.
    let default_port = ctx.rotator.profile().default_port;
    let mut found = None;
    match ctx.load(Which::Pending, Some(ctx.token)).await {
        Ok(pending) => {
            let pending = pending.with_ssl_of(&current);
            if check_same_user(&pending, &current, "current user", "current", default_port).is_ok()
            {
                match ctx.login(&CredentialSource::Pending, &pending).await {
                    Ok(s) => found = Some((s, Credentials::Pending)),
                    Err(e) => attempts.push(CredentialSource::Pending, e),
                }
            }
        }
        Err(e) => info!(error = %e, "abort: no usable pending value"),
    }
    if found.is_none()
        && let Some(previous) = ctx.load_previous().await
    {
        let previous = previous.with_ssl_of(&current);
        if check_same_user(
            &previous,
            &current,
            "previous valid user",
            "previous",
            default_port,
        )
        .is_ok()
        {
            match ctx.login(&CredentialSource::Previous, &previous).await {
                Ok(s) => found = Some((s, Credentials::Previous)),
                Err(e) => attempts.push(CredentialSource::Previous, e),
            }
        }
    }
    if found.is_none() {
        let tried = [
            Some(ctx.token),
            ctx.description.version_with(Stage::Current),
            ctx.description.version_with(Stage::Previous),
        ];
        found = login_with_unlabelled(ctx, &current, &tried, &mut attempts)
            .await?
            .map(|s| (s, Credentials::Recovered));
    }
    let Some((mut session, via)) = found else {
        return Err(unsafe_abort(attempts));
    };
    // A dead run's change still on its way would wait on this restore, then land after it.
    if let Err(e) = end_dead_sessions(ctx, &mut session, which).await {
        ctx.rotator.close(session).await;
        return Err(e);
    }
    let restore = ctx
        .engine_call(
            "setting the current password back",
            ctx.rotator.set_own_password(&mut session, &current),
        )
        .await;
    ctx.rotator.close(session).await;
    let rollback_failed = |source| RotationError::RollbackFailed {
        token: ctx.token.to_string(),
        secret: ctx.arn.to_string(),
        source,
    };
    restore.map_err(rollback_failed)?;
    // Proof, not hope: the current credentials must now log in.
    let session = ctx
        .login(&CredentialSource::Current, &current)
        .await
        .map_err(rollback_failed)?;
    ctx.rotator.close(session).await;
    info!(via = ?via, "abort: database password set back to the AWSCURRENT value");
    Ok(Some(via))
}

/// [`Rotator::end_dead_sessions`] on `session`. With the claim exclusive ([`DeadSessions::Any`])
/// a failure is logged and the proof goes on as without it; otherwise a run of the secret may be
/// alive: a session the engine could not wait out in time (a `Timeout`) refuses the abort, and
/// any other failure fails it.
async fn end_dead_sessions<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    session: &mut R::Session,
    which: DeadSessions,
) -> Result<(), RotationError> {
    match ctx
        .engine_call(
            "ending the sessions of rotation runs that died",
            ctx.rotator.end_dead_sessions(session, which),
        )
        .await
    {
        Ok(true) => warn!(
            ?which,
            "abort: ended or waited out the rotation sessions of the user still inside a transaction (a password change one held could have landed after this abort)"
        ),
        Ok(false) => {}
        Err(e) if which == DeadSessions::Any => {
            warn!(error = %crate::error_chain(&e), "abort: could not end the sessions of rotation runs that died");
        }
        Err(source) if source.kind() == ErrorKind::Timeout => {
            return Err(RotationError::SessionsOpen {
                token: ctx.token.to_string(),
                secret: ctx.arn.to_string(),
                source,
            });
        }
        Err(e) => return Err(RotationError::Engine(e)),
    }
    Ok(())
}
