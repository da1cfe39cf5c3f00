//! Redis ACL users for the toolkit's promise suites ([`rotation_testkit::TestEngine`]): the
//! testkit's `redis-server` (ACLs on, an `admin` with every right), reached through a proxy
//! (`front`) that can hold an `ACL SETUSER` in the network, driven by `redis-cli` as an operator
//! would. Behind the `testing` feature; a custom engine of your own implements the same trait to
//! run the same suites.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rotation_core::{BoxFuture, DatabaseSecret, Engine, ErrorKind};
use rotation_testkit::{
    HeldChange, Limits, NetworkHold, RedisServer, RightsCheck, ServerOptions, TcpProxy, TestEngine,
    TestServer, TestkitError, Wire,
};
use serde_json::{Value, json};

/// Redis ACL users.
#[derive(Debug)]
pub struct Redis;

/// The Redis test engine.
pub static REDIS: Redis = Redis;

impl TestEngine for Redis {
    fn engine(&self) -> Engine {
        crate::ENGINE
    }

    /// Always a server of the testkit's own: an external one (`ROTATION_TEST_REDIS_URL`) serves
    /// one test at a time through its own turn, which `own` does not change.
    fn start(&self, options: ServerOptions) -> Result<Box<dyn TestServer>, TestkitError> {
        let server = RedisServer::start(options.tls)?;
        let front = TcpProxy::to_port_with(server.port(), Wire::Resp)?;
        Ok(Box::new(RedisTestServer {
            server,
            front: Arc::new(front),
        }))
    }

    fn secret(&self, port: u16, username: &str, password: &str) -> Value {
        json!({
            "engine": "redis",
            "host": "localhost",
            "port": port,
            "username": username,
            "password": password,
        })
    }

    fn wire(&self) -> Wire {
        Wire::Resp
    }

    /// The clone's remake, with the original's rules (`resetkeys` ...): delivered late it must
    /// change nothing. (The fence before it, delivered late, adds a password no one knows.)
    fn clone_statement(&self) -> &'static str {
        "resetkeys"
    }

    fn password_statement(&self) -> &'static str {
        "SETUSER"
    }

    fn test_statement(&self) -> &'static str {
        "PING"
    }

    /// finishSecret's `ACL SETUSER <user> !<hash>...`: a removal by hash (65 bytes).
    fn old_password_drop(&self) -> Option<&'static str> {
        Some("\r\n$65\r\n!")
    }

    /// Redis has no databases a login names.
    fn login_database(&self, _secret: &DatabaseSecret) -> String {
        String::new()
    }

    fn default_database(&self) -> &'static str {
        ""
    }

    fn login_port(&self, secret: &DatabaseSecret) -> u16 {
        secret.port().unwrap_or(crate::DEFAULT_PORT)
    }

    /// Users never change their own password (the master does, for both strategies, adding the
    /// new password beside the current one), so the preflight's single-user rights line is the
    /// master's; a `dbname` means nothing to Redis;
    /// a server without TLS neither answers nor closes a TLS handshake, so the login ends at its
    /// deadline.
    fn limits(&self) -> Limits {
        Limits {
            tls_to_plain_server: ErrorKind::Timeout,
            server_lock: false,
            own_password_rights: RightsCheck::AlwaysGranted,
            unknown_database: None,
            users_change_own_password: false,
            single_user_keeps_current: true,
            ..Limits::NONE
        }
    }
}

/// `redis-server` behind its front proxy, which every secret of the tests names.
pub struct RedisTestServer {
    server: RedisServer,
    front: Arc<TcpProxy>,
}

impl fmt::Debug for RedisTestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTestServer")
            .field("port", &self.server.port())
            .field("front", &self.front.port())
            .finish_non_exhaustive()
    }
}

impl RedisTestServer {
    /// The server itself.
    pub fn redis(&self) -> &RedisServer {
        &self.server
    }

    /// The proxy in front of the server: the port secrets name.
    pub fn front(&self) -> &TcpProxy {
        &self.front
    }

    /// `redis-cli` as the admin; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.server
            .cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {}: {e}", args.first().unwrap_or(&"")))
    }

    /// `ACL LIST`, one line per user, sorted.
    fn acl_list(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .cli(&["ACL", "LIST"])
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }
}

/// The user a line of `ACL LIST` is about.
fn user_of(line: &str) -> &str {
    line.strip_prefix("user ")
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
}

impl TestServer for RedisTestServer {
    fn version(&self) -> String {
        let info = self
            .server
            .cli(&["INFO", "server"])
            .unwrap_or_else(|e| panic!("redis INFO: {e}"));
        let v = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?");
        format!("Redis {}", v.trim())
    }

    fn port(&self) -> u16 {
        self.front.port()
    }

    fn server_port(&self) -> u16 {
        self.server.port()
    }

    fn ca_pem(&self) -> Option<&Path> {
        self.server.ca_pem()
    }

    fn admin(&self) -> (&str, &str) {
        (self.server.admin(), self.server.admin_password())
    }

    /// Its own keys (`~<name>:*`), read and write commands.
    fn create_user(&self, name: &str, password: &str) {
        self.cli(&[
            "ACL",
            "SETUSER",
            name,
            "on",
            &format!(">{password}"),
            &format!("~{name}:*"),
            "&*",
            "-@all",
            "+@read",
            "+@write",
            "+ping",
        ]);
    }

    fn set_password(&self, user: &str, password: &str) {
        self.cli(&["ACL", "SETUSER", user, "resetpass", &format!(">{password}")]);
    }

    /// Nothing to do: no Redis user changes its own password here.
    fn forbid_own_password_change(&self, _user: &str) {}

    fn users_named(&self, prefix: &str) -> String {
        let mut names: Vec<String> = self
            .cli(&["ACL", "USERS"])
            .lines()
            .filter(|u| u.starts_with(prefix))
            .map(str::to_string)
            .collect();
        names.sort();
        names.join(",")
    }

    /// `ACL LIST`: every user's flags, password hashes, keys, channels and commands.
    fn fingerprint(&self) -> String {
        self.acl_list().join("\n")
    }

    /// Users that may run every command, the admin commands, or `ACL`.
    fn privileged(&self) -> String {
        let list = self.acl_list();
        let names: Vec<&str> = list
            .iter()
            .filter(|line| {
                line.split(' ')
                    .any(|t| t == "+@all" || t == "+@admin" || t.starts_with("+acl"))
            })
            .map(|line| user_of(line))
            .collect();
        names.join(",")
    }

    /// In the network, at the front proxy (secrets without TLS only): the next `ACL SETUSER`.
    fn hold_password_change<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Box<dyn HeldChange>> {
        Box::pin(async move {
            Box::new(NetworkHold::arm(
                self.front.clone(),
                REDIS.password_statement(),
            )) as Box<dyn HeldChange>
        })
    }

    fn log(&self) -> String {
        self.server.log()
    }

    fn logs_in_with_own_client(&self, user: &str, password: &str) -> bool {
        self.server
            .logs_in(user, password)
            .unwrap_or_else(|e| panic!("the login check failed: {e}"))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
