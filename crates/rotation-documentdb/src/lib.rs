//! Rotation strategies for Amazon DocumentDB (and MongoDB) over the MongoDB wire protocol
//! (secrets whose `engine` is `mongo`); used by the `documentdb` Lambda binary and the `rotate`
//! CLI.
//!
//! - [`DocumentDbRotator::single_user`]: the user in the secret changes its own password with
//!   `updateUser` (logged in with the current, else the previous credentials; the user needs
//!   `changeOwnPassword`, as on DocumentDB and MongoDB).
//! - [`DocumentDbRotator::alternating_users`]: the master secret from `masterarn` (its own
//!   `dbname`, default `admin`) creates the other user of the `name` / `name_clone` pair in the
//!   current user's authentication database (AWS's function uses the master's: W8) with the
//!   current user's roles, or sets its password; the pair's roles are kept in line on every
//!   rotation by core's [`Direction`] rule (`updateUser ... roles`: the original is the source
//!   of truth, the user in use never loses a role mid-rotation).
//!
//! testSecret runs `connectionStatus` as the pending user and checks it is authenticated as
//! that user. AWS's function runs `usersInfo` on itself, which needs `viewUser` on servers that
//! enforce it.
//!
//! # What it connects to
//!
//! The official `mongodb` driver (3.9), on rustls with aws-lc-rs, the same crypto provider as
//! the other engines; no DNS-SRV resolver.
//!
//! Clients are built from the secret alone, field by field (no URI, so any password works):
//! `host` and `port` (default 27017), and `dbname` as the authentication database (default
//! `admin`). The connection goes directly to the secret's host, as AWS's function does
//! (DocumentDB's cluster endpoint routes to the primary); replica-set discovery only when the
//! secret has a `replicaSet` key. The authentication mechanism is negotiated (DocumentDB 4.0
//! speaks SCRAM-SHA-1, 5.0 and later SCRAM-SHA-256 too).
//!
//! - `retryWrites` and `retryReads` off, one pooled connection and no idle pool.
//! - A polling monitor on its own connection, which never authenticates: two TCP connections
//!   per login.
//! - Connect and server-selection timeouts within the step's deadline
//!   (`CONNECT_TIMEOUT_SECONDS`, default 5 s).
//! - Every command carries `maxTimeMS` cut to the step's time left, so the server gives up no
//!   later than the client. A server that refuses the field on a command gets the command
//!   again without it; the client's deadline still bounds it.
//! - On a direct connection the monitor's first failed heartbeat ends the login at once, typed:
//!   nothing listening (`Unreachable`), an untrusted certificate or a server without TLS
//!   (`Tls`, so `ALLOW_PLAINTEXT_FALLBACK` applies). These come back in milliseconds, not after
//!   the driver's server-selection timeout.
//!
//! TLS is verified by default with the same `ssl` semantics and trust sources as the other
//! engines (the embedded RDS bundle covers DocumentDB). `"ssl": false` means plaintext. There is
//! no silent fallback, and none of the 15-20 s AWS's function spends on a server without TLS.
//!
//! The driver takes only a CA file, which replaces its own roots, and reads it when a client is
//! made. So each connection gets a private temporary file (mode 0600, removed once the client
//! is made): the RDS CAs (those of the endpoint's region when its name gives one),
//! `CA_BUNDLE_PATH` and the system store (`Trust::pem_file_for_host`). Unlike the PostgreSQL
//! engines, the system store is then trusted for every host (not only outside AWS's database
//! domains). A platform without one (Lambda's images have it) trusts only the RDS bundle and
//! `CA_BUNDLE_PATH`.
//!
//! Passwords follow DocumentDB's rules, in generation and before any change: 8 to 100
//! printable ASCII characters, none of `/ @ "` or space (AWS's default `EXCLUDE_CHARACTERS` is
//! kept).
//!
//! # Known limits
//!
//! - **A late change can land.** `updateUser` cannot run in a transaction, and `maxTimeMS`
//!   counts from the command's arrival. So a password change held in the network past the
//!   step's deadline can still land later, even after `abort` proved `AWSCURRENT` logs in.
//!
//!   Nothing is stranded for good: the aborted version keeps the password without a label,
//!   and the next rotation's recovery of unlabelled versions logs in with it
//!   (`a_password_change_landing_after_abort_is_recovered`, on every engine).
//!   `an_alter_role_still_in_the_network_does_not_land_after_abort` asserts on DocumentDB that
//!   the change lands, as its test engine's `Limits` say.
//! - **A dead backend looks like a TLS mismatch.** A connection closed before the server ever
//!   answered is read as a TLS mismatch: a server without TLS drops a TLS handshake, and a
//!   TLS-only one drops a plaintext hello. A TCP forwarder (a load balancer, a tunnel) with
//!   nothing behind it looks the same: it is reported as a TLS error and, with
//!   `ALLOW_PLAINTEXT_FALLBACK`, retried in plaintext.
//!
//!   Once the server has answered a heartbeat, a closed connection is a network failure
//!   (`Unreachable`) and never leads to plaintext. `dead_backend_behind_a_forwarder_is_not_tls`
//!   is ignored for this reason.
//! - **The master-in-pair check compares names only.** MongoDB users are a name and a
//!   database, so a pair named like the master in another database (`appdb.root` beside the
//!   master `admin.root`) is refused with `MasterInPair` though it is another user. It refuses
//!   more than needed and changes nothing
//!   (`a_pair_named_like_the_master_in_another_database_rotates` is ignored for this reason).
//!
//! # Verified against SecantusDB, and what only a real DocumentDB could show
//!
//! SecantusDB is a MongoDB-wire server with SCRAM-SHA-256 and user management, run with TLS
//! from a generated CA and the replica-set name `rs0`. Verified on it:
//!
//! - both strategies, and the old password refused after single user;
//! - the clone created in the current user's database with its roles, and a role granted to
//!   and revoked from the original reaching the clone;
//! - 12 hostile user names and 11 hostile passwords (`@ : / %`, quotes, `$`-operators);
//! - passwords breaking the rules refused before anything is sent;
//! - wrong password, untrusted certificate and nothing listening told apart.
//!
//! SecantusDB is not DocumentDB. Only a real DocumentDB could show SCRAM-SHA-1 (4.0), its error
//! codes and limits, `changeOwnPassword` as DocumentDB grants it, `maxTimeMS` on user commands,
//! and the cluster endpoint's routing to the primary.

