//! Rotation strategies for Amazon RDS / Aurora MySQL and MariaDB (secrets whose `engine` is
//! `mysql`, `aurora-mysql` or `mariadb`), on sqlx's MySQL driver; used by the `rds-mysql`
//! Lambda binary and `rotate`. The secret's keys and the function's variables are AWS's, with
//! `USERNAME_CHARACTER_LIMIT`.
//!
//! - [`MysqlRotator::single_user`]: the user in the secret sets its own password
//!   (`SET PASSWORD`), logged in with the current, else the previous credentials.
//! - [`MysqlRotator::alternating_users`]: the master secret from `masterarn` creates the other
//!   user of the `name` / `name_clone` pair at the original's host, or sets its password, and
//!   brings its rights (privileges per object and column, the grant option, roles and the
//!   default role) and account options (TLS requirement, resource limits, expiry, lock) in
//!   line with the original by difference, on core's [`Direction`] rule: the clone loses a
//!   right the original lost, the user in use never loses one mid-rotation. An account name
//!   held by several hosts is refused, naming them.
//!
//! Where it differs from AWS's functions, on purpose:
//! - **No password in SQL.** The password is set by the stored form of the account's own
//!   plugin, computed here: `mysql_native_password`'s (`*` + hex SHA1(SHA1(password))), or on
//!   MySQL 8 `caching_sha2_password`'s (`$A$005$`, a fresh 20-character salt, SHA-256 crypt
//!   of 5000 rounds), sent with `IDENTIFIED WITH <plugin> AS`; the server's general log of a
//!   rotation holds no password. An account on another plugin (`sha256_password`, `ed25519`,
//!   `unix_socket`, IAM's `AWSAuthenticationPlugin`) is refused before anything changes, and
//!   so by the preflight: they have no stored form computed here. A plugin is never switched
//!   silently: a new clone is made on the plugin of the user in use; an existing pending user
//!   keeps its own plugin when it is one of those two (alone), else it is moved to the plugin
//!   of the user in use, with a warning in the log, and the preflight says so beforehand.
//! - **TLS as for the other engines**: verified (RDS's CAs trusted), `"ssl": false` for
//!   plaintext; a TLS secret against a server without TLS is an error (AWS's W25).
//! - **A late change is refused (MariaDB).** Each change is one compound statement that makes
//!   it only while the server's clock is before the step's deadline (`BEGIN NOT ATOMIC IF ...`),
//!   under `max_statement_time` and `lock_wait_timeout` cut to the time left when it is sent:
//!   a change held in the network past the deadline signals instead. One that arrives in time
//!   and then waits behind a lock on the account tables can still land after the step gave up
//!   (RELIABILITY.md has the window). MySQL has no compound statements outside stored
//!   programs and bounds only `SELECT`s by time: there, a change delayed past its step can
//!   land, and the next rotation recovers it from the unlabelled version.
//! - **The clone gets its password last.** It is created locked, its rights and options are
//!   brought in line (revokes first, then grants, then one `ALTER USER` stating every option),
//!   the result is read back and compared, and only then is its password set (and the account
//!   unlocked with the original's options): a step that stops half-way leaves no clone a
//!   resumed rotation could promote.
//! - **The session's `sql_mode` is the engine's own** (no `NO_BACKSLASH_ESCAPES`,
//!   `ANSI_QUOTES` or `ORACLE`; `NO_AUTO_CREATE_USER` where it exists), set before anything
//!   else: the server's `QUOTE()` and `SHOW GRANTS` read the same under any server mode.
//! - **A single user on MySQL (not MariaDB) needs `CREATE USER`.** MySQL lets an account change
//!   its own password without privileges only with the password in the statement's text
//!   (`ALTER USER ... IDENTIFIED BY`), which this engine never sends; its stored form needs
//!   `CREATE USER`. Without it the rotation is refused before anything changes, and the
//!   preflight says so: rotate such secrets with alternating users.
//! - The clone's name is checked at createSecret in characters: `USERNAME_CHARACTER_LIMIT`
//!   (default 16, MySQL 5.7's limit) for `mysql` and `aurora-mysql`, 80 for `mariadb`, as
//!   AWS's functions do.
//! - **The preflight tells what rotations will do to the pair** (`rotate plan`'s `rights`
//!   line): each user's plugin (and a move), and what the clone loses at its next turn as the
//!   pending user (the next rotation, or the one after while the clone is in use): the
//!   revokes that bring it back to the original's rights, and the original's account
//!   options. A pair taken over from AWS's function, whose clone only ever gained rights,
//!   loses then what the original lost; the line lists those statements before anything
//!   runs.
//!
//! What only a real MySQL 8 shows (this machine has MariaDB 10.11): `caching_sha2_password`
//! accounts (their stored form is tested against one MySQL 8 wrote, and the SHA-256 crypt
//! against its specification's vectors; the statements are MySQL's documented
//! `IDENTIFIED WITH caching_sha2_password AS`), roles and dynamic privileges in `SHOW GRANTS`
//! (read by the same parser, whose forms are tested from MySQL's documentation: 5.7's
//! quoting, several roles on one line, `DEFAULT ROLE` and the password clauses in
//! `SHOW CREATE USER`), and the single-user path above. An external server for the suites
//! (`ROTATION_TEST_MYSQL_URL`, CONTRIBUTING.md "External targets") must be MariaDB: the
//! testkit's reset and operator checks read MariaDB's tables.

