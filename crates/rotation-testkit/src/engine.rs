//! The seam between the promise suites and an engine: [`TestEngine`] says how to start a real
//! server of the engine and how to lay out its secrets; the [`TestServer`] it starts does to the
//! database what an operator would (create a user with rights, change a password behind the
//! rotation's back, fingerprint every user's credentials and rights, hold a password change).
//!
//! Each engine implements it once, beside its code (a `testing` feature of the engine's crate),
//! and the suites of `rotation-tests` run every promise against every engine that does. What an
//! engine cannot do is said in its [`Limits`], and the suites assert that documented behaviour
//! instead, so a limit that changes fails a test rather than going unnoticed.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rotation_core::{BoxFuture, DatabaseSecret, Engine, ErrorKind};
use serde_json::Value;

use crate::{TcpProxy, TestkitError, Wire};

/// How a test wants its server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// TLS only, with a certificate from a generated CA ([`TestServer::ca_pem`]).
    pub tls: bool,
    /// A server of the testkit's own even when a variable names an external one (a test's
    /// second server of the engine's kind).
    pub own: bool,
}

/// What an engine cannot do, as its documentation says; the suites assert this behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A password change still on its way when its step gave up can land after a safe `abort`
    /// has proved `AWSCURRENT` (no transaction a client can hold open, no fence): the next
    /// rotation recovers it from the unlabelled version (RELIABILITY.md).
    pub late_change_lands_after_abort: bool,
    /// The server has a lock a client can hold on a user, so a password change can wait in
    /// its queue past its step ([`TestServer::hold_in_server`] gives one).
    pub server_lock: bool,
    /// What the preflight's `rights` line says of a single user that may not change its own
    /// password ([`TestServer::forbid_own_password_change`]).
    pub own_password_rights: RightsCheck,
    /// What it says of an alternating-users master without the right to manage users (an
    /// application user made master).
    pub master_rights: RightsCheck,
    /// The error kind of a login to a database that does not exist (`None`: the engine has no
    /// databases a login names, and the rotation goes on).
    pub unknown_database: Option<ErrorKind>,
    /// The error kind of a TLS login to a server without TLS (the server closes the
    /// connection, or, like Redis, waits for a command that never comes).
    pub tls_to_plain_server: ErrorKind,
    /// A single user changes its own password (else the master does it for every strategy,
    /// [`rotation_core::EngineProfile::single_user_master`], and there is no such right to take
    /// away: [`TestServer::forbid_own_password_change`] changes nothing).
    pub users_change_own_password: bool,
    /// A single-user rotation adds the new password beside the current one, which keeps
    /// logging in until finishSecret has promoted the new one (no moment when `AWSCURRENT`
    /// fails, nothing for abort to restore).
    pub single_user_keeps_current: bool,
}

/// What the preflight can tell of a right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RightsCheck {
    /// It checks the right: a missing one fails the line.
    Checked,
    /// The engine always grants it: the line passes.
    AlwaysGranted,
    /// The server cannot tell: the line is skipped.
    Unknown,
}

impl Limits {
    /// An engine that keeps every promise.
    pub const NONE: Limits = Limits {
        late_change_lands_after_abort: false,
        server_lock: true,
        own_password_rights: RightsCheck::Checked,
        master_rights: RightsCheck::Checked,
        unknown_database: Some(ErrorKind::UnknownDatabase),
        tls_to_plain_server: ErrorKind::Tls,
        users_change_own_password: true,
        single_user_keeps_current: false,
    };
}

/// An engine the promise suites run against.
pub trait TestEngine: Send + Sync + 'static {
    /// The engine as the binaries register it.
    fn engine(&self) -> Engine;

    /// Starts a throwaway server of the engine on 127.0.0.1 with password authentication.
    fn start(&self, options: ServerOptions) -> Result<Box<dyn TestServer>, TestkitError>;

    /// A secret value for `username` with `password` on the server at `port` of 127.0.0.1
    /// (named `localhost`), laid out as AWS lays out this engine's secrets. No `ssl` key.
    fn secret(&self, port: u16, username: &str, password: &str) -> Value;

    /// The wire protocol, for a [`crate::TcpProxy`] that holds its statements.
    fn wire(&self) -> Wire;

    /// The start of the statement (or the command name) by which the engine changes a
    /// password, for a proxy to hold it.
    fn password_statement(&self) -> &'static str;

    /// The statement (or command) by which testSecret checks the new session.
    fn test_statement(&self) -> &'static str;

    /// A statement (or command) setSecret sends on its session before the password change,
    /// for a proxy to hold so that the change is sent late in its step. Engines whose server
    /// has a lock a client can hold ([`TestServer::hold_in_server`]) must name one.
    fn statement_before_change(&self) -> Option<&'static str> {
        None
    }

    /// Text of the statement (or the command) by which the first alternating rotation makes
    /// the pair's other user, for a proxy to hold (the one whose late arrival matters most);
    /// the password change's by default.
    fn clone_statement(&self) -> &'static str {
        self.password_statement()
    }

    /// Engines that keep the current password beside the new one until finishSecret drops it
    /// ([`Limits::single_user_keeps_current`]): text of the command that drops only the older
    /// passwords, for a proxy to hold. Such engines must name one.
    fn old_password_drop(&self) -> Option<&'static str> {
        None
    }

    /// The database the engine's connection logs in to with `secret` (its default when the
    /// secret names none).
    fn login_database(&self, secret: &DatabaseSecret) -> String;

    /// The database the engine logs in to when a secret names none.
    fn default_database(&self) -> &'static str;

    /// The port the engine's connection uses for `secret` (its default when the secret names
    /// none).
    fn login_port(&self, secret: &DatabaseSecret) -> u16;

    /// How the test server differs from the engine's real one, for reports that measure it
    /// (`None`: it runs the real server's software).
    fn stand_in(&self) -> Option<&'static str> {
        None
    }

    /// What it cannot do.
    fn limits(&self) -> Limits {
        Limits::NONE
    }

    /// The engine's own checks of a rotation's result (`previous`, then `current`) on
    /// `server`, after the end-to-end suite's (what the server stored, what the clone holds,
    /// the engine's password rules as its documentation states them, independently of the
    /// profile the code generates from).
    /// The default checks nothing more.
    fn check_rotated(&self, server: &dyn TestServer, previous: &Value, current: &Value) {
        let _ = (server, previous, current);
    }
}

