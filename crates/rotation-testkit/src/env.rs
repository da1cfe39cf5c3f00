//! One test environment for every engine: a throwaway server of the engine ([`TestEngine`]),
//! a local secret store, and the engine's settings read as the binaries read them, trusting
//! the server's CA (`CA_BUNDLE_PATH`). The promise suites of `rotation-tests` and each engine
//! crate's own suites start it; an engine's own checks reach its server through
//! [`Env::server_as`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rotation_core::{
    AnyRotator, DatabaseSecret, Deadline, EngineEnv, EngineSettings, LocalSecretStore, Rotation,
    Rotator, SecretStore, Stage, Strategy, VersionSelector,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::{HeldChange, ServerOptions, TcpProxy, TestEngine, TestServer};

/// An engine under test.
pub type Engine = &'static dyn TestEngine;

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
    dir: tempfile::TempDir,
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
        Env::with_server(engine, server)
    }

    /// An environment around `server`, a server of `engine` the caller started (with options
    /// only that engine has).
    pub fn with_server(engine: Engine, server: Box<dyn TestServer>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let mut env = Env {
            engine,
            settings: read_settings(engine, server.ca_pem(), &[]),
            server,
            store,
            engine_master: None,
            dir,
        };
        if engine.profile().single_user_master {
            let master = env.master_secret(Some(json!(env.server.ca_pem().is_some())));
            env.engine_master = Some(put_now(&env.store, "engine-master", &master));
        }
        env
    }

    /// The server as its engine's own type (for the engine's own checks).
    pub fn server_as<T: 'static>(&self) -> &T {
        self.server.as_any().downcast_ref::<T>().unwrap_or_else(|| {
            panic!(
                "{}'s test server is not a {}",
                self.engine,
                std::any::type_name::<T>()
            )
        })
    }

    /// The file the local store keeps its secrets in.
    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("secrets.json")
    }

    /// A rotation over the local store by `rotator`, a rotator of the engine's own type built
    /// by the test, with the engine's password policy.
    pub fn rotation_with<R: Rotator>(&self, rotator: R) -> Rotation<LocalSecretStore, R> {
        Rotation::new(self.store.clone(), rotator, self.settings.policy.clone())
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

    /// User "app" and its secret "app" (single user, without TLS), which reaches the server
    /// through a new proxy, which this returns.
    pub async fn app_through_a_proxy(&self) -> TcpProxy {
        let proxy = self.proxy();
        self.create_user("app", "Initial-pw-1-long-enough");
        let mut v = self.plain_secret("app", "Initial-pw-1-long-enough");
        v["port"] = json!(proxy.port());
        self.put("app", &v).await;
        proxy
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
        stage_value(&self.store, name, stage).await
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

/// The value at `stage` of secret `name` in `store` (any store: the file store, or Secrets
/// Manager on moto).
pub async fn stage_value<S: SecretStore>(store: &S, name: &str, stage: Stage) -> Value {
    let v = store
        .get_value(name, VersionSelector::stage(stage))
        .await
        .unwrap();
    serde_json::from_str(v.value.expose_secret()).unwrap()
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
