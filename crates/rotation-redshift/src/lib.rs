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
