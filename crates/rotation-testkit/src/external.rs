//! Servers the tests did not start: environment variables name them, and the testkit hands
//! them out in place of the ones it would start (see the crate docs).

use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// `postgres://USER:PASSWORD@HOST:PORT`: a PostgreSQL superuser on a server with password
/// authentication, used for clusters with the default options (SCRAM, no TLS).
pub const POSTGRES_URL_ENV: &str = "ROTATION_TEST_POSTGRES_URL";
/// `redis://USER:PASSWORD@HOST:PORT`: a Redis user with every command, for servers without TLS.
pub const REDIS_URL_ENV: &str = "ROTATION_TEST_REDIS_URL";
/// `http://HOST:PORT`: moto's server (Secrets Manager), for servers without Lambda forwarding.
pub const SECRETS_MANAGER_ENDPOINT_ENV: &str = "ROTATION_TEST_SECRETS_MANAGER_ENDPOINT";

/// A server named by an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// The variable that named it.
    pub var: &'static str,
    /// Host (a name or an IPv4 address).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User (empty when the URL has none).
    pub user: String,
    /// Password (percent-decoded; empty when the URL has none).
    pub password: String,
}

impl External {
    /// The server `var` names, if it is set and not empty.
    pub fn from_env(var: &'static str) -> Result<Option<External>, TestkitError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => External::parse(var, v.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// Parses `scheme://[user[:password]@]host:port[/anything]`.
    pub fn parse(var: &'static str, url: &str) -> Result<External, TestkitError> {
        let bad = |why: &str| TestkitError::Command {
            command: format!("reading {var}"),
            detail: format!("{why}: expected scheme://user:password@host:port"),
        };
        let rest = url.split_once("://").ok_or_else(|| bad("no scheme"))?.1;
        let rest = rest.split(['/', '?']).next().unwrap_or_default();
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", rest),
        };
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port = port.parse().map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(External {
            var,
            host: host.to_string(),
            port,
            user: decode(user),
            password: decode(password),
        })
    }

    /// Takes this server for the calling test, waiting while another test (in any process)
    /// holds it: tests reset a server they are handed, so they take turns. Held until dropped.
    pub fn take(&self) -> Result<Turn, TestkitError> {
        let key = format!("{}-{}-{}", self.var, self.host, self.port);
        // A second handle in one test (one thread) would wait for itself: say so at once.
        // Other threads (tests under `cargo test`) wait their turn on the lock file.
        let held_key = format!("{key}-{:?}", std::thread::current().id());
        if !held().insert(held_key.clone()) {
            return Err(TestkitError::Command {
                command: format!("taking {} ({}:{})", self.var, self.host, self.port),
                detail: format!(
                    "this test already holds it: a test that needs two servers of one kind at once cannot run against {}; run it without the variable",
                    self.var
                ),
            });
        }
        let path = std::env::temp_dir().join(format!("rotation-external-{key}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .inspect_err(|_| {
                held().remove(&held_key);
            })?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Turn(file, held_key)),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < TURN_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    held().remove(&held_key);
                    return Err(TestkitError::Timeout {
                        what: "a turn on the external server",
                        secs: TURN_WAIT.as_secs(),
                        detail: format!(
                            "{} ({}:{}) stayed taken; a test that holds two handles of it at once cannot run against it",
                            self.var, self.host, self.port
                        ),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    held().remove(&held_key);
                    return Err(e.into());
                }
            }
        }
    }
}

/// The host of a handle: the external server's, or `127.0.0.1` for one the testkit started.
pub(crate) fn host_or_local(external: &Option<(External, Turn)>) -> &str {
    external
        .as_ref()
        .map_or("127.0.0.1", |(e, _)| e.host.as_str())
}

/// How long a test waits for its turn on an external server.
const TURN_WAIT: Duration = Duration::from_secs(600);

/// A test's exclusive use of an external server, until dropped.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] File, String);

impl Drop for Turn {
    fn drop(&mut self) {
        held().remove(&self.1);
    }
}

/// The external servers this process holds a turn on.
fn held() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static HELD: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Percent-decoding of a URL's user or password.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let e =
            External::parse("V", "postgres://postgres:p%40ss:w@127.0.0.1:5433/postgres").unwrap();
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.user.as_str(),
                e.password.as_str()
            ),
            ("127.0.0.1", 5433, "postgres", "p@ss:w")
        );
        let e = External::parse("V", "http://localhost:5000").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str()),
            ("localhost", 5000, "")
        );
        assert!(External::parse("V", "localhost:5000").is_err());
        assert!(External::parse("V", "redis://u:p@host").is_err());
    }
}
