//! Rotation strategies for Amazon RDS / Aurora PostgreSQL; used by the rotation-lambda binaries
//! and the `rotate` CLI.
//!
//! - [`PostgresRotator::single_user`]: the user in the secret changes its own password (logged
//!   in with the current, else the previous credentials).
//! - [`PostgresRotator::alternating_users`]: the master secret from `masterarn` creates or
//!   updates the other user of the `name` / `name_clone` pair, which holds membership of the
//!   original role (re-asserted on every rotation, W7).
//!
//! Connections come from the secret alone (host, port as number or string, `dbname` default
//! `postgres`), with verified TLS unless the secret says `"ssl": false` (W1, W2). The new
//! password reaches the server only as a SCRAM-SHA-256 verifier computed here (W3); identifiers
//! are quoted by the server's `quote_ident`.

pub mod config;
pub mod connect;
pub mod rds;
pub mod scram;

use rotation_core::{
    Acting, DatabaseSecret, EngineError, EngineProfile, ErrorKind, PasswordDefaults, Rotator,
    Strategy,
};
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tracing::info;

pub use config::{ConfigError, PgConfig};
pub use connect::TlsPlan;

use connect::engine_error;

/// RDS / Aurora PostgreSQL: `engine` is `postgres` or `aurora-postgresql`; role names hold at
/// most 63 bytes (NAMEDATALEN - 1).
pub const PROFILE: EngineProfile = EngineProfile {
    name: "postgres",
    engines: &["postgres", "aurora-postgresql"],
    password: PasswordDefaults::POSTGRES,
    max_username_bytes: Some(63),
};

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

