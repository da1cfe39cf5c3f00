//! Connections built from the secret alone, TLS secure by default, errors classified.

use std::future::Future;
use std::time::Duration;

use rotation_core::{DatabaseSecret, DbName, Deadline, EngineError, ErrorKind};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{ConnectOptions, Connection, Executor};
use tracing::info;

use crate::config::PgConfig;

/// PostgreSQL's default port.
pub const DEFAULT_PORT: u16 = 5432;
/// PostgreSQL's default database when `dbname` is absent (or null, for AWS's multi-user
/// function).
pub const DEFAULT_DBNAME: &str = "postgres";

/// What differs between servers that speak the PostgreSQL protocol: defaults, and which session
/// settings they accept. Each engine chooses its own; the connection code is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// Engine label for messages.
    pub name: &'static str,
    /// The port of a secret without `port`.
    pub default_port: u16,
    /// The database of a secret without `dbname` (or with `null`).
    pub default_dbname: &'static str,
    /// Whether the server has `lock_timeout` (W24).
    pub lock_timeout: bool,
    /// Whether the server has `idle_in_transaction_session_timeout`: a session whose client
    /// went silent inside a transaction is ended, so its locks do not block the next attempt.
    pub idle_in_transaction_timeout: bool,
    /// Whether the server limits (`statement_timeout`, `lock_timeout`) go in the startup
    /// packet's `options`; otherwise they are `SET` right after login, one round trip more.
    pub limits_in_startup: bool,
    /// `extra_float_digits` sent at startup; `None` sends nothing (the server's default).
    pub extra_float_digits: Option<i8>,
    /// Whether `application_name` is sent at startup.
    pub application_name: bool,
    /// Whether a login ends the same user's earlier rotation sessions still inside a
    /// transaction (`pg_stat_activity`, `pg_terminate_backend`), see [`fence_sql`].
    pub fence_stale_sessions: bool,
}

/// Names this session with its step's deadline on the server's clock, then ends this user's
/// other rotation sessions still inside a transaction after their own deadline, and returns the
/// ended sessions' process ids.
///
/// Each rotation session names itself `rotation:T` in `application_name`, T being its step's
/// deadline in milliseconds since the epoch on the server's clock (computed by the server, from
/// the time the step had left: no clock shared with the client). An earlier step that gave up on
/// its `COMMIT` (no answer before its deadline) leaves such a session on the server until its
/// idle timeout; a `COMMIT` still in the network would commit there after the step reported
/// failure, after a later proof that `AWSCURRENT` logs in (a safe `abort`). Ending the session
/// first means that `COMMIT` finds no session. A session within half a second of its deadline
/// counts as stale, so a login right after a step gave up still finds it. A session whose step
/// is still running (another rotation using the same master, a fleet run) is never touched, nor
/// are the application's sessions (another `application_name`), nor a session that has not
/// named its deadline yet. A user may end its own sessions. The cast is guarded, so a session
/// named otherwise cannot fail the query, and the sessions to end are chosen in a subquery the
/// planner may not flatten (`OFFSET 0`): in one `WHERE`, PostgreSQL may call
/// `pg_terminate_backend` before the conditions that choose (a first version of this query
/// ended live sessions that way).
///
/// [`Fence::Every`] ends, whatever its deadline, a session that has been inside its transaction
/// without a statement for [`DEAD_AFTER_MS`]: for `abort` holding the secret's exclusive claim,
/// when no live run of the secret can own one. A live run of another secret acting as the same
/// user (a fleet sharing a master whose own secret is aborted) spends milliseconds between the
/// statements of its transaction, and is left alone.
pub fn fence_sql(remaining: Duration, fence: Fence) -> String {
    let stale = match fence {
        Fence::Stale => "split_part(application_name, ':', 2)::bigint \
             < (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 500"
            .to_string(),
        Fence::Every => {
            format!("state_change < clock_timestamp() - interval '{DEAD_AFTER_MS} milliseconds'")
        }
    };
    format!(
        "SELECT set_config('application_name', 'rotation:' || \
         ((extract(epoch FROM clock_timestamp()) * 1000)::bigint + {ms}), false), \
         ARRAY(SELECT pid FROM (SELECT pid FROM pg_stat_activity \
           WHERE usename = current_user AND pid <> pg_backend_pid() \
           AND state IN ('idle in transaction', 'idle in transaction (aborted)') \
           AND CASE WHEN application_name ~ '^rotation:[0-9]{{1,15}}$' \
                THEN {stale} ELSE false END \
           OFFSET 0) AS stale WHERE pg_terminate_backend(pid))",
        ms = remaining.as_millis().min(999_999_999)
    )
}

