//! The servers the bench runs against (all the testkit's, on 127.0.0.1): one moto for Secrets
//! Manager, and per engine two servers, plaintext and TLS-only (verify-full against the
//! testkit's generated CA):
//!
//! - PostgreSQL and Redshift: PostgreSQL 15 clusters with `log_connections = on`, so that
//!   logins can be counted from the server log. Redshift runs on the tests' stand-in:
//!   PostgreSQL with md5 authentication (`password_encryption = md5`) and a `dev` database,
//!   not a real Redshift.
//! - DocumentDB: SecantusDB (the MongoDB wire protocol, SCRAM-SHA-256) behind a counting
//!   [`TcpProxy`]: the secrets name the proxy's port, so every TCP connection the driver opens
//!   is counted, and the most it holds open at once.
//!
//! What differs per engine is in one [`Bench`] value ([`POSTGRES`], [`REDSHIFT`],
//! [`DOCUMENTDB`]) and in [`Server`]; the measurements themselves are the same code for all.

use std::ops::Sub;

use anyhow::{Context, bail, ensure};
use rotation_core::{
    AwsSecretStore, DatabaseSecret, Deadline, SecretStore, Stage, StageMove, Strategy,
    VersionSelector,
};
use rotation_core::{Engine, EngineSettings};
use rotation_postgres::{Dialect, PgConfig, connect, scram};
use rotation_testkit::{Moto, PgAuth, PgCluster, PgOptions, Secantus, TcpProxy};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The host name in every secret: a name, as RDS endpoints are, so resolution is part of a login.
pub const HOST: &str = "localhost";

/// An engine the bench measures, and everything its set-up does differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bench {
    /// The engine (its rotator, password rules and the `engine` key of its secrets).
    pub engine: Engine,
    /// The report's name for it.
    pub label: &'static str,
    /// Its Lambda binary.
    pub function: &'static str,
    /// The kind of server it runs against.
    pub server: ServerKind,
    /// The `dbname` of its secrets; `None`: none, the engine's default.
    pub dbname: Option<&'static str>,
    /// How the server authenticates TCP clients (PostgreSQL servers).
    pub auth: PgAuth,
    /// Databases created on the server before anything else (PostgreSQL servers).
    pub databases: &'static [&'static str],
    /// The connection dialect (defaults, session settings; PostgreSQL-protocol engines).
    pub dialect: Dialect,
    /// `CREATE ... {name} ... PASSWORD '{password}'` as the engine's users are created
    /// (PostgreSQL servers).
    pub create_user: &'static str,
}

/// The server an engine is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// A throwaway PostgreSQL 15 cluster.
    Postgres,
    /// SecantusDB, a MongoDB-wire server, behind a counting proxy.
    Secantus,
}

/// RDS / Aurora PostgreSQL on PostgreSQL 15, SCRAM.
pub const POSTGRES: Bench = Bench {
    engine: rotation_engines::POSTGRES,
    label: "postgres",
    function: "rds-postgres",
    server: ServerKind::Postgres,
    dbname: Some("postgres"),
    auth: PgAuth::Scram,
    databases: &[],
    dialect: Dialect::POSTGRES,
    create_user: "CREATE ROLE {name} LOGIN PASSWORD '{password}'",
};

/// Redshift on the stand-in: PostgreSQL 15 with md5 authentication and a `dev` database.
pub const REDSHIFT: Bench = Bench {
    engine: rotation_engines::REDSHIFT,
    label: "redshift (stand-in)",
    function: "redshift",
    server: ServerKind::Postgres,
    dbname: None,
    auth: PgAuth::Md5,
    databases: &["dev"],
    dialect: rotation_redshift::DIALECT,
    create_user: "CREATE USER {name} PASSWORD '{password}'",
};

/// DocumentDB on SecantusDB (the MongoDB wire protocol), users in the `admin` database.
pub const DOCUMENTDB: Bench = Bench {
    engine: rotation_engines::DOCUMENTDB,
    label: "documentdb (SecantusDB)",
    function: "documentdb",
    server: ServerKind::Secantus,
    dbname: None,
    auth: PgAuth::Scram,
    databases: &[],
    dialect: Dialect::POSTGRES,
    create_user: "",
};

