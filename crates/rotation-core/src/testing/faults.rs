//! Fault injection at every I/O call a rotation makes: [`FaultyStore`] wraps a secret store and
//! [`FaultyRotator`] an engine, both counting their calls on one shared [`FaultPlan`], which fails
//! the k-th call after it is armed in one of three ways ([`Fault`]).
//!
//! Only the calls that reach a server are counted: the store's six Secrets Manager operations
//! and the engine's logins, password changes, tests and API lookups. Closing a session and
//! taking a claim (a local file lock) are passed through uncounted.

use std::fmt;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;

use crate::deadline::Deadline;
use crate::policy::PasswordPolicy;
use crate::rotator::{DeadSessions, EngineError, EngineProfile, ErrorKind, Rotator};
use crate::secret::DatabaseSecret;
use crate::stage::{Stage, Strategy};
use crate::store::{
    Claim, SecretDescription, SecretStore, SecretValue, StageMove, StoreError, VersionInfo,
    VersionSelector,
};

/// How the chosen call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// An error before the call is made: it takes no effect (a refused connection, a throttled
    /// request).
    Before,
    /// The call never answers and takes no effect, until the step's deadline ends it.
    Hang,
    /// The call takes effect and its answer is lost (a reset after the server committed an
    /// `ALTER ROLE` or a `PutSecretValue`): the caller sees an error.
    Lost,
}

impl Fault {
    /// Every mode.
    pub const ALL: [Fault; 3] = [Fault::Before, Fault::Hang, Fault::Lost];

    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Before => "before",
            Fault::Hang => "hang",
            Fault::Lost => "lost",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault that fired: the call it hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Its position among the calls since the plan was armed, from 1.
    pub call: usize,
    /// The call (`PutSecretValue`, `login`, `set_own_password`, ...).
    pub name: &'static str,
    /// How it failed.
    pub fault: Fault,
}

#[derive(Debug, Default)]
struct PlanState {
    calls: Vec<&'static str>,
    armed: Option<(usize, Fault)>,
    fired: Option<Fired>,
}

/// The calls of one store and one engine, in order, and the fault to inject. Shared by
/// [`FaultyStore`] and [`FaultyRotator`] so that k counts every call a rotation makes.
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<PlanState>,
}

impl FaultPlan {
    /// A plan that injects nothing and counts.
    pub fn new() -> Arc<FaultPlan> {
        Arc::new(FaultPlan::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails the `k`-th call (from 1) after now with `fault`, once; clears the call log.
    pub fn arm(&self, k: usize, fault: Fault) {
        assert!(k >= 1, "calls count from 1");
        let mut s = self.state();
        s.calls.clear();
        s.armed = Some((k, fault));
        s.fired = None;
    }

    /// Injects nothing more; clears the call log (counting goes on).
    pub fn disarm(&self) {
        let mut s = self.state();
        s.calls.clear();
        s.armed = None;
    }

    /// The calls since the plan was last armed or disarmed, by name.
    pub fn calls(&self) -> Vec<&'static str> {
        self.state().calls.clone()
    }

    /// The fault that fired since the plan was armed, if one did.
    pub fn fired(&self) -> Option<Fired> {
        self.state().fired.clone()
    }

    /// Counts a call; the fault to inject into it, if it is the chosen one.
    fn next(&self, name: &'static str) -> Option<Fault> {
        let mut s = self.state();
        s.calls.push(name);
        let n = s.calls.len();
        match s.armed {
            Some((k, fault)) if k == n => {
                s.armed = None;
                s.fired = Some(Fired {
                    call: n,
                    name,
                    fault,
                });
                Some(fault)
            }
            _ => None,
        }
    }

    /// Runs `call` as `name`, failing it with `error` if it is the chosen one.
    async fn run<T, E>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, E>>,
        error: impl FnOnce(Fault) -> E,
    ) -> Result<T, E> {
        match self.next(name) {
            None => call.await,
            Some(Fault::Before) => Err(error(Fault::Before)),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Lost) => {
                // The effect happens; what it returned (a session, too) is dropped.
                drop(call.await);
                Err(error(Fault::Lost))
            }
        }
    }
}

fn message(name: &str, fault: Fault) -> String {
    match fault {
        Fault::Before => format!("injected fault: {name} failed before it was sent"),
        Fault::Lost => format!("injected fault: {name} took effect but its answer was lost"),
        Fault::Hang => format!("injected fault: {name} hung"),
    }
}