pub mod connect;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use rotation_core::rotator::BoxError;
use rotation_core::{
    AnyRotator, DatabaseSecret, DeadSessions, Deadline, Direction, Engine, EngineConfig, EngineEnv,
    EngineError, EngineProfile, ErrorKind, PasswordDefaults, Rotator, Strategy, UsernameLimit,
};
use rotation_rds::Rds;
use rotation_trust::ConnectSettings;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{Executor, Row};
use tracing::{info, warn};

pub use connect::DEFAULT_PORT;
use sql::{Plugin, Rights};

/// `USERNAME_CHARACTER_LIMIT`: the longest clone name for `mysql` and `aurora-mysql` secrets,
/// in characters (AWS's variable; default 16).
pub const USERNAME_LIMIT_ENV: &str = "USERNAME_CHARACTER_LIMIT";
/// The default of [`USERNAME_LIMIT_ENV`].
pub const MYSQL_USERNAME_LIMIT: usize = 16;
/// MariaDB's limit on user names, in characters.
pub const MARIADB_USERNAME_LIMIT: usize = 80;

/// RDS / Aurora MySQL and MariaDB.
pub const PROFILE: EngineProfile = EngineProfile {
    name: "mysql",
    engines: &["mysql", "aurora-mysql", "mariadb"],
    password: PasswordDefaults {
        engine: "mysql",
        ..PasswordDefaults::BASE
    },
    // Counted in characters, by the secret's `engine`: `Rotator::username_limit`.
    max_username_bytes: None,
    default_port: Some(DEFAULT_PORT),
    single_user_master: false,
    advice: rotation_core::RightsAdvice {
        own_password: "nothing: every account may set its own password (unless the server is read-only)",
        master: "grant the master CREATE USER and the rights it copies WITH GRANT OPTION (RDS's master user has them)",
    },
};

/// The variables this engine reads beside the ones every engine reads.
pub const ENV: [&str; 4] = [
    rotation_trust::CA_BUNDLE_ENV,
    rotation_trust::settings::PLAINTEXT_FALLBACK_ENV,
    rotation_trust::settings::CONNECT_TIMEOUT_ENV,
    USERNAME_LIMIT_ENV,
];

/// RDS / Aurora MySQL and MariaDB as one value: its profile, its Lambda function
/// (`rds-mysql`) and its settings.
pub const ENGINE: Engine = Engine {
    profile: &PROFILE,
    function_name: "rds-mysql",
    env: &ENV,
    configure,
};

/// A `USERNAME_CHARACTER_LIMIT` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{USERNAME_LIMIT_ENV} must be a whole number between 1 and 255, got {0:?}")]
pub struct BadUsernameLimit(String);

/// The engine's settings: the shared connection settings, the clone name limit for MySQL
/// secrets, and the RDS API on AWS.
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    /// Trust, fallback, connect timeout.
    pub settings: ConnectSettings,
    /// The clone name limit for `mysql` and `aurora-mysql` secrets, in characters.
    pub mysql_username_limit: usize,
    /// The RDS API, for RDS-managed master secrets and replicas.
    pub rds: Option<Rds>,
}

impl MysqlConfig {
    /// The defaults with `settings`, no RDS API.
    pub fn new(settings: ConnectSettings) -> Self {
        MysqlConfig {
            settings,
            mysql_username_limit: MYSQL_USERNAME_LIMIT,
            rds: None,
        }
    }
}

fn configure(env: &EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError> {
    let mut config = MysqlConfig::new(ConnectSettings::from_lookup(|k| env.var(k))?);
    if let Some(v) = env.var(USERNAME_LIMIT_ENV) {
        config.mysql_username_limit = v
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=255).contains(n))
            .ok_or_else(|| BadUsernameLimit(v.clone()))?;
    }
    config.rds = env.aws.map(Rds::from_sdk_config);
    Ok(Arc::new(config))
}

impl EngineConfig for MysqlConfig {
    fn rotator(&self, strategy: Strategy) -> AnyRotator {
        AnyRotator::new(MysqlRotator {
            strategy,
            config: self.clone(),
        })
    }

    fn log(&self) {
        self.settings.trust.log_sources();
    }
}

/// The MySQL / MariaDB rotator for one strategy.
#[derive(Debug, Clone)]
pub struct MysqlRotator {
    strategy: Strategy,
    config: MysqlConfig,
}

impl MysqlRotator {
    /// A rotator for `strategy`.
    pub fn new(strategy: Strategy, config: MysqlConfig) -> Self {
        MysqlRotator { strategy, config }
    }
    /// Single user.
    pub fn single_user(config: MysqlConfig) -> Self {
        Self::new(Strategy::SingleUser, config)
    }
    /// Alternating users.
    pub fn alternating_users(config: MysqlConfig) -> Self {
        Self::new(Strategy::AlternatingUsers, config)
    }

