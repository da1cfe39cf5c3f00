//! A real database for every engine, for the suites that hold every engine to the same promise
//! ("No stranded password"). An engine takes part by implementing
//! [`rotation_testkit::TestEngine`] beside its code (each engine crate's `testing` feature); a
//! scenario is one `async fn scenario(engine: Engine)` and the suites' `all_engines!` makes a
//! test of it per registered engine.
//!
//! Rotations are built the way the CLI and the Lambda functions build them (the engine's
//! settings read from variables, [`rotation_core::EngineSettings::rotation`]), so one scenario
//! drives any engine through `Rotation<_, AnyRotator>`. What a scenario does to the database
//! itself (create a user, hold or forbid a password change, list users, change a password
//! behind the rotation's back) goes through the engine's [`TestServer`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use rotation_core::AnyRotator;
use rotation_core::{
    DatabaseSecret, Deadline, EngineEnv, EngineSettings, LocalSecretStore, Rotation, Rotator,
    SecretStore, Stage, Strategy, VersionSelector,
};
use rotation_testkit::TcpProxy;
pub use rotation_testkit::{HeldChange, ServerOptions, TestEngine, TestServer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// An engine under test.
pub type Engine = &'static dyn TestEngine;

/// Amazon RDS / Aurora PostgreSQL.
pub const POSTGRES: Engine = &rotation_postgres::testing::Postgres;
/// Amazon Redshift, on its stand-in.
pub const REDSHIFT: Engine = &rotation_redshift::testing::Redshift;
/// Amazon DocumentDB, on SecantusDB.
pub const DOCUMENTDB: Engine = &rotation_documentdb::testing::DocumentDb;
/// Amazon RDS / Aurora MySQL and MariaDB, on MariaDB.
pub const MYSQL: Engine = &rotation_mysql::testing::Mysql;
/// The custom-engine example: Redis ACL users (`examples/redis-acl`).
pub const REDIS: Engine = &redis_acl_rotation::testing::Redis;

/// Every engine the suites run against, as [`registered_engines!`](crate::registered_engines)
/// lists them.
pub const ALL: [Engine; 5] = crate::registered_engines!(engine_list {});

/// The registered engines as a list the binaries take (`rotation_cli::main`).
pub fn engines() -> rotation_core::Engines {
    rotation_core::Engines::new(ALL.map(|e| e.engine())).expect("registered engines are distinct")
}

/// The registered engine named `name`.
pub fn by_name(name: &str) -> Option<Engine> {
    ALL.into_iter().find(|e| e.engine().is_named(name))
}

/// The engines the suites run against, the one list: for each, the module its tests go in and
/// its constant in [`crate::engines`]. `registered_engines!(m { args })` calls
/// `m! { @engines [module CONST, ...]; args }`. Adding an engine adds its constant above and
/// its entry here.
#[macro_export]
macro_rules! registered_engines {
    ($m:ident { $($args:tt)* }) => {
        $crate::$m! {
            @engines [postgres POSTGRES, redshift REDSHIFT, documentdb DOCUMENTDB, mysql MYSQL, redis REDIS];
            $($args)*
        }
    };
}

/// The registered engines as an array (for [`ALL`]).
#[doc(hidden)]
#[macro_export]
macro_rules! engine_list {
    (@engines [$($module:ident $engine:ident),*];) => {
        [$($crate::engines::$engine),*]
    };
}

/// One test per rotator (engine and strategy): `all_rotators!(scenario)` makes
/// `postgres::single_user`, `postgres::alternating_users`, ... for every registered engine,
/// each calling `async fn scenario(engine: Engine, strategy: Strategy)` of the including module.
#[macro_export]
macro_rules! all_rotators {
    (@engines [$($module:ident $engine:ident),*]; $scenario:ident) => {$(
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_user() {
                super::$scenario(
                    $crate::engines::$engine,
                    rotation_core::Strategy::SingleUser,
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn alternating_users() {
                super::$scenario(
                    $crate::engines::$engine,
                    rotation_core::Strategy::AlternatingUsers,
                )
                .await
            }
        }
    )*};
    ($scenario:ident) => {
        $crate::registered_engines!(all_rotators { $scenario });
    };
}

/// One test per scenario and engine: `all_engines!(a, b)` makes `postgres::a`, `redshift::a`,
/// ... (and the same for `b`) for every registered engine, each calling
/// `async fn a(engine: Engine)` of the including module. A scenario an engine cannot take part
/// in asserts what its [`Limits`](rotation_testkit::Limits) say instead.
#[macro_export]
macro_rules! all_engines {
    (@engines [$($module:ident $engine:ident),*]; $names:tt) => {
        $( $crate::all_engines!(@one $module $engine $names); )*
    };
    (@one $module:ident $engine:ident [$($name:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::engines::$engine).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::registered_engines!(all_engines { [$($name),*] });
    };
}

/// A rotation over the local store for any engine.
pub type EngineRotation<S = LocalSecretStore> = Rotation<S, AnyRotator>;

/// A throwaway server for one engine, a local secret store, and the engine's settings read as
/// the binaries read them, trusting the server's CA (`CA_BUNDLE_PATH`).
#[derive(Debug)]
pub struct Env {
    /// The engine under test.
    pub engine: Engine,
    /// The server.
    pub server: Box<dyn TestServer>,
    /// The secret store.
    pub store: LocalSecretStore,
    /// The engine's settings.
    pub settings: EngineSettings,
    /// Engines whose single user acts through a master
    /// ([`rotation_core::EngineProfile::single_user_master`]): the ARN of the administrator's
    /// secret, which every secret [`Env::secret`] makes names.
    pub engine_master: Option<String>,
    _dir: tempfile::TempDir,
}

impl Env {
    /// A server for `engine`; TLS-only (with a generated CA) when `tls`.
    pub fn start(engine: Engine, tls: bool) -> Env {
        Env::start_with(engine, ServerOptions { tls, own: false })
    }

    /// A server for `engine` started with `options`.
    pub fn start_with(engine: Engine, options: ServerOptions) -> Env {
        let server = engine.start(options).unwrap_or_else(|e| {
            panic!("start the {engine} test server (scripts/setup installs it): {e}")
        });
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let mut env = Env {
            engine,
            settings: read_settings(engine, server.ca_pem(), &[]),
            server,
            store,
            engine_master: None,
            _dir: dir,
        };
        if engine.profile().single_user_master {
            let master = env.master_secret(Some(json!(env.server.ca_pem().is_some())));
            env.engine_master = Some(put_now(&env.store, "engine-master", &master));
        }
        env
    }

    /// Without TLS.
    pub fn plain(engine: Engine) -> Env {
        Env::start(engine, false)
    }

    /// Without TLS, on a server of the testkit's own even when a variable names an external
    /// one: a test's second server of the engine's kind.
    pub fn plain_own(engine: Engine) -> Env {
        Env::start_with(
            engine,
            ServerOptions {
                tls: false,
                own: true,
            },
        )
    }

    /// TLS only.
    pub fn tls(engine: Engine) -> Env {
        Env::start(engine, true)
    }

    /// The engine's settings read from `vars` as the binaries read the environment, with
    /// `CA_BUNDLE_PATH` naming the server's CA unless `vars` sets it.
    pub fn settings_with(&self, vars: &[(&str, &str)]) -> EngineSettings {
        read_settings(self.engine, self.server.ca_pem(), vars)
    }

    /// The port secrets name.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The CA of a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        self.server.ca_pem()
    }

    /// A new fault-injecting proxy straight to the server, following the engine's protocol.
    pub fn proxy(&self) -> TcpProxy {
        TcpProxy::to_port_with(self.server.server_port(), self.engine.wire())
            .expect("start the proxy")
    }

    /// Creates a user that logs in with `password` and may change its own password, as an
    /// operator would on this engine.
    pub fn create_user(&self, name: &str, password: &str) {
        self.server.create_user(name, password)
    }

    /// Changes `user`'s password behind the rotation's back, as an operator would.
    pub fn set_password(&self, user: &str, password: &str) {
        self.server.set_password(user, password)
    }

    /// Makes `user` unable to change its own password while it still logs in.
    pub fn forbid_own_password_change(&self, user: &str) {
        self.server.forbid_own_password_change(user)
    }

    /// The users whose name starts with `prefix`, sorted, comma-separated.
    pub fn users_named(&self, prefix: &str) -> String {
        self.server.users_named(prefix)
    }

    /// Every user with what would show a change. Equal fingerprints: no user, password or
    /// privilege changed.
    pub fn fingerprint(&self) -> String {
        self.server.fingerprint()
    }

    /// The users with administrative rights.
    pub fn privileged(&self) -> String {
        self.server.privileged()
    }

    /// `password` as a secret's value, once it meets the engine's password rules: the engine
    /// refuses to set any other, so a scenario with one would pass without testing anything.
    pub fn password(&self, password: &str) -> Value {
        if let Err(e) = self.engine.profile().password.check(password) {
            panic!(
                "test password {password:?} breaks {}'s rules: {e}",
                self.engine
            );
        }
        json!(password)
    }

    /// A secret value for `username` on this server, laid out as this engine's secrets are.
    /// `ssl`: the `ssl` key, if any.
    pub fn secret(&self, username: &str, password: &str, ssl: Option<Value>) -> Value {
        self.password(password);
        let mut v = self.engine.secret(self.port(), username, password);
        if let Some(ssl) = ssl {
            v["ssl"] = ssl;
        }
        if let Some(arn) = &self.engine_master
            && username != self.server.admin().0
        {
            v["masterarn"] = json!(arn);
        }
        v
    }

    /// [`Env::secret`] with `"ssl": false`.
    pub fn plain_secret(&self, username: &str, password: &str) -> Value {
        self.secret(username, password, Some(json!(false)))
    }

    /// The administrator's secret (the master of alternating users).
    pub fn master_secret(&self, ssl: Option<Value>) -> Value {
        let (user, password) = self.server.admin();
        self.secret(user, password, ssl)
    }

    /// Stores `value` as the first (AWSCURRENT) version of a new secret; returns its ARN.
    /// Where the value names the engine's master ([`Env::engine_master`]) but another server
    /// than it (a test moved the port or the host), a master secret for that server is stored
    /// beside it and named instead.
    pub async fn put(&self, name: &str, value: &Value) -> String {
        let mut value = value.clone();
        if let Some(arn) = &self.engine_master
            && value["masterarn"].as_str() == Some(arn.as_str())
        {
            let master = self.master_secret(Some(json!(self.server.ca_pem().is_some())));
            let mut own = value.clone();
            own["username"] = master["username"].clone();
            own["password"] = master["password"].clone();
            if let Some(o) = own.as_object_mut() {
                o.remove("masterarn");
            }
            // Another server as the rotation's own identity check sees it (a value that does
            // not parse is left as it is, for the rotation to refuse).
            let secret = |v: &Value| DatabaseSecret::parse(&SecretString::from(v.to_string()));
            let moved = match (secret(&own), secret(&master)) {
                (Ok(own), Ok(master)) => own
                    .server_difference(&master, self.engine.profile().default_port)
                    .is_some(),
                _ => false,
            };
            if moved {
                let master_name = format!("{name}-engine-master");
                let arn = self
                    .store
                    .create_secret(&master_name, &SecretString::from(own.to_string()))
                    .await
                    .unwrap();
                value["masterarn"] = json!(arn);
            }
        }
        self.store
            .create_secret(name, &SecretString::from(value.to_string()))
            .await
            .unwrap()
    }

    /// A rotation of this engine with `strategy` over `store`, wired as the CLI wires it.
    pub fn rotation_on<S: SecretStore>(&self, store: S, strategy: Strategy) -> EngineRotation<S> {
        self.settings.rotation(store, strategy)
    }

    /// Single user over the local store.
    pub fn single(&self) -> EngineRotation {
        self.rotation_on(self.store.clone(), Strategy::SingleUser)
    }

    /// Alternating users over the local store.
    pub fn alternating(&self) -> EngineRotation {
        self.rotation_on(self.store.clone(), Strategy::AlternatingUsers)
    }

    /// The value at `stage` of secret `name`.
    pub async fn value(&self, name: &str, stage: Stage) -> Value {
        let v = self
            .store
            .get_value(name, VersionSelector::stage(stage))
            .await
            .unwrap();
        serde_json::from_str(v.value.expose_secret()).unwrap()
    }

    /// Whether `value`'s credentials log in, through the engine's own login.
    pub async fn logs_in(&self, value: &Value) -> bool {
        let r = self.settings.rotator(Strategy::SingleUser);
        match r
            .login(&parse(value), Deadline::after(Duration::from_secs(10)))
            .await
        {
            Ok(s) => {
                r.close(s).await;
                true
            }
            Err(_) => false,
        }
    }

    /// The start of the statement (or the command) by which the engine changes a password.
    pub fn password_statement(&self) -> &'static str {
        self.engine.password_statement()
    }

    /// The statement (or the command) by which testSecret checks the new session.
    pub fn test_statement(&self) -> &'static str {
        self.engine.test_statement()
    }

    /// Holds the next password change of `user` until [`HeldChange::release`].
    pub async fn hold_password_change(&self, user: &str) -> Box<dyn HeldChange> {
        self.server.hold_password_change(user).await
    }

    /// Waits (at most 10 s) until a password change is held by `hold`.
    pub async fn wait_until_held(&self, hold: &dyn HeldChange) {
        let started = Instant::now();
        while !hold.is_held().await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no password change was held"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `engine`'s settings read from `vars` as the binaries read the environment, with
/// `CA_BUNDLE_PATH` naming `ca` unless `vars` sets it.
pub fn read_settings(
    engine: Engine,
    ca: Option<&std::path::Path>,
    vars: &[(&str, &str)],
) -> EngineSettings {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    if let Some(ca) = ca {
        map.insert(
            rotation_trust::CA_BUNDLE_ENV.to_string(),
            ca.display().to_string(),
        );
    }
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    let lookup = move |k: &str| map.get(k).cloned();
    EngineSettings::read(
        engine.engine(),
        &EngineEnv {
            lookup: &lookup,
            aws: None,
        },
    )
    .unwrap_or_else(|e| panic!("{engine}'s settings: {e}"))
}

/// Stores `value` as the first version of secret `name` from a plain function (on a runtime of
/// its own, in a thread of its own: the caller may be inside a test's runtime).
fn put_now(store: &LocalSecretStore, name: &str, value: &Value) -> String {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(store.create_secret(name, &SecretString::from(value.to_string())))
        })
        .join()
        .expect("the store call panicked")
    })
    .unwrap_or_else(|e| panic!("store {name}: {e}"))
}

/// A secret value as the engine reads it.
pub fn parse(value: &Value) -> DatabaseSecret {
    DatabaseSecret::parse(&SecretString::from(value.to_string())).unwrap()
}
