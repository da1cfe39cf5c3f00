//! PostgreSQL for the promise suites ([`rotation_testkit::TestEngine`]), and the server that
//! other engines on the PostgreSQL protocol share: a throwaway cluster of the testkit, driven as an operator
//! would (psql with its own quoting, a superuser session that holds a role's catalog row).
//! Behind the `testing` feature.

use std::fmt;
use std::path::Path;

use rotation_core::{BoxFuture, DatabaseSecret, Engine};
use rotation_testkit::{
    HeldChange, PgAuth, PgCluster, PgOptions, ServerOptions, TestEngine, TestServer, TestkitError,
    Wire,
};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::connect::Dialect;

/// How an operator makes an application role on PostgreSQL (psql variables `u` and `pw`).
const CREATE_APP_ROLE: &str =
    "CREATE ROLE :\"u\" LOGIN PASSWORD :'pw'; GRANT CREATE ON SCHEMA public TO :\"u\";";

impl Postgres {
    /// A server for this engine on a cluster started with `options` (a statement log, other
    /// certificate names, md5: what only this engine's own suites ask for).
    pub fn server(options: PgOptions) -> Result<PgServer, TestkitError> {
        Ok(PgServer::from_cluster(
            PgCluster::start(options)?,
            CREATE_APP_ROLE,
        ))
    }
}

/// Amazon RDS / Aurora PostgreSQL, on the testkit's PostgreSQL cluster (SCRAM).
#[derive(Debug)]
pub struct Postgres;

/// The PostgreSQL test engine.
pub static POSTGRES: Postgres = Postgres;

impl TestEngine for Postgres {
    fn engine(&self) -> Engine {
        crate::ENGINE
    }

    fn start(&self, options: ServerOptions) -> Result<Box<dyn TestServer>, TestkitError> {
        PgServer::start(options, PgAuth::Scram, None, CREATE_APP_ROLE)
            .map(|s| Box::new(s) as Box<dyn TestServer>)
    }

    fn secret(&self, port: u16, username: &str, password: &str) -> Value {
        json!({
            "engine": "postgres",
            "host": "localhost",
            "username": username,
            "password": password,
            "dbname": "postgres",
            "port": port.to_string(),
        })
    }

    fn wire(&self) -> Wire {
        Wire::Postgres
    }

    fn clone_statement(&self) -> &'static str {
        "CREATE ROLE"
    }

    fn password_statement(&self) -> &'static str {
        "ALTER ROLE"
    }

    fn test_statement(&self) -> &'static str {
        "SELECT 1"
    }

    /// The server quotes the role's name before the change.
    fn statement_before_change(&self) -> Option<&'static str> {
        Some("quote_ident")
    }

    fn login_database(&self, secret: &DatabaseSecret) -> String {
        crate::connect::dbname(secret, &Dialect::POSTGRES).to_string()
    }

    fn default_database(&self) -> &'static str {
        Dialect::POSTGRES.default_dbname
    }

    fn login_port(&self, secret: &DatabaseSecret) -> u16 {
        secret.port().unwrap_or(Dialect::POSTGRES.default_port)
    }
}

/// A PostgreSQL cluster serving a PostgreSQL-protocol engine's suites.
pub struct PgServer {
    pg: PgCluster,
    create_user: &'static str,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.pg.port())
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// A cluster authenticating TCP clients with `auth`, with database `database` created
    /// when given; `create_user` is the psql script (variables `u` and `pw`) by which an
    /// operator makes an application user of the engine.
    pub fn start(
        options: ServerOptions,
        auth: PgAuth,
        database: Option<&str>,
        create_user: &'static str,
    ) -> Result<PgServer, TestkitError> {
        let base = if options.tls {
            PgOptions::tls()
        } else {
            PgOptions::default()
        };
        let pg = PgCluster::start(PgOptions {
            auth,
            own: options.own,
            ..base
        })?;
        if let Some(db) = database {
            pg.psql(&format!("CREATE DATABASE {db}"))?;
        }
        Ok(PgServer { pg, create_user })
    }

    /// A server on a cluster already started; `create_user` as for [`PgServer::start`].
    pub fn from_cluster(pg: PgCluster, create_user: &'static str) -> PgServer {
        PgServer { pg, create_user }
    }

    /// The cluster.
    pub fn cluster(&self) -> &PgCluster {
        &self.pg
    }

    /// The engine's connection settings, trusting the cluster's CA when it has one.
    pub fn config(&self) -> crate::PgConfig {
        match self.pg.ca_pem() {
            Some(ca) => crate::PgConfig::with_ca_bundle(ca).expect("the test CA loads"),
            None => crate::PgConfig::default(),
        }
    }

    fn psql_vars(&self, script: &str, vars: &[(&str, &str)]) -> String {
        self.pg
            .psql_vars(script, vars)
            .unwrap_or_else(|e| panic!("psql failed: {e}"))
    }