/// What the report says about the stand-in.
pub const STAND_IN: &str = "stand-in: PostgreSQL 15 with md5 auth, not a real Redshift";

/// What the report says about SecantusDB.
pub const SECANTUS: &str = "SecantusDB, a MongoDB-wire server written in Python, with SCRAM-SHA-256 (DocumentDB 4.0 speaks SCRAM-SHA-1): its latency is not DocumentDB's, so compare the `documentdb` rows with each other (TLS against plain, the rotation against its floor), not with the other engines'";

impl Bench {
    /// Every engine, in the report's order.
    pub const ALL: [Bench; 3] = [POSTGRES, REDSHIFT, DOCUMENTDB];

    /// Whether the server's log counts logins (PostgreSQL's `log_connections`); elsewhere only
    /// TCP connections are counted.
    pub fn counts_logins(&self) -> bool {
        self.server == ServerKind::Postgres
    }

    /// The statement that creates user `name` with `password` (plain SQL identifier and
    /// literal).
    pub fn create_user_sql(&self, name: &str, password: &str) -> String {
        self.create_user
            .replace("{name}", name)
            .replace("{password}", password)
    }

    /// The statement the floor sets `role`'s password with, as the engine sends it: a SCRAM
    /// verifier (PostgreSQL) or Redshift's md5 form.
    pub fn set_password_sql(&self, role: &str, password: &SecretString) -> anyhow::Result<String> {
        Ok(match self.engine.name() {
            "postgres" => format!(
                "ALTER ROLE {role} PASSWORD '{}'",
                scram::verifier(password).context("SCRAM salt")?.expose()
            ),
            "redshift" => rotation_redshift::sql::alter_password(
                role,
                &rotation_redshift::sql::md5_password(password.expose_secret(), role),
            ),
            other => anyhow::bail!("the SQL floor has no {other} form"),
        })
    }
}

/// A running server.
#[derive(Debug)]
pub enum Server {
    /// A PostgreSQL cluster.
    Postgres(PgCluster),
    /// SecantusDB and the proxy in front of it (the secrets' port).
    Secantus {
        /// The server.
        db: Secantus,
        /// The counting proxy the engine connects through.
        proxy: TcpProxy,
    },
}

/// One server and how the engine connects to it.
#[derive(Debug)]
pub struct Db {
    /// The engine it serves.
    pub bench: Bench,
    /// Its function, registered in moto.
    pub function_arn: String,
    /// The server.
    pub server: Server,
    /// TLS-only (`"ssl": true` in its secrets) or plaintext (`"ssl": false`).
    pub tls: bool,
    /// The engine's connection settings (the generated CA trusted for TLS).
    pub config: PgConfig,
    /// A master secret (the superuser) in moto, for alternating users.
    pub master_arn: String,
}

/// Connection attempts and successful logins (PostgreSQL: from the server log; SecantusDB:
/// TCP connections through the proxy, logins not told apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Logins {
    /// TCP connections the server received (`connection received: host=127.0.0.1`, or
    /// accepted by the proxy).
    pub attempts: u64,
    /// Logins that succeeded (`connection authorized`); `None` where the server does not say.
    pub authorized: Option<u64>,
    /// The most connections open at once (SecantusDB's proxy; `None` elsewhere).
    pub peak: Option<u64>,
}

impl Sub for Logins {
    type Output = Logins;
    /// What happened between two readings: counts are differences, the peak is the later
    /// reading's (the window is reset at the earlier one).
    fn sub(self, rhs: Logins) -> Logins {
        Logins {
            attempts: self.attempts - rhs.attempts,
            authorized: self.authorized.zip(rhs.authorized).map(|(a, b)| a - b),
            peak: self.peak,
        }
    }
}