pub mod connect;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::sync::Arc;

use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use rotation_core::rotator::BoxError;
use rotation_core::{
    AnyRotator, DatabaseSecret, Deadline, Direction, Engine, EngineConfig, EngineEnv, EngineError,
    EngineProfile, ErrorKind, PasswordDefaults, Rotator, Strategy,
};
use rotation_trust::ConnectSettings;
use rotation_trust::settings::ConnectConfig;
use tracing::{info, warn};

pub use connect::{DEFAULT_DBNAME, DEFAULT_PORT, auth_db};

/// Amazon DocumentDB: `engine` is `mongo` (as in AWS's functions).
pub const PROFILE: EngineProfile = EngineProfile {
    name: "documentdb",
    engines: &["mongo"],
    password: PasswordDefaults {
        engine: "documentdb",
        min_length: 8,
        max_length: 100,
        forbidden: "/@\" ",
        printable_ascii: true,
        ..PasswordDefaults::BASE
    },
    max_username_bytes: None,
    default_port: Some(DEFAULT_PORT),
    single_user_master: false,
    advice: rotation_core::RightsAdvice {
        own_password: "grant the user changeOwnPassword (or a role with it)",
        master: "give the master userAdmin (or dbOwner) on the admin database, or userAdminAnyDatabase",
    },
};

/// Amazon DocumentDB as one value: its profile, its Lambda function (`documentdb`) and its
/// settings (the shared [`ConnectSettings`]; no other AWS API).
pub const ENGINE: Engine = Engine {
    profile: &PROFILE,
    function_name: "documentdb",
    env: &rotation_trust::settings::ENV,
    configure,
};

