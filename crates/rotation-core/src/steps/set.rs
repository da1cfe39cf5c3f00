//! setSecret: make the database accept the pending credentials.
//!
//! Idempotency: the first thing tried is a login with the pending credentials; once they work,
//! the step ends without touching anything (checklist 17, 27, 40). Each login that succeeds is
//! the session the change is made on: no login is repeated.

use tracing::{info, warn};

use super::recover::login_with_unlabelled;
use super::{Credentials, StepContext, StepOutcome};
use crate::error::{Attempts, CredentialSource, RotationError, Which};
use crate::rotator::{ErrorKind, Rotator, alternate_username};
use crate::secret::DatabaseSecret;
use crate::stage::{Stage, Strategy};
use crate::store::SecretStore;

pub(crate) async fn run<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<StepOutcome, RotationError> {
    match ctx.rotator.strategy() {
        Strategy::SingleUser => single(ctx).await,
        Strategy::AlternatingUsers => alternating(ctx).await,
    }
}

/// Logs in with the pending credentials: if they work, the step has nothing to do, once a
/// password no version holds is seen refused ([`RotationError::PasswordsNotChecked`] when it
/// logs in too: trust authentication, a password-less user). When that cannot be told (the
/// second login failed otherwise), the step does its work again, which is idempotent.
async fn pending_already_works<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    pending: &DatabaseSecret,
    attempts: &mut Attempts,
) -> Result<bool, RotationError> {
    match ctx.login(&CredentialSource::Pending, pending).await {
        Ok(session) => {
            ctx.rotator.close(session).await;
            match ctx.passwords_checked(pending).await {
                Some(true) => {}
                Some(false) => {
                    return Err(RotationError::PasswordsNotChecked {
                        username: pending.username().unwrap_or_default().to_string(),
                        secret: ctx.arn.to_string(),
                    });
                }
                None => {
                    info!(
                        "setSecret: the pending credentials log in; setting them again to be sure"
                    );
                    return Ok(false);
                }
            }
            info!(
                "setSecret: AWSPENDING secret is already set as password in the database for secret {}.",
                ctx.arn
            );
            Ok(true)
        }
        Err(e) => {
            info!(reason = %e.kind(), "setSecret: pending credentials do not log in yet");
            attempts.push(CredentialSource::Pending, e);
            Ok(false)
        }
    }
}

/// The credentials the user can change its own password with: current, else previous, else a
/// recent unlabelled version. Every failure is kept in `attempts`.
pub(crate) async fn own_login<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    current: &DatabaseSecret,
    reference: &DatabaseSecret,
    tried: &[Option<&str>],
    attempts: &mut Attempts,
) -> Result<Option<(R::Session, Credentials)>, RotationError> {
    match ctx.login(&CredentialSource::Current, current).await {
        Ok(s) => return Ok(Some((s, Credentials::Current))),
        Err(e) => {
            // Not "do not log in": with no time left they were never tried (the error says).
            warn!(reason = %e.kind(), error = %e, "current credentials not proven to log in; trying previous");
            attempts.push(CredentialSource::Current, e);
        }
    }
    if let Some(previous) = ctx.load_previous().await {
        // Old versions may predate the `ssl` key: connect as current says (AWS cfc069e).
        let previous = previous.with_ssl_of(current);
        check_same_user(
            reference,
            &previous,
            "previous valid user",
            "previous",
            ctx.rotator.profile().default_port,
        )?;
        match ctx.login(&CredentialSource::Previous, &previous).await {
            Ok(s) => return Ok(Some((s, Credentials::Previous))),
            Err(e) => {
                warn!(reason = %e.kind(), error = %e, "previous credentials not proven to log in either");
                attempts.push(CredentialSource::Previous, e);
            }
        }
    }
    let mut skip = tried.to_vec();
    skip.push(ctx.description.version_with(Stage::Current));
    skip.push(ctx.description.version_with(Stage::Previous));
    let reference = reference.with_ssl_of(current);
    Ok(login_with_unlabelled(ctx, &reference, &skip, attempts)
        .await?
        .map(|s| (s, Credentials::Recovered)))
}

