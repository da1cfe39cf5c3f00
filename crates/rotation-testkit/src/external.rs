//! Servers the tests did not start: environment variables name them, and the testkit hands
//! them out in place of the ones it would start (see the crate docs).

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::TestkitError;

/// `postgres://USER:PASSWORD@HOST:PORT`: a PostgreSQL superuser on a server with SCRAM
/// password authentication over TCP without TLS, for clusters with the default options.
pub const POSTGRES_URL_ENV: &str = "ROTATION_TEST_POSTGRES_URL";
/// `postgres://USER:PASSWORD@HOST:PORT/postgres?sslrootcert=CA.pem`: as
/// [`POSTGRES_URL_ENV`], TLS-only (`hostssl`), its certificate signed by the CA file and naming
/// HOST; for [`PgOptions::tls`](crate::PgOptions::tls) clusters.
pub const POSTGRES_TLS_URL_ENV: &str = "ROTATION_TEST_POSTGRES_TLS_URL";
/// As [`POSTGRES_URL_ENV`] with `md5` authentication and `password_encryption = md5`: the
/// Redshift stand-in ([`PgAuth::Md5`](crate::PgAuth::Md5)).
pub const POSTGRES_MD5_URL_ENV: &str = "ROTATION_TEST_POSTGRES_MD5_URL";
/// As [`POSTGRES_TLS_URL_ENV`] with `md5` authentication: the TLS Redshift stand-in.
pub const POSTGRES_MD5_TLS_URL_ENV: &str = "ROTATION_TEST_POSTGRES_MD5_TLS_URL";
/// `mongodb://USER:PASSWORD@HOST:PORT/?authSource=admin`: a MongoDB-wire server (MongoDB,
/// SecantusDB) with SCRAM-SHA-256 and a user holding `root`, without TLS; the DocumentDB
/// stand-in.
pub const MONGODB_URI_ENV: &str = "ROTATION_TEST_MONGODB_URI";
/// As [`MONGODB_URI_ENV`] with `&tls=true&tlsCAFile=CA.pem`: TLS-only, its certificate signed
/// by the CA file and naming HOST.
pub const MONGODB_TLS_URI_ENV: &str = "ROTATION_TEST_MONGODB_TLS_URI";
/// `redis://USER:PASSWORD@HOST:PORT`: a Redis user with every command, for servers without TLS.
pub const REDIS_URL_ENV: &str = "ROTATION_TEST_REDIS_URL";
/// `rediss://USER:PASSWORD@HOST:PORT?cacert=CA.pem`: as [`REDIS_URL_ENV`], TLS-only, its
/// certificate signed by the CA file and naming HOST.
pub const REDIS_TLS_URL_ENV: &str = "ROTATION_TEST_REDIS_TLS_URL";
/// `mysql://USER:PASSWORD@HOST:PORT`: a MariaDB account with every right and the grant option
/// (`GRANT ALL PRIVILEGES ON *.* ... WITH GRANT OPTION`), password authentication over TCP
/// without TLS; the MySQL / MariaDB engine's server. (The reset and the operator's checks read
/// MariaDB's tables: a MySQL 8 server is not supported here.)
pub const MYSQL_URL_ENV: &str = "ROTATION_TEST_MYSQL_URL";
/// As [`MYSQL_URL_ENV`] with `?ssl-ca=CA.pem`: TLS-only (`require_secure_transport`), its
/// certificate signed by the CA file and naming HOST.
pub const MYSQL_TLS_URL_ENV: &str = "ROTATION_TEST_MYSQL_TLS_URL";
/// `http://HOST:PORT`: moto's server (Secrets Manager), for servers without Lambda forwarding.
pub const SECRETS_MANAGER_ENDPOINT_ENV: &str = "ROTATION_TEST_SECRETS_MANAGER_ENDPOINT";

/// Every variable, for the TLS ones whether they need a CA file.
pub const ALL: [(&str, bool); 11] = [
    (POSTGRES_URL_ENV, false),
    (POSTGRES_TLS_URL_ENV, true),
    (POSTGRES_MD5_URL_ENV, false),
    (POSTGRES_MD5_TLS_URL_ENV, true),
    (MONGODB_URI_ENV, false),
    (MONGODB_TLS_URI_ENV, true),
    (REDIS_URL_ENV, false),
    (REDIS_TLS_URL_ENV, true),
    (MYSQL_URL_ENV, false),
    (MYSQL_TLS_URL_ENV, true),
    (SECRETS_MANAGER_ENDPOINT_ENV, false),
];

