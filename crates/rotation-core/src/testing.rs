//! Test doubles, enabled by the `testing` feature; not for production use.
//!
//! - [`FakeDatabase`] and [`FakeRotator`]: a fake engine for tests of the state machine, an
//!   in-memory "database" of users, passwords and role memberships, with failure injection to
//!   simulate crashes inside steps.
//! - [`RecordingStore`]: wraps any [`crate::SecretStore`], counts its calls by Secrets Manager
//!   operation, records the tokens passed to each put, and can hold back the write of a pending
//!   value (a sleep or a [`PutGate`]) to build races.
//! - [`FaultyStore`] and [`FaultyRotator`]: wrap any store and any engine and fail the k-th I/O
//!   call of a rotation ([`FaultPlan`]) before it is made, by hanging, or after it took effect.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

use crate::deadline::Deadline;
use crate::policy::PasswordDefaults;
use crate::rotator::RightsAdvice;
use crate::rotator::{EngineError, EngineProfile, ErrorKind, Rotator};
use crate::secret::DatabaseSecret;
use crate::stage::Strategy;

mod faults;
mod recording;
pub use faults::{Fault, FaultPlan, FaultyRotator, FaultyStore, Fired};
pub use recording::{Call, CallCounts, Operation, Pause, Put, PutGate, RecordingStore};

/// The fake engine's profile: `engine` must be `fake`.
pub const FAKE_PROFILE: EngineProfile = EngineProfile {
    name: "fake",
    engines: &["fake"],
    password: PasswordDefaults {
        engine: "fake",
        exclude_characters: ":/@\"'\\",
        ..PasswordDefaults::BASE
    },
    max_username_bytes: Some(63),
    default_port: Some(5432),
    single_user_master: false,
    advice: RightsAdvice::GENERIC,
};

/// An operation failures can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Any login.
    Login,
    /// A password change, failing *before* it is applied.
    SetPasswordBefore,
    /// A password change, failing *after* it is applied (a crash before the reply).
    SetPasswordAfter,
    /// testSecret.
    Test,
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, String>,
    members: BTreeMap<String, BTreeSet<String>>,
    fail: BTreeMap<Op, usize>,
    logins: usize,
    password_changes: usize,
    open_sessions: usize,
    unreachable: bool,
    any_password: bool,
}