    fn psql(&self, sql: &str) -> String {
        self.pg
            .psql(sql)
            .unwrap_or_else(|e| panic!("psql failed: {e}"))
    }

    /// The superuser's connection options (TLS without verification where the cluster is
    /// TLS-only), independent of the rotation's connection code.
    fn admin_options(&self) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host(self.pg.host())
            .port(self.pg.port())
            .username(self.pg.superuser())
            .password(self.pg.superuser_password())
            .database("postgres")
            .ssl_mode(if self.pg.ca_pem().is_some() {
                PgSslMode::Require
            } else {
                PgSslMode::Prefer
            })
            .disable_statement_logging()
    }

    async fn lock(&self, user: &str) -> Box<dyn HeldChange> {
        let options = self.admin_options();
        let mut conn = options.connect().await.expect("superuser session");
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("SELECT 1 FROM pg_authid WHERE rolname = $1 FOR UPDATE")
            .bind(user)
            .execute(&mut conn)
            .await
            .unwrap();
        Box::new(RowLock {
            conn: tokio::sync::Mutex::new(Some(conn)),
            options,
        })
    }
}

impl TestServer for PgServer {
    fn version(&self) -> String {
        format!("PostgreSQL {}", self.psql("SHOW server_version").trim())
    }

    fn port(&self) -> u16 {
        self.pg.port()
    }

    fn server_port(&self) -> u16 {
        self.pg.port()
    }

    fn ca_pem(&self) -> Option<&Path> {
        self.pg.ca_pem()
    }

    fn admin(&self) -> (&str, &str) {
        (self.pg.superuser(), self.pg.superuser_password())
    }

    fn create_user(&self, name: &str, password: &str) {
        self.psql_vars(self.create_user, &[("u", name), ("pw", password)]);
    }

    fn set_password(&self, user: &str, password: &str) {
        self.psql_vars(
            "ALTER USER :\"u\" PASSWORD :'pw';",
            &[("u", user), ("pw", password)],
        );
    }

    /// `default_transaction_read_only` on the role, as RDS's `rds.restrict_password_commands`
    /// or a password-reuse policy would refuse the change.
    fn forbid_own_password_change(&self, user: &str) {
        self.psql_vars(
            "ALTER USER :\"u\" SET default_transaction_read_only = on;",
            &[("u", user)],
        );
    }

    fn users_named(&self, prefix: &str) -> String {
        self.psql_vars(
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE starts_with(rolname, :'p');",
            &[("p", prefix)],
        )
        .trim()
        .to_string()
    }

    /// Each role's password hash and attributes (`pg_authid`) and memberships.
    fn fingerprint(&self) -> String {
        self.psql(
            "SELECT string_agg(a.rolname || ':' || coalesce(a.rolpassword, '') || ':' || a.rolsuper || a.rolcreaterole || a.rolcreatedb || a.rolcanlogin || a.rolinherit || ':' || coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid), ''), E'\n' ORDER BY a.rolname) FROM pg_authid a;",
        )
    }

    /// Superusers and roles with CREATEROLE.
    fn privileged(&self) -> String {
        self.psql(
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper OR rolcreaterole;",
        )
    }

    /// Behind a row lock (also with TLS), see [`TestServer::hold_in_server`].
    fn hold_password_change<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Box<dyn HeldChange>> {
        Box::pin(self.lock(user))
    }

    /// A superuser transaction holding `user`'s catalog row without changing it: a password
    /// change of `user` queues behind it until the transaction ends.
    fn hold_in_server<'a>(&'a self, user: &'a str) -> Option<BoxFuture<'a, Box<dyn HeldChange>>> {
        Some(Box::pin(self.lock(user)))
    }

    fn log(&self) -> String {
        self.pg.server_log()
    }

    fn unclean_closes(&self) -> Vec<String> {
        let marks = [
            "could not receive data from client",
            "unexpected EOF on client connection",
        ];
        self.log()
            .lines()
            .filter(|l| marks.iter().any(|m| l.contains(m)))
            .map(str::to_string)
            .collect()
    }

    fn logs_in_with_own_client(&self, user: &str, password: &str) -> bool {
        self.pg.logs_in(user, password)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A superuser transaction holding a role's catalog row.
struct RowLock {
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    options: PgConnectOptions,
}

impl fmt::Debug for RowLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowLock").finish_non_exhaustive()
    }
}

impl HeldChange for RowLock {
    /// Whether a session waits on a lock.
    fn is_held(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let mut c = self.options.connect().await.expect("superuser session");
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            let _ = c.close().await;
            waiting > 0
        })
    }

    /// Ends the transaction (nothing was changed in it).
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(mut c) = self.conn.into_inner() {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                let _ = c.close().await;
            }
        })
    }
}
