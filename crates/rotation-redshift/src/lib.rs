//! Rotation strategies for Amazon Redshift (provisioned clusters and Redshift Serverless); used
//! by the rotation-lambda binaries and the `rotate` CLI.
//!
//! - [`RedshiftRotator::single_user`]: the user in the secret changes its own password (logged
//!   in with the current, else the previous credentials).
//! - [`RedshiftRotator::alternating_users`]: the admin secret from `masterarn` creates or
//!   updates the other user of the `name` / `name_clone` pair and brings the clone's database,
//!   schema and table privileges and group memberships in line with the original's, on every
//!   rotation (W7).
//!
//! The connection and session code is rotation-postgres's, with Redshift's [`DIALECT`]. So
//! TLS, the trust store, deadlines, error kinds and the rule that a change commits only once it
//! has answered in time are the same as PostgreSQL's.
//!
//! # What it connects to
//!
//! - Port 5439 and database `dev` by default. TLS is verified unless the secret says
//!   `"ssl": false`, where AWS's functions never ask for TLS (libpq's `prefer`: W1). Redshift's
//!   certificates chain to Amazon's public roots, which the trust store has.
//! - Session settings: only those Redshift documents. No `lock_timeout` (Redshift has none);
//!   `statement_timeout`, cut to the step's time left, is `SET` right after login rather than
//!   sent in the startup packet; no `extra_float_digits` (Redshift refuses sqlx's default of
//!   3) and no `application_name`.
//! - sqlx always sends `DateStyle`, `client_encoding` and `TimeZone` in the startup packet (not
//!   configurable in 0.8.6). Redshift documents `datestyle` and `timezone`, not
//!   `client_encoding` (see the end).
//! - Before the alternating users' synchronisation, the session sets
//!   `enable_case_sensitive_identifier`, so that quoted schema and table names created with it
//!   on are found. A server without the setting, like the stand-in, is left as it is.
//! - Redshift-managed admin secrets (only `username` and `password`): the endpoint comes from
//!   the Redshift APIs (the `api` module, every page: W12). An admin secret that has a `host`
//!   is used as it is (AWS's function always asks the API). Host equality with the admin is
//!   strict, as AWS's.
//!
//! # Passwords
//!
//! - Generated within Redshift's rules: 8-64 characters, at least one upper, lower and digit,
//!   none of `' " \ / @` or space. `PASSWORD_LENGTH` outside 8-64, or an `EXCLUDE_CHARACTERS`
//!   that leaves no digit (or no upper or lower letter), stops the function at start.
//! - As AWS's function does, `EXCLUDE_NUMBERS`, `EXCLUDE_UPPERCASE` and `EXCLUDE_LOWERCASE` are
//!   never sent. Unlike it, setting them logs a warning at start; the forbidden characters are
//!   always excluded (with a warning when `EXCLUDE_CHARACTERS` omitted them); and
//!   `REQUIRE_EACH_INCLUDED_TYPE=false` is overridden.
//! - A generated password is checked against the rules before it is stored, and a pending
//!   password is checked again before any change.
//! - The new password reaches the server only in Redshift's `md5` form: `md5` + hex MD5 of the
//!   password followed by the user name (AWS's function sends it in clear: W3). Single user
//!   salts with `session_user`, the user that logged in. The md5 form does not reveal the
//!   password, but md5 authentication accepts it as is: treat statement logs that show it as
//!   holding a credential.
//! - The name is the one the secret holds, exactly. Redshift keeps the case of a quoted user
//!   name whatever `enable_case_sensitive_identifier` says, and `quote_ident` quotes any name
//!   with a capital. So `App_clone` and `app_clone` are two users, and only the one the secret
//!   names is touched. The current user must exist under that exact name; a user created
//!   unquoted is stored in lower case.
//!
//! # Its SQL
//!
//! SQL in the subset both Redshift and PostgreSQL accept (`||`, aliased subqueries), names
//! quoted by the server's `quote_ident`, user names up to 127 bytes. The statement text is
//! pinned by unit tests (the `sql` module). testSecret is `SELECT 1` as the pending user; the
//! synchronisation is setSecret's.
//!
//! # The clone's privileges (alternating users)
//!
//! The other user is created (`CREATE USER ... PASSWORD 'md5...'`) with the current user's
//! privileges. On every rotation the pair's privileges are brought in line (the `privileges`
//! module says how they are read):
//!
//! - database CREATE/TEMP, one statement per database, as Redshift requires for datashare
//!   databases;
//! - schema USAGE/CREATE, on all schemas, not only those with tables;
//! - SELECT/INSERT/UPDATE/DELETE/REFERENCES on tables and views outside `pg_*` schemas (so
//!   never `pg_internal` or `pg_automv`);
//! - group memberships.
//!
//! The original (the name without `_clone`) is the source of truth: the clone gains what the
//! original gained and loses what it lost. The user `AWSCURRENT` names, which applications use
//! during the rotation, never loses anything mid-rotation. When the clone is current it only
//! gains; its losses wait for the next rotation, where it is the pending user. So grant to the
//! original: a grant made to the clone alone is removed when the clone is next set. AWS's
//! function copies a snapshot once and never again (W7).
//!
//! - What the clone owns it keeps.
//! - A privilege the clone passed on `WITH GRANT OPTION` makes the revoke fail with the
//!   server's "dependent privileges exist" until an operator resolves it.
//! - The admin's own user (`session_user`) is never one of the pair. A superuser on one side
//!   of the pair only is refused the same way.
//! - Tables in schemas the admin may not use are left out: it could neither look them up nor
//!   grant on them. Redshift's admin user is a superuser and sees all.
//! - Not covered, as in AWS's: Redshift RBAC roles, functions and procedures, default
//!   privileges, user attributes, ownership, objects in databases other than the secret's.
//!
//! # A stalled attempt
//!
//! Every call is bounded by the step's deadline as for PostgreSQL, and the change commits only
//! once it has answered. Redshift has no `idle_in_transaction_session_timeout`, so the server
//! keeps a silent client's open transaction (and its locks on the users) until it drops the
//! connection. A retry in that window fails with a timeout that says it may be waiting for
//! another session's lock. Redshift has no fence against a late `COMMIT` either
//! (RELIABILITY.md, "Found, and what is still open").
//!
//! # Verified against a PostgreSQL 15 stand-in
//!
//! The stand-in has md5 authentication, `password_encryption = md5`, a `dev` database and TLS
//! with a generated CA. On it:
//!
//! - both strategies rotate; the old password is refused (single user) or keeps working
//!   (alternating);
//! - the stored hash is the md5 form of the new password, and the server log never shows the
//!   password;
//! - 12 hostile user names and 11 hostile passwords; passwords breaking the rules change
//!   nothing;
//! - the clone's privileges after the first and later rotations, with grants and group
//!   memberships added and removed in between;
//! - `tests/clone_privileges.rs`: user names ending in `_clone`, case namesakes, a superuser
//!   clone, private schemas, hostile object and group names, 5,000 tables, a stall in the
//!   middle of the synchronisation (kill -9 of `rotate` and two runs at once: the shared kill
//!   sweep);
//! - Redshift-managed admin secrets through moto's `DescribeClusters`, and a paging wrapped
//!   client for Serverless (moto has no Serverless API);
//! - both Lambda strategies end to end through moto's RotateSecret and the Lambda Runtime API,
//!   and the CLI choosing Redshift from the secret;
//! - every "No stranded password" regression that involves a database, the same scenarios as
//!   PostgreSQL's: stalls and resets at each step, password changes held behind locks or in
//!   the network past the deadline, abort with the database down, recovery of unlabelled
//!   versions, pending, previous and master values on another port, database or
//!   `tls_server_name`, the master in the pair.
//!
//! # What only a real Redshift could show
//!
//! - that it accepts sqlx's startup packet (including `client_encoding`) and binary results;
//! - `statement_timeout` set after login;
//! - `has_*_privilege`, `ANY(grolist)` and `session_user` on its leader node;
//! - that `CREATE USER`, `ALTER GROUP`, `GRANT` and `REVOKE` roll back together with the
//!   transaction when a step gives up (the stand-in shows it for PostgreSQL; spec §15);
//! - that its `quote_ident` quotes its own reserved words;
//! - `enable_case_sensitive_identifier` set per session;
//! - how it treats a login name whose case differs from the stored one (a user created
//!   unquoted);
//! - its own password checks (the stand-in accepts anything);
//! - names longer than PostgreSQL's 63 bytes;
//! - datashare databases;
//! - `GRANT ... ON SCHEMA` for external schemas.

