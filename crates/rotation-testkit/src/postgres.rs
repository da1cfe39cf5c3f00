use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::external::{
    External, POSTGRES_MD5_TLS_URL_ENV, POSTGRES_MD5_URL_ENV, POSTGRES_TLS_URL_ENV,
    POSTGRES_URL_ENV, Turn,
};
use crate::{TestCa, TestkitError, free_port, run};

/// How TCP clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgAuth {
    /// `scram-sha-256` (RDS PostgreSQL's default).
    Scram,
    /// `md5` with `password_encryption = md5` (the Redshift stand-in; also accepts SCRAM verifiers).
    Md5,
}

/// Options for [`PgCluster::start`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// TCP authentication.
    pub auth: PgAuth,
    /// TLS only (`hostssl`), with a certificate for these names from a generated CA.
    pub tls_names: Option<Vec<String>>,
    /// `log_statement = 'all'` (for tests that read the server log).
    pub log_statements: bool,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
    /// Always the testkit's own cluster, never an external server: for a test's second
    /// server of a kind, or one it stops.
    pub own: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            auth: PgAuth::Scram,
            tls_names: None,
            log_statements: false,
            extra_conf: Vec::new(),
            own: false,
        }
    }
}

impl PgOptions {
    /// TLS-only with a certificate for `localhost` and `127.0.0.1`.
    pub fn tls() -> Self {
        PgOptions {
            tls_names: Some(vec!["localhost".into(), "127.0.0.1".into()]),
            ..Self::default()
        }
    }
}

/// A throwaway PostgreSQL cluster: temp directory, random 127.0.0.1 port, superuser
/// `postgres` with a password; the unix socket (trust) is for the harness only. Stopped and
/// removed on drop; clusters left by a killed test process are swept by the next start.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    ca: Option<TestCa>,
    /// A server a variable named ([`PgCluster::external_var`]), and this test's turn on it.
    external: Option<(External, Turn)>,
}

const SUPERUSER_PASSWORD: &str = "super-Secret-pw-1";
const DIR_PREFIX: &str = "rotation-pg-";

