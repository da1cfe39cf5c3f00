//! Rotation strategies for Amazon RDS / Aurora PostgreSQL (secrets whose `engine` is `postgres`
//! or `aurora-postgresql`); used by the `rds-postgres` Lambda binary and the `rotate` CLI.
//!
//! - [`PostgresRotator::single_user`]: the user in the secret changes its own password (logged
//!   in with the current, else the previous credentials).
//! - [`PostgresRotator::alternating_users`]: the master secret from `masterarn` creates or
//!   updates the other user of the `name` / `name_clone` pair, which holds membership of the
//!   original role (re-asserted on every rotation, W7).
//!
//! # What it connects to
//!
//! Connections come from the secret alone (host, port as number or string, `dbname` default
//! `postgres`). The engine refuses to run when `PGSSLCERT`, `PGSSLKEY`, `PGOPTIONS` or
//! `PGSSLROOTCERT` is set, since the driver would pick them up.
//!
//! - TLS: `ssl` absent or true means verify-full (chain and host name), with no fallback (W1,
//!   W2); `"ssl": false` means plaintext, logged as a warning.
//! - One connection per login. setSecret tries its logins in order until one succeeds, and
//!   changes the password on that same connection; testSecret and the finishSecret check use
//!   one each. Every connection is closed with Terminate. A single-user rotation logs in 4
//!   times: pending (refused), current, pending in testSecret, pending in finishSecret.
//! - RDS-managed master secrets (only `username` and `password`) and users on a read replica
//!   or an Aurora reader go through the RDS API (the `rotation-rds` crate; Lambda and
//!   `rotate --store aws` only).
//!
//! # Its SQL
//!
//! - The new password reaches the server only as a SCRAM-SHA-256 verifier computed here (W3),
//!   so it never appears in server logs or `pg_stat_statements`. Role names are quoted by the
//!   server's `quote_ident`.
//! - Sessions run with `lock_timeout` 5 s and `statement_timeout` 15 s (W24), each cut to the
//!   step's time left, and `idle_in_transaction_session_timeout` at the statement limit. A
//!   password change commits only once it has answered in time.
//! - Alternating users: the clone is created with `CREATE ROLE ... LOGIN` and granted
//!   membership of the original in one transaction. Membership is re-asserted on every
//!   rotation, and testSecret fails when the pair's membership has drifted.
//! - The fence: every login first ends the same user's rotation sessions left inside a
//!   transaction past their step's deadline (`connect::fence_sql`), so a late `COMMIT` finds
//!   no session. `docs/state-machine.md` in the repository says what that guarantees, and why
//!   rotations must not go through a connection pooler.
//!
//! Errors are told apart: `Unreachable`, `Timeout`, `TlsFailed`, `AuthenticationFailed`,
//! `UnknownDatabase`, `PermissionDenied`.
//!
//! Known limit: user names or passwords with characters SASLprep prohibits (control
//! characters, emoji) cannot log in through sqlx, and say so (`InvalidInput`, before any
//! connection).

pub mod config;
pub mod connect;
pub mod scram;
pub mod session;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use rotation_core::rotator::{BoxError, is_clone_of};
use rotation_core::{
    AnyRotator, DatabaseSecret, DeadSessions, Deadline, Engine, EngineConfig, EngineEnv,
    EngineError, EngineProfile, ErrorKind, PasswordDefaults, Rotator, Strategy,
};
use rotation_rds as rds;
use sqlx::postgres::PgConnection;
use tracing::info;

pub use config::{ConfigError, PgConfig};
pub use connect::{Dialect, TlsPlan};
pub use session::PgSession;

use connect::bounded;
use session::{commit, exec, quote_ident, username};

/// RDS / Aurora PostgreSQL: `engine` is `postgres` or `aurora-postgresql`; role names hold at
/// most 63 bytes (NAMEDATALEN - 1).
pub const PROFILE: EngineProfile = EngineProfile {
    name: "postgres",
    engines: &["postgres", "aurora-postgresql"],
    password: PasswordDefaults {
        engine: "postgres",
        exclude_characters: ":/@\"'\\",
        ..PasswordDefaults::BASE
    },
    max_username_bytes: Some(63),
    default_port: Some(Dialect::POSTGRES.default_port),
    single_user_master: false,
    advice: rotation_core::RightsAdvice {
        own_password: "let the user change its own password (not read-only; on RDS with rds.restrict_password_commands, a member of rds_password)",
        master: "give the master CREATEROLE (and ADMIN OPTION on the roles it grants)",
    },
};

/// RDS / Aurora PostgreSQL as one value: its profile, its Lambda function (`rds-postgres`) and
/// its settings ([`PgConfig`], and the RDS API on AWS).
pub const ENGINE: Engine = Engine {
    profile: &PROFILE,
    function_name: "rds-postgres",
    env: &config::CONNECT_ENV,
    configure,
};

