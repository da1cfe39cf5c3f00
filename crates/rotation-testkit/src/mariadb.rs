//! A throwaway MariaDB server: its own data directory in a temporary directory, on a random
//! 127.0.0.1 port, password authentication over TCP, an `admin` with every right and the grant
//! option, optionally TLS-only with a certificate from a generated CA, the general query log on.
//! Never the machine's own server: `--no-defaults` keeps every option file away.
//!
//! With `ROTATION_TEST_MYSQL_URL` (or, for TLS, `ROTATION_TEST_MYSQL_TLS_URL`) set, the server
//! it names is handed out instead, reset (see [`MariaDb::is_external`]).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::external::{External, MYSQL_TLS_URL_ENV, MYSQL_URL_ENV, Turn};
use crate::{TestCa, TestkitError, free_port, wait_for_port};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "Admin-Passw0rd-1-for-mariadb";
/// `mysql_native_password`'s stored form of the admin's password (the general log holds no
/// password of a test; `rotation-mysql`'s tests check this value).
pub const ADMIN_PASSWORD_HASH: &str = "*3F3666F75437AE18212A54C72BD8FA9E2E014383";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Small InnoDB files: the server starts in a fraction of a second and takes ~25 MB on disk.
const SMALL: [&str; 2] = ["--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"];

/// A MariaDB server for one test; killed and removed on drop.
#[derive(Debug)]
pub struct MariaDb {
    /// None for a server named by `ROTATION_TEST_MYSQL_URL` or `ROTATION_TEST_MYSQL_TLS_URL`.
    child: Option<Child>,
    /// That server, and this test's turn on it.
    external: Option<(External, Turn)>,
    port: u16,
    dir: tempfile::TempDir,
    ca: Option<TestCa>,
}

/// Where a MariaDB program is: `MARIADB_BIN_DIR`, the `PATH`, `/usr/sbin` or `/usr/bin`.
pub fn mariadb_bin(name: &str) -> Result<PathBuf, TestkitError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("MARIADB_BIN_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths),
    );
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(TestkitError::Missing {
            what: "MariaDB",
            path: name.to_string(),
            hint: "run scripts/setup (it installs mariadb-server-core and mariadb-client-core with apt)",
        })
}

/// `value` as a SQL string literal (test data only: the engine under test quotes by the
/// server's own `QUOTE()`).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

impl MariaDb {
    /// Starts a server; `tls` makes TCP connections TLS-only (`require_secure_transport`).
    /// With the variable for it set, hands out that server instead, reset.
    pub fn start(tls: bool) -> Result<MariaDb, TestkitError> {
        let var = if tls {
            MYSQL_TLS_URL_ENV
        } else {
            MYSQL_URL_ENV
        };
        if let Some(external) = External::for_this_test(var)? {
            return MariaDb::external(external);
        }
        MariaDb::start_own(tls)
    }

    /// The server a variable names, taken for this test (other tests wait) and reset: every
    /// account and role but the URL's and the server's own dropped, every database but the
    /// system ones dropped and `app` made again, the general log emptied and kept in a table
    /// (read by [`MariaDb::log`]).
    fn external(external: External) -> Result<MariaDb, TestkitError> {
        let turn = external.take()?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-mariadb-")
            .tempdir()?;
        let db = MariaDb {
            child: None,
            port: external.port,
            external: Some((external, turn)),
            dir,
            ca: None,
        };
        // Dropped by the server itself (names may hold any character, which the client's
        // batch output would escape), each statement made by `QUOTE()`.
        let user = literal(db.admin().0);
        db.sql(&format!(
            "SET SESSION sql_mode = '';
DELIMITER //
BEGIN NOT ATOMIC
  DECLARE done INT DEFAULT 0;
  DECLARE s LONGTEXT;
  DECLARE c CURSOR FOR
    SELECT CONCAT(IF(is_role = 'Y', 'DROP ROLE ', 'DROP USER '), QUOTE(user),
                  IF(is_role = 'Y', '', CONCAT('@', QUOTE(host))))
    FROM mysql.user
    WHERE user NOT IN ({user}, 'root', 'mariadb.sys', 'mysql.sys', 'mysql.session',
                       'mysql.infoschema', 'PUBLIC', '')
    UNION ALL
    SELECT CONCAT('DROP DATABASE `', REPLACE(schema_name, '`', '``'), '`')
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys');
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  OPEN c;
  l: LOOP
    FETCH c INTO s;
    IF done THEN LEAVE l; END IF;
    EXECUTE IMMEDIATE s;
  END LOOP;
  CLOSE c;
END//
DELIMITER ;
CREATE DATABASE app;
SET GLOBAL general_log = OFF;
SET GLOBAL log_output = 'TABLE';
TRUNCATE TABLE mysql.general_log;
SET GLOBAL general_log = ON;"
        ))?;
        Ok(db)
    }