/// A server named by an environment variable. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
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
    /// The CA file that signed the server's certificate: the URL's `sslrootcert`,
    /// `tlsCAFile`, `cacert` or `ssl-ca` parameter. Required by the TLS variables.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("var", &self.var)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl External {
    /// The server `var` names, if it is set and not empty.
    pub fn from_env(var: &'static str) -> Result<Option<External>, TestkitError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => External::parse(var, v.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// The server `var` names for the calling test: none when `var` is unset, or when this
    /// test (thread) already holds that server, so that a test's second server of a kind is
    /// one the testkit starts (a second handle would reset the first).
    pub fn for_this_test(var: &'static str) -> Result<Option<External>, TestkitError> {
        let thread = std::thread::current().id();
        Ok(External::from_env(var)?.filter(|e| !held().contains(&e.key(thread))))
    }

    /// The key of this server held by `thread`.
    fn key(&self, thread: std::thread::ThreadId) -> String {
        format!("{}-{}-{}-{thread:?}", self.var, self.host, self.port)
    }

    /// Parses `scheme://[user[:password]@]host:port[/path][?query]`; of the query, only the
    /// CA file is read (`sslrootcert`, `tlsCAFile`, `cacert` or `ssl-ca`), and the TLS variables
    /// ([`ALL`]) require one that exists.
    pub fn parse(var: &'static str, url: &str) -> Result<External, TestkitError> {
        let bad = |why: &str| TestkitError::Command {
            command: format!("reading {var}"),
            detail: format!("{why}: expected scheme://user:password@host:port[/path][?query]"),
        };
        let rest = url.split_once("://").ok_or_else(|| bad("no scheme"))?.1;
        let ca_file = rest
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| matches!(*k, "sslrootcert" | "tlsCAFile" | "cacert" | "ssl-ca"))
            .map(|(_, v)| PathBuf::from(decode(v)));
        let needs_ca = ALL.iter().any(|(v, tls)| *v == var && *tls);
        match &ca_file {
            None if needs_ca => {
                return Err(bad(
                    "no CA file (sslrootcert=, tlsCAFile=, cacert= or ssl-ca= in the query)",
                ));
            }
            Some(f) if !f.is_file() => {
                return Err(bad(&format!("the CA file {} is not a file", f.display())));
            }
            _ => {}
        }
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
        // Suites put fault-injection proxies on 127.0.0.1 in front of the server, and write
        // `localhost` or `127.0.0.1` into secrets: the server must listen on this machine
        // (containers with published ports do).
        if !matches!(host, "localhost" | "127.0.0.1") {
            return Err(bad(&format!(
                "the host is {host:?}: the suites reach servers on this machine only (localhost or 127.0.0.1; publish a container's port)"
            )));
        }
        Ok(External {
            var,
            host: host.to_string(),
            port,
            user: decode(user),
            password: decode(password),
            ca_file,
        })
    }

    /// Takes this server for the calling test, waiting while another test (in any process)
    /// holds a turn: tests reset a server they are handed, so they take turns. A turn covers
    /// every external server at once (a test holding PostgreSQL and moto waits for both in one
    /// wait, so two tests cannot each hold one and wait for the other); a thread's further
    /// handles share its turn. Held until the last handle is dropped.
    pub fn take(&self) -> Result<Turn, TestkitError> {
        let thread = std::thread::current().id();
        let key = self.key(thread);
        // A second handle of one server in one test (one thread) would reset the first: say
        // so at once.
        if !held().insert(key.clone()) {
            return Err(TestkitError::Command {
                command: format!("taking {} ({}:{})", self.var, self.host, self.port),
                detail: format!(
                    "this test already holds it: a test that needs two servers of one kind at once cannot run against {}; run it without the variable",
                    self.var
                ),
            });
        }
        let release = |e| {
            held().remove(&key);
            e
        };
        if let Some((_, count)) = turns().get_mut(&thread) {
            *count += 1;
            self.record();
            return Ok(Turn(key, thread));
        }
        let path = std::env::temp_dir().join("rotation-external-turn.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| release(e.into()))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < TURN_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(release(TestkitError::Timeout {
                        what: "a turn on the external servers",
                        secs: TURN_WAIT.as_secs(),
                        detail: format!(
                            "another test held them all along (waiting for {} at {}:{})",
                            self.var, self.host, self.port
                        ),
                    }));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(release(e.into())),
            }
        }
        turns().insert(thread, (file, 1));
        self.record();
        Ok(Turn(key, thread))
    }
}