fn configure(env: &EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError> {
    Ok(Arc::new(PostgresConfig {
        config: PgConfig::from_lookup(|k| env.var(k))?,
        rds: env.aws.map(rds::Rds::from_sdk_config),
    }))
}

/// PostgreSQL's settings, read once.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Connection settings.
    pub config: PgConfig,
    /// The RDS API, on AWS.
    pub rds: Option<rds::Rds>,
}

impl EngineConfig for PostgresConfig {
    fn rotator(&self, strategy: Strategy) -> AnyRotator {
        let rotator = PostgresRotator::new(strategy, self.config.clone());
        AnyRotator::new(match &self.rds {
            Some(rds) => rotator.with_rds(rds.clone()),
            None => rotator,
        })
    }

    fn log(&self) {
        self.config.trust.log_sources();
    }
}

/// The PostgreSQL rotator for one strategy.
#[derive(Debug, Clone)]
pub struct PostgresRotator {
    strategy: Strategy,
    config: PgConfig,
    rds: Option<rds::Rds>,
}

impl PostgresRotator {
    /// A rotator for `strategy`.
    pub fn new(strategy: Strategy, config: PgConfig) -> Self {
        PostgresRotator {
            strategy,
            config,
            rds: None,
        }
    }
    /// Uses the RDS API for RDS-managed master secrets and read-replica hosts.
    pub fn with_rds(mut self, rds: rds::Rds) -> Self {
        self.rds = Some(rds);
        self
    }
    /// Single user.
    pub fn single_user(config: PgConfig) -> Self {
        Self::new(Strategy::SingleUser, config)
    }
    /// Alternating users.
    pub fn alternating_users(config: PgConfig) -> Self {
        Self::new(Strategy::AlternatingUsers, config)
    }
    /// The connection settings.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }
}

/// `PASSWORD '<verifier>'`: the verifier is base64 and `$:-` only, so it needs no escaping;
/// that is checked rather than assumed.
fn password_clause(target: &DatabaseSecret) -> Result<String, EngineError> {
    let password = target
        .password()
        .ok_or_else(|| EngineError::new(ErrorKind::InvalidInput, "the secret has no password"))?;
    let verifier = scram::verifier(password).map_err(|e| {
        EngineError::new(ErrorKind::Other, "no randomness for the SCRAM salt").with_source(e)
    })?;
    let text = verifier.expose();
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=$:-".contains(&b))
    {
        return Err(EngineError::new(
            ErrorKind::Other,
            "unexpected character in a SCRAM verifier",
        ));
    }
    Ok(format!("PASSWORD '{text}'"))
}

async fn role_exists(
    conn: &mut PgConnection,
    deadline: Deadline,
    name: &str,
) -> Result<bool, EngineError> {
    bounded(
        deadline,
        "looking up a role",
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(name)
            .fetch_one(conn),
    )
    .await
}

async fn is_member(
    conn: &mut PgConnection,
    deadline: Deadline,
    member: &str,
    role: &str,
) -> Result<bool, EngineError> {
    bounded(
        deadline,
        "checking role membership",
        sqlx::query_scalar::<_, bool>("SELECT pg_has_role($1, $2, 'MEMBER')")
            .bind(member)
            .bind(role)
            .fetch_one(conn),
    )
    .await
}

impl PostgresRotator {
    /// Logs in with `secret`, runs nothing, and closes: a convenience for tests and tools
    /// (rotation steps keep the session instead).
    pub async fn check_login(&self, secret: &DatabaseSecret) -> Result<(), EngineError> {
        let session = self
            .login(secret, Deadline::after(Duration::from_secs(30)))
            .await?;
        self.close(session).await;
        Ok(())
    }
}

/// The session user's rights, for the preflight: name, superuser, CREATEROLE, read-only
/// sessions, RDS's `rds.restrict_password_commands` and membership of `rds_password`.
const RIGHTS_SQL: &str = "SELECT current_user::text, r.rolsuper, r.rolcreaterole, \
     current_setting('transaction_read_only') = 'on', \
     coalesce(current_setting('rds.restrict_password_commands', true), 'off') = 'on', \
     CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_password') \
          THEN pg_has_role(current_user, 'rds_password', 'MEMBER') ELSE false END \
     FROM pg_roles r WHERE r.rolname = current_user";

