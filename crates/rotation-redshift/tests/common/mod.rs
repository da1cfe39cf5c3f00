//! This crate's suites on the one test environment ([`rotation_testkit::Env`]) with the
//! Redshift stand-in (a PostgreSQL cluster with md5 authentication, `password_encryption =
//! md5` and a `dev` database, Redshift's default), and what only Redshift's suites need of it:
//! the cluster, a statement log, the engine's typed settings, privileges as text.

#![allow(dead_code)]

use std::collections::BTreeSet;

use rotation_core::{LocalSecretStore, Rotation};
use rotation_postgres::PgConfig;
use rotation_postgres::testing::PgServer;
use rotation_redshift::RedshiftRotator;
use rotation_redshift::testing::{REDSHIFT, Redshift};
use rotation_testkit::PgCluster;
pub use rotation_testkit::env::{Env, parse};
use serde_json::{Value, json};

/// A stand-in: TLS-only with a generated CA the engine trusts when `tls`, logging every
/// statement when `log_statements` (a cluster of its own even when a variable names one).
pub fn start_with(tls: bool, log_statements: bool) -> Env {
    if !log_statements {
        return Env::start(&REDSHIFT, tls);
    }
    let server = Redshift::server(tls, log_statements)
        .expect("start PostgreSQL (scripts/setup installs it)");
    Env::with_server(&REDSHIFT, Box::new(server))
}

/// A plaintext stand-in.
pub fn start() -> Env {
    start_with(false, false)
}

/// A TLS-only stand-in whose CA the engine trusts.
pub fn tls() -> Env {
    start_with(true, false)
}

/// A plaintext stand-in that logs every statement (for tests that read the log).
pub fn logged() -> Env {
    start_with(false, true)
}

/// A TLS-only stand-in that logs every statement.
pub fn tls_logged() -> Env {
    start_with(true, true)
}

/// What this crate's suites need of the environment beyond every engine's.
pub trait Standin {
    /// The cluster.
    fn pg(&self) -> &PgCluster;
    /// The engine's settings, trusting the stand-in's CA.
    fn config(&self) -> PgConfig;
    /// A secret without `dbname` (Redshift's default `dev`): over TLS to the name the
    /// certificate carries on a TLS stand-in, else `"ssl": false` to 127.0.0.1. Its password
    /// is not checked against the engine's rules (tests that break them build secrets here).
    fn standin_secret(&self, user: &str, password: &str) -> Value;
    /// A plaintext secret for a server (or proxy) on 127.0.0.1:`port`.
    fn secret_at(&self, port: u16, user: &str, password: &str) -> Value;
    /// The superuser's secret (the admin of alternating users).
    fn master(&self) -> Value;
    /// A rotation by `rotator`.
    fn rotation(&self, rotator: RedshiftRotator) -> Rotation<LocalSecretStore, RedshiftRotator>;
    /// Whether `user` exists.
    fn user_exists(&self, user: &str) -> bool;
    /// The password the stand-in stores for `user` (md5).
    fn stored_password(&self, user: &str) -> String;
    /// Every privilege of the kinds the engine copies, and group memberships, as text lines.
    fn privileges(&self, user: &str) -> BTreeSet<String>;
}

impl Standin for Env {
    fn pg(&self) -> &PgCluster {
        self.server_as::<PgServer>().cluster()
    }

    fn config(&self) -> PgConfig {
        self.server_as::<PgServer>().config()
    }

    fn standin_secret(&self, user: &str, password: &str) -> Value {
        let pg = self.pg();
        if pg.ca_pem().is_some() {
            json!({
                "engine": "redshift",
                "host": pg.tls_host(),
                "port": pg.port(),
                "username": user,
                "password": password,
            })
        } else {
            self.secret_at(pg.port(), user, password)
        }
    }

    fn secret_at(&self, port: u16, user: &str, password: &str) -> Value {
        json!({
            "engine": "redshift",
            "host": "127.0.0.1",
            "port": port,
            "username": user,
            "password": password,
            "ssl": false,
        })
    }

    fn master(&self) -> Value {
        let (user, password) = self.server.admin();
        self.standin_secret(user, password)
    }

    fn rotation(&self, rotator: RedshiftRotator) -> Rotation<LocalSecretStore, RedshiftRotator> {
        self.rotation_with(rotator)
    }

    fn user_exists(&self, user: &str) -> bool {
        self.pg()
            .psql_vars(
                "SELECT count(*) FROM pg_roles WHERE rolname = :'u';",
                &[("u", user)],
            )
            .unwrap()
            == "1"
    }

    fn stored_password(&self, user: &str) -> String {
        self.pg()
            .psql_vars(
                "SELECT rolpassword FROM pg_authid WHERE rolname = :'u';",
                &[("u", user)],
            )
            .unwrap()
    }

    fn privileges(&self, user: &str) -> BTreeSet<String> {
        let lit = user.replace('\'', "''");
        let q = format!(
            "SELECT 'db ' || d.datname || ' ' || p FROM pg_database d, (SELECT 'CREATE' AS p UNION ALL SELECT 'TEMP') AS x WHERE has_database_privilege('{lit}', d.datname, p) \
             UNION ALL SELECT 'schema ' || n.nspname || ' ' || p FROM pg_namespace n, (SELECT 'USAGE' AS p UNION ALL SELECT 'CREATE') AS x WHERE substring(n.nspname, 1, 3) <> 'pg_' AND n.nspname <> 'information_schema' AND has_schema_privilege('{lit}', n.nspname, p) \
             UNION ALL SELECT 'table ' || c.oid::regclass::text || ' ' || p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, (SELECT 'SELECT' AS p UNION ALL SELECT 'INSERT' UNION ALL SELECT 'UPDATE' UNION ALL SELECT 'DELETE' UNION ALL SELECT 'REFERENCES') AS x WHERE c.relkind IN ('r', 'v') AND substring(n.nspname, 1, 3) <> 'pg_' AND n.nspname <> 'information_schema' AND has_table_privilege('{lit}', c.oid, p) \
             UNION ALL SELECT 'group ' || g.groname FROM pg_group g, pg_user u WHERE u.usename = '{lit}' AND u.usesysid = ANY(g.grolist)"
        );
        self.pg()
            .psql_db("dev", &q)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