/// Quotes an identifier with the server's own `quote_ident`.
async fn quote_ident(conn: &mut PgConnection, name: &str) -> Result<String, EngineError> {
    sqlx::query_scalar::<_, String>("SELECT quote_ident($1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| engine_error("quoting a role name", e))
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

fn username(secret: &DatabaseSecret) -> &str {
    secret.username().unwrap_or_default()
}

async fn role_exists(conn: &mut PgConnection, name: &str) -> Result<bool, EngineError> {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(|e| engine_error("looking up a role", e))
}

async fn is_member(conn: &mut PgConnection, member: &str, role: &str) -> Result<bool, EngineError> {
    sqlx::query_scalar::<_, bool>("SELECT pg_has_role($1, $2, 'MEMBER')")
        .bind(member)
        .bind(role)
        .fetch_one(conn)
        .await
        .map_err(|e| engine_error("checking role membership", e))
}

impl PostgresRotator {
    async fn set_own(
        &self,
        acting: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let mut conn = connect::connect(acting, &self.config).await?;
        let result = async {
            let role = quote_ident(&mut conn, username(target)).await?;
            let sql = format!("ALTER ROLE {role} WITH {}", password_clause(target)?);
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(|e| {
                    engine_error(format!("changing the password of {}", username(target)), e)
                })?;
            Ok(())
        }
        .await;
        connect::close(conn).await;
        result
    }

    async fn set_as_master(
        &self,
        master: &DatabaseSecret,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let mut conn = connect::connect(master, &self.config).await?;
        let result = async {
            let (current_name, pending_name) = (username(current), username(target));
            let mut tx = conn
                .begin()
                .await
                .map_err(|e| engine_error("starting a transaction", e))?;
            let pending_role = quote_ident(&mut tx, pending_name).await?;
            let current_role = quote_ident(&mut tx, current_name).await?;
            let password = password_clause(target)?;
            let exec = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
            if role_exists(&mut tx, pending_name).await? {
                exec(format!("ALTER ROLE {pending_role} WITH LOGIN {password}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        engine_error(format!("setting the password of {pending_name}"), e)
                    })?;
            } else {
                exec(format!("CREATE ROLE {pending_role} WITH LOGIN {password}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| engine_error(format!("creating role {pending_name}"), e))?;
                info!(role = pending_name, "created the alternate role");
            }
            // Keep the pair's privileges equal (W7): the clone is a member of the original.
            // A new role joins the current one as AWS does; an existing pair is re-asserted in
            // the direction it already had, else with the `_clone` role as the member.
            let (member, role, member_q, role_q) =
                if pending_name.strip_suffix("_clone") == Some(current_name) {
                    (pending_name, current_name, &pending_role, &current_role)
                } else if current_name.strip_suffix("_clone") == Some(pending_name)
                    && !is_member(&mut tx, pending_name, current_name).await?
                {
                    (current_name, pending_name, &current_role, &pending_role)
                } else {
                    (pending_name, current_name, &pending_role, &current_role)
                };
            if !is_member(&mut tx, member, role).await? {
                exec(format!("GRANT {role_q} TO {member_q}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| engine_error(format!("granting {role} to {member}"), e))?;
                info!(member, role, "granted role membership");
            }
            tx.commit()
                .await
                .map_err(|e| engine_error("committing the role change", e))
        }
        .await;
        connect::close(conn).await;
        result
    }
}

impl Rotator for PostgresRotator {
    fn profile(&self) -> &EngineProfile {
        &PROFILE
    }

    fn strategy(&self) -> Strategy {
        self.strategy
    }

    async fn check_login(&self, secret: &DatabaseSecret) -> Result<(), EngineError> {
        connect::check(secret, &self.config).await
    }

    async fn set_password(
        &self,
        acting: Acting<'_>,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        match acting {
            Acting::Own(acting) => self.set_own(acting, target).await,
            Acting::Master { master, current } => self.set_as_master(master, current, target).await,
        }
    }

    async fn test_pending(
        &self,
        pending: &DatabaseSecret,
        current: Option<&DatabaseSecret>,
    ) -> Result<(), EngineError> {
        let mut conn = connect::connect(pending, &self.config).await?;
        let result = async {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| engine_error("running a query as the pending user", e))?;
            if let Some(current) = current {
                let (p, c) = (username(pending), username(current));
                let linked = is_member(&mut conn, p, c).await? || is_member(&mut conn, c, p).await?;
                if !linked {
                    return Err(EngineError::new(
                        ErrorKind::PermissionDenied,
                        format!("{p} and {c} are not members of one another; the pair's privileges have drifted"),
                    ));
                }
            }
            Ok(())
        }
        .await;
        connect::close(conn).await;
        result
    }

    async fn resolve_master(
        &self,
        master: DatabaseSecret,
        current: &DatabaseSecret,
        tags: Option<&[(String, String)]>,
    ) -> Result<DatabaseSecret, EngineError> {
        let master = match (tags, &self.rds) {
            (None, _) => master,
            (Some(tags), Some(rds)) => {
                let endpoint = rds.managed_master_endpoint(tags).await?;
                info!(host = %endpoint.host, "resolved an RDS-managed master secret through the RDS API");
                rds::complete_master(master, &endpoint)?
            }
            (Some(_), None) => {
                return Err(EngineError::new(
                    ErrorKind::InvalidInput,
                    "the master secret has no host; RDS-managed master secrets need the RDS API, which this rotator was built without",
                ));
            }
        };
        // The master connects to the child's database (AWS 13a7a46).
        let dbname = match current.get("dbname") {
            Some(Value::String(s)) => Value::String(s.clone()),
            _ => Value::Null,
        };
        master
            .with_field("dbname", dbname)
            .map_err(|e| EngineError::new(ErrorKind::InvalidInput, e.to_string()))
    }

    async fn is_replica_of(
        &self,
        current: &DatabaseSecret,
        master: &DatabaseSecret,
    ) -> Result<bool, EngineError> {
        match &self.rds {
            Some(rds) => {
                rds.is_replica(
                    current.host().unwrap_or_default(),
                    master.host().unwrap_or_default(),
                    master.engine().unwrap_or_default(),
                )
                .await
            }
            None => Ok(false),
        }
    }
}
