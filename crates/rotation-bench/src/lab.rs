//! The servers the bench runs against (all the testkit's, on 127.0.0.1): one moto for Secrets
//! Manager, and two PostgreSQL 15 clusters, plaintext and TLS-only (verify-full against the
//! testkit's generated CA), both with `log_connections = on` so that logins can be counted from
//! the server log.

use std::ops::Sub;

use anyhow::{Context, bail, ensure};
use aws_sdk_secretsmanager::types::RotationRulesType;
use rotation_core::{
    AwsSecretStore, DatabaseSecret, PasswordPolicy, SecretStore, Stage, StageMove, Strategy,
    VersionSelector,
};
use rotation_engines::{Engine, Settings};
use rotation_postgres::{PgConfig, connect};
use rotation_testkit::{Moto, PgCluster, PgOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The host name in every secret: a name, as RDS endpoints are, so resolution is part of a login.
pub const HOST: &str = "localhost";

/// One PostgreSQL cluster and how the engine connects to it.
#[derive(Debug)]
pub struct Db {
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
    /// `"plain"` or `"TLS"`.
    pub fn label(&self) -> &'static str {
        if self.tls { "TLS" } else { "plain" }
    }

    /// A secret for `user` on this cluster.
    pub fn secret_json(&self, user: &str, password: &str, masterarn: Option<&str>) -> Value {
        let mut v = json!({"engine": "postgres", "host": HOST, "port": self.pg.port(),
            "username": user, "password": password, "dbname": "postgres", "ssl": self.tls});
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
            engine: Engine::Postgres,
            policy: PasswordPolicy::defaults(&rotation_postgres::PROFILE.password),
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

/// moto, the clusters, and the fake function RotateSecret needs.
#[derive(Debug)]
pub struct Lab {
    /// moto.
    pub moto: Moto,
    /// A raw client (the service side: RotateSecret, CreateSecret).
    pub client: aws_sdk_secretsmanager::Client,
    /// The uncounted store (setup and verification).
    pub store: AwsSecretStore,
    /// A function registered in moto, so that RotateSecret makes the pending stub.
    pub function_arn: String,
    /// Plaintext cluster.
    pub plain: Db,
    /// TLS-only cluster.
    pub tls: Db,
}

const INITIAL_PASSWORD: &str = "Bench-initial-pw-1";

impl Lab {
    /// Starts moto and both clusters.
    pub async fn start() -> anyhow::Result<Lab> {
        let moto = Moto::start().context("starting moto (scripts/setup installs it)")?;
        let sdk = moto.sdk_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let store = AwsSecretStore::new(client.clone());
        let function_arn = moto
            .create_function("rds-postgres")
            .context("registering the rotation function in moto")?;
        let mut dbs = Vec::new();
        for tls in [false, true] {
            let mut options = if tls {
                PgOptions::tls()
            } else {
                PgOptions::default()
            };
            options.extra_conf.push("log_connections = on".into());
            let pg = PgCluster::start(options).context(
                "starting a throwaway PostgreSQL (scripts/setup installs the server binaries)",
            )?;
            let config = match pg.ca_pem() {
                Some(ca) => PgConfig::with_ca_bundle(ca)?,
                None => PgConfig::default(),
            };
            let mut db = Db {
                pg,
                tls,
                config,
                master_arn: String::new(),
            };
            let master = db.secret_json("postgres", db.pg.superuser_password(), None);
            let name = format!("bench/master-{}", db.label());
            db.master_arn = create_secret(&client, &name, &master).await?;
            dbs.push(db);
        }
        let tls = dbs.pop().expect("two clusters");
        let plain = dbs.pop().expect("two clusters");
        Ok(Lab {
            moto,
            client,
            store,
            function_arn,
            plain,
            tls,
        })
    }

    /// Both clusters, plaintext first.
    pub fn dbs(&self) -> [&Db; 2] {
        [&self.plain, &self.tls]
    }

    /// A new role with a password and its secret, named `name` (a plain SQL identifier).
    pub async fn subject(
        &self,
        db: &Db,
        name: &str,
        strategy: Strategy,
    ) -> anyhow::Result<Subject> {
        db.pg
            .psql(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{INITIAL_PASSWORD}'"
            ))
            .with_context(|| format!("creating role {name}"))?;
        let master = (strategy == Strategy::AlternatingUsers).then_some(db.master_arn.as_str());
        let value = db.secret_json(name, INITIAL_PASSWORD, master);
        let arn = create_secret(&self.client, &format!("bench/{name}"), &value).await?;
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
    pub async fn start_rotation(&self, arn: &str, token: &str) -> anyhow::Result<()> {
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
            .rotation_lambda_arn(&self.function_arn)
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