impl External {
    /// Appends the variable's name and the test binary to the file `ROTATION_TEST_EXTERNAL_LOG`
    /// names, if set: one line per handle given out, so a run can show which servers each
    /// suite used.
    fn record(&self) {
        if let Some(path) = std::env::var_os(EXTERNAL_LOG_ENV) {
            // nextest names the test binary; under cargo test, the executable does.
            let binary = std::env::var("NEXTEST_BINARY_ID").unwrap_or_else(|_| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default()
            });
            let line = format!("{} {binary}\n", self.var);
            let _ = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        }
    }
}

/// A file to which every handle of an external server appends its variable's name and the
/// test binary (nextest's binary id).
pub const EXTERNAL_LOG_ENV: &str = "ROTATION_TEST_EXTERNAL_LOG";

/// The host of a handle: the external server's, or `127.0.0.1` for one the testkit started.
pub(crate) fn host_or_local(external: &Option<(External, Turn)>) -> &str {
    external
        .as_ref()
        .map_or("127.0.0.1", |(e, _)| e.host.as_str())
}

/// The name a TLS handle's certificate is checked against: the external server's host, or
/// `localhost` (a DNS name the testkit's certificates carry) for one the testkit started.
pub(crate) fn tls_host_or_local(external: &Option<(External, Turn)>) -> &str {
    external
        .as_ref()
        .map_or("localhost", |(e, _)| e.host.as_str())
}

/// How long a test waits for its turn on an external server.
const TURN_WAIT: Duration = Duration::from_secs(600);

/// A test's exclusive use of an external server, until dropped.
#[derive(Debug)]
pub struct Turn(String, std::thread::ThreadId);

impl Drop for Turn {
    fn drop(&mut self) {
        held().remove(&self.0);
        let thread = self.1;
        let mut turns = turns();
        if let Some((_, count)) = turns.get_mut(&thread) {
            *count -= 1;
            if *count == 0 {
                // Closing the file ends the lock.
                turns.remove(&thread);
            }
        }
    }
}

/// The external servers this process holds handles of, by server and thread.
fn held() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static HELD: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Each thread's turn (the locked file) and how many handles share it.
fn turns()
-> std::sync::MutexGuard<'static, std::collections::HashMap<std::thread::ThreadId, (File, usize)>> {
    type Turns = std::collections::HashMap<std::thread::ThreadId, (File, usize)>;
    static TURNS: std::sync::OnceLock<std::sync::Mutex<Turns>> = std::sync::OnceLock::new();
    TURNS
        .get_or_init(Default::default)
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
            && bytes[i + 1..i + 3].iter().all(u8::is_ascii_hexdigit)
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
        assert!(External::parse("V", "http://db.example.com:5000").is_err());
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str()),
            ("localhost", 5000, "")
        );
        assert!(External::parse("V", "localhost:5000").is_err());
        let e = External::parse("V", "redis://u:Secret-pw%2B1%+f@localhost:1").unwrap();
        assert_eq!(e.password, "Secret-pw+1%+f");
        assert!(!format!("{e:?}").contains("Secret"));
        let ca = std::env::temp_dir().join(format!("external-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "x").unwrap();
        let url = format!(
            "postgres://u:p@localhost:5432/postgres?sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        let e = External::parse(POSTGRES_TLS_URL_ENV, &url).unwrap();
        assert_eq!(e.ca_file.as_deref(), Some(ca.as_path()));
        assert!(External::parse(POSTGRES_TLS_URL_ENV, "postgres://u:p@localhost:5432").is_err());
        assert!(
            External::parse(
                MONGODB_TLS_URI_ENV,
                "mongodb://u:p@localhost:1/?tls=true&tlsCAFile=/nonexistent/ca.pem"
            )
            .is_err()
        );
        std::fs::remove_file(&ca).unwrap();
        assert!(External::parse("V", "redis://u:p@host").is_err());
    }
}