    /// The preflight of alternating users, on the master's session, changing nothing: the
    /// plugins of the pair (and a move of the other user's, where its own has no computed
    /// stored form), and what the rotation that first has the clone pending will take from it
    /// to match the original: rights the original lacks (a pair taken over from AWS's
    /// function, whose clone only ever gained rights) and account options that differ.
    async fn pair_plan(
        &self,
        session: &mut MysqlSession,
        current: &DatabaseSecret,
        mariadb: bool,
    ) -> Result<String, EngineError> {
        let name = username(current);
        let other = rotation_core::rotator::alternate_username(name, self.username_limit(current))
            .map_err(|clone| {
                EngineError::new(
                    ErrorKind::InvalidInput,
                    format!("the pair's other user {clone} would be over the user name limit"),
                )
            })?;
        let pair = session.pair(name, &other).await?;
        let (user, rights) = session
            .describe(&pair.current_account, &pair.current_shown)
            .await?;
        computable(&user.plugin, &pair.current_shown, mariadb)?;
        let mut said = vec![format!(
            "{} uses {}",
            pair.current_shown,
            user.plugin.name()
        )];
        if !pair.pending_exists {
            said.push(format!(
                "{} does not exist yet: the next rotation creates it on {}",
                pair.pending_shown,
                user.plugin.name()
            ));
            return Ok(said.join("; "));
        }
        let (other_user, other_rights) = session
            .describe(&pair.pending_account, &pair.pending_shown)
            .await?;
        let plugin = pending_plugin(&user.plugin, Some(&other_user), mariadb);
        if plugin == other_user.plugin && other_user.only_plugin {
            said.push(format!("{} uses {}", pair.pending_shown, plugin.name()));
        } else {
            said.push(format!(
                "the next rotation moves {} from {}{} to {}",
                pair.pending_shown,
                other_user.plugin.name(),
                if other_user.only_plugin {
                    ""
                } else {
                    " and another plugin"
                },
                plugin.name()
            ));
        }
        // The original is the source of truth; the clone follows it when it is pending.
        let clone_is_other = Direction::for_pair(name, &other, false).revoke;
        let (original, clone) = if clone_is_other {
            (
                (&user, &rights, &pair.current_shown),
                (
                    &other_user,
                    &other_rights,
                    &pair.pending_account,
                    &pair.pending_shown,
                ),
            )
        } else {
            (
                (&other_user, &other_rights, &pair.pending_shown),
                (&user, &rights, &pair.current_account, &pair.current_shown),
            )
        };
        let when = if clone_is_other {
            "the next rotation".to_string()
        } else {
            format!(
                "the rotation after next (the first with {} pending)",
                clone.3
            )
        };
        let revokes = original.1.revokes_extra_in(clone.1, clone.2);
        if !revokes.is_empty() {
            said.push(format!(
                "{when} revokes from {} what {} lacks: {}",
                clone.3,
                original.2,
                revokes.join("; ")
            ));
        }
        let (want, have) = (
            sql::AccountOptions::parse(&original.0.options),
            sql::AccountOptions::parse(&clone.0.options),
        );
        if !want.same_as(&have) || (!mariadb && want.default_roles != have.default_roles) {
            said.push(format!(
                "{when} gives {} the account options of {} (TLS requirement, limits, expiry, lock{})",
                clone.3,
                original.2,
                if mariadb { "" } else { ", default roles" }
            ));
        }
        if revokes.is_empty() {
            said.push(format!("{} holds no right {} lacks", clone.3, original.2));
        }
        Ok(said.join("; "))
    }
}

/// The server, as read once per session before its first change.
#[derive(Debug, Clone)]
pub struct Server {
    /// `VERSION()`.
    pub version: String,
    /// The step's deadline on the server's clock (seconds since the epoch).
    pub deadline_epoch: f64,
    /// `CURRENT_USER()`: the account the session logged in as, `user@host`.
    pub current_user: String,
}

impl Server {
    /// MariaDB (whose version names it), else MySQL.
    pub fn is_mariadb(&self) -> bool {
        self.version.contains("MariaDB")
    }
}

/// The two accounts of an alternating pair, quoted by the server, and as messages show them.
#[derive(Debug)]
struct Pair {
    current_account: String,
    pending_account: String,
    current_shown: String,
    pending_shown: String,
    pending_exists: bool,
}

/// The plugin the pending user of a pair gets its password for: its own, when this engine
/// computes its stored form and it is the account's only one; else the plugin of the user in
/// use (logged, and said by the preflight: never switched silently).
fn pending_plugin(current: &Plugin, pending: Option<&sql::Account>, mariadb: bool) -> Plugin {
    match pending {
        Some(p) if p.only_plugin && computable(&p.plugin, "", mariadb).is_ok() => p.plugin.clone(),
        _ => current.clone(),
    }
}

/// A logged-in connection and the step's deadline.
#[derive(Debug)]
pub struct MysqlSession {
    conn: MySqlConnection,
    deadline: Deadline,
    server: Option<Server>,
}

impl MysqlSession {
    /// The connection.
    pub fn connection(&mut self) -> &mut MySqlConnection {
        &mut self.conn
    }

    /// Runs `sql` (text protocol; several statements allowed) and returns every row.
    async fn rows(&mut self, sql: &str, what: &str) -> Result<Vec<MySqlRow>, EngineError> {
        let deadline = self.deadline;
        connect::bounded(deadline, what, self.conn.fetch_all(sqlx::raw_sql(sql))).await
    }

