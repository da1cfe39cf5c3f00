//! An engine as one value: its description ([`Engine`]), its configuration read once from the
//! environment ([`EngineSettings`]), and its rotator behind one type ([`AnyRotator`]), so the
//! Lambda start-up, `rotate` and the preflight take a list of engines ([`Engines`]) instead of
//! naming any.
//!
//! An engine crate exports one `const ENGINE: Engine`; the binaries are handed a list of them
//! (the built-in engines are `rotation_engines::builtin()`).

use crate::calls::Timed;
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::deadline::Deadline;
use crate::options::{AllowListError, MasterAllowList, Options};
use crate::policy::{PasswordPolicy, PolicyError};
use crate::rotation::Rotation;
use crate::rotator::{
    BoxError, DeadSessions, EngineError, EngineProfile, ErrorKind, Rotator, UsernameLimit,
};
use crate::secret::DatabaseSecret;
use crate::stage::Strategy;
use crate::store::SecretStore;

/// `ROTATION_STRATEGY`: `single-user` or `alternating-users`, for every engine.
pub const STRATEGY_ENV: &str = "ROTATION_STRATEGY";

/// `ROTATION_ENGINE`: set by the deployment templates to the engine they deploy, so that a
/// function whose code serves another engine refuses to start.
pub const ENGINE_ENV: &str = "ROTATION_ENGINE";

/// The variables every engine's function reads, beside its own ([`Engine::env`]): the engine
/// and strategy, the store's endpoint, the master allow-list and AWS's password variables.
pub const COMMON_ENV: [&str; 11] = [
    ENGINE_ENV,
    STRATEGY_ENV,
    crate::store::ENDPOINT_ENV,
    crate::options::MASTER_ALLOW_LIST_ENV,
    crate::policy::env::EXCLUDE_CHARACTERS,
    crate::policy::env::PASSWORD_LENGTH,
    crate::policy::env::EXCLUDE_NUMBERS,
    crate::policy::env::EXCLUDE_PUNCTUATION,
    crate::policy::env::EXCLUDE_UPPERCASE,
    crate::policy::env::EXCLUDE_LOWERCASE,
    crate::policy::env::REQUIRE_EACH_INCLUDED_TYPE,
];

/// A future boxed for a type-erased call.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an engine reads its configuration: a lookup of variables (the process environment in
/// the binaries) and, on AWS, the SDK configuration for the engine's own AWS APIs.
#[derive(Clone, Copy)]
pub struct EngineEnv<'a> {
    /// Reads one variable.
    pub lookup: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// AWS's configuration; `None` away from AWS (the file store), where engines use no AWS API.
    pub aws: Option<&'a aws_config::SdkConfig>,
}

impl fmt::Debug for EngineEnv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineEnv")
            .field("aws", &self.aws.is_some())
            .finish_non_exhaustive()
    }
}

/// The process environment.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl<'a> EngineEnv<'a> {
    /// The process environment, with `aws` when given.
    pub fn process(aws: Option<&'a aws_config::SdkConfig>) -> Self {
        EngineEnv {
            lookup: &process_env,
            aws,
        }
    }

    /// One variable.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }
}

/// An engine's own settings, read once: it makes the engine's rotator for a strategy.
pub trait EngineConfig: Send + Sync + fmt::Debug {
    /// The rotator for `strategy`.
    fn rotator(&self, strategy: Strategy) -> AnyRotator;

    /// Logs, once at start, what an operator should see of the settings (the trust sources
    /// TLS connections use). The default logs nothing.
    fn log(&self) {}
}

/// An engine: what core, the binaries and the deployment learn of it.
#[derive(Clone, Copy)]
pub struct Engine {
    /// Names, password rules, limits, advice.
    pub profile: &'static EngineProfile,
    /// Its Lambda function: the binary, the zip's directory and the deployment templates'
    /// `Engine` (`rds-postgres`).
    pub function_name: &'static str,
    /// The variables the engine reads beside the ones every engine reads (the strategy, the
    /// password policy, the master allow-list, the store's endpoint).
    pub env: &'static [&'static str],
    /// Reads the engine's settings. Its error is shown to operators as it is: it must name
    /// the variable and what is wrong, never a secret value the environment holds.
    pub configure: fn(&EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError>,
}