/// How long a rotation session must have been inside its transaction without a statement for
/// [`Fence::Every`] to end it.
pub const DEAD_AFTER_MS: u64 = 1000;

/// The user's other rotation sessions inside a transaction that have been idle there for less
/// than [`DEAD_AFTER_MS`]: abort waits until none is left before [`Fence::Every`] (a dead run's
/// session ages past it; a live run's commits and leaves its transaction).
pub fn young_sessions_sql() -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE usename = current_user AND pid <> pg_backend_pid() \
         AND state IN ('idle in transaction', 'idle in transaction (aborted)') \
         AND application_name ~ '^rotation:[0-9]{{1,15}}$' \
         AND state_change >= clock_timestamp() - interval '{DEAD_AFTER_MS} milliseconds'"
    )
}

/// The user's other rotation sessions inside a transaction (a statement running, or idle in
/// it): each one's process id and its transaction's start in microseconds since the epoch,
/// which tells that transaction apart from a later one of the same session.
pub const OPEN_SESSIONS_SQL: &str = "SELECT pid, (extract(epoch FROM xact_start) * 1000000)::bigint \
     FROM pg_stat_activity \
     WHERE usename = current_user AND pid <> pg_backend_pid() AND xact_start IS NOT NULL \
     AND application_name ~ '^rotation:[0-9]{1,15}$'";

/// Of the transactions listed by [`OPEN_SESSIONS_SQL`] (`$1` their process ids, `$2` their
/// starts), those still open: for each, the milliseconds left to its session's named deadline
/// (negative once past; null if renamed) and, when it is idle in its transaction, for how many
/// milliseconds it has been (else -1).
pub const STILL_OPEN_SQL: &str = "SELECT \
     CASE WHEN a.application_name ~ '^rotation:[0-9]{1,15}$' \
       THEN split_part(a.application_name, ':', 2)::bigint \
         - (extract(epoch FROM clock_timestamp()) * 1000)::bigint END, \
     CASE WHEN a.state LIKE 'idle in transaction%' \
       THEN (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::bigint \
       ELSE -1 END \
     FROM pg_stat_activity AS a \
     JOIN unnest($1::int4[], $2::int8[]) AS s(pid, xact_us) ON a.pid = s.pid \
     WHERE (extract(epoch FROM a.xact_start) * 1000000)::bigint = s.xact_us";

/// Which of a user's rotation sessions inside a transaction a login ends ([`fence_sql`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Those past their step's deadline (every login).
    Stale,
    /// All of them, whatever their deadline (abort, when no live run can own one).
    Every,
}

impl Dialect {
    /// PostgreSQL (RDS, Aurora): every setting in the startup packet.
    pub const POSTGRES: Dialect = Dialect {
        name: "postgres",
        default_port: DEFAULT_PORT,
        default_dbname: DEFAULT_DBNAME,
        lock_timeout: true,
        idle_in_transaction_timeout: true,
        limits_in_startup: true,
        extra_float_digits: Some(2),
        application_name: true,
        fence_stale_sessions: true,
    };
}

/// The deadline of connections made outside a rotation step (tests, the demo).
const STANDALONE_DEADLINE: Duration = Duration::from_secs(30);

pub use rotation_core::TlsPlan;
pub use rotation_core::secret::TLS_SERVER_NAME_KEY;
pub use rotation_core::tls::server_name;

fn options(
    secret: &DatabaseSecret,
    dbname: &str,
    tls: bool,
    config: &PgConfig,
    deadline: Deadline,
) -> PgConnectOptions {
    let dialect = &config.dialect;
    let mut o = PgConnectOptions::new_without_pgpass()
        .host(server_name(secret))
        .port(secret.port().unwrap_or(dialect.default_port))
        .username(secret.username().unwrap_or_default())
        .password(
            secret
                .password()
                .map(|p| p.expose_secret())
                .unwrap_or_default(),
        )
        .database(dbname)
        .extra_float_digits(dialect.extra_float_digits)
        .statement_cache_capacity(0)
        .disable_statement_logging();
    if dialect.application_name {
        // `rotation:T` once the fence has named the session with its deadline (`fence_sql`).
        o = o.application_name("rotation");
    }
    if dialect.limits_in_startup {
        o = o.options(server_limits(config, deadline));
    }
    o = if tls {
        o.ssl_mode(PgSslMode::VerifyFull)
    } else {
        o.ssl_mode(PgSslMode::Disable)
    };
    if tls {
        // Prepared once per process; the driver parses it per connection, on top of the
        // Mozilla roots it always trusts.
        o = o.ssl_root_cert_from_pem(config.trust.pem_for_host(server_name(secret)).to_vec());
    }
    o
}

