//! What an engine implements. Core owns the algorithm around it.

use std::future::Future;

use crate::deadline::Deadline;
pub use crate::error::{BoxError, EngineError, ErrorKind};
use crate::policy::PasswordDefaults;
use crate::secret::DatabaseSecret;
use crate::stage::Strategy;

/// What an engine is: the `engine` values it accepts, password defaults, name limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineProfile {
    /// Short name for logs and metrics (`postgres`).
    pub name: &'static str,
    /// Accepted values of the secret's `engine` key; the first is the canonical one.
    pub engines: &'static [&'static str],
    /// Password generation defaults and limits.
    pub password: PasswordDefaults,
    /// Longest username in bytes (alternating users' `_clone` names are checked against it).
    pub max_username_bytes: Option<usize>,
    /// The port a secret without a `port` key connects to (so that "no port" and the default
    /// port written out name the same server).
    pub default_port: Option<u16>,
    /// Users cannot change their own password (Redis ACL users need `ACL SETUSER`, an admin
    /// command): single-user rotations act through the master secret too (`masterarn`
    /// required, [`Rotator::set_password_as_master`] with the same user), and after
    /// finishSecret the master drops the user's other passwords
    /// ([`Rotator::drop_other_passwords`]).
    pub single_user_master: bool,
    /// What to grant when the preflight finds the rights missing.
    pub advice: RightsAdvice,
}

/// The preflight's advice when a user may not do what rotation needs, in the engine's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RightsAdvice {
    /// Single user: what lets a user change its own password.
    pub own_password: &'static str,
    /// Through a master: what lets the master create users and set their passwords.
    pub master: &'static str,
}

impl RightsAdvice {
    /// Advice that names no engine's rights.
    pub const GENERIC: RightsAdvice = RightsAdvice {
        own_password: "let the user change its own password",
        master: "give the master the right to create users and set their passwords",
    };
}

impl EngineProfile {
    /// The password of `target`, once it meets the engine's rules: for engines that send a
    /// hash or a command the server does not check itself, so a password the engine would
    /// refuse never reaches the database. The error names the rule broken, never the password.
    pub fn password_to_set<'a>(
        &self,
        target: &'a crate::secret::DatabaseSecret,
    ) -> Result<&'a str, EngineError> {
        use secrecy::ExposeSecret;
        let password = target
            .password()
            .ok_or_else(|| EngineError::new(ErrorKind::InvalidInput, "the secret has no password"))?
            .expose_secret();
        self.password.check(password).map_err(|e| {
            EngineError::new(
                ErrorKind::InvalidInput,
                format!(
                    "the password to set does not meet the {} rules: {e}",
                    self.password.engine
                ),
            )
        })?;
        Ok(password)
    }
}

/// How long an engine lets a user name be (the alternating users' `_clone` name is checked
/// against it at createSecret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameLimit {
    /// At most this many bytes of UTF-8 (PostgreSQL's 63).
    Bytes(usize),
    /// At most this many characters (MySQL's 16 or 32, MariaDB's 80).
    Characters(usize),
}

impl UsernameLimit {
    /// The limit.
    pub fn max(self) -> usize {
        match self {
            UsernameLimit::Bytes(n) | UsernameLimit::Characters(n) => n,
        }
    }
    /// What it counts (`bytes`, `characters`).
    pub fn unit(self) -> &'static str {
        match self {
            UsernameLimit::Bytes(_) => "bytes",
            UsernameLimit::Characters(_) => "characters",
        }
    }
    /// The length of `name` as the limit counts it.
    pub fn length_of(self, name: &str) -> usize {
        match self {
            UsernameLimit::Bytes(_) => name.len(),
            UsernameLimit::Characters(_) => name.chars().count(),
        }
    }
}

