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
//! The connection code is rotation-postgres's, with Redshift's [`DIALECT`]: port 5439,
//! database `dev`, verified TLS unless the secret says `"ssl": false` (AWS's functions never
//! ask for TLS on Redshift: W1), no `lock_timeout` (Redshift has none), `statement_timeout` set
//! after login, no `extra_float_digits` (Redshift refuses sqlx's default). The new password
//! reaches the server only in Redshift's `md5` hash form (W3); names are quoted by the
//! server's `quote_ident`.

pub mod api;
pub mod privileges;
pub mod sql;

use std::sync::Arc;

use rotation_core::{
    DatabaseSecret, Deadline, EngineError, EngineProfile, ErrorKind, PasswordDefaults, Rotator,
    Strategy,
};
use rotation_postgres::connect::bounded;
use rotation_postgres::session::{commit, exec, quote_ident, username};
use rotation_postgres::{Dialect, PgConfig, PgSession, master};
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnection;
use sqlx::{Column, Row};
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
};

/// Amazon Redshift: `engine` is `redshift`; user names hold at most 127 bytes; passwords are 8
/// to 64 characters with upper, lower and digit.
pub const PROFILE: EngineProfile = EngineProfile {
    name: "redshift",
    engines: &["redshift"],
    password: PasswordDefaults::REDSHIFT,
    max_username_bytes: Some(127),
    default_port: Some(DIALECT.default_port),
};

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

/// The password of `target`, once it satisfies Redshift's rules. The hash form bypasses the
/// server's own checks, so they are made here.
fn new_password(target: &DatabaseSecret) -> Result<&str, EngineError> {
    let password = target
        .password()
        .ok_or_else(|| EngineError::new(ErrorKind::InvalidInput, "the secret has no password"))?
        .expose_secret();
    PROFILE.password.check(password).map_err(|e| {
        EngineError::new(
            ErrorKind::InvalidInput,
            format!("the new password does not meet Redshift's rules: {e}"),
        )
    })?;
    Ok(password)
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

/// `name` as the server resolves it when written as the quoted identifier `name_q`: the name a
/// user created (or altered) as `name_q` has, and so the md5 hash's salt.
async fn resolved_name(
    conn: &mut PgConnection,
    deadline: Deadline,
    name_q: &str,
) -> Result<String, EngineError> {
    let sql = sql::resolve_identifier(name_q);
    let row = bounded(
        deadline,
        "resolving a user name",
        sqlx::query(&sql).fetch_one(conn),
    )
    .await?;
    row.columns()
        .first()
        .map(|c| c.name().to_string())
        .ok_or_else(|| EngineError::new(ErrorKind::Server, "a query returned no column"))
}

/// The stored name of user `name`: the exact name, else the name as the server resolves the
/// quoted identifier (never a guess: on a server that keeps case, `App` and `app` are two
/// users, and only the one the server itself would resolve is touched).
async fn stored_user(
    conn: &mut PgConnection,
    deadline: Deadline,
    name: &str,
    name_q: &str,
) -> Result<(Option<String>, String), EngineError> {
    if user_exists(conn, deadline, name).await? {
        return Ok((Some(name.to_string()), name.to_string()));
    }
    let resolved = resolved_name(conn, deadline, name_q).await?;
    let found = resolved != name && user_exists(conn, deadline, &resolved).await?;
    Ok((found.then(|| resolved.clone()), resolved))
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

/// Creates `name` (quoted `q`; `known` from [`stored_user`]) or sets its password; returns its
/// stored name and whether it was created.
async fn create_or_set(
    conn: &mut PgConnection,
    deadline: Deadline,
    (name, q): (&str, &str),
    known: (Option<String>, String),
    password: &str,
) -> Result<(String, bool), EngineError> {
    let (existing, resolved) = known;
    if let Some(stored) = existing {
        set_stored_password(conn, deadline, &stored, password).await?;
        return Ok((stored, false));
    }
    let sql = sql::create_user(q, &sql::md5_password(password, &resolved));
    exec(conn, deadline, &format!("creating user {name}"), &sql).await?;
    if !user_exists(conn, deadline, &resolved).await? {
        // The label did not tell how the name was stored (a server that reports column names
        // in another case): the exact name, with the hash salted by it; else give up, which
        // rolls the creation back.
        if !user_exists(conn, deadline, name).await? {
            return Err(EngineError::new(
                ErrorKind::Server,
                format!("user {name} was created but cannot be found by name"),
            ));
        }
        set_stored_password(conn, deadline, name, password).await?;
        info!(user = %name, "created the alternate user");
        return Ok((name.to_string(), true));
    }
    info!(user = %resolved, "created the alternate user");
    Ok((resolved, true))
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
        let password = new_password(target)?;
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
        let password = new_password(target)?;
        let deadline = session.deadline();
        let (current_name, pending_name) = (username(current), username(target));
        let mut tx = session.begin().await?;
        // The admin's own user, as the server resolved it: never one of the pair, whatever the
        // case of the names in the secrets (Redshift folds them).
        let admin = bounded(
            deadline,
            "reading the session's user",
            sqlx::query_scalar::<_, String>(sql::LOGIN_USER).fetch_one(&mut *tx),
        )
        .await?;
        let current_q = quote_ident(&mut tx, deadline, current_name).await?;
        let current_stored = stored_user(&mut tx, deadline, current_name, &current_q)
            .await?
            .0
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::Server,
                    format!("the current user {current_name} does not exist"),
                )
            })?;
        let pending_q = quote_ident(&mut tx, deadline, pending_name).await?;
        let pending_known = stored_user(&mut tx, deadline, pending_name, &pending_q).await?;
        for user in [
            Some(&current_stored),
            pending_known.0.as_ref(),
            Some(&pending_known.1),
        ]
        .into_iter()
        .flatten()
        {
            if *user == admin {
                return Err(EngineError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{user} is the admin secret's own user; the alternating pair must be two other users"
                    ),
                ));
            }
        }
        let (pending_stored, created) = create_or_set(
            &mut tx,
            deadline,
            (pending_name, &pending_q),
            pending_known,
            password,
        )
        .await?;
        let pending_is_clone = pending_name.strip_suffix("_clone") == Some(current_name);
        let direction = privileges::Direction::for_pair(
            &current_stored,
            &pending_stored,
            created,
            pending_is_clone,
        );
        let target_q = quote_ident(&mut tx, deadline, &direction.target).await?;
        privileges::synchronise(&mut tx, deadline, &direction, &target_q).await?;
        commit(tx, deadline, "the user change").await
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