impl Db {
    /// Starts a server for `bench`, plaintext or TLS-only, with its databases, and a master
    /// secret (the superuser, SecantusDB's admin) in moto.
    async fn start(
        client: &aws_sdk_secretsmanager::Client,
        bench: Bench,
        function_arn: String,
        tls: bool,
    ) -> anyhow::Result<Db> {
        let server = match bench.server {
            ServerKind::Postgres => Server::Postgres(start_postgres(bench, tls)?),
            ServerKind::Secantus => {
                let db = Secantus::start(tls)
                    .context("starting SecantusDB (scripts/setup installs it in .venv)")?;
                db.create_self_service_role()
                    .context("creating SecantusDB's selfService role")?;
                let proxy = TcpProxy::to_port(db.port()).context("starting the counting proxy")?;
                Server::Secantus { db, proxy }
            }
        };
        let config = match server.ca_pem() {
            Some(ca) => PgConfig::with_ca_bundle(ca)?,
            None => PgConfig::default(),
        }
        .with_dialect(bench.dialect);
        let mut db = Db {
            bench,
            function_arn,
            server,
            tls,
            config,
            master_arn: String::new(),
        };
        let (admin, password) = db.server.admin();
        let master = db.secret_json(admin, password, None);
        let name = format!("bench/{}/master-{}", bench.engine, db.label());
        db.master_arn = create_secret(client, &name, &master).await?;
        Ok(db)
    }

    /// The port the engine connects to (SecantusDB: the proxy's).
    pub fn port(&self) -> u16 {
        match &self.server {
            Server::Postgres(pg) => pg.port(),
            Server::Secantus { proxy, .. } => proxy.port(),
        }
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        self.server.ca_pem().filter(|_| self.tls)
    }

    /// The connection settings the DocumentDB engine uses (its trust, timeouts).
    pub fn connect_settings(&self) -> rotation_trust::ConnectSettings {
        self.config.connect_settings()
    }

    /// Logs in with `secret`, checks the session answers, and closes it, as the engine does.
    pub async fn check(&self, secret: &DatabaseSecret) -> anyhow::Result<()> {
        match self.bench.server {
            ServerKind::Postgres => connect::check(secret, &self.config).await?,
            ServerKind::Secantus => {
                let deadline = Deadline::after(std::time::Duration::from_secs(30));
                // The driver's connect pings the authentication database: the session answered.
                let client = rotation_documentdb::connect::connect(
                    secret,
                    &self.connect_settings(),
                    deadline,
                )
                .await?;
                rotation_documentdb::connect::close(client, deadline).await;
            }
        }
        Ok(())
    }

    /// `"postgres plain"`, `"redshift (stand-in) TLS"`, ...: for progress and errors.
    pub fn name(&self) -> String {
        format!("{} {}", self.bench.label, self.label())
    }

    /// Creates user `name` (a plain SQL identifier) with the initial password, as the engine's
    /// users are created (SecantusDB: in `admin`, with `readWrite` on `app` and the
    /// `selfService` role that lets a user change its own password).
    pub fn create_user(&self, name: &str) -> anyhow::Result<()> {
        match &self.server {
            Server::Postgres(pg) => pg
                .psql(&self.bench.create_user_sql(name, INITIAL_PASSWORD))
                .map(drop),
            Server::Secantus { db, .. } => db
                .python(&format!(
                    "db.admin.command('createUser', {}, pwd={}, roles=[{{'role': 'readWrite', 'db': 'app'}}, {{'role': 'selfService', 'db': 'admin'}}])",
                    json!(name),
                    json!(INITIAL_PASSWORD)
                ))
                .map(drop),
        }
        .with_context(|| format!("creating user {name} on {}", self.name()))?;
        Ok(())
    }