async fn single<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<StepOutcome, RotationError> {
    let arn = ctx.arn;
    let current = ctx.load(Which::Current, None).await?;
    let pending = ctx.load(Which::Pending, Some(ctx.token)).await?;
    let mut attempts = Attempts::default();
    if pending_already_works(ctx, &pending, &mut attempts).await? {
        return Ok(StepOutcome::AlreadySet);
    }
    let default_port = ctx.rotator.profile().default_port;
    check_same_user(&pending, &current, "current user", "current", default_port)?;
    check_same_database(&pending, &current)?;
    check_built_from(ctx, &pending, &current)?;

    let Some((mut session, via)) =
        own_login(ctx, &current, &pending, &[Some(ctx.token)], &mut attempts).await?
    else {
        return Err(RotationError::NoWorkingCredentials {
            secret: arn.to_string(),
            attempts,
        });
    };
    let username = pending.username().unwrap_or_default().to_string();
    if ctx.rotator.profile().single_user_master {
        // The login proved the secret's own credentials (the confused-deputy guard of
        // alternating users); the change is the master's.
        ctx.rotator.close(session).await;
        set_as_master(ctx, &current, &pending).await?;
        info!(via = ?via, "setSecret: Successfully added a password for user {username} for secret {arn}.");
        return Ok(StepOutcome::PasswordSet(Credentials::Master));
    }
    let result = async {
        ctx.recheck_pending().await?;
        ctx.engine_call(
            "changing the password",
            ctx.rotator.set_own_password(&mut session, &pending),
        )
        .await
        .map_err(|source| RotationError::SetPasswordFailed {
            username: username.clone(),
            secret: arn.to_string(),
            source,
        })
    }
    .await;
    ctx.rotator.close(session).await;
    result?;
    info!(via = ?via, "setSecret: Successfully set password for user {username} for secret {arn}.");
    Ok(StepOutcome::PasswordSet(via))
}

async fn alternating<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
) -> Result<StepOutcome, RotationError> {
    let arn = ctx.arn;
    let current = ctx.load(Which::Current, None).await?;
    let pending = ctx.load(Which::Pending, Some(ctx.token)).await?;
    let mut attempts = Attempts::default();
    if pending_already_works(ctx, &pending, &mut attempts).await? {
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
    check_same_host(
        &pending,
        &current,
        "current",
        ctx.rotator.profile().default_port,
    )?;
    check_same_database(&pending, &current)?;
    check_built_from(ctx, &pending, &current)?;

    // Confused-deputy guard: whoever can write this secret must also hold working
    // credentials before the master secret is used on their behalf.
    match ctx.login(&CredentialSource::Current, &current).await {
        Ok(session) => ctx.rotator.close(session).await,
        // Refused: a late password change of an aborted rotation may have landed on the user
        // in use. A version of the secret without a label that logs in as that user proves,
        // as the current credentials would, that the account is the secret's. The master then
        // sets only the pending user's generated password, never one a value supplied: the
        // user in use gets its password at its next turn as the pending user.
        Err(source) if source.kind() == ErrorKind::AuthFailed => {
            let tried = [
                Some(ctx.token),
                ctx.description.version_with(Stage::Current),
                ctx.description.version_with(Stage::Previous),
            ];
            match login_with_unlabelled(ctx, &current, &tried, &mut attempts).await? {
                Some(session) => {
                    ctx.rotator.close(session).await;
                    warn!(
                        user = current_user,
                        "setSecret: AWSCURRENT's password is refused, and a version without a label logs in as its user: the rotation goes on and makes {pending_user} AWSCURRENT"
                    );
                }
                None => {
                    return Err(RotationError::CurrentLoginFailed {
                        secret: arn.to_string(),
                        source,
                    });
                }
            }
        }
        Err(source) => {
            return Err(RotationError::CurrentLoginFailed {
                secret: arn.to_string(),
                source,
            });
        }
    }
    set_as_master(ctx, &current, &pending).await?;
    info!("setSecret: Successfully set password for {pending_user} for secret {arn}.");
    Ok(StepOutcome::PasswordSet(Credentials::Master))
}

/// Makes `pending`'s password the database's through the master secret `current` names:
/// resolved and checked ([`resolve_master`]), logged in, then the change, after a last look at
/// the stages.
async fn set_as_master<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    current: &DatabaseSecret,
    pending: &DatabaseSecret,
) -> Result<(), RotationError> {
    let arn = ctx.arn;
    let pending_user = pending.username().unwrap_or_default();
    let (masterarn, master) = resolve_master(ctx, current, pending_user).await?;
    let mut session = ctx
        .login(&CredentialSource::Master, &master)
        .await
        .map_err(|source| RotationError::MasterLoginFailed {
            masterarn: masterarn.clone(),
            source,
        })?;
    // Re-read the stages right before the change: a run whose version lost AWSPENDING must not
    // set the alternate user's password under a newer rotation that may be about to promote it.
    let result = async {
        ctx.recheck_pending().await?;
        ctx.engine_call(
            "setting the password as the master user",
            ctx.rotator
                .set_password_as_master(&mut session, current, pending),
        )
        .await
        .map_err(|source| RotationError::SetPasswordFailed {
            username: pending_user.to_string(),
            secret: arn.to_string(),
            source,
        })
    }
    .await;
    ctx.rotator.close(session).await;
    result
}