impl Engine {
    /// The short name (`postgres`), for the command line, logs and metrics.
    pub fn name(&self) -> &'static str {
        self.profile.name
    }

    /// Every variable a deployment of the engine's function may set, besides those the Lambda
    /// runtime sets: [`COMMON_ENV`] and the engine's own.
    pub fn settings_env(&self) -> Vec<&'static str> {
        COMMON_ENV.iter().chain(self.env).copied().collect()
    }

    /// Whether `name` names this engine: its short name or its function's.
    pub fn is_named(&self, name: &str) -> bool {
        name == self.name() || name == self.function_name
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.profile.name)
            .field("function_name", &self.function_name)
            .field("engines", &self.profile.engines)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Engine {
    fn eq(&self, other: &Self) -> bool {
        self.profile.name == other.profile.name && self.function_name == other.function_name
    }
}

impl Eq for Engine {}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A list of engines that cannot be used together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineListError {
    /// The list is empty.
    #[error("no engine was given")]
    Empty,
    /// Two engines claim one name: a short name, a function name or an `engine` value.
    #[error("engines {first} and {second} both claim {claimed:?}")]
    Duplicate {
        /// The first engine's name.
        first: &'static str,
        /// The second engine's name.
        second: &'static str,
        /// What both claim.
        claimed: &'static str,
    },
}

/// The engines a binary serves, each name and `engine` value claimed by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engines(Vec<Engine>);

impl Engines {
    /// The list, refused when two engines claim one short name, function name or secret
    /// `engine` value.
    pub fn new(engines: impl IntoIterator<Item = Engine>) -> Result<Self, EngineListError> {
        let engines: Vec<Engine> = engines.into_iter().collect();
        if engines.is_empty() {
            return Err(EngineListError::Empty);
        }
        let claims = |e: &Engine| -> Vec<&'static str> {
            let mut c = vec![e.profile.name, e.function_name];
            c.extend(e.profile.engines.iter().copied());
            c.dedup();
            c
        };
        for (i, a) in engines.iter().enumerate() {
            for b in &engines[i + 1..] {
                let theirs = claims(b);
                if let Some(claimed) = claims(a).into_iter().find(|n| theirs.contains(n)) {
                    return Err(EngineListError::Duplicate {
                        first: a.name(),
                        second: b.name(),
                        claimed,
                    });
                }
            }
        }
        Ok(Engines(engines))
    }

    /// The engines, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Engine> {
        self.0.iter()
    }

    /// The engine named `name` (its short name or its function's).
    pub fn by_name(&self, name: &str) -> Option<Engine> {
        self.0.iter().find(|e| e.is_named(name)).copied()
    }

    /// The engine of a secret whose `engine` key is `value`.
    pub fn for_secret_engine(&self, value: &str) -> Option<Engine> {
        self.0
            .iter()
            .find(|e| e.profile.engines.contains(&value))
            .copied()
    }

    /// Every short name, for messages.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(Engine::name).collect()
    }

    /// Every accepted `engine` value, for messages.
    pub fn secret_engines(&self) -> Vec<&'static str> {
        self.0
            .iter()
            .flat_map(|e| e.profile.engines.iter().copied())
            .collect()
    }
}

/// Settings that cannot be used; found at start, before any event or rotation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `ROTATION_STRATEGY` is missing or unknown.
    #[error("{STRATEGY_ENV} must be `single-user` or `alternating-users`, got {0:?}")]
    Strategy(Option<String>),
    /// The password policy variables are unusable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The master secrets' allow-list is malformed.
    #[error(transparent)]
    AllowList(#[from] AllowListError),
    /// The engine's own settings are unusable. The engine's error is part of the message
    /// (not a chained source), so a cause chain prints it once.
    #[error("{engine}: {error}")]
    Engine {
        /// The engine's name.
        engine: &'static str,
        /// What it found.
        error: BoxError,
    },
}

/// Reads `ROTATION_STRATEGY` through `env`.
pub fn strategy_from(env: &EngineEnv<'_>) -> Result<Strategy, ConfigError> {
    let value = env.var(STRATEGY_ENV);
    value
        .as_deref()
        .and_then(Strategy::parse)
        .ok_or(ConfigError::Strategy(value))
}

/// An engine with its settings read: its configuration, password policy and master allow-list.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The engine.
    pub engine: Engine,
    /// Its own settings.
    pub config: Arc<dyn EngineConfig>,
    /// Password generation (AWS's variables over the engine's defaults).
    pub policy: PasswordPolicy,
    /// `ALLOWED_MASTER_SECRETS`; `None`: any master.
    pub master_allow_list: Option<MasterAllowList>,
}

