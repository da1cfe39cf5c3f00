//! A logged-in connection and the statements every PostgreSQL-protocol engine runs on it:
//! server-side identifier quoting, statements built from quoted identifiers, transactions
//! bounded by the step's deadline. Shared by every engine on the PostgreSQL protocol.

use std::future::Future;
use std::pin::Pin;

use rotation_core::{DatabaseSecret, Deadline, EngineError, ErrorKind};
use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{Connection, Executor, Transaction};

use crate::config::PgConfig;
use crate::connect::{self, bounded};

/// A logged-in connection and the deadline of the step that opened it.
#[derive(Debug)]
pub struct PgSession {
    conn: PgConnection,
    deadline: Deadline,
}

impl PgSession {
    /// Logs in with `secret` (TLS as the secret asks, the dialect's settings) within `deadline`.
    pub async fn login(
        secret: &DatabaseSecret,
        config: &PgConfig,
        deadline: Deadline,
    ) -> Result<PgSession, EngineError> {
        let conn = connect::connect_until(secret, config, deadline).await?;
        tracing::info!(
            user = secret.username(),
            host = secret.host(),
            "login succeeded"
        );
        Ok(PgSession { conn, deadline })
    }

    /// The connection.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// The deadline every call on this session is bounded by.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Starts a transaction for a change that must not take effect later than the step reports
    /// failure: [`commit`] it only once the change has answered in time; a statement still
    /// waiting (behind a lock, in the network) past the deadline is rolled back when the
    /// transaction or the connection goes.
    pub async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, EngineError> {
        bounded(self.deadline, "starting a transaction", self.conn.begin()).await
    }

    /// Closes politely (Terminate), without waiting on the server's reply ([`connect::close`]).
    pub async fn close(self) {
        connect::close(self.conn).await;
    }
}

/// Commits a transaction from [`PgSession::begin`] within `deadline`; `what` names the change.
pub async fn commit(
    tx: Transaction<'_, Postgres>,
    deadline: Deadline,
    what: &str,
) -> Result<(), EngineError> {
    bounded(deadline, &format!("committing {what}"), tx.commit()).await
}

/// Quotes an identifier with the server's own `quote_ident`.
pub async fn quote_ident(
    conn: &mut PgConnection,
    deadline: Deadline,
    name: &str,
) -> Result<String, EngineError> {
    bounded(
        deadline,
        "quoting a role name",
        sqlx::query_scalar::<_, String>("SELECT quote_ident($1)")
            .bind(name)
            .fetch_one(conn),
    )
    .await
}

/// Runs one statement built from server-quoted identifiers and hashes or verifiers (never a
/// password), through the simple query protocol. Boxed, so that the future is `Send` for
/// every lifetime the trait's futures need.
pub fn exec<'a>(
    conn: &'a mut PgConnection,
    deadline: Deadline,
    what: &'a str,
    sql: &'a str,
) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + 'a>> {
    Box::pin(async move {
        deadline
            .driver_call(what, conn.execute(sqlx::raw_sql(sql)), connect::engine_error)
            .await
            .map(drop)
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => e.with_note(
                    "a statement that changes users or privileges waits for locks other sessions hold, such as an earlier attempt whose connection the server has not closed yet",
                ),
                _ => e,
            })
    })
}

/// The user name of a secret ("" when absent; validated secrets always have one).
pub fn username(secret: &DatabaseSecret) -> &str {
    secret.username().unwrap_or_default()
}