impl dyn TestEngine {
    /// The engine's short name.
    pub fn name(&self) -> &'static str {
        self.engine().name()
    }

    /// The engine's profile.
    pub fn profile(&self) -> &'static rotation_core::EngineProfile {
        self.engine().profile
    }
}

impl fmt::Debug for dyn TestEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestEngine({})", self.engine().name())
    }
}

impl fmt::Display for dyn TestEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.engine().name())
    }
}

/// A running server of a [`TestEngine`], stopped on drop. Its methods act as an operator with
/// administrative rights would, through the server's own tools or a driver other than the
/// rotation's connection code; a failure panics with what failed.
pub trait TestServer: Send + Sync + fmt::Debug {
    /// The port secrets name (it may be a proxy's in front of the server).
    fn port(&self) -> u16;

    /// The server's own port, for a new proxy straight to it.
    fn server_port(&self) -> u16;

    /// The CA of a TLS server's certificate.
    fn ca_pem(&self) -> Option<&Path>;

    /// The administrator's user name and password (the master of alternating users).
    fn admin(&self) -> (&str, &str);

    /// Creates a user that logs in with `password`, may change its own password, and holds
    /// an application's rights (the engine's least privileged user an operator would make).
    fn create_user(&self, name: &str, password: &str);

    /// Changes `user`'s password behind the rotation's back.
    fn set_password(&self, user: &str, password: &str);

    /// Makes `user` unable to change its own password while it still logs in.
    fn forbid_own_password_change(&self, user: &str);

    /// The users whose name starts with `prefix`, sorted, comma-separated.
    fn users_named(&self, prefix: &str) -> String;

    /// Every user with what would show a change (credentials, attributes, rights): equal
    /// fingerprints mean no user, password or right changed.
    fn fingerprint(&self) -> String;

    /// The users with administrative rights.
    fn privileged(&self) -> String;

    /// Holds the next password change of `user` until [`HeldChange::release`]: in the server
    /// where the engine has a lock a client can hold (then also with TLS), else in the network
    /// in front of it (secrets without TLS only).
    fn hold_password_change<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Box<dyn HeldChange>>;

    /// A hold of `user`'s password change in the server's own lock queue, where the engine has
    /// one (`None` otherwise): a statement still queued when its step gave up.
    fn hold_in_server<'a>(&'a self, user: &'a str) -> Option<BoxFuture<'a, Box<dyn HeldChange>>> {
        let _ = user;
        None
    }

    /// The server's log so far, for a test that shows it holds no password.
    fn log(&self) -> String;

    /// The lines of [`TestServer::log`] that report a session dropped without the protocol's
    /// goodbye, where the server logs such a thing (none otherwise): every session the engine
    /// opens must end with it.
    fn unclean_closes(&self) -> Vec<String> {
        Vec::new()
    }

    /// The server's software and version (`PostgreSQL 15.14`), for reports.
    fn version(&self) -> String;

    /// Whether `user` logs in with `password`, checked with the server's own client (psql,
    /// pymongo, redis-cli) over its TLS when it has one: not the code under test.
    fn logs_in_with_own_client(&self, user: &str, password: &str) -> bool;

    /// The server as [`Any`](std::any::Any), for its engine's own checks.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A password change held before it takes effect.
pub trait HeldChange: Send + Sync + fmt::Debug {
    /// Whether a password change is being held now.
    fn is_held(&self) -> BoxFuture<'_, bool>;

    /// Lets the held change go on.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A message held at a proxy: a change on its way in the network.
#[derive(Debug)]
pub struct NetworkHold {
    proxy: Arc<TcpProxy>,
    stalls_before: u64,
}

impl NetworkHold {
    /// Holds the next message of `proxy` that contains `needle` ([`TcpProxy::stall_on_query`]).
    pub fn arm(proxy: Arc<TcpProxy>, needle: &str) -> NetworkHold {
        // Counted before arming: a stall right after arming is this hold's.
        let stalls_before = proxy.stalls_triggered();
        proxy.stall_on_query(needle);
        NetworkHold {
            proxy,
            stalls_before,
        }
    }
}

impl HeldChange for NetworkHold {
    fn is_held(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.proxy.stalls_triggered() > self.stalls_before })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.proxy.resume() })
    }
}