    /// The server's version and clock (read once per session, before anything else the
    /// session sends), after setting the session's `sql_mode` to one this engine's text is
    /// written for: no `NO_BACKSLASH_ESCAPES` (the server's `QUOTE()` escapes with
    /// backslashes), no `ANSI_QUOTES` or `ORACLE` (which change how `SHOW GRANTS` prints
    /// names and how statements parse), and `NO_AUTO_CREATE_USER` where it exists (MariaDB,
    /// MySQL 5.7), so a `GRANT` never creates an account without a password.
    async fn server(&mut self) -> Result<Server, EngineError> {
        if let Some(s) = &self.server {
            return Ok(s.clone());
        }
        let rows = self
            .rows(
                "SET SESSION sql_mode = IF(VERSION() LIKE '8.%' OR VERSION() LIKE '9.%', '', \
                 'NO_AUTO_CREATE_USER'); \
                 SELECT VERSION(), CAST(UNIX_TIMESTAMP(SYSDATE(6)) AS CHAR), CURRENT_USER()",
                "reading the server's version and clock",
            )
            .await?;
        let received = self.deadline.remaining();
        let row = rows.first().ok_or_else(|| {
            EngineError::new(ErrorKind::Server, "the server answered no version row")
        })?;
        let text = |i: usize| -> Result<String, EngineError> {
            row.try_get::<String, _>(i)
                .map_err(|e| connect::engine_error("reading the server's version and clock", e))
        };
        let now: f64 = text(1)?.parse().map_err(|_| {
            EngineError::new(ErrorKind::Server, "the server's clock is not a number")
        })?;
        let server = Server {
            version: text(0)?,
            // The server read its clock before the answer arrived: its deadline comes no
            // later than the client's.
            deadline_epoch: now + received.as_secs_f64(),
            current_user: text(2)?,
        };
        self.server = Some(server.clone());
        Ok(server)
    }

    /// The session limits for a change, cut to the time left: the server gives up no later
    /// than the client. The names are constants and the values numbers.
    fn limits_sql(&self, mariadb: bool) -> String {
        let left = self.deadline.remaining().max(Duration::from_millis(1));
        let lock_secs = left.as_secs().max(1);
        if mariadb {
            format!(
                "SET SESSION lock_wait_timeout = {lock_secs}, max_statement_time = {:.6}",
                left.as_secs_f64()
            )
        } else {
            format!("SET SESSION lock_wait_timeout = {lock_secs}")
        }
    }

    /// Makes a change (`statement`, which may carry a password's stored form, `hidden`) under
    /// the step's deadline: on MariaDB only while the server's clock is before it.
    async fn change(
        &mut self,
        statement: &str,
        what: &str,
        hidden: &str,
    ) -> Result<(), EngineError> {
        let server = self.server().await?;
        let limits = self.limits_sql(server.is_mariadb());
        let sql = if server.is_mariadb() {
            format!(
                "{limits}; {}",
                sql::before_deadline(statement, server.deadline_epoch)
            )
        } else {
            format!("{limits}; {statement}")
        };
        execute(&mut self.conn, self.deadline, &sql)
            .await
            .map_err(|e| match e {
                Some(e) => connect::engine_error_hiding(what, e, hidden),
                None => EngineError::past_deadline(what),
            })
    }

    /// `QUOTE()` of each of `values`, by the server: string literals for statements.
    async fn quote(&mut self, values: &[&str]) -> Result<Vec<String>, EngineError> {
        let sql = format!("SELECT {}", vec!["QUOTE(?)"; values.len()].join(", "));
        let mut q = sqlx::query(&sql);
        for v in values {
            q = q.bind(*v);
        }
        let deadline = self.deadline;
        let row = connect::bounded(deadline, "quoting names", q.fetch_one(&mut self.conn)).await?;
        (0..values.len())
            .map(|i| {
                row.try_get::<String, _>(i)
                    .map_err(|e| connect::engine_error("quoting names", e))
            })
            .collect()
    }

    /// The hosts of the accounts named `user`.
    async fn hosts_of(&mut self, user: &str) -> Result<Vec<String>, EngineError> {
        let deadline = self.deadline;
        let rows = connect::bounded(
            deadline,
            &format!("looking up the accounts named {user}"),
            sqlx::query(
                "SELECT CAST(user AS CHAR), CAST(host AS CHAR) FROM mysql.user WHERE user = ? ORDER BY host",
            )
            .bind(user)
            .fetch_all(&mut self.conn),
        )
        .await?;
        let mut hosts = Vec::with_capacity(rows.len());
        for r in &rows {
            let read = |i| {
                r.try_get::<String, _>(i)
                    .map_err(|e| connect::engine_error("reading account hosts", e))
            };
            same_name(&read(0)?, user)?;
            hosts.push(read(1)?);
        }
        Ok(hosts)
    }

    /// The session's own rights (`SHOW GRANTS`); `shown` is `CURRENT_USER()`.
    async fn own_rights(&mut self, shown: &str) -> Result<Rights, EngineError> {
        let rows = self
            .rows("SHOW GRANTS", &format!("reading the rights of {shown}"))
            .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for r in &rows {
            lines.push(
                r.try_get::<String, _>(0)
                    .map_err(|e| connect::engine_error("reading SHOW GRANTS", e))?,
            );
        }
        Rights::from_lines(lines.iter().map(String::as_str), &printed_from_shown(shown))
            .map_err(|line| unread_grant(shown, &line))
    }

    /// The accounts of the pair `current_name` / `pending_name`: the current one (the single
    /// account of that name) and the pending one at the same host, if it exists; refused when
    /// either name has several accounts or the pending one is at another host.
    async fn pair(&mut self, current_name: &str, pending_name: &str) -> Result<Pair, EngineError> {
        let host =
            only_account(current_name, &self.hosts_of(current_name).await?)?.ok_or_else(|| {
                EngineError::new(
                    ErrorKind::InvalidInput,
                    format!("the current user {current_name} has no account"),
                )
            })?;
        let pending_host = only_account(pending_name, &self.hosts_of(pending_name).await?)?;
        if let Some(h) = &pending_host
            && *h != host
        {
            return Err(EngineError::new(
                ErrorKind::InvalidInput,
                format!(
                    "{pending_name}@{h} is not at the host of {current_name}@{host}: the pair must share one host"
                ),
            ));
        }
        let quoted = self.quote(&[current_name, pending_name, &host]).await?;
        Ok(Pair {
            current_account: format!("{}@{}", quoted[0], quoted[2]),
            pending_account: format!("{}@{}", quoted[1], quoted[2]),
            current_shown: format!("{current_name}@{host}"),
            pending_shown: format!("{pending_name}@{host}"),
            pending_exists: pending_host.is_some(),
        })
    }

