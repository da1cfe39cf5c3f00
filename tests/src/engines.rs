//! A real database for every engine, for the suites that hold every engine to the same promise
//! ("No stranded password"): PostgreSQL itself (SCRAM), the Redshift stand-in (a PostgreSQL
//! cluster with md5 authentication and a `dev` database, see the README's Redshift section) and
//! the DocumentDB stand-in (SecantusDB, a MongoDB-wire server with SCRAM). A scenario is one
//! `async fn scenario(engine: Engine)`; [`all_engines!`](crate::all_engines) makes a test of it per engine.
//!
//! Rotations are built the way the CLI and the Lambda functions build them
//! ([`rotation_core::EngineSettings::rotation`]), so one scenario drives any engine through
//! `Rotation<_, AnyRotator>`. What a scenario does to the database itself (create a user, hold
//! or forbid a password change, list users, change a password behind the rotation's back) goes
//! through [`Env`], which does it the way an operator would on that engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use rotation_core::AnyRotator;
use rotation_core::{
    DatabaseSecret, Deadline, LocalSecretStore, Rotation, Rotator, SecretStore, Stage, Strategy,
    VersionSelector,
};
use rotation_documentdb::DocumentDbRotator;
use rotation_postgres::{Dialect, PgConfig};
use rotation_testkit::{PgAuth, PgCluster, PgOptions, Secantus, TcpProxy, Wire};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::Connection;

/// A built-in engine these suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// The Redshift stand-in.
    Redshift,
    /// SecantusDB for DocumentDB.
    DocumentDb,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 3] = [Engine::Postgres, Engine::Redshift, Engine::DocumentDb];

    /// The engine as the binaries know it.
    pub fn engine(self) -> rotation_core::Engine {
        match self {
            Engine::Postgres => rotation_engines::POSTGRES,
            Engine::Redshift => rotation_engines::REDSHIFT,
            Engine::DocumentDb => rotation_engines::DOCUMENTDB,
        }
    }

    /// The engine named `name`.
    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Its profile.
    pub fn profile(self) -> &'static rotation_core::EngineProfile {
        self.engine().profile
    }

    /// Its short name.
    pub fn name(self) -> &'static str {
        self.engine().name()
    }

    /// Its Lambda function's name.
    pub fn function_name(self) -> &'static str {
        self.engine().function_name
    }

    /// Its settings with `config` (the default password policy, no allow-list).
    pub fn settings(self, config: PgConfig) -> rotation_core::EngineSettings {
        rotation_engines::with_pg_config(self.engine(), config).expect("a built-in engine")
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One test per rotator (engine and strategy): `all_rotators!(scenario)` makes
/// `postgres_single_user`, `postgres_alternating_users`, ... `documentdb_alternating_users`, each
/// calling `async fn scenario(engine: Engine, strategy: Strategy)` of the including module.
#[macro_export]
macro_rules! all_rotators {
    ($scenario:ident) => {
        $crate::all_rotators!(@one $scenario;
            postgres_single_user: Postgres, SingleUser;
            postgres_alternating_users: Postgres, AlternatingUsers;
            redshift_single_user: Redshift, SingleUser;
            redshift_alternating_users: Redshift, AlternatingUsers;
            documentdb_single_user: DocumentDb, SingleUser;
            documentdb_alternating_users: DocumentDb, AlternatingUsers;
        );
    };
    (@one $scenario:ident; $($name:ident: $engine:ident, $strategy:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $scenario(
                $crate::engines::Engine::$engine,
                rotation_core::Strategy::$strategy,
            )
            .await
        }
    )*};
}