pub(crate) fn check_same_user(
    pending: &DatabaseSecret,
    other: &DatabaseSecret,
    user_desc: &'static str,
    host_desc: &'static str,
    default_port: Option<u16>,
) -> Result<(), RotationError> {
    if pending.username() != other.username() {
        return Err(RotationError::UserMismatch {
            pending: pending.username().unwrap_or_default().to_string(),
            expected: other.username().unwrap_or_default().to_string(),
            expected_desc: user_desc,
        });
    }
    check_same_host(pending, other, host_desc, default_port)
}

pub(crate) fn check_same_host(
    pending: &DatabaseSecret,
    other: &DatabaseSecret,
    desc: &'static str,
    default_port: Option<u16>,
) -> Result<(), RotationError> {
    match pending.server_difference(other, default_port) {
        None => Ok(()),
        Some("host") => Err(RotationError::HostMismatch {
            pending: pending.host().unwrap_or_default().to_string(),
            expected: other.host().unwrap_or_default().to_string(),
            expected_desc: desc,
        }),
        Some(key) => Err(RotationError::ServerMismatch {
            which: "AWSPENDING",
            key,
            expected_desc: desc,
        }),
    }
}

/// The pending value must be `current` with other credentials: createSecret built it so, and a
/// key that differs now was changed in `AWSCURRENT` since (a value put during the rotation),
/// which promoting the pending value would undo. Values are compared as JSON (AWS's function
/// writes them again, with its own escapes); names only go in the error. A rollback's pending
/// version is `AWSPREVIOUS` itself, whose keys may differ on purpose: not compared there (only
/// in the `rollback` run itself; resumed, it is held to the check, since a version that holds
/// both labels is also what a put leaves behind a finished rotation on Secrets Manager).
fn check_built_from<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    pending: &DatabaseSecret,
    current: &DatabaseSecret,
) -> Result<(), RotationError> {
    if ctx.rollback {
        return Ok(());
    }
    let mut keys: Vec<&str> = pending
        .keys()
        .chain(current.keys())
        .filter(|k| !matches!(*k, "username" | "password"))
        .filter(|k| !same_json(pending.get_raw(k), current.get_raw(k)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    Err(RotationError::SecretChanged {
        secret: ctx.arn.to_string(),
        keys: keys.join(", "),
    })
}

/// Whether two keys' JSON texts hold the same value: equal as JSON (another writer's escapes,
/// spacing and number forms aside: `0` and `-0`, `1.0` and `1`), else, when either does not
/// decode, equal as text; absent only equals absent.
fn same_json(
    a: Option<&serde_json::value::RawValue>,
    b: Option<&serde_json::value::RawValue>,
) -> bool {
    use serde_json::Value;
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            // Integers exactly; a float as a float (`1.0` is `1`, `-0` is `0`).
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                x.as_f64() == y.as_f64()
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            match (
                serde_json::from_str::<Value>(a.get()),
                serde_json::from_str::<Value>(b.get()),
            ) {
                (Ok(x), Ok(y)) => same(&x, &y),
                _ => a.get() == b.get(),
            }
        }
        _ => false,
    }
}

/// The pending value must name the database the current one does: testSecret logs in there.
pub(crate) fn check_same_database(
    pending: &DatabaseSecret,
    current: &DatabaseSecret,
) -> Result<(), RotationError> {
    if pending.dbname() != current.dbname() {
        return Err(RotationError::ServerMismatch {
            which: "AWSPENDING",
            key: "dbname",
            expected_desc: "current",
        });
    }
    Ok(())
}