impl EngineSettings {
    /// Reads and validates `engine`'s settings through `env`.
    pub fn read(engine: Engine, env: &EngineEnv<'_>) -> Result<Self, ConfigError> {
        Ok(EngineSettings {
            engine,
            policy: PasswordPolicy::from_lookup(&engine.profile.password, |k| env.var(k))?,
            master_allow_list: MasterAllowList::from_lookup(|k| env.var(k))?,
            config: (engine.configure)(env).map_err(|error| ConfigError::Engine {
                engine: engine.name(),
                error,
            })?,
        })
    }

    /// `engine` with `config` and the default policy, no allow-list: for tests and tools that
    /// build the engine's settings themselves.
    pub fn with_config(engine: Engine, config: Arc<dyn EngineConfig>) -> Self {
        EngineSettings {
            engine,
            config,
            policy: PasswordPolicy::defaults(&engine.profile.password),
            master_allow_list: None,
        }
    }

    /// The rotator for `strategy`.
    pub fn rotator(&self, strategy: Strategy) -> AnyRotator {
        self.config.rotator(strategy)
    }

    /// The rotation options these settings ask for (the master allow-list).
    pub fn options(&self) -> Options {
        Options {
            master_allow_list: self.master_allow_list.clone(),
            ..Options::default()
        }
    }

    /// A [`Rotation`] over `store` for `strategy`.
    pub fn rotation<S: SecretStore>(
        &self,
        store: S,
        strategy: Strategy,
    ) -> Rotation<S, AnyRotator> {
        Rotation::new(store, self.rotator(strategy), self.policy.clone())
            .with_options(self.options())
    }

    /// Warns when the strategy acts through a master and no allow-list limits which (W5).
    pub fn warn_without_allow_list(&self, strategy: Strategy) {
        if self.engine.profile.needs_master(strategy) && self.master_allow_list.is_none() {
            tracing::warn!(
                engine = self.engine.name(),
                "{} is not set: any masterarn a secret names is used if the role can read it; list the master secrets this function may use (W5)",
                crate::MASTER_ALLOW_LIST_ENV
            );
        }
    }
}

/// A session of an [`AnyRotator`]: the engine's own session, boxed.
pub struct DynSession(Box<dyn Any + Send>);

impl fmt::Debug for DynSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DynSession")
    }
}

impl DynSession {
    /// The engine's own session, or an error when it is another engine's.
    fn get<S: 'static>(&mut self) -> Result<&mut S, EngineError> {
        self.0.downcast_mut().ok_or_else(|| {
            EngineError::new(
                ErrorKind::Other,
                "a session of one engine was handed to another engine's rotator",
            )
        })
    }
}

/// [`Rotator`] with its session and futures boxed, so that rotators of different engines are
/// one type ([`AnyRotator`]). Implemented for every [`Rotator`]; engines implement [`Rotator`].
#[allow(missing_docs)]
pub trait DynRotator: Send + Sync {
    fn dyn_profile(&self) -> &EngineProfile;
    fn dyn_strategy(&self) -> Strategy;
    fn dyn_username_limit(&self, secret: &DatabaseSecret) -> Option<UsernameLimit>;
    fn dyn_login<'a>(
        &'a self,
        secret: &'a DatabaseSecret,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<DynSession, EngineError>>;
    fn dyn_set_own_password<'a>(
        &'a self,
        session: &'a mut DynSession,
        target: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    fn dyn_set_password_as_master<'a>(
        &'a self,
        session: &'a mut DynSession,
        current: &'a DatabaseSecret,
        target: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    fn dyn_test_session<'a>(
        &'a self,
        session: &'a mut DynSession,
        pending: &'a DatabaseSecret,
        partner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    fn dyn_close(&self, session: DynSession) -> BoxFuture<'_, ()>;
    fn dyn_resolve_master<'a>(
        &'a self,
        master: DatabaseSecret,
        current: &'a DatabaseSecret,
        tags: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<DatabaseSecret, EngineError>>;
    fn dyn_check_rights<'a>(
        &'a self,
        session: &'a mut DynSession,
        current: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<Option<String>, EngineError>>;
    fn dyn_drop_other_passwords<'a>(
        &'a self,
        session: &'a mut DynSession,
        current: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    fn dyn_check_tls<'a>(
        &'a self,
        current: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<Option<String>, EngineError>>;
    fn dyn_is_replica_of<'a>(
        &'a self,
        current: &'a DatabaseSecret,
        master: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<bool, EngineError>>;
    fn dyn_end_dead_sessions<'a>(
        &'a self,
        session: &'a mut DynSession,
        which: DeadSessions,
    ) -> BoxFuture<'a, Result<bool, EngineError>>;
}

