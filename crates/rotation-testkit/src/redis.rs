use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::external::{External, REDIS_TLS_URL_ENV, REDIS_URL_ENV, Turn};
use crate::{TestCa, TestkitError, free_port, wait_for_port};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "Admin-Passw0rd-1-for-redis";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` on 127.0.0.1 with ACLs on: the `default` user is off, and `admin` (every
/// command, key and channel) logs in with a password. Nothing is kept on disk; optionally
/// TLS-only with a certificate from a generated CA for `localhost` and `127.0.0.1`. Killed and
/// removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// None for a server named by `ROTATION_TEST_REDIS_URL` or `ROTATION_TEST_REDIS_TLS_URL`.
    child: Option<Child>,
    /// That server, and this test's turn on it.
    external: Option<(External, Turn)>,
    port: u16,
    dir: tempfile::TempDir,
    ca: Option<TestCa>,
}

/// Where `redis-server` is: `REDIS_SERVER` or the `PATH`.
fn redis_bin(name: &str, env: &str) -> Result<PathBuf, TestkitError> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(TestkitError::Missing {
            what: "Redis",
            path: name.to_string(),
            hint: "run scripts/setup (it installs redis-server and redis-cli with apt)",
        })
}

impl RedisServer {
    /// Starts a server; `tls` makes it TLS-only. With `ROTATION_TEST_REDIS_URL` (or, for TLS,
    /// `ROTATION_TEST_REDIS_TLS_URL`) set, hands out that server instead, reset (see
    /// [`RedisServer::is_external`]).
    pub fn start(tls: bool) -> Result<RedisServer, TestkitError> {
        let var = if tls {
            REDIS_TLS_URL_ENV
        } else {
            REDIS_URL_ENV
        };
        if let Some(external) = External::for_this_test(var)? {
            return RedisServer::external(external);
        }
        let server = redis_bin("redis-server", "REDIS_SERVER")?;
        redis_bin("redis-cli", "REDIS_CLI")?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-redis-")
            .tempdir()?;
        let ca = if tls {
            Some(TestCa::generate(dir.path(), &["localhost", "127.0.0.1"])?)
        } else {
            None
        };
        let log = dir.path().join("server.log");
        for _attempt in 0..3 {
            let port = free_port();
            let listen = match &ca {
                None => format!("port {port}\n"),
                Some(ca) => format!(
                    "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
                    ca.server_pem.display(),
                    ca.server_key.display(),
                    ca.ca_pem.display()
                ),
            };
            let conf = dir.path().join("redis.conf");
            fs::write(
                &conf,
                format!(
                    "bind 127.0.0.1\n{listen}save \"\"\nappendonly no\ndir {}\nlogfile {}\n\
                     user default off\nuser {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all\n",
                    dir.path().display(),
                    log.display()
                ),
            )?;
            let mut child = Command::new(&server)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            if wait_for_port(port, START_TIMEOUT)
                && let Ok(None) = child.try_wait()
            {
                return Ok(RedisServer {
                    child: Some(child),
                    external: None,
                    port,
                    dir,
                    ca,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(TestkitError::Timeout {
            what: "redis-server",
            secs: START_TIMEOUT.as_secs(),
            detail: fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    /// The server a variable names, taken for this test (other tests wait) and
    /// reset: every ACL user but the URL's and `default` deleted, every key flushed.
    fn external(external: External) -> Result<RedisServer, TestkitError> {
        let turn = external.take()?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-redis-")
            .tempdir()?;
        let server = RedisServer {
            child: None,
            port: external.port,
            external: Some((external, turn)),
            dir,
            ca: None,
        };
        for user in server.cli(&["ACL", "USERS"])?.lines() {
            if user != server.admin() && user != "default" && !user.is_empty() {
                server.cli(&["ACL", "DELUSER", user])?;
            }
        }
        server.cli(&["FLUSHALL"])?;
        Ok(server)
    }

    /// Whether this is a server the tests did not start (`ROTATION_TEST_REDIS_URL`,
    /// `ROTATION_TEST_REDIS_TLS_URL`).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// The host secrets name: `127.0.0.1`, or the external server's.
    pub fn host(&self) -> &str {
        crate::external::host_or_local(&self.external)
    }

    /// The name secrets give for a TLS server, which its certificate carries: `localhost`, or
    /// the external server's host.
    pub fn tls_host(&self) -> &str {
        crate::external::tls_host_or_local(&self.external)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin user (every command).
    pub fn admin(&self) -> &str {
        self.external
            .as_ref()
            .map_or(ADMIN, |(e, _)| e.user.as_str())
    }

    /// The admin's password.
    pub fn admin_password(&self) -> &str {
        self.external
            .as_ref()
            .map_or(ADMIN_PASSWORD, |(e, _)| e.password.as_str())
    }

    /// The CA that signed the server certificate (TLS servers).
    pub fn ca_pem(&self) -> Option<&Path> {
        match &self.external {
            Some((e, _)) => e.ca_file.as_deref(),
            None => self.ca.as_ref().map(|c| c.ca_pem.as_path()),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `redis-cli` as `user`, the password in the environment (never an argument).
    fn cli_as(&self, user: &str, password: &str, args: &[&str]) -> Result<String, TestkitError> {
        let mut cmd = Command::new(redis_bin("redis-cli", "REDIS_CLI")?);
        cmd.args([
            "-h",
            self.host(),
            "-p",
            &self.port.to_string(),
            "--user",
            user,
        ])
        .env("REDISCLI_AUTH", password);
        if let Some(ca) = self.ca_pem() {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(TestkitError::Command {
                command: format!("redis-cli {}", args.first().copied().unwrap_or_default()),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command as the admin (for test setup independent of the code under test);
    /// returns `redis-cli`'s output.
    pub fn cli(&self, args: &[&str]) -> Result<String, TestkitError> {
        self.cli_as(self.admin(), self.admin_password(), args)
    }

    /// Whether `user` logs in with `password`, checked with `redis-cli` (not the code under
    /// test). `Ok(false)` only when the server refuses the credentials, so a refusal is never
    /// a server that was not there.
    pub fn logs_in(&self, user: &str, password: &str) -> Result<bool, TestkitError> {
        let out = self.cli_as(user, password, &["PING"])?;
        match out.trim() {
            "PONG" => Ok(true),
            o if o.contains("WRONGPASS") || o.contains("NOAUTH") => Ok(false),
            other => Err(TestkitError::Command {
                command: "redis-cli PING".into(),
                detail: other.to_string(),
            }),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
