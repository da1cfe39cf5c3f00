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
use rotation_postgres::session::{exec, quote_ident, username};
use rotation_postgres::{Dialect, PgConfig, PgSession, master};
use secrecy::ExposeSecret;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tracing::info;

pub use api::{Directory, SdkDirectory};

/// Amazon Redshift as a PostgreSQL-protocol server.
pub const DIALECT: Dialect = Dialect {
    name: "redshift",
    default_port: 5439,
    default_dbname: "dev",
    lock_timeout: false,
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

/// The stored name of user `name`, if there is one.
async fn find_user(
    conn: &mut PgConnection,
    deadline: Deadline,
    name: &str,
) -> Result<Option<String>, EngineError> {
    bounded(
        deadline,
        "looking up a user",
        sqlx::query_scalar::<_, String>(sql::FIND_USER)
            .bind(name)
            .fetch_optional(conn),
    )
    .await
}

/// How Redshift stores a new user's name by default: ASCII letters folded to lower case.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Creates `name` or sets its password; returns its stored name.
async fn create_or_set(
    conn: &mut PgConnection,
    deadline: Deadline,
    name: &str,
    password: &str,
) -> Result<String, EngineError> {
    if let Some(stored) = find_user(conn, deadline, name).await? {
        let q = quote_ident(conn, deadline, &stored).await?;
        let sql = sql::alter_password(&q, &sql::md5_password(password, &stored));
        exec(
            conn,
            deadline,
            &format!("setting the password of {stored}"),
            &sql,
        )
        .await?;
        return Ok(stored);
    }
    let q = quote_ident(conn, deadline, name).await?;
    let guess = folded(name);
    let sql = sql::create_user(&q, &sql::md5_password(password, &guess));
    exec(conn, deadline, &format!("creating user {name}"), &sql).await?;
    let stored = find_user(conn, deadline, name).await?.ok_or_else(|| {
        EngineError::new(
            ErrorKind::Server,
            format!("user {name} was created but cannot be found by name"),
        )
    })?;
    // A server that keeps the name's case (the PostgreSQL stand-in, or Redshift with
    // enable_case_sensitive_identifier) salts the hash with that name instead.
    if stored != guess {
        let q = quote_ident(conn, deadline, &stored).await?;
        let sql = sql::alter_password(&q, &sql::md5_password(password, &stored));
        exec(
            conn,
            deadline,
            &format!("setting the password of {stored}"),
            &sql,
        )
        .await?;
    }
    info!(user = %stored, "created the alternate user");
    Ok(stored)
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
        let mut tx = bounded(
            deadline,
            "starting a transaction",
            session.connection().begin(),
        )
        .await?;
        // The session's own user, as stored: the hash's salt and the user to change.
        let stored = bounded(
            deadline,
            "reading the session's user",
            sqlx::query_scalar::<_, String>(sql::SESSION_USER).fetch_one(&mut *tx),
        )
        .await?;
        let wanted = username(target);
        if stored != wanted && stored != folded(wanted) {
            return Err(EngineError::new(
                ErrorKind::InvalidInput,
                format!(
                    "logged in as {stored}, not as {wanted}; refusing to change another user's password"
                ),
            ));
        }
        let q = quote_ident(&mut tx, deadline, &stored).await?;
        let sql = sql::alter_password(&q, &sql::md5_password(password, &stored));
        exec(
            &mut tx,
            deadline,
            &format!("changing the password of {stored}"),
            &sql,
        )
        .await?;
        bounded(deadline, "committing the password change", tx.commit()).await
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
        let mut tx = bounded(
            deadline,
            "starting a transaction",
            session.connection().begin(),
        )
        .await?;
        let pending_stored = create_or_set(&mut tx, deadline, pending_name, password).await?;
        let current_stored = find_user(&mut tx, deadline, current_name)
            .await?
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::Server,
                    format!("the current user {current_name} does not exist"),
                )
            })?;
        // The original (the name without `_clone`) is the source of truth in both directions.
        let (original, clone) = if pending_name.strip_suffix("_clone") == Some(current_name) {
            (current_stored, pending_stored)
        } else {
            (pending_stored, current_stored)
        };
        let clone_q = quote_ident(&mut tx, deadline, &clone).await?;
        privileges::synchronise(&mut tx, deadline, &original, &clone, &clone_q).await?;
        bounded(deadline, "committing the user change", tx.commit()).await
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