// Here rather than in `error.rs`, which would otherwise depend on this module as it depends
// on `error.rs`.
impl crate::RotationError {
    /// [`RotationError::UsernameTooLong`](crate::RotationError::UsernameTooLong) for `username`
    /// over `limit`.
    pub fn too_long(username: String, limit: Option<UsernameLimit>) -> Self {
        let limit = limit.unwrap_or(UsernameLimit::Bytes(0));
        crate::RotationError::UsernameTooLong {
            length: limit.length_of(&username),
            unit: limit.unit(),
            limit: limit.max(),
            username,
        }
    }
}

/// An engine's rotation operations for one strategy.
///
/// Core owns the algorithm (which credentials to try, in which order, when to stop); an engine
/// only logs in and acts on the session that logged in. A step keeps the session of the login
/// it needs and closes every session it opened, so no login is repeated within a step.
///
/// Implementations must be idempotent (each operation may be retried after a crash at any
/// point), must bound every network call by the [`Deadline`] given at login, and must never put
/// a secret value into an error message.
pub trait Rotator: Send + Sync {
    /// One logged-in connection.
    type Session: Send;

    /// The engine.
    fn profile(&self) -> &EngineProfile;

    /// The strategy this rotator implements.
    fn strategy(&self) -> Strategy;
    /// The longest user name the pair's other user may have, for a secret like `secret` (an
    /// engine whose limit depends on the secret's `engine` key, or on its settings, says so
    /// here). The default is the profile's [`EngineProfile::max_username_bytes`].
    fn username_limit(&self, secret: &DatabaseSecret) -> Option<UsernameLimit> {
        let _ = secret;
        self.profile().max_username_bytes.map(UsernameLimit::Bytes)
    }

    /// Logs in with `secret`'s credentials. A session is the proof that they work; every later
    /// call on it is bounded by `deadline` too. A password the database refuses must be an
    /// error of kind [`ErrorKind::AuthFailed`] (core tells a database that checks passwords
    /// from one that does not by a refused random password: any other kind reads as "cannot
    /// tell").
    fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Self::Session, EngineError>> + Send;