    /// `"plain"` or `"TLS"`.
    pub fn label(&self) -> &'static str {
        if self.tls { "TLS" } else { "plain" }
    }

    /// A secret for `user` on this cluster, as the engine's secrets are.
    pub fn secret_json(&self, user: &str, password: &str, masterarn: Option<&str>) -> Value {
        let mut v = json!({"engine": self.bench.engine.profile.engines[0], "host": HOST,
            "port": self.port(), "username": user, "password": password, "ssl": self.tls});
        if let Some(db) = self.bench.dbname {
            v["dbname"] = json!(db);
        }
        if let Some(m) = masterarn {
            v["masterarn"] = json!(m);
        }
        v
    }

    /// Logins so far. PostgreSQL writes its log in each backend before it answers the client,
    /// so a finished login is always counted. SecantusDB: the proxy's count of connections,
    /// and the peak since the last reading (each reading starts a new peak window).
    pub fn logins(&self) -> Logins {
        match &self.server {
            Server::Postgres(pg) => {
                let log = pg.server_log();
                Logins {
                    attempts: log.matches("connection received: host=127.0.0.1").count() as u64,
                    authorized: Some(log.matches("connection authorized:").count() as u64),
                    peak: None,
                }
            }
            Server::Secantus { proxy, .. } => {
                let reading = Logins {
                    attempts: proxy.connections_accepted(),
                    authorized: None,
                    peak: Some(proxy.peak_connections() as u64),
                };
                proxy.reset_peak();
                reading
            }
        }
    }

    /// The engine's settings for this cluster, as the Lambda binary builds them from its
    /// environment (default password policy).
    pub fn settings(&self) -> EngineSettings {
        rotation_engines::with_pg_config(self.bench.engine, self.config.clone())
            .expect("a built-in engine")
    }
}

impl Server {
    /// The CA that signed the server's certificate, when it has TLS.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        match self {
            Server::Postgres(pg) => pg.ca_pem(),
            Server::Secantus { db, .. } => db.ca_pem(),
        }
    }

    /// The administrator (the alternating users' master) and its password.
    fn admin(&self) -> (&str, &str) {
        match self {
            Server::Postgres(pg) => (pg.superuser(), pg.superuser_password()),
            Server::Secantus { db, .. } => (db.admin(), db.admin_password()),
        }
    }

    /// The server's version, for the report.
    pub fn version(&self) -> anyhow::Result<String> {
        Ok(match self {
            Server::Postgres(pg) => pg.psql("SHOW server_version")?,
            Server::Secantus { db, .. } => format!(
                "SecantusDB {}",
                db.python("import importlib.metadata as m; print(m.version('secantusdb'))")?
                    .trim()
            ),
        })
    }
}

/// A PostgreSQL cluster for `bench`, with `log_connections`, its passwords in the engine's
/// form and its databases.
fn start_postgres(bench: Bench, tls: bool) -> anyhow::Result<PgCluster> {
    let mut options = PgOptions {
        auth: bench.auth,
        ..if tls {
            PgOptions::tls()
        } else {
            PgOptions::default()
        }
    };
    options.extra_conf.push("log_connections = on".into());
    let pg = PgCluster::start(options)
        .context("starting a throwaway PostgreSQL (scripts/setup installs the server binaries)")?;
    if bench.auth == PgAuth::Md5 {
        // initdb stored the superuser's password as a SCRAM verifier, which md5 auth
        // answers with SCRAM; store it again in md5 form, as every Redshift password is.
        pg.psql(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            pg.superuser(),
            pg.superuser_password()
        ))
        .context("storing the superuser's password in md5 form")?;
    }
    for db in bench.databases {
        pg.psql(&format!("CREATE DATABASE {db}"))
            .with_context(|| format!("creating database {db}"))?;
    }
    Ok(pg)
}

/// A secret under rotation and the role it holds.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The secret's ARN.
    pub arn: String,
    /// The strategy it is rotated with.
    pub strategy: Strategy,
}

/// moto, the clusters, and the fake functions RotateSecret needs.
#[derive(Debug)]
pub struct Lab {
    /// moto.
    pub moto: Moto,
    /// A raw client (the service side: RotateSecret, CreateSecret).
    pub client: aws_sdk_secretsmanager::Client,
    /// The uncounted store (setup and verification).
    pub store: AwsSecretStore,
    /// Per engine, a plaintext and a TLS-only cluster: plaintext ones first, each transport in
    /// the order of the engines.
    dbs: Vec<Db>,
}

const INITIAL_PASSWORD: &str = "Bench-initial-pw-1";