impl Rotator for PostgresRotator {
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
        let deadline = session.deadline();
        // In a transaction, committed only once the ALTER has answered in time: a statement
        // that waits behind a lock (or in the network) past the deadline is rolled back when
        // the connection goes, instead of committing after the step reported failure.
        let mut tx = session.begin().await?;
        let role = quote_ident(&mut tx, deadline, username(target)).await?;
        let sql = format!("ALTER ROLE {role} WITH {}", password_clause(target)?);
        exec(
            &mut tx,
            deadline,
            &format!("changing the password of {}", username(target)),
            &sql,
        )
        .await?;
        commit(tx, deadline, "the password change").await
    }

    async fn set_password_as_master(
        &self,
        session: &mut PgSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let deadline = session.deadline();
        let (current_name, pending_name) = (username(current), username(target));
        let mut tx = session.begin().await?;
        let pending_role = quote_ident(&mut tx, deadline, pending_name).await?;
        let current_role = quote_ident(&mut tx, deadline, current_name).await?;
        let password = password_clause(target)?;
        if role_exists(&mut tx, deadline, pending_name).await? {
            let sql = format!("ALTER ROLE {pending_role} WITH LOGIN {password}");
            exec(
                &mut tx,
                deadline,
                &format!("setting the password of {pending_name}"),
                &sql,
            )
            .await?;
        } else {
            let sql = format!("CREATE ROLE {pending_role} WITH LOGIN {password}");
            exec(
                &mut tx,
                deadline,
                &format!("creating role {pending_name}"),
                &sql,
            )
            .await?;
            info!(role = pending_name, "created the alternate role");
        }
        // Keep the pair's privileges equal (W7): the clone is a member of the original.
        // A new role joins the current one as AWS does; an existing pair is re-asserted in
        // the direction it already had, else with the `_clone` role as the member.
        let (member, role, member_q, role_q) = if is_clone_of(pending_name, current_name) {
            (pending_name, current_name, &pending_role, &current_role)
        } else if is_clone_of(current_name, pending_name)
            && !is_member(&mut tx, deadline, pending_name, current_name).await?
        {
            (current_name, pending_name, &current_role, &pending_role)
        } else {
            (pending_name, current_name, &pending_role, &current_role)
        };
        if !is_member(&mut tx, deadline, member, role).await? {
            let sql = format!("GRANT {role_q} TO {member_q}");
            exec(
                &mut tx,
                deadline,
                &format!("granting {role} to {member}"),
                &sql,
            )
            .await?;
            info!(member, role, "granted role membership");
        }
        commit(tx, deadline, "the role change").await
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        connect::check_tls(current, &self.config).await.map(Some)
    }

    async fn check_rights(
        &self,
        session: &mut PgSession,
        _current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        let deadline = session.deadline();
        let (user, superuser, createrole, read_only, restricted, password_role): (
            String,
            bool,
            bool,
            bool,
            bool,
            bool,
        ) = bounded(
            deadline,
            "reading the session user's rights",
            sqlx::query_as(RIGHTS_SQL).fetch_one(session.connection()),
        )
        .await?;
        let denied = |why: String| Err(EngineError::new(ErrorKind::PermissionDenied, why));
        if read_only {
            return denied(format!(
                "{user}'s sessions are read-only (default_transaction_read_only): the password change would be refused"
            ));
        }
        if restricted && !password_role && !superuser {
            return denied(format!(
                "rds.restrict_password_commands is on and {user} is not a member of rds_password"
            ));
        }
        match self.strategy {
            Strategy::SingleUser => Ok(Some(format!("{user} may change its own password"))),
            Strategy::AlternatingUsers if superuser => {
                Ok(Some(format!("the master {user} is a superuser")))
            }
            Strategy::AlternatingUsers if createrole => {
                Ok(Some(format!("the master {user} has CREATEROLE")))
            }
            Strategy::AlternatingUsers => denied(format!(
                "the master {user} has neither CREATEROLE nor superuser: it cannot create the clone or set its password"
            )),
        }
    }

    async fn test_session(
        &self,
        session: &mut PgSession,
        pending: &DatabaseSecret,
        partner: Option<&str>,
    ) -> Result<(), EngineError> {
        let deadline = session.deadline();
        let conn = session.connection();
        // One round trip: the login works, and whether the partner exists.
        let partner_exists = bounded(
            deadline,
            "running a query as the pending user",
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            )
            .bind(partner.unwrap_or_default())
            .fetch_one(&mut *conn),
        )
        .await?;
        if let Some(c) = partner.filter(|_| partner_exists) {
            let p = username(pending);
            let linked =
                is_member(conn, deadline, p, c).await? || is_member(conn, deadline, c, p).await?;
            if !linked {
                return Err(EngineError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "{p} and {c} are not members of one another; the pair's privileges have drifted"
                    ),
                ));
            }
        }
        Ok(())
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
        rotation_rds::resolve_master(self.rds.as_ref(), master, current, tags).await
    }

    async fn is_replica_of(
        &self,
        current: &DatabaseSecret,
        master: &DatabaseSecret,
    ) -> Result<bool, EngineError> {
        rotation_rds::is_replica_of(self.rds.as_ref(), current, master).await
    }

    async fn end_dead_sessions(
        &self,
        session: &mut PgSession,
        which: DeadSessions,
    ) -> Result<bool, EngineError> {
        if !self.config.dialect.fence_stale_sessions {
            return Ok(false);
        }
        if which == DeadSessions::PastDeadline {
            return wait_out_open_sessions(session, self.config.statement_timeout).await;
        }
        let deadline = session.deadline();
        // A run's session that has just gone idle inside its transaction may be live: wait, a
        // little past DEAD_AFTER_MS at most, for such sessions to commit or to age.
        let settle = async {
            let started = std::time::Instant::now();
            while started.elapsed() < std::time::Duration::from_millis(connect::DEAD_AFTER_MS + 500)
            {
                let young = sqlx::query_scalar::<_, i64>(&connect::young_sessions_sql())
                    .fetch_one(session.connection())
                    .await;
                if !matches!(young, Ok(n) if n > 0) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        if deadline.run(settle).await.is_err() {
            return Err(EngineError::past_deadline(
                "waiting for the user's rotation sessions to settle",
            ));
        }
        Ok(connect::fence(session.connection(), deadline, connect::Fence::Every).await)
    }
}

/// [`DeadSessions::PastDeadline`]: the user's rotation sessions inside a transaction now are
/// waited for until each has left that transaction, or has passed its named deadline and the
/// login fence ([`connect::Fence::Stale`]) ends it, or the server's own idle limit
/// (`idle_limit`, the engine's statement limit, which a run's session keeps at most) ends it.
/// The abort keeps [`DeadSessions::PROOF_RESERVE`] (at most half its time) for its proof. A
/// session idle in its transaction for [`connect::DEAD_AFTER_MS`] (no live step is), which
/// would outlast that, fails the wait at once; so does the time running out. Each failure is a
/// `Timeout` naming how long the longest session may still stay. `Ok(true)` when the fence
/// ended one.
async fn wait_out_open_sessions(
    session: &mut PgSession,
    idle_limit: std::time::Duration,
) -> Result<bool, EngineError> {
    let deadline = session.deadline();
    let open: Vec<(i32, i64)> = connect::bounded(
        deadline,
        "listing the user's rotation sessions inside a transaction",
        sqlx::query_as(connect::OPEN_SESSIONS_SQL).fetch_all(session.connection()),
    )
    .await?;
    if open.is_empty() {
        return Ok(false);
    }
    let remaining = deadline.remaining();
    let allowed = remaining
        .saturating_sub(DeadSessions::PROOF_RESERVE)
        .max(remaining / 2);
    let waited = std::time::Instant::now();
    tracing::info!(
        sessions = open.len(),
        "abort: waiting for the user's rotation sessions inside a transaction to leave it or pass their deadline"
    );
    let (pids, starts): (Vec<i32>, Vec<i64>) = open.into_iter().unzip();
    let idle_limit_ms = idle_limit.as_millis() as i64;
    let mut ended = false;
    loop {
        ended |= connect::fence(session.connection(), deadline, connect::Fence::Stale).await;
        let still: Vec<(Option<i64>, i64)> = connect::bounded(
            deadline,
            "reading the user's rotation sessions still inside their transaction",
            sqlx::query_as(connect::STILL_OPEN_SQL)
                .bind(&pids)
                .bind(&starts)
                .fetch_all(session.connection()),
        )
        .await?;
        if still.is_empty() {
            return Ok(ended);
        }
        // How long each may still stay: to its deadline (less the fence's half second), and,
        // idle, no longer than the server's idle limit.
        let stays = |(left_ms, idle_ms): &(Option<i64>, i64)| {
            let to_deadline = left_ms.map_or(i64::MAX, |l| l - 500);
            let to_idle_limit = if *idle_ms >= 0 {
                idle_limit_ms - idle_ms
            } else {
                i64::MAX
            };
            to_deadline.min(to_idle_limit).max(0)
        };
        let longest = still.iter().map(stays).max().unwrap_or(0);
        let stuck = still
            .iter()
            .filter(|(_, idle_ms)| *idle_ms >= connect::DEAD_AFTER_MS as i64)
            .map(stays)
            .max();
        let left = allowed.saturating_sub(waited.elapsed());
        if stuck.is_some_and(|ms| ms as u128 > left.as_millis()) || left.is_zero() {
            let longest = if longest == i64::MAX {
                "until it ends".to_string()
            } else {
                format!("for up to {:.1} s more", longest as f64 / 1000.0)
            };
            return Err(EngineError::new(
                ErrorKind::Timeout,
                format!(
                    "{} rotation session(s) of this user are inside a transaction, one {longest} \
                     (its step's deadline or the server's idle limit), past the {:.1} s this \
                     abort could wait",
                    still.len(),
                    allowed.as_secs_f64()
                ),
            ));
        }
        tokio::time::sleep(left.min(std::time::Duration::from_millis(100))).await;
    }
}