    /// Single user (and abort's restore): on a session logged in as `target`'s user (with any
    /// of its passwords), makes the database accept `target`'s password. The change must not
    /// take effect later than the call returns an error: a change still waiting (behind a lock,
    /// in the network) when the deadline passes must be abandoned, e.g. by making it in a
    /// transaction that is committed only once the change has answered.
    fn set_own_password(
        &self,
        session: &mut Self::Session,
        target: &DatabaseSecret,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Alternating users: on a session logged in as the master, creates `target`'s user when
    /// missing, sets its password, and (re)asserts that it holds the same privileges as
    /// `current`'s user. Single user on an engine with
    /// [`EngineProfile::single_user_master`]: `target` is `current`'s own user, and its new
    /// password must work beside the current one (which applications still use) until
    /// [`Rotator::drop_other_passwords`].
    fn set_password_as_master(
        &self,
        session: &mut Self::Session,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// testSecret, on a session logged in as the pending user: runs a trivial query and, for
    /// alternating users (`partner` given: the pair's other user), checks the pair still shares
    /// its privileges. A partner that does not exist is no drift: that is the first rotation's
    /// probe, whose pending value is a copy of the current one (`RotateImmediately` false).
    fn test_session(
        &self,
        session: &mut Self::Session,
        pending: &DatabaseSecret,
        partner: Option<&str>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Closes the session cleanly (the protocol's goodbye), never left to time out and never
    /// waiting long on the server ([`close_without_waiting`] for a driver that waits on the
    /// server's reply).
    fn close(&self, session: Self::Session) -> impl Future<Output = ()> + Send;

    /// Completes a master secret before use: connection details of managed master secrets
    /// (`tags` are the master secret's tags, given when it has no `host`), the database to
    /// connect to. The default returns it unchanged.
    fn resolve_master(
        &self,
        master: DatabaseSecret,
        _current: &DatabaseSecret,
        _tags: Option<&[(String, String)]>,
    ) -> impl Future<Output = Result<DatabaseSecret, EngineError>> + Send {
        async move { Ok(master) }
    }

    /// Preflight (`rotate plan`): whether the session's user may do what this strategy's
    /// rotation does (single user: change its own password; alternating users, logged in as
    /// the master: create users and set their passwords), asked without changing anything.
    /// `Ok(Some(what was found))`: it may; `Ok(None)`: the engine cannot tell without trying;
    /// an error (kind [`ErrorKind::PermissionDenied`] when it may not). The default cannot tell.
    fn check_rights(
        &self,
        _session: &mut Self::Session,
        _current: &DatabaseSecret,
    ) -> impl Future<Output = Result<Option<String>, EngineError>> + Send {
        async { Ok(None) }
    }

    /// Single user on an engine with [`EngineProfile::single_user_master`], after finishSecret
    /// made `current` the `AWSCURRENT` value (again on a retried finishSecret, unless a newer
    /// rotation is in flight), and after an abort proved `AWSCURRENT` logs in: on a session
    /// logged in as the master, removes every password of `current`'s user but its own, so
    /// the replaced or abandoned one stops working. Must refuse, changing nothing, when the
    /// user does not hold `current`'s password. A failure is logged, not retried (the next
    /// rotation's finishSecret drops them). The default does nothing.
    fn drop_other_passwords(
        &self,
        _session: &mut Self::Session,
        _current: &DatabaseSecret,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        async { Ok(()) }
    }

    /// Preflight (`rotate plan`): whether `current`'s server offers TLS whose certificate
    /// verifies against the trust sources the engine's connections use, and which source
    /// anchored it (`Ok(Some(what was found))`), as the secret asks (`"ssl": false`: not
    /// used). An error of kind [`ErrorKind::Tls`] when it does not verify. The default
    /// cannot tell (`Ok(None)`).
    fn check_tls(
        &self,
        _current: &DatabaseSecret,
    ) -> impl Future<Output = Result<Option<String>, EngineError>> + Send {
        async { Ok(None) }
    }

    /// `abort`, before its proof, on a session logged in as the user whose password abort
    /// proves or restores: makes sure no password change a rotation run of that user sent can
    /// still land after the proof, which abort makes after this call. `which` says which runs
    /// can still be alive ([`DeadSessions`]). `Ok(true)` when it ended or waited for any
    /// session. A live run's session (another secret's rotation acting as the same user, say
    /// through a shared master) must be told apart and left alone, or at worst fail its step;
    /// nothing else is touched. The default does nothing (an engine whose changes cannot wait
    /// in an open session, or whose limits say a late change may land: RELIABILITY.md).
    fn end_dead_sessions(
        &self,
        _session: &mut Self::Session,
        _which: DeadSessions,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send {
        async { Ok(false) }
    }

    /// Whether `current`'s host, which differs from `master`'s, is a replica of it. The
    /// default says no, so hosts must match.
    fn is_replica_of(
        &self,
        _current: &DatabaseSecret,
        _master: &DatabaseSecret,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send {
        async { Ok(false) }
    }
}

/// Which of the user's rotation sessions `abort` deals with before its proof
/// ([`Rotator::end_dead_sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadSessions {
    /// The store's claim is exclusive (the file store): no other run of the secret can be
    /// alive, so every session such a run left with a password change on its way is ended at
    /// once, whatever its step's deadline.
    Any,
    /// The store's claim excludes nothing (Secrets Manager): a run of the secret may still be
    /// alive. Each such session is waited for until it has left its transaction, or until its
    /// step's deadline has passed and it is ended. When the wait outlasts the time the abort
    /// has for it (at once, where the engine can tell it will), the engine fails with a
    /// `Timeout` saying so, and abort refuses (`RotationSessionsOpen`).
    PastDeadline,
}

impl DeadSessions {
    /// The time [`DeadSessions::PastDeadline`] leaves the abort after its wait, for the proof
    /// that follows (a login, and a restore for a single user); at most half its time.
    pub const PROOF_RESERVE: std::time::Duration = std::time::Duration::from_secs(2);
}

/// For alternating users, which of the pair's privileges (grants, roles, groups) are copied to
/// which user, and whether the target may lose any. The rule, for engines that keep the pair's
/// privileges in line on every rotation (W7):
/// - a user created now gets the current user's privileges (AWS's behaviour);
/// - otherwise the original (the name without `_clone`) is the source of truth and the clone
///   follows it: it gains what the original gained, and loses what the original lost, but only
///   while the clone is the pending user. The user the secret's AWSCURRENT names, which
///   applications use during the rotation, never loses anything mid-rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direction {
    /// Stored name of the user whose privileges are copied.
    pub source: String,
    /// Stored name of the user that receives them.
    pub target: String,
    /// Whether privileges the source lacks are revoked from the target.
    pub revoke: bool,
}

impl Direction {
    /// The direction for a rotation whose current user is `current` and pending user
    /// `pending` (stored names), where `created` says the pending user was created just now.
    pub fn for_pair(current: &str, pending: &str, created: bool) -> Self {
        let pending_is_clone = is_clone_of(pending, current);
        let (source, target, revoke) = if created {
            // A new user starts with what the user in use has.
            (current, pending, false)
        } else if pending_is_clone {
            // The clone is not in use: it follows the original exactly.
            (current, pending, true)
        } else {
            // The clone is in use (AWSCURRENT): it gains what the original has, loses nothing now.
            (pending, current, false)
        };
        Direction {
            source: source.to_string(),
            target: target.to_string(),
            revoke,
        }
    }
}

impl EngineProfile {
    /// Whether rotations under `strategy` act through a master secret: alternating users
    /// always, single user where users cannot change their own password
    /// ([`EngineProfile::single_user_master`]).
    pub fn needs_master(&self, strategy: Strategy) -> bool {
        strategy == Strategy::AlternatingUsers || self.single_user_master
    }

    /// Checks a secret's value as a rotation under `strategy` checks its `AWSCURRENT` before it
    /// changes anything: valid JSON with the keys the engine needs, an `engine` this profile
    /// accepts, and for alternating users a `masterarn` and an alternate user name that fits.
    /// For `rotate put` and preflights; `secret_id` only names the secret in errors.
    pub fn check_secret(
        &self,
        secret_id: &str,
        value: &secrecy::SecretString,
        strategy: Strategy,
    ) -> Result<DatabaseSecret, crate::RotationError> {
        let limit = self.max_username_bytes.map(UsernameLimit::Bytes);
        self.check_secret_with(secret_id, value, strategy, |_| limit)
    }

    /// [`EngineProfile::check_secret`] with the user name limit a rotator gives for the secret
    /// ([`Rotator::username_limit`]).
    pub fn check_secret_with(
        &self,
        secret_id: &str,
        value: &secrecy::SecretString,
        strategy: Strategy,
        username_limit: impl Fn(&DatabaseSecret) -> Option<UsernameLimit>,
    ) -> Result<DatabaseSecret, crate::RotationError> {
        use crate::RotationError;
        let invalid = |source| RotationError::InvalidSecret {
            which: crate::error::Which::Current,
            secret: secret_id.to_string(),
            source,
        };
        let secret = DatabaseSecret::parse(value).map_err(invalid)?;
        secret.require(self.engines, true).map_err(invalid)?;
        if self.needs_master(strategy) && secret.masterarn().is_none() {
            return Err(RotationError::MissingMasterArn {
                secret: secret_id.to_string(),
            });
        }
        if strategy == Strategy::AlternatingUsers {
            let username = secret.username().expect("required above");
            let limit = username_limit(&secret);
            alternate_username(username, limit)
                .map_err(|clone| RotationError::too_long(clone, limit))?;
        }
        Ok(secret)
    }
}

/// Runs a driver's polite close only as far as it goes without waiting on the server, then
/// drops it, which closes the socket. The goodbye (PostgreSQL's Terminate, MySQL's COM_QUIT)
/// is written at the first poll; over TLS, sqlx then waits for the server's own close (its
/// reply to the goodbye, after the server has ended the session: a round trip and, for
/// PostgreSQL, the backend's exit, 2-3 ms a connection in the bench), which no one needs. A
/// connection dropped without its goodbye makes the server log an error; this one does not,
/// unless an earlier call on the session was cut off mid-write (its deadline passed while the
/// socket was full), when the goodbye may not get out either (the server then rolls back what
/// was open, as it would at a timeout).
pub async fn close_without_waiting<F: Future>(closing: F) {
    let mut closing = std::pin::pin!(closing);
    std::future::poll_fn(|cx| {
        // Finished or not, the first poll is all it gets.
        let _ = closing.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

/// Whether `name` is the `_clone` of `original` in an alternating pair.
pub fn is_clone_of(name: &str, original: &str) -> bool {
    name.strip_suffix("_clone") == Some(original)
}

/// The other user of an alternating pair: `x` <-> `x_clone`. `limit` bounds the result.
pub fn alternate_username(name: &str, limit: Option<UsernameLimit>) -> Result<String, String> {
    if let Some(base) = name.strip_suffix("_clone")
        && !base.is_empty()
    {
        return Ok(base.to_string());
    }
    let clone = format!("{name}_clone");
    match limit {
        Some(limit) if limit.length_of(&clone) > limit.max() => Err(clone),
        _ => Ok(clone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_and_counts_bytes() {
        assert_eq!(
            alternate_username("app", Some(UsernameLimit::Bytes(63))).unwrap(),
            "app_clone"
        );
        assert_eq!(
            alternate_username("app_clone", Some(UsernameLimit::Bytes(63))).unwrap(),
            "app"
        );
        assert_eq!(
            alternate_username("_clone", Some(UsernameLimit::Bytes(63))).unwrap(),
            "_clone_clone"
        );
        // 57 ASCII bytes + "_clone" = 63: fits.
        assert!(alternate_username(&"a".repeat(57), Some(UsernameLimit::Bytes(63))).is_ok());
        assert!(alternate_username(&"a".repeat(58), Some(UsernameLimit::Bytes(63))).is_err());
        // 29 two-byte characters = 58 bytes but 29 characters: too long in bytes.
        assert!(alternate_username(&"é".repeat(29), Some(UsernameLimit::Bytes(63))).is_err());
        assert!(alternate_username(&"a".repeat(500), None).is_ok());
        // Counted in characters: 10 two-byte characters and `_clone` are 16 characters.
        assert!(alternate_username(&"é".repeat(10), Some(UsernameLimit::Characters(16))).is_ok());
        assert!(alternate_username(&"é".repeat(11), Some(UsernameLimit::Characters(16))).is_err());
    }

    #[test]
    fn the_user_in_use_never_loses_privileges() {
        // Current original, pending clone: the clone follows exactly.
        assert_eq!(
            Direction::for_pair("app", "app_clone", false),
            Direction {
                source: "app".into(),
                target: "app_clone".into(),
                revoke: true
            }
        );
        // Current clone, pending original: the original stays the source; the clone (in
        // use) only gains.
        assert_eq!(
            Direction::for_pair("app_clone", "app", false),
            Direction {
                source: "app".into(),
                target: "app_clone".into(),
                revoke: false
            }
        );
        // A user created now copies the current one, whichever name it has.
        for (current, pending) in [("etl_clone", "etl"), ("app", "app_clone")] {
            assert_eq!(
                Direction::for_pair(current, pending, true),
                Direction {
                    source: current.into(),
                    target: pending.into(),
                    revoke: false
                }
            );
        }
    }

    #[test]
    fn engine_error_keeps_kind_and_source() {
        let e = EngineError::new(ErrorKind::AuthFailed, "login as app refused")
            .with_source(std::io::Error::other("driver said no"));
        assert_eq!(e.kind(), ErrorKind::AuthFailed);
        assert_eq!(e.to_string(), "login as app refused (AuthenticationFailed)");
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "driver said no"
        );
    }
}
