//! A throwaway MariaDB server: its own data directory in a temporary directory, on a random
//! 127.0.0.1 port, password authentication over TCP, an `admin` with every right and the grant
//! option, optionally TLS-only with a certificate from a generated CA, the general query log on.
//! Never the machine's own server: `--no-defaults` keeps every option file away.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

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
    child: Child,
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
    pub fn start(tls: bool) -> Result<MariaDb, TestkitError> {
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
                    child,
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
        (ADMIN, ADMIN_PASSWORD)
    }

    /// The CA that signed the server certificate (TLS servers).
    pub fn ca_pem(&self) -> Option<&Path> {
        self.ca.as_ref().map(|c| c.ca_pem.as_path())
    }

    /// A root client over the server's socket.
    pub fn client(&self) -> Client {
        Client {
            socket: self.dir.path().join("sock"),
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
            "127.0.0.1",
            "-P",
            &self.port.to_string(),
        ])
        .args(["-u", user, "-N", "-B", "-e", "SELECT 1"])
        .arg("--default-character-set=utf8mb4")
        .env("MYSQL_PWD", password)
        .stdin(Stdio::null());
        match &self.ca {
            Some(ca) => cmd
                .arg("--ssl")
                .arg(format!("--ssl-ca={}", ca.ca_pem.display())),
            None => cmd.arg("--skip-ssl"),
        };
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

    /// The error log and the general query log so far.
    pub fn log(&self) -> String {
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

/// The `mariadb` client as root over a server's socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    fn command(&self) -> Result<Command, TestkitError> {
        let mut cmd = Command::new(mariadb_bin("mariadb")?);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "-N", "-B", "--default-character-set=utf8mb4"]);
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