/// One test per scenario and engine.
///
/// `all_engines!(a, b)` makes `postgres::a`, `redshift::a`, `documentdb::a` (and the same for
/// `b`), each calling `async fn a(engine: Engine)` of the including module. Two optional
/// sections follow, each after a `;` (say why where the list is written):
/// - `postgres_protocol_only: c, d` makes `postgres::c` and `redshift::c` only, for a scenario
///   that only means something on the PostgreSQL wire protocol;
/// - `documentdb_fails: e = "why"` makes `postgres::e`, `redshift::e` and an ignored
///   `documentdb::e` (`cargo nextest run --run-ignored all` runs it), for a promise DocumentDB
///   does not keep yet.
#[macro_export]
macro_rules! all_engines {
    (@engine $module:ident, $engine:ident; [$($name:ident),* $(,)?] [$($ignored:ident = $why:literal),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::engines::Engine::$engine).await
                }
            )*
            $(
                #[tokio::test]
                #[ignore = $why]
                async fn $ignored() {
                    super::$ignored($crate::engines::Engine::$engine).await
                }
            )*
        }
    };
    ($($all:ident),* $(,)?
     ; postgres_protocol_only: $($pg:ident),* $(,)?
     ; documentdb_fails: $($bug:ident = $why:literal),* $(,)?) => {
        $crate::all_engines!(@engine postgres, Postgres; [$($all,)* $($pg,)* $($bug,)*] []);
        $crate::all_engines!(@engine redshift, Redshift; [$($all,)* $($pg,)* $($bug,)*] []);
        $crate::all_engines!(@engine documentdb, DocumentDb; [$($all,)*] [$($bug = $why,)*]);
    };
    ($($all:ident),* $(,)? ; postgres_protocol_only: $($pg:ident),* $(,)?) => {
        $crate::all_engines!($($all),* ; postgres_protocol_only: $($pg),* ; documentdb_fails:);
    };
    ($($all:ident),* $(,)?) => {
        $crate::all_engines!($($all),* ; postgres_protocol_only: ; documentdb_fails:);
    };
}

/// A rotation over the local store for any engine.
pub type EngineRotation<S = LocalSecretStore> = Rotation<S, AnyRotator>;

/// The connection dialect of a PostgreSQL-protocol `engine` (its default port and database,
/// its session settings).
pub fn dialect(engine: Engine) -> Dialect {
    match engine {
        Engine::Postgres => Dialect::POSTGRES,
        Engine::Redshift => rotation_redshift::DIALECT,
        Engine::DocumentDb => panic!("DocumentDB does not speak the PostgreSQL protocol"),
    }
}

/// The port `engine` connects to when a secret has none.
pub fn default_port(engine: Engine) -> u16 {
    match engine {
        Engine::DocumentDb => rotation_documentdb::DEFAULT_PORT,
        _ => dialect(engine).default_port,
    }
}

/// The database `engine` logs in to when a secret has no `dbname` (DocumentDB: the
/// authentication database).
pub fn default_dbname(engine: Engine) -> &'static str {
    match engine {
        Engine::DocumentDb => rotation_documentdb::DEFAULT_DBNAME,
        _ => dialect(engine).default_dbname,
    }
}

/// The database `engine` logs in to with `secret`, as its connection code computes it.
pub fn dbname(engine: Engine, secret: &DatabaseSecret) -> &str {
    match engine {
        Engine::DocumentDb => rotation_documentdb::auth_db(secret),
        _ => rotation_postgres::connect::dbname(secret, &dialect(engine)),
    }
}

/// The wire protocol `engine` speaks, for a [`TcpProxy`] that holds its statements.
pub fn wire(engine: Engine) -> Wire {
    match engine {
        Engine::DocumentDb => Wire::Mongo,
        _ => Wire::Postgres,
    }
}

/// A role that lets a DocumentDB user change its own password (mongod and SecantusDB require
/// `changeOwnPassword`; DocumentDB lets every user change its own), created with the first
/// user.
const SELF_SERVICE: &str = "selfService";

/// The server behind an [`Env`].
#[derive(Debug)]
pub enum Server {
    /// PostgreSQL, or the Redshift stand-in.
    Pg(PgCluster),
    /// The DocumentDB stand-in, reached through a proxy (`front`) that can hold a password
    /// change in the network, as a row lock holds one in PostgreSQL.
    Secantus {
        /// The server.
        db: Secantus,
        /// What secrets name (its port), forwarding everything to `db` until told to hold.
        front: Arc<TcpProxy>,
    },
}

/// A throwaway server for one engine, a local secret store, and the engine's connection
/// settings trusting the server's CA.
#[derive(Debug)]
pub struct Env {
    /// The engine under test.
    pub engine: Engine,
    /// The server.
    pub server: Server,
    /// The secret store.
    pub store: LocalSecretStore,
    /// Connection settings (PostgreSQL-protocol engines: with the engine's dialect; their
    /// engine-independent part serves DocumentDB, as in the CLI and the Lambda functions).
    pub config: PgConfig,
    _dir: tempfile::TempDir,
}

/// A password change held before it takes effect, until [`Hold::release`].
#[derive(Debug)]
pub enum Hold {
    /// PostgreSQL protocol: a superuser transaction holding the role's catalog row; a password
    /// change queues behind it.
    Lock(sqlx::PgConnection),
    /// DocumentDB: the front proxy holds the first message carrying `updateUser`.
    Network(Arc<TcpProxy>),
}