pub mod api;
pub mod privileges;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use rotation_core::rotator::BoxError;
use rotation_core::{
    AnyRotator, DatabaseSecret, Deadline, Engine, EngineConfig, EngineEnv, EngineError,
    EngineProfile, ErrorKind, PasswordDefaults, Rotator, Strategy,
};
use rotation_postgres::connect::bounded;
use rotation_postgres::session::{commit, exec, quote_ident, username};
use rotation_postgres::{Dialect, PgConfig, PgSession};
use rotation_rds::master;
use sqlx::Executor;
use sqlx::postgres::PgConnection;
use tracing::info;

pub use api::{Directory, SdkDirectory};

/// Amazon Redshift as a PostgreSQL-protocol server.
pub const DIALECT: Dialect = Dialect {
    name: "redshift",
    default_port: 5439,
    default_dbname: "dev",
    lock_timeout: false,
    idle_in_transaction_timeout: false,
    limits_in_startup: false,
    extra_float_digits: None,
    application_name: false,
    fence_stale_sessions: false,
};

/// Amazon Redshift: `engine` is `redshift`; user names hold at most 127 bytes; passwords are 8
/// to 64 characters with upper, lower and digit.
pub const PROFILE: EngineProfile = EngineProfile {
    name: "redshift",
    engines: &["redshift"],
    password: PasswordDefaults {
        engine: "redshift",
        exclude_characters: "/@\"'\\:",
        length: 32,
        min_length: 8,
        max_length: 64,
        class_switches: false,
        forbidden: "'\"\\/@ ",
        required_classes: true,
        printable_ascii: true,
    },
    max_username_bytes: Some(127),
    default_port: Some(DIALECT.default_port),
    single_user_master: false,
    advice: rotation_core::RightsAdvice {
        own_password: "let the user change its own password (any Redshift user may, unless its connection is read-only)",
        master: "make the master a superuser (Redshift needs one to create users and set their passwords)",
    },
};