/// The server-side limits of a session, as (setting, value in ms) pairs the dialect has.
///
/// The server gives up no later than the client: a statement still queued (behind a lock) when
/// the step's deadline passes must not commit after the step reported failure. (Zero would
/// mean "no limit" to the server, hence the floor.)
fn server_limits(config: &PgConfig, deadline: Deadline) -> Vec<(&'static str, u128)> {
    let limit = |d: Duration| deadline.cap(d).max(Duration::from_millis(1)).as_millis();
    let mut limits = Vec::with_capacity(3);
    if config.dialect.lock_timeout {
        limits.push(("lock_timeout", limit(config.lock_timeout)));
    }
    limits.push(("statement_timeout", limit(config.statement_timeout)));
    if config.dialect.idle_in_transaction_timeout {
        limits.push((
            "idle_in_transaction_session_timeout",
            limit(config.statement_timeout),
        ));
    }
    limits
}

/// `SET` statements for the limits of a dialect that does not read them at startup. The values
/// are integers (milliseconds) and the names constants, so the text is built here safely.
pub fn set_limits_sql(config: &PgConfig, deadline: Deadline) -> String {
    server_limits(config, deadline)
        .into_iter()
        .map(|(name, ms)| format!("SET {name} TO {ms};"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs [`fence_sql`]; returns whether it ended sessions, once they are gone (a terminated
/// backend may still run a moment). A failure (a server that refuses it) is logged, not fatal:
/// the login itself succeeded.
pub(crate) async fn fence(c: &mut PgConnection, deadline: Deadline, scope: Fence) -> bool {
    let sql = fence_sql(deadline.remaining(), scope);
    let ended: Vec<i32> = match deadline.run(c.fetch_one(sqlx::raw_sql(&sql))).await {
        Ok(Ok(row)) => sqlx::Row::try_get(&row, 1).unwrap_or_default(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not end earlier rotation sessions");
            return false;
        }
        Err(_) => {
            tracing::warn!("ending earlier rotation sessions: no answer before the deadline");
            return false;
        }
    };
    if ended.is_empty() {
        return false;
    }
    tracing::warn!(
        sessions = ended.len(),
        "ended this user's earlier rotation sessions still inside a transaction (a step that gave up on its COMMIT, or a run that died)"
    );
    let wait = async {
        loop {
            let left = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
            )
            .bind(&ended)
            .fetch_one(&mut *c)
            .await;
            match left {
                Ok(0) | Err(_) => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    if deadline.run(wait).await.is_err() {
        tracing::warn!("the ended sessions were still there at the deadline");
    }
    true
}

/// The database to connect to: `dbname`, else the dialect's default (absent or null).
pub fn dbname<'a>(secret: &'a DatabaseSecret, dialect: &Dialect) -> &'a str {
    match secret.dbname() {
        DbName::Name(n) => n,
        DbName::Absent | DbName::Null => dialect.default_dbname,
    }
}

/// Classifies a driver error by SQLSTATE or error type, never by password-bearing text.
pub fn classify(err: &sqlx::Error) -> ErrorKind {
    match err {
        sqlx::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            // rustls reports handshake and certificate failures as InvalidData I/O errors.
            std::io::ErrorKind::InvalidData => ErrorKind::Tls,
            _ => ErrorKind::Unreachable,
        },
        sqlx::Error::Tls(_) => ErrorKind::Tls,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => ErrorKind::AuthFailed,
            // invalid_authorization_specification: pg_hba refused; "no encryption" means the
            // server requires TLS for this client.
            Some("28000") if db.message().contains("no encryption") => ErrorKind::Tls,
            Some("28000") => ErrorKind::AuthFailed,
            Some("3D000") => ErrorKind::UnknownDatabase,
            // insufficient_privilege; read_only_sql_transaction: a role made read-only (or a
            // read-only replica) refuses the change just as surely.
            Some("42501" | "25006") => ErrorKind::PermissionDenied,
            Some("55P03" | "57014") => ErrorKind::Timeout,
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

fn target(secret: &DatabaseSecret, db: &str, dialect: &Dialect) -> String {
    let host = secret.host().unwrap_or_default();
    let name = server_name(secret);
    let via = if name != host {
        format!(" (as {name})")
    } else {
        String::new()
    };
    format!(
        "user {} at {host}{via}:{} database {}",
        secret.username().unwrap_or_default(),
        secret.port().unwrap_or(dialect.default_port),
        db
    )
}

async fn attempt(
    secret: &DatabaseSecret,
    db: &str,
    tls: bool,
    config: &PgConfig,
    deadline: Deadline,
    again: bool,
) -> Result<PgConnection, EngineError> {
    let what = || {
        format!(
            "connecting as {} ({})",
            target(secret, db, &config.dialect),
            if tls { "TLS verify-full" } else { "no TLS" }
        )
    };
    // sqlx panics on a user name SASLprep refuses; refuse it here instead.
    let user = secret.username().unwrap_or_default();
    if stringprep::saslprep(user).is_err() {
        return Err(EngineError::new(
            ErrorKind::InvalidInput,
            format!(
                "{}: the user name has characters SASLprep prohibits (control characters, unassigned code points), so SCRAM cannot log it in",
                what()
            ),
        ));
    }
    let opts = options(secret, db, tls, config, deadline);
    let limit = deadline.cap(config.connect_timeout);
    let mut c = rotation_core::tls::connect_attempt(
        secret,
        tls,
        limit,
        what(),
        opts.connect(),
        engine_error,
    )
    .await?;
    if !config.dialect.limits_in_startup {
        let sql = set_limits_sql(config, deadline);
        let what = format!("{}: setting the session's time limits", what());
        deadline
            .driver_call(&what, c.execute(sqlx::raw_sql(&sql)), engine_error)
            .await?;
        return Ok(c);
    }
    if config.dialect.fence_stale_sessions && fence(&mut c, deadline, Fence::Stale).await && again {
        // Sessions were ended: the proof that these credentials log in must come after them
        // (a COMMIT could have landed before its session was ended), so log in once more; that
        // login finds nothing left to end.
        close(c).await;
        return Box::pin(attempt(secret, db, tls, config, deadline, false)).await;
    }
    Ok(c)
}

/// Connects with `secret`'s credentials to database `db` following the TLS plan, within
/// `deadline` (and each attempt within the configured connect timeout).
pub async fn connect_to(
    secret: &DatabaseSecret,
    db: &str,
    config: &PgConfig,
    deadline: Deadline,
) -> Result<PgConnection, EngineError> {
    rotation_core::tls::login_by_plan(secret, config.allow_plaintext_fallback, |tls| {
        attempt(secret, db, tls, config, deadline, true)
    })
    .await
}

/// Connects to the secret's own database within `deadline`.
pub async fn connect_until(
    secret: &DatabaseSecret,
    config: &PgConfig,
    deadline: Deadline,
) -> Result<PgConnection, EngineError> {
    connect_to(secret, dbname(secret, &config.dialect), config, deadline).await
}

/// Connects to the secret's own database (outside a rotation step: a 30 s deadline).
pub async fn connect(
    secret: &DatabaseSecret,
    config: &PgConfig,
) -> Result<PgConnection, EngineError> {
    connect_until(secret, config, Deadline::after(STANDALONE_DEADLINE)).await
}

/// Logs in, runs `SELECT 1` and closes (outside a rotation step).
pub async fn check(secret: &DatabaseSecret, config: &PgConfig) -> Result<(), EngineError> {
    let deadline = Deadline::after(STANDALONE_DEADLINE);
    let mut conn = connect_until(secret, config, deadline).await?;
    let r = bounded(
        deadline,
        "running a query after login",
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn),
    )
    .await;
    close(conn).await;
    r.map(|_| ())?;
    info!(
        user = secret.username(),
        host = secret.host(),
        "login succeeded"
    );
    Ok(())
}

/// The preflight's TLS check (see [`rotation_trust::probe`]): one handshake after the
/// protocol's `SSLRequest`, verified against what sqlx is given for this host
/// ([`rotation_trust::Trust::pem_for_host`] plus the Mozilla roots), naming the source that
/// anchored the certificate.
pub async fn check_tls(secret: &DatabaseSecret, config: &PgConfig) -> Result<String, EngineError> {
    let probe = rotation_trust::probe::Probe {
        trust: &config.trust,
        sources: rotation_trust::Trust::sources_for_host(server_name(secret)),
        pem_for_host: true,
        handshake: rotation_trust::probe::Handshake::PostgresSslRequest,
        default_port: config.dialect.default_port,
        allow_plaintext_fallback: config.allow_plaintext_fallback,
        timeout: config.connect_timeout,
    };
    rotation_trust::probe::check(probe, secret).await
}

/// Runs a driver call within `deadline`: a stalled connection becomes a `Timeout` error.
pub async fn bounded<T>(
    deadline: Deadline,
    what: &str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, EngineError> {
    deadline.driver_call(what, fut, engine_error).await
}

/// Closes politely: the Terminate is sent, the server's reply not awaited
/// ([`rotation_core::close_without_waiting`]).
pub async fn close(conn: PgConnection) {
    rotation_core::close_without_waiting(conn.close()).await;
}
