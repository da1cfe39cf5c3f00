//! Connections built from the secret alone (no URL, so any password works), verified TLS by
//! default, every call bounded by the step's deadline, errors classified by the server's error
//! number, never by text that could hold a password.

use std::future::Future;

use rotation_core::tls::server_name;
use rotation_core::{DatabaseSecret, DbName, Deadline, EngineError, ErrorKind};
use rotation_trust::ConnectSettings;
use secrecy::ExposeSecret;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

/// MySQL's and MariaDB's default port.
pub const DEFAULT_PORT: u16 = 3306;
fn options(secret: &DatabaseSecret, tls: bool, settings: &ConnectSettings) -> MySqlConnectOptions {
    let host = server_name(secret);
    let mut o = MySqlConnectOptions::new()
        .host(host)
        .port(secret.port().unwrap_or(DEFAULT_PORT))
        .username(secret.username().unwrap_or_default())
        .password(
            secret
                .password()
                .map(|p| p.expose_secret())
                .unwrap_or_default(),
        )
        .statement_cache_capacity(0)
        // No session set-up statement after login: the rotation sets what it needs with its
        // changes (one round trip less per login).
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .timezone(None)
        .set_names(false)
        .disable_statement_logging();
    if let DbName::Name(db) = secret.dbname() {
        o = o.database(db);
    }
    if tls {
        // The trust store's PEM for this host, on top of the Mozilla roots the driver trusts.
        o.ssl_mode(MySqlSslMode::VerifyIdentity)
            .ssl_ca_from_pem(settings.trust.pem_for_host(host).to_vec())
    } else {
        o.ssl_mode(MySqlSslMode::Disabled)
    }
}

/// The server's error number, if the error is the server's.
pub fn error_number(err: &sqlx::Error) -> Option<u16> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Classifies a driver error by the server's error number or the error's type.
pub fn classify(err: &sqlx::Error) -> ErrorKind {
    match err {
        sqlx::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            // rustls reports handshake and certificate failures as InvalidData I/O errors.
            std::io::ErrorKind::InvalidData => ErrorKind::Tls,
            _ => ErrorKind::Unreachable,
        },
        sqlx::Error::Tls(_) => ErrorKind::Tls,
        sqlx::Error::Database(db) => match error_number(err) {
            // ER_ACCESS_DENIED_ERROR, ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL 3118, MariaDB 4151),
            // ER_MUST_CHANGE_PASSWORD_LOGIN.
            Some(1045 | 3118 | 4151 | 1862) => ErrorKind::AuthFailed,
            // ER_BAD_DB_ERROR.
            Some(1049) => ErrorKind::UnknownDatabase,
            // ER_SECURE_TRANSPORT_REQUIRED: the account or server wants TLS.
            Some(3159) => ErrorKind::Tls,
            // ER_DBACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR,
            // ER_TABLEACCESS_DENIED_ERROR, ER_CANT_CREATE_USER_WITH_GRANT,
            // ER_OPTION_PREVENTS_STATEMENT (read_only), ER_PASSWORD_NOT_ALLOWED.
            // ER_ACCESS_DENIED_NO_PASSWORD_ERROR (a PROXY or role grant the master may not make).
            Some(1044 | 1227 | 1142 | 1410 | 1290 | 1211 | 1698) => ErrorKind::PermissionDenied,
            // ER_LOCK_WAIT_TIMEOUT, ER_STATEMENT_TIMEOUT (MariaDB), ER_QUERY_TIMEOUT (MySQL),
            // ER_QUERY_INTERRUPTED.
            Some(1205 | 1969 | 3024 | 1317) => ErrorKind::Timeout,
            // The deadline statement's own refusal.
            _ if db.message() == crate::sql::DEADLINE_PASSED => ErrorKind::Timeout,
            _ => ErrorKind::Server,
        },
        sqlx::Error::Configuration(_) => ErrorKind::InvalidInput,
        sqlx::Error::Protocol(m) if m.contains("TLS") || m.contains("SSL") => ErrorKind::Tls,
        _ => ErrorKind::Other,
    }
}

/// Wraps a driver error with what was being done (no secrets: user, host, port, database).
pub fn engine_error(what: impl Into<String>, err: sqlx::Error) -> EngineError {
    let kind = classify(&err);
    EngineError::new(kind, what).with_source(err)
}

/// As [`engine_error`] for a statement that carries a password's stored form: the server's
/// message is kept with that text cut out (a syntax error quotes the statement), and the
/// driver's error is not chained.
pub fn engine_error_hiding(what: impl Into<String>, err: sqlx::Error, hidden: &str) -> EngineError {
    let kind = classify(&err);
    let message = match &err {
        sqlx::Error::Database(db) => {
            let number = error_number(&err).unwrap_or_default();
            format!(
                "{}: error {number}: {}",
                what.into(),
                db.message().replace(hidden, "<stored form>")
            )
        }
        other => format!(
            "{}: {}",
            what.into(),
            other.to_string().replace(hidden, "<stored form>")
        ),
    };
    EngineError::new(kind, message)
}

fn target(secret: &DatabaseSecret) -> String {
    let host = secret.host().unwrap_or_default();
    let name = server_name(secret);
    let via = if name != host {
        format!(" (as {name})")
    } else {
        String::new()
    };
    let db = match secret.dbname() {
        DbName::Name(n) => format!(" database {n}"),
        _ => String::new(),
    };
    format!(
        "user {} at {host}{via}:{}{db}",
        secret.username().unwrap_or_default(),
        secret.port().unwrap_or(DEFAULT_PORT),
    )
}

async fn attempt(
    secret: &DatabaseSecret,
    tls: bool,
    settings: &ConnectSettings,
    deadline: Deadline,
) -> Result<MySqlConnection, EngineError> {
    let what = || {
        format!(
            "connecting as {} ({})",
            target(secret),
            if tls { "TLS verify-full" } else { "no TLS" }
        )
    };
    let limit = deadline.cap(settings.connect_timeout);
    let options = options(secret, tls, settings);
    rotation_core::tls::connect_attempt(secret, tls, limit, what(), options.connect(), engine_error)
        .await
}

/// Connects with `secret`'s credentials following its TLS plan, within `deadline` (each
/// attempt within the configured connect timeout). A TLS secret against a server without TLS
/// is an error, never a plaintext login (AWS's W25).
pub async fn connect(
    secret: &DatabaseSecret,
    settings: &ConnectSettings,
    deadline: Deadline,
) -> Result<MySqlConnection, EngineError> {
    rotation_core::tls::login_by_plan(secret, settings.allow_plaintext_fallback, |tls| {
        attempt(secret, tls, settings, deadline)
    })
    .await
}

/// Runs a driver call within `deadline`: a stalled connection becomes a `Timeout` error.
pub async fn bounded<T>(
    deadline: Deadline,
    what: &str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, EngineError> {
    deadline.driver_call(what, fut, engine_error).await
}

/// Closes politely: the COM_QUIT is sent, the server's reply not awaited
/// ([`rotation_core::close_without_waiting`]).
pub async fn close(conn: MySqlConnection) {
    rotation_core::close_without_waiting(conn.close()).await;
}