    /// `SHOW CREATE USER` of `account` (a quoted literal, or `CURRENT_USER()`).
    async fn create_user_line(
        &mut self,
        account: &str,
        shown: &str,
    ) -> Result<String, EngineError> {
        let rows = self
            .rows(
                &format!("SHOW CREATE USER {account}"),
                &format!("reading the account {shown}"),
            )
            .await?;
        rows.first()
            .and_then(|r| r.try_get(0).ok())
            .ok_or_else(|| EngineError::new(ErrorKind::Server, "SHOW CREATE USER answered nothing"))
    }

    /// `SHOW CREATE USER` and `SHOW GRANTS` of `account` (a quoted literal), as lines.
    async fn describe(
        &mut self,
        account: &str,
        shown: &str,
    ) -> Result<(sql::Account, Rights), EngineError> {
        let rows = self
            .rows(
                &format!("SHOW CREATE USER {account}; SHOW GRANTS FOR {account}"),
                &format!("reading the account and rights of {shown}"),
            )
            .await?;
        let mut create = None;
        let mut grants = Vec::new();
        for r in &rows {
            let line: String = r
                .try_get(0)
                .map_err(|e| connect::engine_error("reading SHOW GRANTS", e))?;
            if line.starts_with("CREATE USER ") && create.is_none() {
                create = Some(sql::parse_create_user(&line));
            } else {
                grants.push(line);
            }
        }
        let create = create.ok_or_else(|| {
            EngineError::new(
                ErrorKind::Server,
                format!("SHOW CREATE USER of {shown} answered nothing"),
            )
        })?;
        let printed = printed_from_shown(shown);
        let rights = Rights::from_lines(grants.iter().map(String::as_str), &printed)
            .map_err(|line| unread_grant(shown, &line))?;
        Ok((create, rights))
    }
}

use std::time::Duration;

/// Runs `sql` through the text protocol within `deadline` (`None`: no answer in time). Boxed,
/// so that the future is `Send` for every lifetime the trait's futures need.
fn execute<'a>(
    conn: &'a mut MySqlConnection,
    deadline: Deadline,
    sql: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Option<sqlx::Error>>> + Send + 'a>>
{
    Box::pin(async move {
        match deadline.run(conn.execute(sqlx::raw_sql(sql))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Some(e)),
            Err(_) => Err(None),
        }
    })
}

/// MySQL (not MariaDB) lets an account change its own password without privileges only by
/// `ALTER USER ... IDENTIFIED BY '<password>'`, the password in the statement's text, which
/// this engine never sends; the stored form needs `CREATE USER` (or `UPDATE` on `mysql`).
/// Refused before anything changes, and said by the preflight.
async fn mysql_may_set_own_stored_form(
    session: &mut MysqlSession,
    shown: &str,
) -> Result<String, EngineError> {
    let rights = session.own_rights(shown).await?;
    if rights.may_set_stored_forms() {
        Ok(format!(
            "{shown} may set its password by its stored form (CREATE USER)"
        ))
    } else {
        Err(EngineError::new(
            ErrorKind::PermissionDenied,
            format!(
                "on MySQL, {shown} may change its own password without privileges only with the password in the statement's text (ALTER USER ... IDENTIFIED BY), which this engine never sends; setting its stored form needs CREATE USER: rotate the secret with alternating users (the master sets it), or grant {shown} CREATE USER"
            ),
        ))
    }
}

/// A `SHOW GRANTS` line this engine does not read: its rights cannot be copied.
fn unread_grant(shown: &str, line: &str) -> EngineError {
    EngineError::new(
        ErrorKind::InvalidInput,
        format!(
            "SHOW GRANTS for {shown} printed a line this engine does not read, so the pair's rights cannot be kept in line: {line}"
        ),
    )
}

/// `user@host` (as `CURRENT_USER()` and messages show it) as `SHOW GRANTS` prints it.
fn printed_from_shown(shown: &str) -> Vec<String> {
    let (user, host) = shown.rsplit_once('@').unwrap_or((shown, "%"));
    sql::printed_account(user, host)
}

fn username(secret: &DatabaseSecret) -> &str {
    secret.username().unwrap_or_default()
}

/// Refuses to act when the server knows the account by another name than the secret's: user
/// names are stored in a 3-byte UTF-8 (MariaDB, MySQL 5.7), so a character outside the Basic
/// Multilingual Plane reaches the server as `?`, and the account changed would not be the one
/// the secret names.
fn same_name(stored: &str, wanted: &str) -> Result<(), EngineError> {
    if stored == wanted {
        return Ok(());
    }
    Err(EngineError::new(
        ErrorKind::InvalidInput,
        format!(
            "the server holds this account as {stored:?}, not {wanted:?} (user names are stored in 3-byte UTF-8, so characters outside the Basic Multilingual Plane become '?', and compared without trailing spaces): the secret's user name does not name it exactly"
        ),
    ))
}