/// Amazon Redshift as one value: its profile, its Lambda function (`redshift`) and its settings
/// ([`PgConfig`] with Redshift's dialect, and the Redshift APIs on AWS).
pub const ENGINE: Engine = Engine {
    profile: &PROFILE,
    function_name: "redshift",
    env: &rotation_postgres::config::CONNECT_ENV,
    configure,
};

fn configure(env: &EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError> {
    Ok(Arc::new(RedshiftConfig {
        config: PgConfig::from_lookup(|k| env.var(k))?.with_dialect(DIALECT),
        directory: env
            .aws
            .map(|sdk| Arc::new(SdkDirectory::from_sdk_config(sdk)) as Arc<dyn Directory>),
    }))
}

/// Redshift's settings, read once.
#[derive(Debug, Clone)]
pub struct RedshiftConfig {
    /// Connection settings, with Redshift's dialect.
    pub config: PgConfig,
    /// The Redshift and Redshift Serverless APIs, on AWS.
    pub directory: Option<Arc<dyn Directory>>,
}

impl EngineConfig for RedshiftConfig {
    fn rotator(&self, strategy: Strategy) -> AnyRotator {
        let rotator = RedshiftRotator::new(strategy, self.config.clone());
        AnyRotator::new(match &self.directory {
            Some(d) => rotator.with_directory(d.clone()),
            None => rotator,
        })
    }

    fn log(&self) {
        self.config.trust.log_sources();
    }
}

/// The Redshift rotator for one strategy.
#[derive(Debug, Clone)]
pub struct RedshiftRotator {
    strategy: Strategy,
    config: PgConfig,
    directory: Option<Arc<dyn Directory>>,
}

impl RedshiftRotator {
    /// A rotator for `strategy`; `config`'s dialect is replaced by Redshift's.
    pub fn new(strategy: Strategy, config: PgConfig) -> Self {
        RedshiftRotator {
            strategy,
            config: config.with_dialect(DIALECT),
            directory: None,
        }
    }
    /// Single user.
    pub fn single_user(config: PgConfig) -> Self {
        Self::new(Strategy::SingleUser, config)
    }
    /// Alternating users.
    pub fn alternating_users(config: PgConfig) -> Self {
        Self::new(Strategy::AlternatingUsers, config)
    }
    /// Looks up Redshift-managed admin secrets through `directory`.
    pub fn with_directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }
    /// The connection settings (with Redshift's dialect).
    pub fn config(&self) -> &PgConfig {
        &self.config
    }
}

/// Whether a user is stored under exactly `stored`.
async fn user_exists(
    conn: &mut PgConnection,
    deadline: Deadline,
    stored: &str,
) -> Result<bool, EngineError> {
    bounded(
        deadline,
        "looking up a user",
        sqlx::query_scalar::<_, bool>(sql::USER_EXISTS)
            .bind(stored)
            .fetch_one(conn),
    )
    .await
}