fn is_root() -> bool {
    // The uid of /proc/self is the effective uid.
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Runs a PostgreSQL server program as the `postgres` user when we are root (initdb and
/// postgres refuse to run as root).
fn pg_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn chown_postgres(path: &Path) -> Result<(), TestkitError> {
    if is_root() {
        run(Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path))?;
    }
    Ok(())
}

/// The PostgreSQL server binaries: `$PGBIN`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn pg_bin() -> Result<PathBuf, TestkitError> {
    if let Some(p) = std::env::var_os("PGBIN") {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or(TestkitError::Missing {
        what: "PostgreSQL server binaries (initdb, pg_ctl, postgres)",
        path: "/usr/lib/postgresql/*/bin (or $PGBIN)".into(),
        hint: "run scripts/setup (as root it installs postgresql-15 with apt)",
    })
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Stops and removes clusters whose test process is gone.
fn sweep_stale(bin: &Path) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let owner = fs::read_to_string(e.path().join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if matches!(owner, Some(pid) if !pid_alive(pid)) {
            let _ = pg_command(bin, "pg_ctl")
                .arg("-D")
                .arg(e.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output();
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// An initdb'd data directory made once per machine and copied for each cluster (copying takes
/// a few milliseconds, initdb most of a second).
fn template(bin: &Path) -> Result<PathBuf, TestkitError> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = std::env::temp_dir().join(format!("rotation-pg-template-{version}-v1"));
    let ready = base.join("ready");
    if ready.exists() {
        return Ok(base.join("data"));
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join(format!("rotation-pg-template-{version}.lock")))?;
    lock.lock()?;
    if ready.exists() {
        return Ok(base.join("data"));
    }
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base)?;
    let pwfile = base.join("pwfile");
    fs::write(&pwfile, SUPERUSER_PASSWORD)?;
    chown_postgres(&base)?;
    run(pg_command(bin, "initdb")
        .arg("-D")
        .arg(base.join("data"))
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args([
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]))?;
    File::create(&ready)?;
    Ok(base.join("data"))
}

impl PgCluster {
    /// Starts a cluster. With options an external server provides (SCRAM or md5, with or
    /// without [`PgOptions::tls`]'s TLS, no statement log, no extra configuration) and the
    /// variable for them set ([`PgCluster::external_var`]), hands out that server instead,
    /// reset (see [`PgCluster::is_external`]).
    pub fn start(options: PgOptions) -> Result<PgCluster, TestkitError> {
        if let Some(var) = PgCluster::external_var(&options)
            && let Some(external) = External::for_this_test(var)?
        {
            return PgCluster::external(external);
        }
        let bin = pg_bin()?;
        sweep_stale(&bin);
        let template = template(&bin)?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()?
            .keep();
        fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
        let mut cluster = PgCluster {
            dir: dir.clone(),
            port: 0,
            bin: bin.clone(),
            ca: None,
            external: None,
        };
        let data = dir.join("data");
        run(Command::new("cp").arg("-a").arg(&template).arg(&data))?;
        if let Some(names) = &options.tls_names {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            cluster.ca = Some(TestCa::generate(&dir, &names)?);
        }
        let (hba_kind, method, encryption) = match (options.tls_names.is_some(), options.auth) {
            (true, PgAuth::Scram) => ("hostssl", "scram-sha-256", "scram-sha-256"),
            (false, PgAuth::Scram) => ("host", "scram-sha-256", "scram-sha-256"),
            (true, PgAuth::Md5) => ("hostssl", "md5", "md5"),
            (false, PgAuth::Md5) => ("host", "md5", "md5"),
        };
        fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{hba_kind} all all 127.0.0.1/32 {method}\n"),
        )?;
        let mut conf = OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        writeln!(
            conf,
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             password_encryption = '{encryption}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n\
             logging_collector = off\nlog_min_messages = warning",
            dir.display()
        )?;
        if let Some(ca) = &cluster.ca {
            writeln!(
                conf,
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'",
                ca.server_pem.display(),
                ca.server_key.display(),
                ca.ca_pem.display()
            )?;
        }
        if options.log_statements {
            writeln!(
                conf,
                "log_statement = 'all'\nlog_min_error_statement = info"
            )?;
        }
        for line in &options.extra_conf {
            writeln!(conf, "{line}")?;
        }
        drop(conf);
        chown_postgres(&dir)?;
        if let Some(ca) = &cluster.ca {
            // The server key must be private to the server user.
            let mut perms = fs::metadata(&ca.server_key)?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
            fs::set_permissions(&ca.server_key, perms)?;
            // Clients (the tests) read the CA as whoever they are.
            let mut perms = fs::metadata(&ca.ca_pem)?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
            fs::set_permissions(&ca.ca_pem, perms)?;
        }
        let mut last = String::new();
        for _ in 0..4 {
            let port = free_port();
            let out = pg_command(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.log_path())
                .args(["-w", "-t", "30", "-o"])
                .arg(format!("-p {port}"))
                .arg("start")
                .output()?;
            if out.status.success() {
                cluster.port = port;
                return Ok(cluster);
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                cluster.server_log()
            );
            if !last.contains("could not bind") && !last.contains("Address already in use") {
                break;
            }
        }
        Err(TestkitError::Timeout {
            what: "PostgreSQL",
            secs: 30,
            detail: last,
        })
    }

    /// The variable naming an external server for `options`, if one can serve them:
    /// `ROTATION_TEST_POSTGRES_URL` (SCRAM), `ROTATION_TEST_POSTGRES_TLS_URL` (SCRAM, TLS-only),
    /// `ROTATION_TEST_POSTGRES_MD5_URL` and `ROTATION_TEST_POSTGRES_MD5_TLS_URL` (md5, the
    /// Redshift stand-in). None for a statement log, extra configuration, a certificate other
    /// than [`PgOptions::tls`]'s, or [`PgOptions::own`]: those clusters are always the
    /// testkit's own.
    pub fn external_var(options: &PgOptions) -> Option<&'static str> {
        if options.own || options.log_statements || !options.extra_conf.is_empty() {
            return None;
        }
        let tls = match &options.tls_names {
            None => false,
            Some(names) if Some(names) == PgOptions::tls().tls_names.as_ref() => true,
            Some(_) => return None,
        };
        Some(match (options.auth, tls) {
            (PgAuth::Scram, false) => POSTGRES_URL_ENV,
            (PgAuth::Scram, true) => POSTGRES_TLS_URL_ENV,
            (PgAuth::Md5, false) => POSTGRES_MD5_URL_ENV,
            (PgAuth::Md5, true) => POSTGRES_MD5_TLS_URL_ENV,
        })
    }

    /// The server a variable names, taken for this test (other tests wait)
    /// and reset: every database but `postgres` and the templates dropped, every role but the
    /// URL's user and the built-in `pg_*` roles dropped with what it owns, their sessions ended.
    fn external(external: External) -> Result<PgCluster, TestkitError> {
        let turn = external.take()?;
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()?
            .keep();
        let cluster = PgCluster {
            dir,
            port: external.port,
            bin,
            ca: None,
            external: Some((external, turn)),
        };
        cluster.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity              WHERE pid <> pg_backend_pid() AND usename IS NOT NULL AND usename <> current_user",
        )?;
        let databases = cluster.psql(
            "SELECT quote_ident(datname) FROM pg_database              WHERE datname NOT IN ('postgres', 'template0', 'template1')",
        )?;
        for db in databases.lines().filter(|l| !l.is_empty()) {
            cluster.psql(&format!("DROP DATABASE {db} WITH (FORCE)"))?;
        }
        cluster.psql(
            "DO $$ DECLARE r text; BEGIN              FOR r IN SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user LOOP              EXECUTE format('DROP OWNED BY %I CASCADE', r); EXECUTE format('DROP ROLE %I', r);              END LOOP; END $$",
        )?;
        Ok(cluster)
    }

    /// Whether this is a server the tests did not start (see [`PgCluster::external_var`]).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// The TCP port (on [`PgCluster::host`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// CPU time (user plus system) the server has used so far: the postmaster's own and that
    /// of its exited children (each connection's backend), from `/proc`. For benchmarks that
    /// tell the database's share of the CPU from the client's.
    pub fn cpu_time(&self) -> Result<std::time::Duration, TestkitError> {
        if self.external.is_some() {
            return Err(TestkitError::Missing {
                what: "the CPU time of an external server",
                path: String::new(),
                hint: "benchmarks start their own cluster",
            });
        }
        let pid = fs::read_to_string(self.dir.join("data").join("postmaster.pid"))?;
        let pid = pid.lines().next().unwrap_or_default().trim().to_string();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which is in parentheses): utime, stime, cutime and
        // cstime are the 14th to 17th fields of the line, in clock ticks.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse().ok())
            .collect();
        let ticks = 100u64; // USER_HZ on Linux, fixed by the kernel ABI
        Ok(std::time::Duration::from_millis(
            fields.iter().sum::<u64>() * 1000 / ticks,
        ))
    }

    /// `127.0.0.1`, or the external server's host.
    pub fn host(&self) -> &str {
        crate::external::host_or_local(&self.external)
    }

    /// The name secrets give for a TLS cluster, which its certificate carries: `localhost`, or
    /// the external server's host.
    pub fn tls_host(&self) -> &str {
        crate::external::tls_host_or_local(&self.external)
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        self.external.as_ref().map_or("postgres", |(e, _)| &e.user)
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        self.external
            .as_ref()
            .map_or(SUPERUSER_PASSWORD, |(e, _)| &e.password)
    }

    /// psql as the superuser: over the unix socket, or over TCP with the password for an
    /// external server.
    fn superuser_psql(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        match &self.external {
            None => {
                cmd.arg("-h").arg(&self.dir).env_remove("PGPASSWORD");
            }
            Some((e, _)) => {
                cmd.args(["-h", &e.host]).env("PGPASSWORD", &e.password);
            }
        }
        cmd.args([
            "-p",
            &self.port.to_string(),
            "-U",
            self.superuser(),
            "-d",
            db,
        ])
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .env_remove("PGSERVICE")
        .env_remove("PGSERVICEFILE");
        cmd
    }

    /// The CA that signed the server certificate (TLS clusters).
    pub fn ca_pem(&self) -> Option<&Path> {
        match &self.external {
            Some((e, _)) => e.ca_file.as_deref(),
            None => self.ca.as_ref().map(|c| c.ca_pem.as_path()),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server log so far.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs SQL as the superuser (over the unix socket, or TCP for an external server); returns
    /// unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String, TestkitError> {
        self.psql_db("postgres", sql)
    }

    /// Whether `user` logs in with `password` over TCP on 127.0.0.1 (password authentication,
    /// psql, database `postgres`), independently of the code under test.
    pub fn logs_in(&self, user: &str, password: &str) -> bool {
        Command::new(self.bin.join("psql"))
            .args(["-h", self.host(), "-p", &self.port.to_string(), "-U", user])
            .args(["-d", "postgres", "-X", "-w", "-c", "SELECT 1"])
            .env("PGPASSWORD", password)
            .env_remove("PGSERVICE")
            .env_remove("PGSERVICEFILE")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// [`PgCluster::psql`] in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String, TestkitError> {
        run(self.superuser_psql(db).args(["-c", sql])).map(|s| s.trim_end().to_string())
    }

    /// Runs a psql script as the superuser with psql variables set (`:'name'` quotes a literal,
    /// `:"name"` an identifier, both by psql itself), so tests can create roles with any name
    /// and password independently of the code under test.
    pub fn psql_vars(&self, script: &str, vars: &[(&str, &str)]) -> Result<String, TestkitError> {
        let mut cmd = self.superuser_psql("postgres");
        for (k, v) in vars {
            cmd.arg("-v").arg(format!("{k}={v}"));
        }
        let script_file = self.dir.join(format!("script-{}.sql", std::process::id()));
        fs::write(&script_file, script)?;
        cmd.arg("-f").arg(&script_file);
        let out = run(&mut cmd);
        let _ = fs::remove_file(&script_file);
        out.map(|s| s.trim_end().to_string())
    }

    /// Stops the server now (tests of "unreachable"). Not an external server: such a test
    /// cannot run against one, and says so.
    pub fn stop(&self) {
        if let Some((e, _)) = &self.external {
            panic!(
                "this test stops its server, which it cannot do to {} ({}:{}): run it without {}",
                e.var, e.host, e.port, e.var
            );
        }
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .output();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.external.is_none() {
            self.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