/// The stored form of `password` for `plugin`, computed here; an account on a plugin with none
/// this engine computes is refused (MariaDB has no `caching_sha2_password`).
fn stored_form(
    plugin: &Plugin,
    password: &str,
    shown: &str,
    mariadb: bool,
) -> Result<String, EngineError> {
    computable(plugin, shown, mariadb)?;
    match plugin {
        Plugin::CachingSha2 => sql::caching_sha2_stored_form(password).map_err(|e| {
            EngineError::new(
                ErrorKind::Other,
                format!("the system's random generator failed to make a salt: {e}"),
            )
        }),
        _ => Ok(sql::native_hash(password)),
    }
}

/// Whether this engine computes a stored form for `plugin` (else the refusal, naming
/// `shown`'s plugin).
fn computable(plugin: &Plugin, shown: &str, mariadb: bool) -> Result<(), EngineError> {
    match plugin {
        Plugin::Native => Ok(()),
        Plugin::CachingSha2 if !mariadb => Ok(()),
        other => Err(EngineError::new(
            ErrorKind::InvalidInput,
            format!(
                "account {shown} authenticates with {}: this engine sets passwords only by a stored form it computes (mysql_native_password's, or caching_sha2_password's on MySQL), never with the password in SQL text, and never switches an account's plugin; move the account to one of those or rotate it otherwise",
                other.name()
            ),
        )),
    }
}

