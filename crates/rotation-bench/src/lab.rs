//! The servers the bench runs against (all the testkit's, on 127.0.0.1): one moto for Secrets
//! Manager, and per engine two PostgreSQL 15 clusters, plaintext and TLS-only (verify-full
//! against the testkit's generated CA), all with `log_connections = on` so that logins can be
//! counted from the server log. Redshift runs on the tests' stand-in: PostgreSQL with md5
//! authentication (`password_encryption = md5`) and a `dev` database, not a real Redshift.
//!
//! What differs per engine is in one [`Bench`] value ([`POSTGRES`], [`REDSHIFT`]); the
//! measurements themselves are the same code for both.

use std::ops::Sub;

use anyhow::{Context, bail, ensure};
use aws_sdk_secretsmanager::types::RotationRulesType;
use rotation_core::{
    AwsSecretStore, DatabaseSecret, PasswordPolicy, SecretStore, Stage, StageMove, Strategy,
    VersionSelector,
};
use rotation_engines::{Engine, Settings};
use rotation_postgres::{Dialect, PgConfig, connect, scram};
use rotation_testkit::{Moto, PgAuth, PgCluster, PgOptions};
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
    /// The `dbname` of its secrets; `None`: none, the engine's default.
    pub dbname: Option<&'static str>,
    /// How the server authenticates TCP clients.
    pub auth: PgAuth,
    /// Databases created on the server before anything else.
    pub databases: &'static [&'static str],
    /// The connection dialect (defaults, session settings).
    pub dialect: Dialect,
    /// `CREATE ... {name} ... PASSWORD '{password}'` as the engine's users are created.
    pub create_user: &'static str,
}

/// RDS / Aurora PostgreSQL on PostgreSQL 15, SCRAM.
pub const POSTGRES: Bench = Bench {
    engine: Engine::Postgres,
    label: "postgres",
    function: "rds-postgres",
    dbname: Some("postgres"),
    auth: PgAuth::Scram,
    databases: &[],
    dialect: Dialect::POSTGRES,
    create_user: "CREATE ROLE {name} LOGIN PASSWORD '{password}'",
};

/// Redshift on the stand-in: PostgreSQL 15 with md5 authentication and a `dev` database.
pub const REDSHIFT: Bench = Bench {
    engine: Engine::Redshift,
    label: "redshift (stand-in)",
    function: "redshift",
    dbname: None,
    auth: PgAuth::Md5,
    databases: &["dev"],
    dialect: rotation_redshift::DIALECT,
    create_user: "CREATE USER {name} PASSWORD '{password}'",
};

/// What the report says about the stand-in.
pub const STAND_IN: &str = "stand-in: PostgreSQL 15 with md5 auth, not a real Redshift";

impl Bench {
    /// Every engine, in the report's order.
    pub const ALL: [Bench; 2] = [POSTGRES, REDSHIFT];

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
        Ok(match self.engine {
            Engine::Postgres => format!(
                "ALTER ROLE {role} PASSWORD '{}'",
                scram::verifier(password).context("SCRAM salt")?.expose()
            ),
            Engine::Redshift => rotation_redshift::sql::alter_password(
                role,
                &rotation_redshift::sql::md5_password(password.expose_secret(), role),
            ),
            Engine::DocumentDb => anyhow::bail!("the SQL floor has no DocumentDB form"),
        })
    }
}

/// One PostgreSQL cluster and how the engine connects to it.
#[derive(Debug)]
pub struct Db {
    /// The engine it serves.
    pub bench: Bench,
    /// Its function, registered in moto.
    pub function_arn: String,
    /// The cluster.
    pub pg: PgCluster,
    /// TLS-only (`"ssl": true` in its secrets) or plaintext (`"ssl": false`).
    pub tls: bool,
    /// The engine's connection settings (the generated CA trusted for TLS).
    pub config: PgConfig,
    /// A master secret (the superuser) in moto, for alternating users.
    pub master_arn: String,
}

