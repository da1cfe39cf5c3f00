//! MySQL / MariaDB for the promise suites ([`rotation_testkit::TestEngine`]): the testkit's
//! throwaway MariaDB, reached through a proxy (`front`) that can hold a password change in the
//! network, driven as an operator would with the server's own `mariadb` client. Behind the
//! `testing` feature.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rotation_core::{BoxFuture, DatabaseSecret, DbName, Engine, ErrorKind};
use rotation_testkit::mariadb::{AccountLock, Client, MariaDb, literal};
use rotation_testkit::{
    HeldChange, Limits, NetworkHold, ServerOptions, TcpProxy, TestEngine, TestServer, TestkitError,
    Wire,
};
use serde_json::{Value, json};

/// RDS MySQL / MariaDB, on the testkit's MariaDB.
#[derive(Debug)]
pub struct Mysql;

/// The MySQL / MariaDB test engine.
pub static MYSQL: Mysql = Mysql;

impl TestEngine for Mysql {
    fn engine(&self) -> Engine {
        crate::ENGINE
    }

    fn start(&self, options: ServerOptions) -> Result<Box<dyn TestServer>, TestkitError> {
        let server = if options.own {
            MariaDb::start_own(options.tls)?
        } else {
            MariaDb::start(options.tls)?
        };
        let front = TcpProxy::to_port_with(server.port(), Wire::Mysql)?;
        Ok(Box::new(MariaDbServer {
            server,
            front: Arc::new(front),
        }))
    }

    fn secret(&self, port: u16, username: &str, password: &str) -> Value {
        json!({
            "engine": "mariadb",
            "host": "localhost",
            "port": port,
            "username": username,
            "password": password,
        })
    }

    fn wire(&self) -> Wire {
        Wire::Mysql
    }

    /// Every password change is a deadline-carrying compound statement.
    fn password_statement(&self) -> &'static str {
        "NOT ATOMIC"
    }

    fn test_statement(&self) -> &'static str {
        "SELECT NOW()"
    }

    /// The session's `sql_mode` is set (and the server's version and clock read) before its
    /// first change.
    fn statement_before_change(&self) -> Option<&'static str> {
        Some("sql_mode")
    }

    fn login_database(&self, secret: &DatabaseSecret) -> String {
        match secret.dbname() {
            DbName::Name(n) => n.to_string(),
            _ => String::new(),
        }
    }

    /// No database is selected when a secret names none.
    fn default_database(&self) -> &'static str {
        ""
    }

    fn login_port(&self, secret: &DatabaseSecret) -> u16 {
        secret.port().unwrap_or(crate::DEFAULT_PORT)
    }

    fn stand_in(&self) -> Option<&'static str> {
        Some("MariaDB, as RDS MariaDB runs it; RDS MySQL's own server is not measured here")
    }

    /// A login to a database the user holds no right on is refused as access denied
    /// (error 1044) whether the database exists or not: the server will not tell.
    fn limits(&self) -> Limits {
        Limits {
            unknown_database: Some(ErrorKind::PermissionDenied),
            ..Limits::NONE
        }
    }

    /// The server stored `mysql_native_password`'s form of the new password (no plugin
    /// switched), and its general log of the rotation holds no password.
    fn check_rotated(&self, server: &dyn TestServer, previous: &Value, current: &Value) {
        let s = server
            .as_any()
            .downcast_ref::<MariaDbServer>()
            .expect("a MariaDB test server");
        let user = current["username"].as_str().unwrap_or_default();
        let password = current["password"].as_str().unwrap_or_default();
        let stored = s.sql(&format!(
            "SELECT CONCAT(plugin, ' ', authentication_string) FROM mysql.user WHERE user = {}",
            literal(user)
        ));
        assert_eq!(
            stored,
            format!(
                "mysql_native_password {}",
                crate::sql::native_hash(password)
            ),
            "the stored form of {user}'s new password"
        );
        let log = s.server.log();
        for p in [previous["password"].as_str(), Some(password)]
            .into_iter()
            .flatten()
        {
            assert!(!log.contains(p), "a password in the server's general log");
        }
    }
}

/// MariaDB behind its front proxy.
pub struct MariaDbServer {
    server: MariaDb,
    front: Arc<TcpProxy>,
}

impl fmt::Debug for MariaDbServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDbServer")
            .field("port", &self.server.port())
            .field("front", &self.front.port())
            .finish_non_exhaustive()
    }
}

impl MariaDbServer {
    /// Runs `sql` as root; panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.server
            .sql(sql)
            .unwrap_or_else(|e| panic!("mariadb failed: {e}"))
    }

    /// The server.
    pub fn server(&self) -> &MariaDb {
        &self.server
    }
}

/// Rights an application user is made with: a database of its own and a column of another.
const APP_RIGHTS: &str = "GRANT SELECT, INSERT, UPDATE ON app.* TO {u}";