/// The in-memory database. Clones share state.
#[derive(Clone, Default)]
pub struct FakeDatabase {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FakeDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock().unwrap();
        f.debug_struct("FakeDatabase")
            .field("users", &s.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl FakeDatabase {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }
    /// Creates or overwrites a user.
    pub fn add_user(&self, name: &str, password: &SecretString) {
        self.state
            .lock()
            .unwrap()
            .users
            .insert(name.into(), password.expose_secret().into());
    }
    /// Whether `name` logs in with `password`.
    pub fn accepts(&self, name: &str, password: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .users
            .get(name)
            .map(String::as_str)
            == Some(password)
    }
    /// Whether the user exists.
    pub fn has_user(&self, name: &str) -> bool {
        self.state.lock().unwrap().users.contains_key(name)
    }
    /// Roles `name` is a member of.
    pub fn memberships(&self, name: &str) -> BTreeSet<String> {
        self.state
            .lock()
            .unwrap()
            .members
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
    /// Removes `role` from `name`'s memberships (to simulate drift).
    pub fn revoke(&self, name: &str, role: &str) {
        if let Some(m) = self.state.lock().unwrap().members.get_mut(name) {
            m.remove(role);
        }
    }
    /// Makes the next `times` calls of `op` fail.
    pub fn fail(&self, op: Op, times: usize) {
        self.state.lock().unwrap().fail.insert(op, times);
    }
    /// Makes every operation fail as unreachable (or not).
    pub fn set_unreachable(&self, yes: bool) {
        self.state.lock().unwrap().unreachable = yes;
    }
    /// Lets every existing user in with any password (or not): trust authentication.
    pub fn accept_any_password(&self, yes: bool) {
        self.state.lock().unwrap().any_password = yes;
    }
    /// Number of password changes applied.
    pub fn password_changes(&self) -> usize {
        self.state.lock().unwrap().password_changes
    }
    /// Number of login attempts.
    pub fn logins(&self) -> usize {
        self.state.lock().unwrap().logins
    }

    fn take_failure(state: &mut State, op: Op) -> bool {
        match state.fail.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Sessions logged in and not closed yet.
    pub fn open_sessions(&self) -> usize {
        self.state.lock().unwrap().open_sessions
    }

    /// Applies a password change (`member_of`: the master adds the user to that role).
    fn change(&self, target: &DatabaseSecret, member_of: Option<&str>) -> Result<(), EngineError> {
        let mut s = self.state.lock().unwrap();
        if s.unreachable {
            return Err(EngineError::new(
                ErrorKind::Unreachable,
                "fake database is unreachable",
            ));
        }
        if Self::take_failure(&mut s, Op::SetPasswordBefore) {
            return Err(EngineError::new(
                ErrorKind::Timeout,
                "injected failure before the change",
            ));
        }
        let user = target.username().unwrap_or_default().to_string();
        let password = target
            .password()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        s.users.insert(user.clone(), password);
        if let Some(role) = member_of {
            s.members.entry(user).or_default().insert(role.to_string());
        }
        s.password_changes += 1;
        if Self::take_failure(&mut s, Op::SetPasswordAfter) {
            return Err(EngineError::new(
                ErrorKind::Timeout,
                "injected failure after the change",
            ));
        }
        Ok(())
    }

    fn login(&self, secret: &DatabaseSecret) -> Result<(), EngineError> {
        let mut s = self.state.lock().unwrap();
        s.logins += 1;
        if s.unreachable {
            return Err(EngineError::new(
                ErrorKind::Unreachable,
                "fake database is unreachable",
            ));
        }
        if Self::take_failure(&mut s, Op::Login) {
            return Err(EngineError::new(
                ErrorKind::Timeout,
                "injected login failure",
            ));
        }
        let user = secret.username().unwrap_or_default();
        let ok = match (s.users.get(user), secret.password()) {
            (Some(_), _) if s.any_password => true,
            (Some(stored), Some(given)) => stored == given.expose_secret(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(EngineError::new(
                ErrorKind::AuthFailed,
                format!("password authentication failed for user {user}"),
            ))
        }
    }
}

/// A [`Rotator`] over a [`FakeDatabase`].
#[derive(Debug, Clone)]
pub struct FakeRotator {
    db: FakeDatabase,
    strategy: Strategy,
    profile: &'static EngineProfile,
}

impl FakeRotator {
    /// A rotator for `strategy` over `db`.
    pub fn new(db: FakeDatabase, strategy: Strategy) -> Self {
        FakeRotator {
            db,
            strategy,
            profile: &FAKE_PROFILE,
        }
    }

    /// The same fake with another engine's profile (its password rules, name limits).
    pub fn with_profile(mut self, profile: &'static EngineProfile) -> Self {
        self.profile = profile;
        self
    }
}

/// A logged-in fake session: who logged in.
#[derive(Debug)]
pub struct FakeSession {
    user: String,
}

impl Rotator for FakeRotator {
    type Session = FakeSession;

    fn profile(&self) -> &EngineProfile {
        self.profile
    }

    fn strategy(&self) -> Strategy {
        self.strategy
    }

    async fn login(
        &self,
        secret: &DatabaseSecret,
        _deadline: Deadline,
    ) -> Result<FakeSession, EngineError> {
        self.db.login(secret)?;
        self.db.state.lock().unwrap().open_sessions += 1;
        Ok(FakeSession {
            user: secret.username().unwrap_or_default().to_string(),
        })
    }

    async fn set_own_password(
        &self,
        session: &mut FakeSession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        if target.username() != Some(session.user.as_str()) {
            return Err(EngineError::new(
                ErrorKind::PermissionDenied,
                "a user may only change its own password",
            ));
        }
        self.db.change(target, None)
    }

    async fn set_password_as_master(
        &self,
        _session: &mut FakeSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        self.db.change(target, current.username())
    }

    async fn test_session(
        &self,
        session: &mut FakeSession,
        _pending: &DatabaseSecret,
        partner: Option<&str>,
    ) -> Result<(), EngineError> {
        {
            let mut s = self.db.state.lock().unwrap();
            if FakeDatabase::take_failure(&mut s, Op::Test) {
                return Err(EngineError::new(
                    ErrorKind::Timeout,
                    "injected test failure",
                ));
            }
        }
        if let Some(partner) = partner.filter(|p| self.db.has_user(p)) {
            let user = session.user.as_str();
            // The original user of the pair is the role itself; the clone is its member.
            let linked = self.db.memberships(user).contains(partner)
                || self.db.memberships(partner).contains(user);
            if !linked {
                return Err(EngineError::new(
                    ErrorKind::PermissionDenied,
                    format!("{user} and {partner} are not members of one another"),
                ));
            }
        }
        Ok(())
    }

    async fn close(&self, _session: FakeSession) {
        self.db.state.lock().unwrap().open_sessions -= 1;
    }
}

/// Helpers for engine test suites that keep secrets as JSON in a local store.
pub mod json {
    use std::time::Duration;

    use secrecy::{ExposeSecret, SecretString};
    use serde_json::Value;

    use crate::deadline::Deadline;
    use crate::rotator::Rotator;
    use crate::secret::DatabaseSecret;
    use crate::stage::Stage;
    use crate::store::{LocalSecretStore, SecretStore, VersionSelector};

    /// `value` as a database secret (panics on a value tests should not have written).
    pub fn secret(value: &Value) -> DatabaseSecret {
        DatabaseSecret::parse(&SecretString::from(value.to_string())).expect("a valid secret")
    }

    /// Creates secret `name` holding `value`; returns its ARN.
    pub async fn put(store: &LocalSecretStore, name: &str, value: &Value) -> String {
        store
            .create_secret(name, &SecretString::from(value.to_string()))
            .await
            .expect("create the secret")
    }

    /// The value of secret `name` at `stage`.
    pub async fn at(store: &impl SecretStore, name: &str, stage: Stage) -> Value {
        let v = store
            .get_value(name, VersionSelector::stage(stage))
            .await
            .expect("read the secret");
        serde_json::from_str(v.value.expose_secret()).expect("a JSON secret")
    }

    /// Whether `value`'s credentials log in through `rotator` (its own connection code, a 10 s
    /// deadline); the session is closed.
    pub async fn logs_in<R: Rotator>(rotator: &R, value: &Value) -> bool {
        match rotator
            .login(&secret(value), Deadline::after(Duration::from_secs(10)))
            .await
        {
            Ok(s) => {
                rotator.close(s).await;
                true
            }
            Err(_) => false,
        }
    }
}