/// Connection attempts and successful logins, from the server log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Logins {
    /// TCP connections the server received (`connection received: host=127.0.0.1`).
    pub attempts: u64,
    /// Logins that succeeded (`connection authorized`).
    pub authorized: u64,
}

impl Sub for Logins {
    type Output = Logins;
    fn sub(self, rhs: Logins) -> Logins {
        Logins {
            attempts: self.attempts - rhs.attempts,
            authorized: self.authorized - rhs.authorized,
        }
    }
}

impl Db {
    /// Starts a cluster for `bench`, plaintext or TLS-only, with its databases, and a master
    /// secret (the superuser) in moto.
    async fn start(
        client: &aws_sdk_secretsmanager::Client,
        bench: Bench,
        function_arn: String,
        tls: bool,
    ) -> anyhow::Result<Db> {
        let mut options = PgOptions {
            auth: bench.auth,
            ..if tls {
                PgOptions::tls()
            } else {
                PgOptions::default()
            }
        };
        options.extra_conf.push("log_connections = on".into());
        let pg = PgCluster::start(options).context(
            "starting a throwaway PostgreSQL (scripts/setup installs the server binaries)",
        )?;
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
        let config = match pg.ca_pem() {
            Some(ca) => PgConfig::with_ca_bundle(ca)?,
            None => PgConfig::default(),
        }
        .with_dialect(bench.dialect);
        let mut db = Db {
            bench,
            function_arn,
            pg,
            tls,
            config,
            master_arn: String::new(),
        };
        let master = db.secret_json("postgres", db.pg.superuser_password(), None);
        let name = format!("bench/{}/master-{}", bench.engine, db.label());
        db.master_arn = create_secret(client, &name, &master).await?;
        Ok(db)
    }

    /// `"postgres plain"`, `"redshift (stand-in) TLS"`, ...: for progress and errors.
    pub fn name(&self) -> String {
        format!("{} {}", self.bench.label, self.label())
    }

    /// Creates user `name` (a plain SQL identifier) with the initial password, as the engine's
    /// users are created.
    pub fn create_user(&self, name: &str) -> anyhow::Result<()> {
        self.pg
            .psql(&self.bench.create_user_sql(name, INITIAL_PASSWORD))
            .with_context(|| format!("creating user {name} on {}", self.name()))?;
        Ok(())
    }

    /// `"plain"` or `"TLS"`.
    pub fn label(&self) -> &'static str {
        if self.tls { "TLS" } else { "plain" }
    }

    /// A secret for `user` on this cluster, as the engine's secrets are.
    pub fn secret_json(&self, user: &str, password: &str, masterarn: Option<&str>) -> Value {
        let mut v = json!({"engine": self.bench.engine.profile().engines[0], "host": HOST,
            "port": self.pg.port(), "username": user, "password": password, "ssl": self.tls});
        if let Some(db) = self.bench.dbname {
            v["dbname"] = json!(db);
        }
        if let Some(m) = masterarn {
            v["masterarn"] = json!(m);
        }
        v
    }

    /// Logins so far. The log is written by each backend before it answers the client, so a
    /// finished login is always counted.
    pub fn logins(&self) -> Logins {
        let log = self.pg.server_log();
        Logins {
            attempts: log.matches("connection received: host=127.0.0.1").count() as u64,
            authorized: log.matches("connection authorized:").count() as u64,
        }
    }

    /// The engine's settings for this cluster, as the Lambda binary builds them from its
    /// environment (default password policy).
    pub fn settings(&self) -> Settings {
        Settings {
            engine: self.bench.engine,
            policy: PasswordPolicy::defaults(&self.bench.engine.profile().password),
            postgres: self.config.clone(),
        }
    }
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
        self.client
            .rotate_secret()
            .secret_id(arn)
            .client_request_token(token)
            .rotation_lambda_arn(&db.function_arn)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(7)
                    .build(),
            )
            .send()
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
        connect::check(&now, &db.config)
            .await
            .with_context(|| format!("the new AWSCURRENT of {} does not log in", subject.arn))?;
        match subject.strategy {
            Strategy::SingleUser => {
                if connect::check(before, &db.config).await.is_ok() {
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