impl Hold {
    /// Lets the held change go on (PostgreSQL: the lock holder rolls back).
    pub async fn release(self) {
        match self {
            Hold::Lock(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Hold::Network(proxy) => proxy.resume(),
        }
    }
}

impl Env {
    /// A server for `engine`; TLS-only (with a generated CA) when `tls`.
    pub fn start(engine: Engine, tls: bool) -> Env {
        Env::start_with(engine, tls, false)
    }

    /// [`Env::start`]; `own`: never an external server.
    fn start_with(engine: Engine, tls: bool, own: bool) -> Env {
        let server = match engine {
            Engine::Postgres | Engine::Redshift => {
                let options = if tls {
                    PgOptions::tls()
                } else {
                    PgOptions::default()
                };
                let options = match engine {
                    Engine::Redshift => PgOptions {
                        auth: PgAuth::Md5,
                        ..options
                    },
                    _ => options,
                };
                let pg = PgCluster::start(PgOptions { own, ..options })
                    .expect("start PostgreSQL (scripts/setup installs it)");
                if engine == Engine::Redshift {
                    pg.psql(&format!("CREATE DATABASE {}", default_dbname(engine)))
                        .expect("create the stand-in's database");
                }
                Server::Pg(pg)
            }
            Engine::DocumentDb => {
                let db = if own {
                    Secantus::start_own(tls)
                } else {
                    Secantus::start(tls)
                }
                .expect("start SecantusDB (scripts/setup installs it)");
                let front =
                    TcpProxy::to_port_with(db.port(), Wire::Mongo).expect("start the proxy");
                Server::Secantus {
                    db,
                    front: Arc::new(front),
                }
            }
        };
        let ca = match &server {
            Server::Pg(pg) => pg.ca_pem(),
            Server::Secantus { db, .. } => db.ca_pem(),
        };
        let config = match ca {
            Some(ca) => PgConfig::with_ca_bundle(ca).expect("the test CA loads"),
            None => PgConfig::default(),
        };
        let config = match engine {
            Engine::DocumentDb => config,
            _ => config.with_dialect(dialect(engine)),
        };
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        Env {
            engine,
            server,
            store,
            config,
            _dir: dir,
        }
    }

    /// Without TLS.
    pub fn plain(engine: Engine) -> Env {
        Env::start(engine, false)
    }

    /// Without TLS, on a server of the testkit's own even when a variable names an external
    /// one: a test's second server of the engine's kind.
    pub fn plain_own(engine: Engine) -> Env {
        Env::start_with(engine, false, true)
    }

    /// TLS only.
    pub fn tls(engine: Engine) -> Env {
        Env::start(engine, true)
    }

    /// The PostgreSQL cluster (PostgreSQL-protocol engines only).
    pub fn pg(&self) -> &PgCluster {
        match &self.server {
            Server::Pg(pg) => pg,
            Server::Secantus { .. } => panic!("{} has no PostgreSQL cluster", self.engine),
        }
    }

    /// The SecantusDB server (DocumentDB only).
    fn secantus(&self) -> &Secantus {
        match &self.server {
            Server::Secantus { db, .. } => db,
            Server::Pg(_) => panic!("{} has no SecantusDB server", self.engine),
        }
    }

    /// Runs Python with `db` bound to an admin pymongo client (DocumentDB).
    fn python(&self, code: &str) -> String {
        self.secantus()
            .python(code)
            .unwrap_or_else(|e| panic!("SecantusDB setup failed: {e}"))
    }

    /// The port secrets name (DocumentDB: the front proxy's).
    pub fn port(&self) -> u16 {
        match &self.server {
            Server::Pg(pg) => pg.port(),
            Server::Secantus { front, .. } => front.port(),
        }
    }

