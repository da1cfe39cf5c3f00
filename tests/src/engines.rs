//! A real database for each PostgreSQL-protocol engine, for the suites that hold every engine to
//! the same promise ("No stranded password"): PostgreSQL itself (SCRAM), and the Redshift
//! stand-in (a PostgreSQL cluster with md5 authentication and a `dev` database, see the README's
//! Redshift section). A scenario is one `async fn scenario(engine: Engine)`; [`both_engines!`]
//! makes a test of it per engine.
//!
//! Rotations are built the way the CLI and the Lambda functions build them
//! ([`rotation_engines::rotation`]), so one scenario drives either engine through
//! `Rotation<_, AnyRotator>`.

use rotation_core::{
    DatabaseSecret, LocalSecretStore, PasswordPolicy, Rotation, SecretStore, Stage, Strategy,
    VersionSelector,
};
pub use rotation_engines::{AnyRotator, Engine};
use rotation_postgres::{Dialect, PgConfig};
use rotation_testkit::{PgAuth, PgCluster, PgOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// One test per scenario and engine: `both_engines!(scenario, ...)` makes `postgres::scenario`
/// and `redshift::scenario`, each calling `async fn scenario(engine: Engine)` of the including
/// module.
#[macro_export]
macro_rules! both_engines {
    (@engine $module:ident, $engine:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::engines::Engine::$engine).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::both_engines!(@engine postgres, Postgres; $($name),*);
        $crate::both_engines!(@engine redshift, Redshift; $($name),*);
    };
}

/// A rotation over the local store for either engine.
pub type EngineRotation<S = LocalSecretStore> = Rotation<S, AnyRotator>;

/// The connection dialect of `engine` (its default port and database, its session settings).
pub fn dialect(engine: Engine) -> Dialect {
    match engine {
        Engine::Postgres => Dialect::POSTGRES,
        Engine::Redshift => rotation_redshift::DIALECT,
        Engine::DocumentDb => not_pg(),
    }
}

/// These suites hold the PostgreSQL-protocol engines; DocumentDB's are its own crate's.
fn not_pg() -> ! {
    panic!("DocumentDB is not a PostgreSQL-protocol engine: its suites live in rotation-documentdb")
}

/// A throwaway server for one engine, a local secret store, and the engine's connection
/// settings trusting the server's CA.
#[derive(Debug)]
pub struct Env {
    /// The engine under test.
    pub engine: Engine,
    /// The server: PostgreSQL, or the Redshift stand-in.
    pub pg: PgCluster,
    /// The secret store.
    pub store: LocalSecretStore,
    /// Connection settings, with the engine's dialect.
    pub config: PgConfig,
    _dir: tempfile::TempDir,
}

impl Env {
    /// A server for `engine`; TLS-only (with a generated CA) when `tls`.
    pub fn start(engine: Engine, tls: bool) -> Env {
        let options = if tls {
            PgOptions::tls()
        } else {
            PgOptions::default()
        };
        let options = match engine {
            Engine::Postgres => options,
            Engine::Redshift => PgOptions {
                auth: PgAuth::Md5,
                ..options
            },
            Engine::DocumentDb => not_pg(),
        };
        let pg = PgCluster::start(options).expect("start PostgreSQL (scripts/setup installs it)");
        let dbname = dialect(engine).default_dbname;
        if engine == Engine::Redshift {
            pg.psql(&format!("CREATE DATABASE {dbname}"))
                .expect("create the stand-in's database");
        }
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let config = match pg.ca_pem() {
            Some(ca) => PgConfig::with_ca_bundle(ca).expect("the test CA loads"),
            None => PgConfig::default(),
        };
        Env {
            engine,
            pg,
            store,
            config: config.with_dialect(dialect(engine)),
            _dir: dir,
        }
    }

    /// Without TLS.
    pub fn plain(engine: Engine) -> Env {
        Env::start(engine, false)
    }

    /// TLS only.
    pub fn tls(engine: Engine) -> Env {
        Env::start(engine, true)
    }