fn configure(env: &EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError> {
    ConnectConfig::read(env, rotator)
}

fn rotator(strategy: Strategy, settings: ConnectSettings) -> AnyRotator {
    AnyRotator::new(DocumentDbRotator::new(strategy, settings))
}

/// DocumentDB's settings from connection settings made in code (tests, the bench).
pub fn config(settings: ConnectSettings) -> ConnectConfig {
    ConnectConfig { settings, rotator }
}

/// The DocumentDB rotator for one strategy.
#[derive(Debug, Clone)]
pub struct DocumentDbRotator {
    strategy: Strategy,
    settings: ConnectSettings,
}

impl DocumentDbRotator {
    /// A rotator for `strategy`.
    pub fn new(strategy: Strategy, settings: ConnectSettings) -> Self {
        DocumentDbRotator { strategy, settings }
    }
    /// Single user.
    pub fn single_user(settings: ConnectSettings) -> Self {
        Self::new(Strategy::SingleUser, settings)
    }
    /// Alternating users.
    pub fn alternating_users(settings: ConnectSettings) -> Self {
        Self::new(Strategy::AlternatingUsers, settings)
    }
    /// The connection settings.
    pub fn settings(&self) -> &ConnectSettings {
        &self.settings
    }
}

/// A logged-in client, its authentication database and the step's deadline.
#[derive(Debug)]
pub struct MongoSession {
    client: Client,
    auth_db: String,
    deadline: Deadline,
}

impl MongoSession {
    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, to shut it down.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// Runs `command` on database `db` with `maxTimeMS` cut to the step's time left.
    pub async fn command(
        &self,
        db: &str,
        command: Document,
        what: &str,
    ) -> Result<Document, EngineError> {
        let left = self
            .deadline
            .remaining()
            .as_millis()
            .clamp(1, i64::MAX as u128) as i64;
        let database = self.client.database(db);
        let mut timed = command.clone();
        timed.insert("maxTimeMS", left);
        match connect::bounded_raw(
            self.deadline,
            what,
            database.run_command(timed).into_future(),
        )
        .await?
        {
            Err(e) if refuses_max_time(&e) => {
                // A server that does not take maxTimeMS on this command refused it whole, so
                // nothing ran: run it again without (the client's deadline still bounds it).
                warn!(
                    command = command
                        .keys()
                        .next()
                        .map(String::as_str)
                        .unwrap_or_default(),
                    "the server refused maxTimeMS on this command; running it without"
                );
                connect::bounded(
                    self.deadline,
                    what,
                    database.run_command(command).into_future(),
                )
                .await
            }
            r => r.map_err(|e| connect::engine_error(what.to_string(), e)),
        }
    }
}

/// Whether the server refused a command because of its `maxTimeMS` field (an unknown or
/// unsupported field: the command did not run). Judged from the server's own reply, which
/// names the field; never from text the client wrote.
fn refuses_max_time(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => {
            // BadValue, FailedToParse, InvalidOptions, CommandNotSupported, IDLUnknownField.
            matches!(c.code, 2 | 9 | 72 | 115 | 303 | 40415) && c.message.contains("maxTimeMS")
        }
        _ => false,
    }
}

fn username(secret: &DatabaseSecret) -> &str {
    secret.username().unwrap_or_default()
}

/// A user's roles as (role, db) pairs.
type Roles = BTreeSet<(String, String)>;

fn roles_to_bson(roles: &Roles) -> Bson {
    Bson::Array(
        roles
            .iter()
            .map(|(role, db)| Bson::Document(doc! { "role": role, "db": db }))
            .collect(),
    )
}

/// The roles of `user` in `db`, or `None` when there is no such user.
async fn roles_of(
    session: &MongoSession,
    db: &str,
    user: &str,
) -> Result<Option<Roles>, EngineError> {
    let reply = session
        .command(
            db,
            doc! { "usersInfo": { "user": user, "db": db } },
            &format!("looking up user {user} in {db}"),
        )
        .await?;
    let users = reply.get_array("users").map_err(|_| {
        EngineError::new(ErrorKind::Server, "usersInfo answered without a users list")
    })?;
    let Some(Bson::Document(found)) = users.first() else {
        return Ok(None);
    };
    let mut roles = Roles::new();
    for r in found
        .get_array("roles")
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        if let Bson::Document(r) = r
            && let (Ok(role), Ok(rdb)) = (r.get_str("role"), r.get_str("db"))
        {
            roles.insert((role.to_string(), rdb.to_string()));
        }
    }
    Ok(Some(roles))
}