    /// The CA of a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        match &self.server {
            Server::Pg(pg) => pg.ca_pem(),
            Server::Secantus { db, .. } => db.ca_pem(),
        }
    }

    /// A new fault-injecting proxy straight to the server, following the engine's protocol.
    pub fn proxy(&self) -> TcpProxy {
        let port = match &self.server {
            Server::Pg(pg) => pg.port(),
            Server::Secantus { db, .. } => db.port(),
        };
        TcpProxy::to_port_with(port, wire(self.engine)).expect("start the proxy")
    }

    /// Creates a user that logs in with `password` and may change its own password, as an
    /// operator would on this engine (PostgreSQL: with psql's own quoting; DocumentDB: in the
    /// `admin` database with `readWrite` on `appdb` and a role granting `changeOwnPassword`).
    pub fn create_user(&self, name: &str, password: &str) {
        match self.engine {
            Engine::Postgres | Engine::Redshift => {
                let script = if self.engine == Engine::Postgres {
                    "CREATE ROLE :\"u\" LOGIN PASSWORD :'pw'; GRANT CREATE ON SCHEMA public TO :\"u\";"
                } else {
                    "CREATE USER :\"u\" PASSWORD :'pw';"
                };
                self.pg()
                    .psql_vars(script, &[("u", name), ("pw", password)])
                    .expect("create user");
            }
            Engine::DocumentDb => {
                self.python(&format!(
                    "from pymongo.errors import OperationFailure\n\
                     try:\n    db.admin.command('createRole', {role}, privileges=[{{'resource': {{'cluster': True}}, 'actions': ['changeOwnPassword']}}, {{'resource': {{'db': '', 'collection': ''}}, 'actions': ['changeOwnPassword']}}], roles=[])\n\
                     except OperationFailure as e:\n    assert e.code == 51002, e\n\
                     db.admin.command('createUser', {name}, pwd={pw}, roles=[{{'role': 'readWrite', 'db': 'appdb'}}, {{'role': {role}, 'db': 'admin'}}])",
                    role = py(SELF_SERVICE),
                    name = py(name),
                    pw = py(password),
                ));
            }
        }
    }

    /// Changes `user`'s password behind the rotation's back, as an operator would.
    pub fn set_password(&self, user: &str, password: &str) {
        match self.engine {
            Engine::Postgres | Engine::Redshift => {
                self.pg()
                    .psql_vars(
                        "ALTER USER :\"u\" PASSWORD :'pw';",
                        &[("u", user), ("pw", password)],
                    )
                    .expect("set the password");
            }
            Engine::DocumentDb => {
                self.python(&format!(
                    "db.admin.command('updateUser', {}, pwd={})",
                    py(user),
                    py(password)
                ));
            }
        }
    }

    /// Makes `user` unable to change its own password while it still logs in (PostgreSQL:
    /// `default_transaction_read_only` on the role, as RDS's `rds.restrict_password_commands`
    /// or a password-reuse policy would refuse it; DocumentDB: without `changeOwnPassword`).
    pub fn forbid_own_password_change(&self, user: &str) {
        match self.engine {
            Engine::Postgres | Engine::Redshift => {
                self.pg()
                    .psql_vars(
                        "ALTER USER :\"u\" SET default_transaction_read_only = on;",
                        &[("u", user)],
                    )
                    .expect("make the role read-only");
            }
            Engine::DocumentDb => {
                self.python(&format!(
                    "db.admin.command('revokeRolesFromUser', {}, roles=[{{'role': {}, 'db': 'admin'}}])",
                    py(user),
                    py(SELF_SERVICE)
                ));
            }
        }
    }

    /// The users (PostgreSQL: roles) whose name starts with `prefix`, sorted, comma-separated
    /// (DocumentDB: in every database).
    pub fn users_named(&self, prefix: &str) -> String {
        match self.engine {
            Engine::Postgres | Engine::Redshift => self
                .pg()
                .psql_vars(
                    "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE starts_with(rolname, :'p');",
                    &[("p", prefix)],
                )
                .expect("list roles")
                .trim()
                .to_string(),
            Engine::DocumentDb => self
                .python(&format!(
                    "print(','.join(sorted(u['user'] for u in db.admin['system.users'].find() if u['user'].startswith({}))))",
                    py(prefix)
                ))
                .trim()
                .to_string(),
        }
    }

    /// Every user with what would show a change: PostgreSQL protocol, each role's password hash
    /// and attributes (`pg_authid`) and memberships; DocumentDB, each user's credentials and
    /// roles (`system.users`). Equal fingerprints: no user, password or privilege changed.
    pub fn fingerprint(&self) -> String {
        match self.engine {
            Engine::Postgres | Engine::Redshift => self
                .pg()
                .psql(
                    "SELECT string_agg(a.rolname || ':' || coalesce(a.rolpassword, '') || ':' || a.rolsuper || a.rolcreaterole || a.rolcreatedb || a.rolcanlogin || a.rolinherit || ':' || coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid), ''), E'\n' ORDER BY a.rolname) FROM pg_authid a;",
                )
                .expect("read pg_authid"),
            Engine::DocumentDb => self.python(
                "print(sorted((u['user'], u['db'], repr(u.get('credentials')), repr(u.get('roles'))) for u in db.admin['system.users'].find()))",
            ),
        }
    }

    /// The users with administrative rights (PostgreSQL protocol: superuser or CREATEROLE;
    /// DocumentDB: a role other than those the suites grant application users).
    pub fn privileged(&self) -> String {
        match self.engine {
            Engine::Postgres | Engine::Redshift => self
                .pg()
                .psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper OR rolcreaterole;")
                .expect("read pg_roles"),
            Engine::DocumentDb => self.python(&format!(
                "print(sorted(u['user'] for u in db.admin['system.users'].find() if any(r['role'] not in ('readWrite', {}) for r in u.get('roles', []))))",
                py(SELF_SERVICE)
            )),
        }
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
    /// (PostgreSQL: `dbname` and a string `port`; Redshift: a number `port` and no `dbname`;
    /// DocumentDB: `engine` `mongo`, a number `port`, no `dbname`: the `admin` database).
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
                "port": self.port().to_string(),
            }),
            Engine::Redshift => json!({
                "engine": "redshift",
                "host": "localhost",
                "port": self.port(),
                "username": username,
                "password": password,
            }),
            Engine::DocumentDb => json!({
                "engine": "mongo",
                "host": "localhost",
                "port": self.port(),
                "username": username,
                "password": password,
            }),
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

    /// The superuser's secret (the master / admin secret of alternating users; DocumentDB: the
    /// admin with role `root`).
    pub fn master_secret(&self, ssl: Option<Value>) -> Value {
        match &self.server {
            Server::Pg(pg) => self.secret(pg.superuser(), pg.superuser_password(), ssl),
            Server::Secantus { db, .. } => self.secret(db.admin(), db.admin_password(), ssl),
        }
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
        self.engine
            .settings(self.config.clone())
            .rotation(store, strategy)
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
        match self.engine {
            Engine::Postgres | Engine::Redshift => {
                rotation_postgres::connect::check(&parse(value), &self.config)
                    .await
                    .is_ok()
            }
            Engine::DocumentDb => {
                let r = DocumentDbRotator::single_user(self.config.connect_settings());
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
        }
    }

    /// The start of the statement (DocumentDB: the command name) by which the engine changes
    /// a password (`ALTER ROLE` / `ALTER USER` / `updateUser`), for a proxy to hold it.
    pub fn password_statement(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "ALTER ROLE",
            Engine::Redshift => "ALTER USER",
            Engine::DocumentDb => "updateUser",
        }
    }

    /// The statement (DocumentDB: the command) by which testSecret checks the new session, for
    /// a proxy to hold it.
    pub fn test_statement(&self) -> &'static str {
        match self.engine {
            Engine::Postgres | Engine::Redshift => "SELECT 1",
            Engine::DocumentDb => "connectionStatus",
        }
    }

    /// Holds the next password change of `user` until [`Hold::release`] (PostgreSQL protocol:
    /// behind a row lock, see [`Env::lock_user`]; DocumentDB: in the network, at the front
    /// proxy, for secrets without TLS).
    pub async fn hold_password_change(&self, user: &str) -> Hold {
        match &self.server {
            Server::Pg(_) => Hold::Lock(self.lock_user(user).await),
            Server::Secantus { front, .. } => {
                front.stall_on_query(self.password_statement());
                Hold::Network(front.clone())
            }
        }
    }

    /// Waits (at most 10 s) until a password change is held by `hold`.
    pub async fn wait_until_held(&self, hold: &Hold) {
        let started = Instant::now();
        loop {
            let held = match hold {
                Hold::Lock(_) => {
                    self.pg()
                        .psql(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                        )
                        .unwrap()
                        .trim()
                        != "0"
                }
                Hold::Network(proxy) => proxy.stalls_triggered() > 0,
            };
            if held {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no password change was held"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A superuser session (the engine's connection code, without TLS) in a transaction that
    /// holds a lock on `user`'s catalog row without changing it: a password change of `user`
    /// queues behind it until the transaction ends (PostgreSQL protocol only).
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

/// `s` as a Python string literal (JSON's escapes are Python's).
fn py(s: &str) -> String {
    Value::from(s).to_string()
}

/// A secret value as the engine reads it.
pub fn parse(value: &Value) -> DatabaseSecret {
    DatabaseSecret::parse(&SecretString::from(value.to_string())).unwrap()
}