impl<R> DynRotator for R
where
    R: Rotator + 'static,
    R::Session: 'static,
{
    fn dyn_profile(&self) -> &EngineProfile {
        Rotator::profile(self)
    }
    fn dyn_strategy(&self) -> Strategy {
        Rotator::strategy(self)
    }
    fn dyn_username_limit(&self, secret: &DatabaseSecret) -> Option<UsernameLimit> {
        Rotator::username_limit(self, secret)
    }
    fn dyn_login<'a>(
        &'a self,
        secret: &'a DatabaseSecret,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<DynSession, EngineError>> {
        Box::pin(async move {
            let s = Rotator::login(self, secret, deadline).await?;
            Ok(DynSession(Box::new(s)))
        })
    }
    fn dyn_set_own_password<'a>(
        &'a self,
        session: &'a mut DynSession,
        target: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Rotator::set_own_password(self, session.get()?, target).await })
    }
    fn dyn_set_password_as_master<'a>(
        &'a self,
        session: &'a mut DynSession,
        current: &'a DatabaseSecret,
        target: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            Rotator::set_password_as_master(self, session.get()?, current, target).await
        })
    }
    fn dyn_test_session<'a>(
        &'a self,
        session: &'a mut DynSession,
        pending: &'a DatabaseSecret,
        partner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Rotator::test_session(self, session.get()?, pending, partner).await })
    }
    fn dyn_close(&self, session: DynSession) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A session of another engine cannot be closed here; dropping it ends it.
            match session.0.downcast::<R::Session>() {
                Ok(s) => Rotator::close(self, *s).await,
                Err(_) => tracing::warn!(
                    engine = Rotator::profile(self).name,
                    "a session of another engine was dropped unclosed"
                ),
            }
        })
    }
    fn dyn_resolve_master<'a>(
        &'a self,
        master: DatabaseSecret,
        current: &'a DatabaseSecret,
        tags: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<DatabaseSecret, EngineError>> {
        Box::pin(Rotator::resolve_master(self, master, current, tags))
    }
    fn dyn_check_rights<'a>(
        &'a self,
        session: &'a mut DynSession,
        current: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<Option<String>, EngineError>> {
        Box::pin(async move { Rotator::check_rights(self, session.get()?, current).await })
    }
    fn dyn_drop_other_passwords<'a>(
        &'a self,
        session: &'a mut DynSession,
        current: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Rotator::drop_other_passwords(self, session.get()?, current).await })
    }
    fn dyn_check_tls<'a>(
        &'a self,
        current: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<Option<String>, EngineError>> {
        Box::pin(Rotator::check_tls(self, current))
    }
    fn dyn_is_replica_of<'a>(
        &'a self,
        current: &'a DatabaseSecret,
        master: &'a DatabaseSecret,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(Rotator::is_replica_of(self, current, master))
    }
    fn dyn_end_dead_sessions<'a>(
        &'a self,
        session: &'a mut DynSession,
        which: DeadSessions,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move { Rotator::end_dead_sessions(self, session.get()?, which).await })
    }
}

/// A rotator of any engine and strategy, chosen at run time: what the binaries hold.
#[derive(Clone)]
pub struct AnyRotator(Arc<dyn DynRotator>);

impl AnyRotator {
    /// Erases `rotator`'s type.
    pub fn new<R>(rotator: R) -> Self
    where
        R: Rotator + 'static,
        R::Session: 'static,
    {
        AnyRotator(Arc::new(rotator))
    }
}

impl fmt::Debug for AnyRotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyRotator")
            .field("engine", &self.0.dyn_profile().name)
            .field("strategy", &self.0.dyn_strategy())
            .finish()
    }
}

impl Rotator for AnyRotator {
    type Session = DynSession;