/// Sets the password of the user stored as `stored`.
async fn set_stored_password(
    conn: &mut PgConnection,
    deadline: Deadline,
    stored: &str,
    password: &str,
) -> Result<(), EngineError> {
    let q = quote_ident(conn, deadline, stored).await?;
    let sql = sql::alter_password(&q, &sql::md5_password(password, stored));
    exec(
        conn,
        deadline,
        &format!("setting the password of {stored}"),
        &sql,
    )
    .await
}

/// Makes quoted schema and table names keep their case in this session, as on clusters that
/// turn `enable_case_sensitive_identifier` on, so that a `"MyTable"` created there is found by
/// the names `quote_ident` gives. A server without the setting (the PostgreSQL stand-in, which
/// always keeps quoted case) answers "unrecognized configuration parameter", which is fine.
async fn keep_case_of_quoted_names(session: &mut PgSession) -> Result<(), EngineError> {
    let deadline = session.deadline();
    let conn = session.connection();
    match deadline
        .run(conn.execute(sqlx::raw_sql(sql::CASE_SENSITIVE_IDENTIFIERS)))
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42704") => {
            Ok(())
        }
        Ok(Err(e)) => Err(rotation_postgres::connect::engine_error(
            "keeping the case of quoted names",
            e,
        )),
        Err(_) => Err(EngineError::past_deadline(
            "keeping the case of quoted names",
        )),
    }
}

/// Creates user `name` (quoted `q`) or sets its password; returns whether it was created.
///
/// Names are exact: Redshift keeps the case of a quoted user name whatever
/// `enable_case_sensitive_identifier` says (and `quote_ident` quotes any name with a capital),
/// so `App_clone` and `app_clone` are two users and only the one the secret names is touched.
async fn create_or_set(
    conn: &mut PgConnection,
    deadline: Deadline,
    (name, q): (&str, &str),
    password: &str,
) -> Result<bool, EngineError> {
    if user_exists(conn, deadline, name).await? {
        set_stored_password(conn, deadline, name, password).await?;
        return Ok(false);
    }
    let sql = sql::create_user(q, &sql::md5_password(password, name));
    exec(conn, deadline, &format!("creating user {name}"), &sql).await?;
    if !user_exists(conn, deadline, name).await? {
        // Stored under another name than the one the hash is salted with: give up, which
        // rolls the creation back with the transaction.
        return Err(EngineError::new(
            ErrorKind::Server,
            format!("user {name} was created but is not stored under that exact name"),
        ));
    }
    info!(user = %name, "created the alternate user");
    Ok(true)
}

impl Rotator for RedshiftRotator {
    type Session = PgSession;

    fn profile(&self) -> &EngineProfile {
        &PROFILE
    }

    fn strategy(&self) -> Strategy {
        self.strategy
    }

    async fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<PgSession, EngineError> {
        PgSession::login(secret, &self.config, deadline).await
    }

    async fn set_own_password(
        &self,
        session: &mut PgSession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = PROFILE.password_to_set(target)?;
        let deadline = session.deadline();
        // Committed only once the ALTER has answered in time (see the trait).
        let mut tx = session.begin().await?;
        // The session's own user, as stored: the hash's salt and the user to change.
        let stored = bounded(
            deadline,
            "reading the session's user",
            sqlx::query_scalar::<_, String>(sql::LOGIN_USER).fetch_one(&mut *tx),
        )
        .await?;
        let wanted = username(target);
        // Redshift folds ASCII letters of names to lower case by default.
        if stored != wanted && stored != wanted.to_ascii_lowercase() {
            return Err(EngineError::new(
                ErrorKind::InvalidInput,
                format!(
                    "logged in as {stored}, not as {wanted}; refusing to change another user's password"
                ),
            ));
        }
        set_stored_password(&mut tx, deadline, &stored, password).await?;
        commit(tx, deadline, "the password change").await
    }