impl Lab {
    /// Starts moto and both clusters of each of `benches`.
    pub async fn start(benches: &[Bench]) -> anyhow::Result<Lab> {
        let moto = Moto::start().context("starting moto (scripts/setup installs it)")?;
        let sdk = moto.sdk_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let store = AwsSecretStore::new(client.clone());
        let mut functions = Vec::new();
        for bench in benches {
            let arn = moto
                .create_function(bench.function)
                .with_context(|| format!("registering {} in moto", bench.function))?;
            functions.push(arn);
        }
        let mut dbs = Vec::new();
        for tls in [false, true] {
            for (bench, arn) in benches.iter().zip(&functions) {
                dbs.push(Db::start(&client, *bench, arn.clone(), tls).await?);
            }
        }
        Ok(Lab {
            moto,
            client,
            store,
            dbs,
        })
    }

    /// Every cluster: plaintext ones first, each transport in the order of the engines.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// A new role with a password and its secret, named `name` (a plain SQL identifier).
    pub async fn subject(
        &self,
        db: &Db,
        name: &str,
        strategy: Strategy,
    ) -> anyhow::Result<Subject> {
        db.create_user(name)?;
        let master = (strategy == Strategy::AlternatingUsers).then_some(db.master_arn.as_str());
        let value = db.secret_json(name, INITIAL_PASSWORD, master);
        let secret_name = format!("bench/{}/{name}", db.bench.engine);
        let arn = create_secret(&self.client, &secret_name, &value).await?;
        Ok(Subject { arn, strategy })
    }

    /// The `AWSCURRENT` value of `arn`.
    pub async fn current(&self, arn: &str) -> anyhow::Result<DatabaseSecret> {
        let v = self
            .store
            .get_value(arn, VersionSelector::stage(Stage::Current))
            .await?;
        Ok(DatabaseSecret::parse(&v.value)?)
    }

    /// What RotateSecret does before invoking the function: a value-less `AWSPENDING` version
    /// `token` (moto's RotateSecret, with the registered function, as the workspace tests do).
    pub async fn start_rotation(&self, db: &Db, arn: &str, token: &str) -> anyhow::Result<()> {
        // moto refuses RotateSecret while AWSPENDING shares a version with AWSCURRENT (AWS does
        // not): detach it first, as the tests do.
        let d = self.store.describe(arn).await?;
        for (v, s) in &d.versions {
            if s.has(Stage::Pending) && s.has(Stage::Current) {
                self.store
                    .update_stage(
                        arn,
                        StageMove {
                            stage: Stage::Pending,
                            move_to: None,
                            remove_from: Some(v),
                        },
                    )
                    .await?;
            }
        }
        Moto::rotate_secret(&self.client, arn, token, &db.function_arn)
            .await
            .context("RotateSecret in moto")?;
        Ok(())
    }

    /// Proves the rotation to `token` happened: `AWSCURRENT` is on it, its credentials log in,
    /// and the old ones behave as the strategy promises (single user: the old password is
    /// refused; alternating users: the user changed).
    pub async fn verify(
        &self,
        db: &Db,
        subject: &Subject,
        token: &str,
        before: &DatabaseSecret,
    ) -> anyhow::Result<()> {
        let d = self.store.describe(&subject.arn).await?;
        ensure!(
            d.version_with(Stage::Current) == Some(token),
            "rotation of {} did not move AWSCURRENT to {token}: {:?}",
            subject.arn,
            d.versions
        );
        let now = self.current(&subject.arn).await?;
        db.check(&now)
            .await
            .with_context(|| format!("the new AWSCURRENT of {} does not log in", subject.arn))?;
        match subject.strategy {
            Strategy::SingleUser => {
                if db.check(before).await.is_ok() {
                    bail!(
                        "single-user rotation of {}: the old password still logs in",
                        subject.arn
                    );
                }
            }
            Strategy::AlternatingUsers => ensure!(
                now.username() != before.username(),
                "alternating-users rotation of {} kept user {:?}",
                subject.arn,
                now.username()
            ),
        }
        Ok(())
    }
}

/// CreateSecret; returns the ARN.
pub async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &Value,
) -> anyhow::Result<String> {
    let value = SecretString::from(value.to_string());
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value.expose_secret())
        .send()
        .await
        .with_context(|| format!("CreateSecret {name} in moto"))?;
    out.arn()
        .map(str::to_string)
        .context("CreateSecret returned no ARN")
}