/// W5: a master outside the deployment's allow-list (`ALLOWED_MASTER_SECRETS`) is refused,
/// unread.
pub(crate) fn check_master_allowed<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    masterarn: &str,
) -> Result<(), RotationError> {
    match &ctx.options.master_allow_list {
        Some(list) if !list.allows(masterarn) => Err(RotationError::MasterNotAllowed {
            masterarn: masterarn.to_string(),
            secret: ctx.arn.to_string(),
            env: crate::options::MASTER_ALLOW_LIST_ENV,
        }),
        _ => Ok(()),
    }
}

/// Alternating users: the master secret `current` names, checked and completed before use: in
/// the deployment's allow-list (W5), readable, completed by the engine (managed masters),
/// valid, not one of the pair (`current`'s user and `pending_user`), and on the same server as
/// the current user (or, where the engine knows replicas, its source). Returns its ARN and
/// value.
pub(crate) async fn resolve_master<S: SecretStore, R: Rotator>(
    ctx: &StepContext<'_, S, R>,
    current: &DatabaseSecret,
    pending_user: &str,
) -> Result<(String, DatabaseSecret), RotationError> {
    let arn = ctx.arn;
    let current_user = current.username().unwrap_or_default();
    let masterarn = current
        .masterarn()
        .ok_or_else(|| RotationError::MissingMasterArn {
            secret: arn.to_string(),
        })?
        .to_string();
    // W5: the secret's author chose the master; the deployment says which it may use, checked
    // before the master secret is even read.
    check_master_allowed(ctx, &masterarn)?;
    let mut master = ctx.load_raw(&masterarn, Which::Master, None).await?;
    let tags = if master.host().is_none() {
        let description = ctx
            .store_call(
                "DescribeSecret",
                || format!("describing master secret {masterarn}"),
                ctx.store.describe(&masterarn),
            )
            .await?;
        Some(description.tags)
    } else {
        None
    };
    master = ctx
        .engine_call(
            "resolving the master secret",
            ctx.rotator.resolve_master(master, current, tags.as_deref()),
        )
        .await?;
    ctx.validate(&masterarn, Which::Master, &master)?;
    // Never touch the master's own user: the pair must be two other users.
    if let Some(user) = master
        .username()
        .filter(|m| *m == current_user || *m == pending_user)
    {
        return Err(RotationError::MasterInPair {
            user: user.to_string(),
            secret: arn.to_string(),
        });
    }

    let (current_host, master_host) = (
        current.host().unwrap_or_default(),
        master.host().unwrap_or_default(),
    );
    if current_host != master_host
        && !ctx
            .engine_call(
                "checking for a read replica",
                ctx.rotator.is_replica_of(current, &master),
            )
            .await?
    {
        return Err(RotationError::MasterHostMismatch {
            current: current_host.to_string(),
            master: master_host.to_string(),
        });
    }
    // Same host: the same server too (port, tls_server_name), or the master acts elsewhere.
    if current_host == master_host
        && let Some(key) = master
            .server_difference(current, ctx.rotator.profile().default_port)
            .filter(|k| *k != "host")
    {
        return Err(RotationError::ServerMismatch {
            which: "master",
            key,
            expected_desc: "current",
        });
    }
    Ok((masterarn, master))
}

#[cfg(test)]
mod tests {
    use super::same_json;
    use serde_json::value::RawValue;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn keys_compare_as_json_values_not_as_text() {
        let same = |a: &str, b: &str| same_json(Some(&raw(a)), Some(&raw(b)));
        // Another writer's forms of one value (AWS's Python function writes them again).
        assert!(same(r#""caf\u00e9""#, r#""café""#));
        assert!(same("0", "-0"));
        assert!(same("1.0", "1"));
        assert!(!same("9007199254740993", "9007199254740992"));
        assert!(same(r#"{"a": 1, "b": [2]}"#, r#"{"b":[2],"a":1}"#));
        assert!(same("null", "null"));
        // Changes.
        assert!(!same("5432", r#""5432""#));
        assert!(!same(r#""a""#, r#""b""#));
        assert!(!same("null", r#""""#));
        // Absent only equals absent.
        assert!(!same_json(Some(&raw("null")), None));
        assert!(same_json(None, None));
    }
}