/// A [`SecretStore`] whose calls count on a [`FaultPlan`] and fail as it says.
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<FaultPlan>,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, plan: Arc<FaultPlan>) -> Self {
        FaultyStore { inner, plan }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn store_error(operation: &'static str) -> impl FnOnce(Fault) -> StoreError {
    move |fault| StoreError::Service {
        operation,
        message: message(operation, fault),
        source: None,
    }
}

impl<S: SecretStore> SecretStore for FaultyStore<S> {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, StoreError> {
        let op = "DescribeSecret";
        self.plan
            .run(op, self.inner.describe(secret_id), store_error(op))
            .await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> Result<SecretValue, StoreError> {
        let op = "GetSecretValue";
        self.plan
            .run(op, self.inner.get_value(secret_id, which), store_error(op))
            .await
    }

    async fn put_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        let op = "PutSecretValue";
        let call = self
            .inner
            .put_value(secret_id, token, value, stages, rotation_token);
        self.plan.run(op, call, store_error(op)).await
    }

    async fn update_stage(&self, secret_id: &str, change: StageMove<'_>) -> Result<(), StoreError> {
        let op = "UpdateSecretVersionStage";
        self.plan
            .run(
                op,
                self.inner.update_stage(secret_id, change),
                store_error(op),
            )
            .await
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, StoreError> {
        let op = "GetRandomPassword";
        self.plan
            .run(op, self.inner.random_password(policy), store_error(op))
            .await
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let op = "ListSecretVersionIds";
        self.plan
            .run(op, self.inner.list_versions(secret_id), store_error(op))
            .await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        built_from: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        let op = "PutSecretValue";
        let call = self
            .inner
            .put_pending(secret_id, token, value, built_from, rotation_token);
        self.plan.run(op, call, store_error(op)).await
    }

    async fn claim(&self, arn: &str) -> Result<Claim, StoreError> {
        self.inner.claim(arn).await
    }
}

/// A [`Rotator`] whose database and engine API calls count on a [`FaultPlan`] and fail as it
/// says. Injected errors are [`ErrorKind::Unreachable`], as a lost connection is.
#[derive(Debug, Clone)]
pub struct FaultyRotator<R> {
    inner: R,
    plan: Arc<FaultPlan>,
}

impl<R> FaultyRotator<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, plan: Arc<FaultPlan>) -> Self {
        FaultyRotator { inner, plan }
    }
}

fn engine_error(call: &'static str) -> impl FnOnce(Fault) -> EngineError {
    move |fault| EngineError::new(ErrorKind::Unreachable, message(call, fault))
}

impl<R: Rotator> Rotator for FaultyRotator<R> {
    type Session = R::Session;

    fn profile(&self) -> &EngineProfile {
        self.inner.profile()
    }

    fn strategy(&self) -> Strategy {
        self.inner.strategy()
    }

    fn username_limit(&self, secret: &DatabaseSecret) -> Option<crate::rotator::UsernameLimit> {
        self.inner.username_limit(secret)
    }

    async fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<Self::Session, EngineError> {
        let call = "login";
        self.plan
            .run(call, self.inner.login(secret, deadline), engine_error(call))
            .await
    }

    async fn set_own_password(
        &self,
        session: &mut Self::Session,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let call = "set_own_password";
        self.plan
            .run(
                call,
                self.inner.set_own_password(session, target),
                engine_error(call),
            )
            .await
    }

    async fn set_password_as_master(
        &self,
        session: &mut Self::Session,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let call = "set_password_as_master";
        self.plan
            .run(
                call,
                self.inner.set_password_as_master(session, current, target),
                engine_error(call),
            )
            .await
    }

    async fn test_session(
        &self,
        session: &mut Self::Session,
        pending: &DatabaseSecret,
        partner: Option<&str>,
    ) -> Result<(), EngineError> {
        let call = "test_session";
        self.plan
            .run(
                call,
                self.inner.test_session(session, pending, partner),
                engine_error(call),
            )
            .await
    }

    async fn close(&self, session: Self::Session) {
        self.inner.close(session).await
    }

    async fn resolve_master(
        &self,
        master: DatabaseSecret,
        current: &DatabaseSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<DatabaseSecret, EngineError> {
        let call = "resolve_master";
        self.plan
            .run(
                call,
                self.inner.resolve_master(master, current, tags),
                engine_error(call),
            )
            .await
    }

    async fn drop_other_passwords(
        &self,
        session: &mut Self::Session,
        current: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let call = "drop_other_passwords";
        self.plan
            .run(
                call,
                self.inner.drop_other_passwords(session, current),
                engine_error(call),
            )
            .await
    }

    async fn end_dead_sessions(
        &self,
        session: &mut Self::Session,
        which: DeadSessions,
    ) -> Result<bool, EngineError> {
        let call = "end_dead_sessions";
        self.plan
            .run(
                call,
                self.inner.end_dead_sessions(session, which),
                engine_error(call),
            )
            .await
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        let call = "check_tls";
        self.plan
            .run(call, self.inner.check_tls(current), engine_error(call))
            .await
    }

    async fn check_rights(
        &self,
        session: &mut Self::Session,
        current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        let call = "check_rights";
        self.plan
            .run(
                call,
                self.inner.check_rights(session, current),
                engine_error(call),
            )
            .await
    }

    async fn is_replica_of(
        &self,
        current: &DatabaseSecret,
        master: &DatabaseSecret,
    ) -> Result<bool, EngineError> {
        let call = "is_replica_of";
        self.plan
            .run(
                call,
                self.inner.is_replica_of(current, master),
                engine_error(call),
            )
            .await
    }
}
