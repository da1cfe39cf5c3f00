//! The Redshift stand-in shared by this crate's suites: a PostgreSQL cluster with md5
//! authentication (`password_encryption = md5`), a `dev` database (Redshift's default),
//! optionally TLS-only with a generated CA, optionally the statement log on (a cluster of its
//! own even when `ROTATION_TEST_POSTGRES_MD5_URL` names one); a local secret store; helpers.

#![allow(dead_code)]

use std::collections::BTreeSet;

use rotation_core::testing::json;
use rotation_core::{DatabaseSecret, LocalSecretStore, PasswordPolicy, Rotation, Stage};
use rotation_postgres::PgConfig;
use rotation_redshift::{PROFILE, RedshiftRotator};
use rotation_testkit::{PgAuth, PgCluster, PgOptions};
use serde_json::{Value, json};

pub struct Standin {
    pub pg: PgCluster,
    pub store: LocalSecretStore,
    pub config: PgConfig,
    pub dir: tempfile::TempDir,
}

impl Standin {
    /// A plaintext stand-in.
    pub fn start() -> Standin {
        Self::start_with(false, false)
    }

    /// A TLS-only stand-in whose CA the engine trusts.
    pub fn tls() -> Standin {
        Self::start_with(true, false)
    }

    /// A plaintext stand-in that logs every statement (for tests that read the log).
    pub fn logged() -> Standin {
        Self::start_with(false, true)
    }

    /// A TLS-only stand-in that logs every statement.
    pub fn tls_logged() -> Standin {
        Self::start_with(true, true)
    }

    /// With `tls`, and the statement log on with `log_statements`.
    pub fn start_with(tls: bool, log_statements: bool) -> Standin {
        let base = if tls {
            PgOptions::tls()
        } else {
            PgOptions::default()
        };
        let pg = PgCluster::start(PgOptions {
            auth: PgAuth::Md5,
            log_statements,
            ..base
        })
        .expect("start PostgreSQL (scripts/setup installs it)");
        pg.psql("CREATE DATABASE dev").expect("create dev");
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let config = match pg.ca_pem() {
            Some(ca) => PgConfig::with_ca_bundle(ca).expect("the test CA loads"),
            None => PgConfig::default(),
        };
        Standin {
            pg,
            store,
            config,
            dir,
        }
    }

    /// Creates a user with psql's own quoting (the server stores the password as md5).
    pub fn create_user(&self, name: &str, password: &str) {
        self.pg
            .psql_vars(
                "CREATE USER :\"u\" PASSWORD :'pw';",
                &[("u", name), ("pw", password)],
            )
            .expect("create user");
    }

    /// A secret without `dbname` (Redshift's default `dev`): over TLS to the name the
    /// certificate carries on a TLS stand-in, else `"ssl": false` to 127.0.0.1.
    pub fn secret(&self, user: &str, password: &str) -> Value {
        if self.pg.ca_pem().is_some() {
            json!({
                "engine": "redshift",
                "host": self.pg.tls_host(),
                "port": self.pg.port(),
                "username": user,
                "password": password,
            })
        } else {
            self.secret_at(self.pg.port(), user, password)
        }
    }

    /// A plaintext secret for a server (or proxy) on 127.0.0.1:`port`.
    pub fn secret_at(&self, port: u16, user: &str, password: &str) -> Value {
        json!({
            "engine": "redshift",
            "host": "127.0.0.1",
            "port": port,
            "username": user,
            "password": password,
            "ssl": false,
        })
    }

    /// The superuser's secret (the admin of alternating users).
    pub fn master(&self) -> Value {
        self.secret(self.pg.superuser(), self.pg.superuser_password())
    }

    pub async fn put(&self, name: &str, value: &Value) {
        json::put(&self.store, name, value).await;
    }

    pub fn rotation(
        &self,
        rotator: RedshiftRotator,
    ) -> Rotation<LocalSecretStore, RedshiftRotator> {
        Rotation::new(
            self.store.clone(),
            rotator,
            PasswordPolicy::defaults(&PROFILE.password),
        )
    }

    pub fn single(&self) -> Rotation<LocalSecretStore, RedshiftRotator> {
        self.rotation(RedshiftRotator::single_user(self.config.clone()))
    }

    pub fn alternating(&self) -> Rotation<LocalSecretStore, RedshiftRotator> {
        self.rotation(RedshiftRotator::alternating_users(self.config.clone()))
    }

    pub async fn value(&self, name: &str, stage: Stage) -> Value {
        json::at(&self.store, name, stage).await
    }

    /// Whether `value` logs in through the engine's own connection code.
    pub async fn logs_in(&self, value: &Value) -> bool {
        json::logs_in(&RedshiftRotator::single_user(self.config.clone()), value).await
    }

    pub fn user_exists(&self, user: &str) -> bool {
        self.pg
            .psql_vars(
                "SELECT count(*) FROM pg_roles WHERE rolname = :'u';",
                &[("u", user)],
            )
            .unwrap()
            == "1"
    }

    pub fn stored_password(&self, user: &str) -> String {
        self.pg
            .psql_vars(
                "SELECT rolpassword FROM pg_authid WHERE rolname = :'u';",
                &[("u", user)],
            )
            .unwrap()
    }

    pub fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("secrets.json")
    }

    /// Every privilege of the kinds the engine copies, and group memberships, as text lines.
    pub fn privileges(&self, user: &str) -> BTreeSet<String> {
        let lit = user.replace('\'', "''");
        let q = format!(
            "SELECT 'db ' || d.datname || ' ' || p FROM pg_database d, (SELECT 'CREATE' AS p UNION ALL SELECT 'TEMP') AS x WHERE has_database_privilege('{lit}', d.datname, p) \
             UNION ALL SELECT 'schema ' || n.nspname || ' ' || p FROM pg_namespace n, (SELECT 'USAGE' AS p UNION ALL SELECT 'CREATE') AS x WHERE substring(n.nspname, 1, 3) <> 'pg_' AND n.nspname <> 'information_schema' AND has_schema_privilege('{lit}', n.nspname, p) \
             UNION ALL SELECT 'table ' || c.oid::regclass::text || ' ' || p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, (SELECT 'SELECT' AS p UNION ALL SELECT 'INSERT' UNION ALL SELECT 'UPDATE' UNION ALL SELECT 'DELETE' UNION ALL SELECT 'REFERENCES') AS x WHERE c.relkind IN ('r', 'v') AND substring(n.nspname, 1, 3) <> 'pg_' AND n.nspname <> 'information_schema' AND has_table_privilege('{lit}', c.oid, p) \
             UNION ALL SELECT 'group ' || g.groname FROM pg_group g, pg_user u WHERE u.usename = '{lit}' AND u.usesysid = ANY(g.grolist)"
        );
        self.pg
            .psql_db("dev", &q)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

pub fn parse(value: &Value) -> DatabaseSecret {
    json::secret(value)
}