    /// Creates a user that logs in with `password`, as an operator would on this engine, with
    /// psql's own quoting.
    pub fn create_user(&self, name: &str, password: &str) {
        let script = match self.engine {
            Engine::Postgres => {
                "CREATE ROLE :\"u\" LOGIN PASSWORD :'pw'; GRANT CREATE ON SCHEMA public TO :\"u\";"
            }
            Engine::Redshift => "CREATE USER :\"u\" PASSWORD :'pw';",
            Engine::DocumentDb => not_pg(),
        };
        self.pg
            .psql_vars(script, &[("u", name), ("pw", password)])
            .expect("create user");
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

    /// A secret value for `username` on this server, laid out as this engine's secrets are
    /// (PostgreSQL: `dbname` and a string `port`; Redshift: a number `port` and no `dbname`).
    /// `ssl`: the `ssl` key, if any.
    pub fn secret(&self, username: &str, password: &str, ssl: Option<Value>) -> Value {
        let password = self.password(password);
        let mut v = match self.engine {
            Engine::Postgres => json!({
                "engine": "postgres",
                "host": "localhost",
                "username": username,
                "password": password,
                "dbname": "postgres",
                "port": self.pg.port().to_string(),
            }),
            Engine::Redshift => json!({
                "engine": "redshift",
                "host": "localhost",
                "port": self.pg.port(),
                "username": username,
                "password": password,
            }),
            Engine::DocumentDb => not_pg(),
        };
        if let Some(ssl) = ssl {
            v["ssl"] = ssl;
        }
        v
    }

    /// [`Env::secret`] with `"ssl": false`.
    pub fn plain_secret(&self, username: &str, password: &str) -> Value {
        self.secret(username, password, Some(json!(false)))
    }

    /// The superuser's secret (the master / admin secret of alternating users).
    pub fn master_secret(&self, ssl: Option<Value>) -> Value {
        self.secret(self.pg.superuser(), self.pg.superuser_password(), ssl)
    }

    /// Stores `value` as the first (AWSCURRENT) version of a new secret; returns its ARN.
    pub async fn put(&self, name: &str, value: &Value) -> String {
        self.store
            .create_secret(name, &SecretString::from(value.to_string()))
            .await
            .unwrap()
    }

    /// A rotation of this engine with `strategy` over `store`, wired as the CLI wires it.
    pub fn rotation_on<S: SecretStore>(&self, store: S, strategy: Strategy) -> EngineRotation<S> {
        let settings = rotation_engines::Settings {
            engine: self.engine,
            policy: PasswordPolicy::defaults(&self.engine.profile().password),
            postgres: self.config.clone(),
        };
        rotation_engines::rotation(store, &settings, strategy, None)
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

    /// Whether `value`'s credentials log in (through the engine's own connection code).
    pub async fn logs_in(&self, value: &Value) -> bool {
        rotation_postgres::connect::check(&parse(value), &self.config)
            .await
            .is_ok()
    }

    /// The start of the statement by which the engine changes a password (`ALTER ROLE` /
    /// `ALTER USER`), for a proxy to hold it.
    pub fn password_statement(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "ALTER ROLE",
            Engine::Redshift => "ALTER USER",
            Engine::DocumentDb => not_pg(),
        }
    }

    /// A superuser session (the engine's connection code, without TLS) in a transaction that
    /// holds a lock on `user`'s catalog row without changing it: a password change of `user`
    /// queues behind it until the transaction ends.
    pub async fn lock_user(&self, user: &str) -> sqlx::PgConnection {
        let admin = parse(&self.master_secret(Some(json!(false))));
        let mut blocker = rotation_postgres::connect::connect(&admin, &self.config)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
        sqlx::query("SELECT 1 FROM pg_authid WHERE rolname = $1 FOR UPDATE")
            .bind(user)
            .execute(&mut blocker)
            .await
            .unwrap();
        blocker
    }
}

/// A secret value as the engine reads it.
pub fn parse(value: &Value) -> DatabaseSecret {
    DatabaseSecret::parse(&SecretString::from(value.to_string())).unwrap()
}