impl Rotator for DocumentDbRotator {
    type Session = MongoSession;

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
    ) -> Result<MongoSession, EngineError> {
        let client = connect::connect(secret, &self.settings, deadline).await?;
        info!(
            user = secret.username(),
            host = secret.host(),
            "login succeeded"
        );
        Ok(MongoSession {
            client,
            auth_db: auth_db(secret).to_string(),
            deadline,
        })
    }

    async fn set_own_password(
        &self,
        session: &mut MongoSession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = PROFILE.password_to_set(target)?;
        let user = username(target);
        let db = session.auth_db.clone();
        session
            .command(
                &db,
                doc! { "updateUser": user, "pwd": password },
                &format!("changing the password of {user}"),
            )
            .await
            .map(|_| ())
    }

    async fn set_password_as_master(
        &self,
        session: &mut MongoSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = PROFILE.password_to_set(target)?;
        connect::check_auth_db(current)?;
        let (current_name, pending_name) = (username(current), username(target));
        // The pair lives in the current user's authentication database.
        let db = auth_db(current);
        let current_roles = roles_of(session, db, current_name).await?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::InvalidInput,
                format!("the current user {current_name} does not exist in database {db}"),
            )
        })?;
        let pending_roles = roles_of(session, db, pending_name).await?;
        let created = pending_roles.is_none();
        match &pending_roles {
            None => {
                session
                    .command(
                        db,
                        doc! {
                            "createUser": pending_name,
                            "pwd": password,
                            "roles": roles_to_bson(&current_roles),
                        },
                        &format!("creating user {pending_name} in {db}"),
                    )
                    .await?;
                info!(user = pending_name, db, "created the alternate user");
            }
            Some(_) => {
                session
                    .command(
                        db,
                        doc! { "updateUser": pending_name, "pwd": password },
                        &format!("setting the password of {pending_name} in {db}"),
                    )
                    .await?;
            }
        }
        let d = Direction::for_pair(current_name, pending_name, created);
        let roles_now = |name: &str| {
            if name == current_name {
                Some(current_roles.clone())
            } else {
                pending_roles
                    .clone()
                    .or_else(|| Some(current_roles.clone()))
            }
        };
        let (source, target_roles) = (
            roles_now(&d.source).unwrap_or_default(),
            roles_now(&d.target).unwrap_or_default(),
        );
        let wanted: Roles = if d.revoke {
            source
        } else {
            target_roles.union(&source).cloned().collect()
        };
        if wanted != target_roles {
            session
                .command(
                    db,
                    doc! { "updateUser": &d.target, "roles": roles_to_bson(&wanted) },
                    &format!(
                        "bringing the roles of {} in line with {}",
                        d.target, d.source
                    ),
                )
                .await?;
            info!(
                source = %d.source,
                target = %d.target,
                roles = wanted.len(),
                "brought the pair's roles in line"
            );
        }
        Ok(())
    }

    async fn test_session(
        &self,
        session: &mut MongoSession,
        pending: &DatabaseSecret,
        _partner: Option<&str>,
    ) -> Result<(), EngineError> {
        // AWS's test runs usersInfo on the user itself, which needs viewUser on servers that
        // enforce it; connectionStatus is open to every user and says who logged in.
        let user = username(pending);
        let db = session.auth_db.clone();
        let reply = session
            .command(
                &db,
                doc! { "connectionStatus": 1 },
                &format!("running connectionStatus as {user}"),
            )
            .await?;
        let logged_in = reply
            .get_document("authInfo")
            .and_then(|a| a.get_array("authenticatedUsers"))
            .map(|users| {
                users.iter().any(|u| {
                    matches!(u, Bson::Document(u)
                        if u.get_str("user") == Ok(user) && u.get_str("db") == Ok(db.as_str()))
                })
            })
            .unwrap_or(false);
        if !logged_in {
            return Err(EngineError::new(
                ErrorKind::AuthFailed,
                format!("the session is not authenticated as {user} in {db}"),
            ));
        }
        Ok(())
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        // The driver is given a CA file for the host (no Mozilla roots; the whole system store).
        let probe = rotation_trust::probe::Probe {
            trust: &self.settings.trust,
            sources: rotation_trust::Trust::PEM_FILE_SOURCES,
            pem_for_host: true,
            handshake: rotation_trust::probe::Handshake::Direct,
            default_port: DEFAULT_PORT,
            allow_plaintext_fallback: self.settings.allow_plaintext_fallback,
            timeout: self.settings.connect_timeout,
        };
        rotation_trust::probe::check(probe, current).await.map(Some)
    }

    async fn check_rights(
        &self,
        session: &mut MongoSession,
        _current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        // connectionStatus with showPrivileges lists the actions the session may take; a
        // server that does not list them cannot tell.
        let db = session.auth_db.clone();
        let Ok(reply) = session
            .command(
                &db,
                doc! { "connectionStatus": 1, "showPrivileges": true },
                "running connectionStatus with showPrivileges",
            )
            .await
        else {
            return Ok(None);
        };
        let Ok(auth) = reply.get_document("authInfo") else {
            return Ok(None);
        };
        // A built-in role that may manage users settles it.
        let admin_role = auth
            .get_array("authenticatedUserRoles")
            .into_iter()
            .flatten()
            .filter_map(|r| match r {
                Bson::Document(r) => Some((r.get_str("role").ok()?, r.get_str("db").ok()?)),
                _ => None,
            })
            .find(|(role, db)| {
                matches!(*role, "root" | "userAdminAnyDatabase")
                    || (*db == "admin" && matches!(*role, "userAdmin" | "dbOwner"))
            });
        if let Some((role, db)) = admin_role {
            return Ok(Some(format!(
                "the session's user holds {role}@{db}, which may manage users"
            )));
        }
        // Otherwise the privileges: a server that lists none (or does not expand custom
        // roles) cannot tell.
        let privileges = match auth.get_array("authenticatedUserPrivileges") {
            Ok(p) if !p.is_empty() => p,
            _ => return Ok(None),
        };
        let actions: Vec<&str> = privileges
            .iter()
            .filter_map(|p| match p {
                Bson::Document(p) => p.get_array("actions").ok(),
                _ => None,
            })
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        let needed: &[&[&str]] = match self.strategy {
            // Its own password: changeOwnPassword, or the right to change anyone's.
            Strategy::SingleUser => &[&["changeOwnPassword", "changePassword"]],
            Strategy::AlternatingUsers => &[&["createUser"], &["changePassword"], &["grantRole"]],
        };
        let missing: Vec<&str> = needed
            .iter()
            .filter(|any| !any.iter().any(|a| actions.contains(a)))
            .map(|any| any[0])
            .collect();
        if missing.is_empty() {
            Ok(Some(format!(
                "the session's user may {}",
                needed.iter().map(|a| a[0]).collect::<Vec<_>>().join(", ")
            )))
        } else {
            Err(EngineError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the session's user lacks the action(s) {}",
                    missing.join(", ")
                ),
            ))
        }
    }

    async fn close(&self, session: MongoSession) {
        connect::close(session.client, session.deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_error(code: i32, message: &str) -> mongodb::error::Error {
        let e: mongodb::error::CommandError =
            mongodb::bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": message })
                .unwrap();
        mongodb::error::Error::from(mongodb::error::ErrorKind::Command(e))
    }

    #[test]
    fn a_refused_max_time_field_is_told_from_other_failures() {
        assert!(refuses_max_time(&command_error(
            40415,
            "BSON field 'updateUser.maxTimeMS' is an unknown field."
        )));
        assert!(refuses_max_time(&command_error(
            2,
            "maxTimeMS is not supported for this command"
        )));
        // Any other refusal, or a time limit reached, is not retried.
        assert!(!refuses_max_time(&command_error(
            50,
            "operation exceeded time limit (maxTimeMS)"
        )));
        assert!(!refuses_max_time(&command_error(13, "not authorized")));
        assert!(!refuses_max_time(&command_error(2, "bad pwd")));
    }
}