    async fn set_password_as_master(
        &self,
        session: &mut PgSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = PROFILE.password_to_set(target)?;
        let deadline = session.deadline();
        let (current_name, pending_name) = (username(current), username(target));
        keep_case_of_quoted_names(session).await?;
        let mut tx = session.begin().await?;
        // The admin's own user, as the server resolved it: never one of the pair, whatever the
        // case of the names in the secrets (Redshift folds them).
        let admin = bounded(
            deadline,
            "reading the session's user",
            sqlx::query_scalar::<_, String>(sql::LOGIN_USER).fetch_one(&mut *tx),
        )
        .await?;
        if !user_exists(&mut tx, deadline, current_name).await? {
            return Err(EngineError::new(
                ErrorKind::InvalidInput,
                format!(
                    "no user is stored under the exact name {current_name} (Redshift keeps the case of quoted user names; a user created unquoted is stored in lower case): make the secret's username the stored name"
                ),
            ));
        }
        for user in [current_name, pending_name] {
            if user == admin {
                return Err(EngineError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{user} is the admin secret's own user; the alternating pair must be two other users"
                    ),
                ));
            }
        }
        let pending_q = quote_ident(&mut tx, deadline, pending_name).await?;
        let created =
            create_or_set(&mut tx, deadline, (pending_name, &pending_q), password).await?;
        let direction = rotation_core::Direction::for_pair(current_name, pending_name, created);
        let target_q = quote_ident(&mut tx, deadline, &direction.target).await?;
        privileges::synchronise(&mut tx, deadline, &direction, &target_q).await?;
        commit(tx, deadline, "the user change").await
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        rotation_postgres::connect::check_tls(current, &self.config)
            .await
            .map(Some)
    }

    async fn check_rights(
        &self,
        session: &mut PgSession,
        _current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        if self.strategy == Strategy::SingleUser {
            return Ok(Some(
                "a Redshift user may always change its own password".into(),
            ));
        }
        let deadline = session.deadline();
        let (user, superuser): (String, bool) = bounded(
            deadline,
            "reading the master's rights",
            sqlx::query_as(
                "SELECT usename::text, usesuper FROM pg_user WHERE usename = current_user",
            )
            .fetch_one(session.connection()),
        )
        .await?;
        // Without superuser, a role granted CREATE USER (RBAC) may still do it: not told here.
        Ok(superuser.then(|| format!("the master {user} is a superuser")))
    }

    async fn test_session(
        &self,
        session: &mut PgSession,
        _pending: &DatabaseSecret,
        _partner: Option<&str>,
    ) -> Result<(), EngineError> {
        // AWS's test is `SELECT NOW()`; the pair's privileges are synchronised by setSecret on
        // every rotation, so a grant made between setSecret and testSecret does not fail here.
        let deadline = session.deadline();
        bounded(
            deadline,
            "running a query as the pending user",
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(session.connection()),
        )
        .await
        .map(|_| ())
    }

    async fn close(&self, session: PgSession) {
        session.close().await;
    }

    async fn resolve_master(
        &self,
        master: DatabaseSecret,
        current: &DatabaseSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<DatabaseSecret, EngineError> {
        let master = match (tags, &self.directory) {
            (None, _) => master,
            (Some(tags), Some(directory)) => {
                let endpoint = api::managed_admin_endpoint(directory.as_ref(), tags).await?;
                info!(host = %endpoint.host, "resolved a Redshift-managed admin secret through the Redshift API");
                master::complete_master(master, &endpoint)?
            }
            (Some(_), None) => {
                return Err(EngineError::new(
                    ErrorKind::InvalidInput,
                    "the admin secret has no host; Redshift-managed admin secrets need the Redshift API, which this rotator was built without",
                ));
            }
        };
        master::in_childs_database(master, current)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_settings_redshift_has_are_sent() {
        let config = PgConfig::default().with_dialect(DIALECT);
        // statement_timeout only, set after login, cut to the step's time left.
        assert_eq!(
            rotation_postgres::connect::set_limits_sql(
                &config,
                Deadline::after(Duration::from_secs(60))
            ),
            "SET statement_timeout TO 15000;"
        );
        let short = rotation_postgres::connect::set_limits_sql(
            &config,
            Deadline::after(Duration::from_secs(3)),
        );
        let ms: u64 = short
            .strip_prefix("SET statement_timeout TO ")
            .and_then(|s| s.strip_suffix(';'))
            .unwrap()
            .parse()
            .unwrap();
        assert!((2000..=3000).contains(&ms), "{short}");
        assert_eq!(
            (
                DIALECT.lock_timeout,
                DIALECT.idle_in_transaction_timeout,
                DIALECT.limits_in_startup,
                DIALECT.application_name,
                DIALECT.extra_float_digits,
                DIALECT.default_port,
                DIALECT.default_dbname,
            ),
            (false, false, false, false, None, 5439, "dev")
        );
    }
}