/// The single account named `user`: several hosts are refused, naming them.
fn only_account(user: &str, hosts: &[String]) -> Result<Option<String>, EngineError> {
    match hosts {
        [] => Ok(None),
        [host] => Ok(Some(host.clone())),
        many => Err(EngineError::new(
            ErrorKind::InvalidInput,
            format!(
                "several accounts are named {user} ({}): the secret cannot say which one it holds; keep one",
                many.iter()
                    .map(|h| format!("{user}@{h}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

impl Rotator for MysqlRotator {
    type Session = MysqlSession;

    fn profile(&self) -> &EngineProfile {
        &PROFILE
    }

    fn strategy(&self) -> Strategy {
        self.strategy
    }

    fn username_limit(&self, secret: &DatabaseSecret) -> Option<UsernameLimit> {
        Some(UsernameLimit::Characters(match secret.engine() {
            Some("mariadb") => MARIADB_USERNAME_LIMIT,
            _ => self.config.mysql_username_limit,
        }))
    }

    async fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<MysqlSession, EngineError> {
        let conn = connect::connect(secret, &self.config.settings, deadline).await?;
        info!(
            user = secret.username(),
            host = secret.host(),
            "login succeeded"
        );
        Ok(MysqlSession {
            conn,
            deadline,
            server: None,
        })
    }

    async fn set_own_password(
        &self,
        session: &mut MysqlSession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = PROFILE.password_to_set(target)?;
        let server = session.server().await?;
        let shown = server.current_user.clone();
        same_name(
            shown.rsplit_once('@').map_or(shown.as_str(), |(u, _)| u),
            username(target),
        )?;
        let line = session.create_user_line("CURRENT_USER()", &shown).await?;
        let plugin = sql::parse_create_user(&line).plugin;
        let hash = stored_form(&plugin, password, &shown, server.is_mariadb())?;
        if !server.is_mariadb() {
            mysql_may_set_own_stored_form(session, &shown).await?;
        }
        let statement = if server.is_mariadb() {
            format!("SET PASSWORD = '{hash}'")
        } else {
            format!(
                "ALTER USER CURRENT_USER() IDENTIFIED WITH {} AS '{hash}'",
                plugin.name()
            )
        };
        session
            .change(
                &statement,
                &format!("changing the password of {shown}"),
                &hash,
            )
            .await
    }

    async fn set_password_as_master(
        &self,
        session: &mut MysqlSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = PROFILE.password_to_set(target)?;
        let (current_name, pending_name) = (username(current), username(target));
        let server = session.server().await?;
        let mariadb = server.is_mariadb();
        let Pair {
            current_account,
            pending_account,
            current_shown,
            pending_shown,
            pending_exists,
        } = session.pair(current_name, pending_name).await?;
        let (current_user, _) = session.describe(&current_account, &current_shown).await?;
        computable(&current_user.plugin, &current_shown, mariadb)?;
        let pending_before = match pending_exists {
            true => Some(session.describe(&pending_account, &pending_shown).await?.0),
            false => None,
        };
        let plugin = pending_plugin(&current_user.plugin, pending_before.as_ref(), mariadb);
        if let Some(p) = &pending_before
            && (p.plugin != plugin || !p.only_plugin)
        {
            warn!(
                user = pending_name,
                from = p.plugin.name(),
                to = plugin.name(),
                "the pending user's authentication is moved to the plugin of the user in use (its own has no stored form this engine computes, or it has several)"
            );
        }
        let hash = stored_form(&plugin, password, &current_shown, mariadb)?;
        let created = !pending_exists;
        if created {
            // Created locked: it cannot log in until its rights and options are the
            // original's (the options' ALTER USER unlocks it, as the original is), so a step
            // that stops half-way leaves no account a resumed rotation could promote.
            let statement = if mariadb {
                format!(
                    "CREATE USER {pending_account} IDENTIFIED BY PASSWORD '{hash}' ACCOUNT LOCK"
                )
            } else {
                format!(
                    "CREATE USER {pending_account} IDENTIFIED WITH {} AS '{hash}' ACCOUNT LOCK",
                    plugin.name()
                )
            };
            session
                .change(&statement, &format!("creating user {pending_shown}"), &hash)
                .await?;
            info!(user = %pending_shown, "created the alternate user");
        }

        // Rights and account options, by the pair's direction, before the password: a step
        // that stops half-way leaves the pending user on its old password, so the next
        // attempt does all of it again.
        let d = Direction::for_pair(current_name, pending_name, created);
        let account = |name: &str| {
            if name == current_name {
                (current_account.clone(), current_shown.clone())
            } else {
                (pending_account.clone(), pending_shown.clone())
            }
        };
        let ((_, source_shown), (target_account, target_shown)) =
            (account(&d.source), account(&d.target));
        let source_account = account(&d.source).0;
        let what = format!("bringing the rights of {target_shown} in line with {source_shown}");
        let (source_user, source_rights) = session.describe(&source_account, &source_shown).await?;
        let (target_user, mut target_rights) =
            session.describe(&target_account, &target_shown).await?;
        if d.revoke {
            // Revokes first, then grants against what is left: a grant into a wider right
            // does nothing, and the revoke of the wider one would take it too.
            for s in source_rights.revokes_extra_in(&target_rights, &target_account) {
                session.change(&s, &what, &hash).await?;
            }
            target_rights = session.describe(&target_account, &target_shown).await?.1;
        }
        for s in source_rights.grants_missing_from(&target_rights, &target_account) {
            session.change(&s, &what, &hash).await?;
        }
        let (source_options, target_options) = (
            sql::AccountOptions::parse(&source_user.options),
            sql::AccountOptions::parse(&target_user.options),
        );
        if created || (d.revoke && !source_options.same_as(&target_options)) {
            session
                .change(
                    &source_options.alter(&target_account, mariadb),
                    &what,
                    &hash,
                )
                .await?;
        }
        if !mariadb
            && (d.revoke || created)
            && source_options.default_roles != target_options.default_roles
        {
            let roles = source_options.default_roles.as_deref().unwrap_or("NONE");
            session
                .change(
                    &format!("SET DEFAULT ROLE {roles} TO {target_account}"),
                    &what,
                    &hash,
                )
                .await?;
        }
        // The pair as the server holds it now: a difference this engine could not express
        // fails the step, before the password is set.
        let (_, now) = session.describe(&target_account, &target_shown).await?;
        if !now.in_line_with(&source_rights, d.revoke) {
            return Err(EngineError::new(
                ErrorKind::Server,
                format!(
                    "{what}: the rights still differ after the grants and revokes (the pending user's password was not changed)"
                ),
            ));
        }

        // Then the password, for the plugin chosen above: an account on any other
        // authentication (a plugin without a computed stored form, or `OR unix_socket` beside
        // it) is brought to exactly the plugin of the user in use.
        if !created {
            let (pending_user, _) = session.describe(&pending_account, &pending_shown).await?;
            let same = pending_user.plugin == plugin && pending_user.only_plugin;
            let statement = match (same, mariadb) {
                (true, true) => format!("SET PASSWORD FOR {pending_account} = '{hash}'"),
                (false, true) => format!(
                    "ALTER USER {pending_account} IDENTIFIED VIA mysql_native_password USING '{hash}'"
                ),
                (_, false) => format!(
                    "ALTER USER {pending_account} IDENTIFIED WITH {} AS '{hash}'",
                    plugin.name()
                ),
            };
            session
                .change(
                    &statement,
                    &format!("setting the password of {pending_shown}"),
                    &hash,
                )
                .await?;
        }
        info!(source = %d.source, target = %d.target, "the pair's rights are in line");
        Ok(())
    }

    async fn test_session(
        &self,
        session: &mut MysqlSession,
        pending: &DatabaseSecret,
        _partner: Option<&str>,
    ) -> Result<(), EngineError> {
        let user = username(pending);
        let rows = session
            .rows(
                "SELECT NOW(), CURRENT_USER()",
                &format!("running a query as {user}"),
            )
            .await?;
        let current: String = rows
            .first()
            .and_then(|r| r.try_get(1).ok())
            .unwrap_or_default();
        if current.rsplit_once('@').map(|(u, _)| u) != Some(user) {
            return Err(EngineError::new(
                ErrorKind::AuthFailed,
                format!("the session is logged in as {current}, not {user}"),
            ));
        }
        Ok(())
    }

    async fn close(&self, session: MysqlSession) {
        connect::close(session.conn).await;
    }

    /// The user's own threads running a password change ([`sql::PASSWORD_CHANGES`]), as one a
    /// run that died left queued behind a lock on the account tables: with the claim exclusive
    /// ([`DeadSessions::Any`]) no live run of the secret sends one, so they are ended (a user
    /// sees and may end its own threads; an application that changes its own password at that
    /// moment would lose that change, which would break its rotation anyway). Otherwise they
    /// are waited for until they no longer run a password change: MariaDB ends each once the
    /// time its step had left is over (MySQL bounds each of its lock waits by that time).
    async fn end_dead_sessions(
        &self,
        session: &mut MysqlSession,
        which: DeadSessions,
    ) -> Result<bool, EngineError> {
        let rows = session
            .rows(
                &format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
                     AND USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND {}",
                    running_a_password_change()
                ),
                "listing the changes of rotation runs that died",
            )
            .await?;
        let ids: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        if ids.is_empty() {
            return Ok(false);
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        if which == DeadSessions::PastDeadline {
            let remaining = session.deadline.remaining();
            let allowed = remaining
                .saturating_sub(DeadSessions::PROOF_RESERVE)
                .max(remaining / 2);
            tracing::info!(
                threads = ids.len(),
                "abort: waiting for this user's queued password changes to end by their own time limit"
            );
            let wait = async {
                while threads_left(session, &list, true).await? > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(true)
            };
            return match tokio::time::timeout(allowed, wait).await {
                Ok(done) => done,
                Err(_) => Err(EngineError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} password change(s) of this user, queued in the server by a rotation \
                         run, were still running after the {:.1} s this abort could wait \
                         (MariaDB ends each once the time its step had left is over; MySQL \
                         bounds each of its lock waits by that time)",
                        ids.len(),
                        allowed.as_secs_f64()
                    ),
                )),
            };
        }
        for id in &ids {
            // Gone in between ("unknown thread"): nothing left to end.
            if let Err(e) = session
                .rows(
                    &format!("KILL CONNECTION {id}"),
                    "ending a dead run's change",
                )
                .await
            {
                tracing::info!(thread = id, error = %e, "the dead run's thread was already gone");
            }
        }
        while threads_left(session, &list, false).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(
            threads = ids.len(),
            "ended this user's password changes of rotation runs that died, still queued"
        );
        Ok(true)
    }

    async fn resolve_master(
        &self,
        master: DatabaseSecret,
        current: &DatabaseSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<DatabaseSecret, EngineError> {
        rotation_rds::resolve_master(self.config.rds.as_ref(), master, current, tags).await
    }

    async fn is_replica_of(
        &self,
        current: &DatabaseSecret,
        master: &DatabaseSecret,
    ) -> Result<bool, EngineError> {
        rotation_rds::is_replica_of(self.config.rds.as_ref(), current, master).await
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        let probe = rotation_trust::probe::Probe {
            trust: &self.config.settings.trust,
            sources: rotation_trust::Trust::sources_for_host(rotation_core::tls::server_name(
                current,
            )),
            pem_for_host: true,
            handshake: rotation_trust::probe::Handshake::MysqlSslRequest,
            default_port: DEFAULT_PORT,
            allow_plaintext_fallback: self.config.settings.allow_plaintext_fallback,
            timeout: self.config.settings.connect_timeout,
        };
        rotation_trust::probe::check(probe, current).await.map(Some)
    }

    async fn check_rights(
        &self,
        session: &mut MysqlSession,
        current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        let server = session.server().await?;
        let shown = server.current_user.clone();
        let mariadb = server.is_mariadb();
        if self.strategy == Strategy::SingleUser {
            let line = session.create_user_line("CURRENT_USER()", &shown).await?;
            let plugin = sql::parse_create_user(&line).plugin;
            computable(&plugin, &shown, mariadb)?;
            // Every account may set its own password (on MySQL only in plaintext, see
            // `mysql_may_set_own_stored_form`), unless the server is read-only.
            let rows = session
                .rows(
                    "SELECT CAST(@@global.read_only AS SIGNED)",
                    "reading whether the server is read-only",
                )
                .await?;
            let read_only: i64 = rows
                .first()
                .ok_or_else(|| EngineError::new(ErrorKind::Server, "no answer to @@read_only"))?
                .try_get(0)
                .map_err(|e| connect::engine_error("reading @@read_only", e))?;
            if read_only != 0 {
                return Err(EngineError::new(
                    ErrorKind::PermissionDenied,
                    "the server is read-only (read_only=ON): no account may change its password",
                ));
            }
            let may = if mariadb {
                format!("{shown} may set its own password (SET PASSWORD)")
            } else {
                mysql_may_set_own_stored_form(session, &shown).await?
            };
            return Ok(Some(format!("{may}; it uses {}", plugin.name())));
        }
        let rights = session.own_rights(&shown).await?;
        if rights.may_manage_users() {
            let pair = self.pair_plan(session, current, mariadb).await?;
            Ok(Some(format!(
                "{shown} holds CREATE USER on *.* with the grant option; {pair}"
            )))
        } else if !rights.roles.is_empty() {
            // Rights through roles are not expanded here.
            Ok(None)
        } else {
            Err(EngineError::new(
                ErrorKind::PermissionDenied,
                format!("{shown} lacks CREATE USER on *.* with the grant option"),
            ))
        }
    }
}

/// The `PROCESSLIST` condition of a thread running a password change
/// ([`sql::PASSWORD_CHANGES`]); constants of capitals and spaces (a unit test holds them to
/// that).
fn running_a_password_change() -> String {
    format!(
        "COMMAND = 'Query' AND ({})",
        sql::PASSWORD_CHANGES
            .map(|start| format!("LEFT(INFO, {}) = '{start}'", start.len()))
            .join(" OR ")
    )
}

/// How many of the threads `list` (ids, comma-separated) are still in the server, or, with
/// `changing`, still running a password change (a live run's thread stays after its change).
async fn threads_left(
    session: &mut MysqlSession,
    list: &str,
    changing: bool,
) -> Result<i64, EngineError> {
    let still = if changing {
        format!(" AND {}", running_a_password_change())
    } else {
        String::new()
    };
    let left = session
        .rows(
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN ({list}){still}"
            ),
            "waiting for the threads of rotation runs to go",
        )
        .await?;
    left.first()
        .and_then(|r| r.try_get::<i64, _>(0).ok())
        .ok_or_else(|| EngineError::new(ErrorKind::Server, "counting threads: no number"))
}