impl TestServer for MariaDbServer {
    fn version(&self) -> String {
        format!("MariaDB {}", self.sql("SELECT VERSION()").trim())
    }

    fn port(&self) -> u16 {
        self.front.port()
    }

    fn server_port(&self) -> u16 {
        self.server.port()
    }

    fn ca_pem(&self) -> Option<&Path> {
        self.server.ca_pem()
    }

    fn admin(&self) -> (&str, &str) {
        self.server.admin()
    }

    fn create_user(&self, name: &str, password: &str) {
        let account = format!("{}@'%'", literal(name));
        // By its stored form, so that the server's general log holds no password of a test.
        self.sql(&format!(
            "CREATE USER {account} IDENTIFIED BY PASSWORD '{}'; {}",
            crate::sql::native_hash(password),
            APP_RIGHTS.replace("{u}", &account)
        ));
    }

    fn set_password(&self, user: &str, password: &str) {
        self.sql(&format!(
            "SET PASSWORD FOR {}@'%' = '{}'",
            literal(user),
            crate::sql::native_hash(password)
        ));
    }

    /// The server made read-only: no account without `READ_ONLY ADMIN` may change a password
    /// (MySQL and MariaDB have no right to change one's own password to take away).
    fn forbid_own_password_change(&self, _user: &str) {
        self.sql("SET GLOBAL read_only = 1");
    }

    fn users_named(&self, prefix: &str) -> String {
        self.sql(&format!(
            "SELECT user FROM mysql.user WHERE LEFT(user, {}) = {} ORDER BY user",
            prefix.chars().count(),
            literal(prefix)
        ))
        .lines()
        .collect::<Vec<_>>()
        .join(",")
    }

    /// Every account's credentials, rights, limits and options (`mysql.global_priv`), and
    /// its rights on databases, tables, columns, routines and roles.
    fn fingerprint(&self) -> String {
        self.sql(
            "SELECT CONCAT(user, '@', host, ' ', priv) FROM mysql.global_priv ORDER BY user, host; \
             SELECT CONCAT_WS(' ', user, host, db, Select_priv, Insert_priv, Update_priv, Delete_priv, Grant_priv) FROM mysql.db ORDER BY user, host, db; \
             SELECT CONCAT_WS(' ', user, host, db, table_name, table_priv, column_priv) FROM mysql.tables_priv ORDER BY user, host, db, table_name; \
             SELECT CONCAT_WS(' ', user, host, db, table_name, column_name, column_priv) FROM mysql.columns_priv ORDER BY 1; \
             SELECT CONCAT_WS(' ', user, host, role, admin_option) FROM mysql.roles_mapping ORDER BY 1",
        )
    }

    /// Accounts that may create users.
    fn privileged(&self) -> String {
        self.sql("SELECT user FROM mysql.user WHERE Create_user_priv = 'Y' OR Super_priv = 'Y' ORDER BY user")
            .lines()
            .collect::<Vec<_>>()
            .join(",")
    }

    /// In the network, at the front proxy (secrets without TLS only): the next password
    /// change.
    fn hold_password_change<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Box<dyn HeldChange>> {
        Box::pin(async move {
            Box::new(NetworkHold::arm(
                self.front.clone(),
                MYSQL.password_statement(),
            )) as Box<dyn HeldChange>
        })
    }

    /// In the server: the account tables locked for reading, so a change waits.
    fn hold_in_server<'a>(&'a self, _user: &'a str) -> Option<BoxFuture<'a, Box<dyn HeldChange>>> {
        Some(Box::pin(async move {
            let lock = self
                .server
                .lock_accounts()
                .unwrap_or_else(|e| panic!("lock the account tables: {e}"));
            Box::new(TableLock {
                lock: Mutex::new(Some(lock)),
                client: self.server.client(),
            }) as Box<dyn HeldChange>
        }))
    }

    fn log(&self) -> String {
        self.server.log()
    }

    fn unclean_closes(&self) -> Vec<String> {
        // The testkit's readiness check connects and leaves before authenticating.
        self.log()
            .lines()
            .filter(|l| l.contains("Aborted connection") && !l.contains("user: 'unauthenticated'"))
            .map(str::to_string)
            .collect()
    }

    fn logs_in_with_own_client(&self, user: &str, password: &str) -> bool {
        self.server
            .logs_in(user, password)
            .unwrap_or_else(|e| panic!("the login check failed: {e}"))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A root session holding the account tables, and a client to see who waits on them.
#[derive(Debug)]
struct TableLock {
    lock: Mutex<Option<AccountLock>>,
    client: Client,
}

impl HeldChange for TableLock {
    /// Whether a session waits on the account tables.
    fn is_held(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let waiting = self
                .client
                .sql(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE STATE LIKE 'Waiting for table%'",
                )
                .unwrap_or_else(|e| panic!("read the process list: {e}"));
            waiting.trim() != "0"
        })
    }

    /// Unlocks (nothing was changed under the lock).
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(lock) = lock {
                lock.release();
            }
        })
    }
}