    /// Whether this is a server the tests did not start (`ROTATION_TEST_MYSQL_URL`,
    /// `ROTATION_TEST_MYSQL_TLS_URL`).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// The host secrets name: the external server's, or `127.0.0.1`.
    pub fn host(&self) -> &str {
        crate::external::host_or_local(&self.external)
    }

    /// A server of the testkit's own even when a variable names one (a test's second server
    /// of a kind).
    pub fn start_own(tls: bool) -> Result<MariaDb, TestkitError> {
        let install = mariadb_bin("mariadb-install-db")?;
        let server = mariadb_bin("mariadbd")?;
        mariadb_bin("mariadb")?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-mariadb-")
            .tempdir()?;
        let data = dir.path().join("data");
        // A temporary directory of its own: installs running at once in the shared /tmp
        // collide on their temporary tables' names.
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp)?;
        let tmpdir = format!("--tmpdir={}", tmp.display());
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let out = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(&tmpdir)
            .args(SMALL)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(TestkitError::Command {
                command: "mariadb-install-db".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let ca = if tls {
            Some(TestCa::generate(dir.path(), &["localhost", "127.0.0.1"])?)
        } else {
            None
        };
        let log = dir.path().join("server.log");
        for _attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&server);
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.path().join("sock").display()))
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!(
                    "--general-log-file={}",
                    dir.path().join("general.log").display()
                ))
                .args([
                    "--general-log=1",
                    &tmpdir,
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                ])
                .args(["--skip-log-bin", "--max-connections=200"])
                .arg(format!("--port={port}"))
                .arg(format!("--user={user}"))
                .args(SMALL);
            if let Some(ca) = &ca {
                cmd.arg(format!("--ssl-ca={}", ca.ca_pem.display()))
                    .arg(format!("--ssl-cert={}", ca.server_pem.display()))
                    .arg(format!("--ssl-key={}", ca.server_key.display()))
                    .arg("--require-secure-transport=ON");
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            if wait_for_port(port, START_TIMEOUT)
                && let Ok(None) = child.try_wait()
            {
                let db = MariaDb {
                    child: Some(child),
                    external: None,
                    port,
                    dir,
                    ca,
                };
                // The grant tables are loaded by the first FLUSH after an install. The port
                // may open a while before the socket answers (seconds on a loaded machine):
                // tries until it does, while the client cannot connect (nothing ran yet).
                let setup = format!(
                    "FLUSH PRIVILEGES; CREATE USER {ADMIN}@'%' IDENTIFIED BY PASSWORD '{ADMIN_PASSWORD_HASH}'; \
                     GRANT ALL PRIVILEGES ON *.* TO {ADMIN}@'%' WITH GRANT OPTION; \
                     CREATE DATABASE app"
                );
                let since = std::time::Instant::now();
                loop {
                    match db.sql(&setup) {
                        Ok(_) => return Ok(db),
                        Err(e)
                            if e.to_string().contains("ERROR 2002")
                                && since.elapsed() < START_TIMEOUT =>
                        {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(TestkitError::Timeout {
            what: "mariadbd",
            secs: START_TIMEOUT.as_secs(),
            detail: fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin user (every right, with the grant option) and its password.
    pub fn admin(&self) -> (&str, &str) {
        match &self.external {
            Some((e, _)) => (&e.user, &e.password),
            None => (ADMIN, ADMIN_PASSWORD),
        }
    }

    /// The CA that signed the server certificate (TLS servers).
    pub fn ca_pem(&self) -> Option<&Path> {
        match &self.external {
            Some((e, _)) => e.ca_file.as_deref(),
            None => self.ca.as_ref().map(|c| c.ca_pem.as_path()),
        }
    }

    /// A client with every right: root over the server's socket, or the external server's
    /// admin over TCP (its TLS when it has one).
    pub fn client(&self) -> Client {
        match &self.external {
            Some((e, _)) => Client::Tcp {
                host: e.host.clone(),
                port: e.port,
                user: e.user.clone(),
                password: e.password.clone(),
                ca: e.ca_file.clone(),
            },
            None => Client::Socket(self.dir.path().join("sock")),
        }
    }

    /// Runs `sql` as root over the server's socket (on stdin, never an argument); returns
    /// its output.
    pub fn sql(&self, sql: &str) -> Result<String, TestkitError> {
        self.client().sql(sql)
    }

    /// Whether `user` logs in over TCP with `password` (the server's own client; the password
    /// in the environment, never an argument).
    pub fn logs_in(&self, user: &str, password: &str) -> Result<bool, TestkitError> {
        let mut cmd = Command::new(mariadb_bin("mariadb")?);
        cmd.args([
            "--no-defaults",
            "-h",
            self.host(),
            "-P",
            &self.port.to_string(),
        ])
        .args(["-u", user, "-N", "-B", "-e", "SELECT 1"])
        .arg("--default-character-set=utf8mb4")
        .env("MYSQL_PWD", password)
        .stdin(Stdio::null());
        tls_args(&mut cmd, self.ca_pem());
        let out = cmd.output()?;
        if out.status.success() {
            return Ok(true);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // Wrong password (1045), or an account locked (4151).
        if err.contains("ERROR 1045") || err.contains("ERROR 4151") {
            return Ok(false);
        }
        Err(TestkitError::Command {
            command: "mariadb (login check)".into(),
            detail: err.into_owned(),
        })
    }

    /// The error log and the general query log so far (an external server's general log, kept
    /// in its table since the handle was taken).
    pub fn log(&self) -> String {
        if self.external.is_some() {
            return self
                .sql("SELECT CONCAT(command_type, ' ', CONVERT(argument USING utf8mb4)) FROM mysql.general_log")
                .unwrap_or_else(|e| format!("(the general log could not be read: {e})"));
        }
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("server.log"), read("general.log"))
    }

    /// Holds `LOCK TABLES mysql.global_priv READ` in a root session until released: every
    /// account change waits behind it, reads and logins do not.
    pub fn lock_accounts(&self) -> Result<AccountLock, TestkitError> {
        let mut child = self
            .client()
            .command()?
            .arg("--unbuffered")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(b"LOCK TABLES mysql.global_priv READ;\nSELECT 'locked';\n")?;
        stdin.flush()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        if line.trim() != "locked" {
            let _ = child.kill();
            return Err(TestkitError::Command {
                command: "LOCK TABLES".into(),
                detail: line,
            });
        }
        Ok(AccountLock {
            child,
            stdin: Some(stdin),
        })
    }
}

/// The `mariadb` client with every right: as root over a server's socket, or as an external
/// server's admin over TCP (the password in the environment, never an argument).
#[derive(Clone)]
pub enum Client {
    /// Root over the socket of a server the testkit started.
    Socket(PathBuf),
    /// An external server's admin.
    Tcp {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// User.
        user: String,
        /// Password.
        password: String,
        /// The CA of a TLS-only server.
        ca: Option<PathBuf>,
    },
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Socket(p) => f.debug_tuple("Socket").field(p).finish(),
            Client::Tcp {
                host, port, user, ..
            } => f
                .debug_struct("Tcp")
                .field("host", host)
                .field("port", port)
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// `--ssl` with the CA (the certificate checked) for a TLS-only server, else `--skip-ssl`.
fn tls_args(cmd: &mut Command, ca: Option<&Path>) {
    match ca {
        Some(ca) => cmd
            .arg("--ssl")
            .arg(format!("--ssl-ca={}", ca.display()))
            .arg("--ssl-verify-server-cert"),
        None => cmd.arg("--skip-ssl"),
    };
}

impl Client {
    fn command(&self) -> Result<Command, TestkitError> {
        let mut cmd = Command::new(mariadb_bin("mariadb")?);
        cmd.arg("--no-defaults");
        match self {
            Client::Socket(socket) => {
                cmd.arg(format!("--socket={}", socket.display()))
                    .arg("-uroot");
            }
            Client::Tcp {
                host,
                port,
                user,
                password,
                ca,
            } => {
                cmd.args(["-h", host, "-P", &port.to_string(), "-u", user])
                    .env("MYSQL_PWD", password);
                tls_args(&mut cmd, ca.as_deref());
            }
        }
        cmd.args(["-N", "-B", "--default-character-set=utf8mb4"]);
        Ok(cmd)
    }

    /// Runs `sql` (on stdin, never an argument); returns its output.
    pub fn sql(&self, sql: &str) -> Result<String, TestkitError> {
        let mut child = self
            .command()?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(TestkitError::Command {
                command: "mariadb".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

/// A session holding the account tables (see [`MariaDb::lock_accounts`]).
#[derive(Debug)]
pub struct AccountLock {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl AccountLock {
    /// Unlocks and ends the session.
    pub fn release(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"UNLOCK TABLES;\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for AccountLock {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