    fn profile(&self) -> &EngineProfile {
        self.0.dyn_profile()
    }
    fn strategy(&self) -> Strategy {
        self.0.dyn_strategy()
    }
    fn username_limit(&self, secret: &DatabaseSecret) -> Option<UsernameLimit> {
        self.0.dyn_username_limit(secret)
    }
    async fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<DynSession, EngineError> {
        self.0.dyn_login(secret, deadline).timed("login").await
    }
    async fn set_own_password(
        &self,
        session: &mut DynSession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        self.0
            .dyn_set_own_password(session, target)
            .timed("set_own_password")
            .await
    }
    async fn set_password_as_master(
        &self,
        session: &mut DynSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        self.0
            .dyn_set_password_as_master(session, current, target)
            .timed("set_password_as_master")
            .await
    }
    async fn test_session(
        &self,
        session: &mut DynSession,
        pending: &DatabaseSecret,
        partner: Option<&str>,
    ) -> Result<(), EngineError> {
        self.0
            .dyn_test_session(session, pending, partner)
            .timed("test_session")
            .await
    }
    async fn close(&self, session: DynSession) {
        let _ = async {
            self.0.dyn_close(session).await;
            Ok::<(), ()>(())
        }
        .timed("close")
        .await;
    }
    async fn resolve_master(
        &self,
        master: DatabaseSecret,
        current: &DatabaseSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<DatabaseSecret, EngineError> {
        self.0
            .dyn_resolve_master(master, current, tags)
            .timed("resolve_master")
            .await
    }
    async fn check_rights(
        &self,
        session: &mut DynSession,
        current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        self.0
            .dyn_check_rights(session, current)
            .timed("check_rights")
            .await
    }
    async fn drop_other_passwords(
        &self,
        session: &mut DynSession,
        current: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        self.0
            .dyn_drop_other_passwords(session, current)
            .timed("drop_other_passwords")
            .await
    }
    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        self.0.dyn_check_tls(current).timed("check_tls").await
    }
    async fn is_replica_of(
        &self,
        current: &DatabaseSecret,
        master: &DatabaseSecret,
    ) -> Result<bool, EngineError> {
        self.0
            .dyn_is_replica_of(current, master)
            .timed("is_replica_of")
            .await
    }
    async fn end_dead_sessions(
        &self,
        session: &mut DynSession,
        which: DeadSessions,
    ) -> Result<bool, EngineError> {
        self.0
            .dyn_end_dead_sessions(session, which)
            .timed("end_dead_sessions")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PasswordDefaults;
    use crate::rotator::RightsAdvice;

    const TEST_PROFILE: EngineProfile = EngineProfile {
        name: "test",
        engines: &["test"],
        password: PasswordDefaults {
            engine: "test",
            exclude_characters: "",
            length: 32,
            min_length: 4,
            max_length: 64,
            class_switches: true,
            forbidden: "",
            required_classes: false,
            printable_ascii: false,
        },
        max_username_bytes: None,
        default_port: None,
        single_user_master: false,
        advice: RightsAdvice::GENERIC,
    };

    #[derive(Debug)]
    struct NoConfig;

    impl EngineConfig for NoConfig {
        fn rotator(&self, _: Strategy) -> AnyRotator {
            unreachable!("not built in these tests")
        }
    }

    fn configure(_: &EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError> {
        Ok(Arc::new(NoConfig))
    }

    static OTHER: EngineProfile = EngineProfile {
        name: "other",
        engines: &["other", "shared"],
        ..TEST_PROFILE
    };
    static THIRD: EngineProfile = EngineProfile {
        name: "third",
        engines: &["third"],
        ..TEST_PROFILE
    };

    fn engine(profile: &'static EngineProfile, function_name: &'static str) -> Engine {
        Engine {
            profile,
            function_name,
            env: &[],
            configure,
        }
    }

    #[test]
    fn two_engines_claiming_one_name_are_refused() {
        let shared = EngineProfile {
            name: "test2",
            engines: &["shared"],
            ..TEST_PROFILE
        };
        let shared: &'static EngineProfile = Box::leak(Box::new(shared));
        let list = Engines::new([engine(&OTHER, "other-fn"), engine(&THIRD, "third-fn")]).unwrap();
        assert_eq!(list.by_name("third-fn"), Some(engine(&THIRD, "third-fn")));
        assert_eq!(list.by_name("other").map(|e| e.name()), Some("other"));
        assert_eq!(
            list.for_secret_engine("shared").map(|e| e.name()),
            Some("other")
        );
        assert_eq!(list.by_name("nope"), None);
        assert_eq!(
            Engines::new([engine(&OTHER, "a"), engine(shared, "b")]),
            Err(EngineListError::Duplicate {
                first: "other",
                second: "test2",
                claimed: "shared"
            })
        );
        // A function name that is another engine's short name.
        assert!(matches!(
            Engines::new([engine(&OTHER, "third"), engine(&THIRD, "c")]),
            Err(EngineListError::Duplicate {
                claimed: "third",
                ..
            })
        ));
        assert_eq!(Engines::new([]), Err(EngineListError::Empty));
    }
}
