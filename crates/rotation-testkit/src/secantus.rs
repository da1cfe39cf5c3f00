use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::external::{External, MONGODB_TLS_URI_ENV, MONGODB_URI_ENV, Turn};
use crate::python::PythonRepl;
use crate::{TestCa, TestkitError, free_port, venv_dir, workspace_root};

const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "Root-Passw0rd-1";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A SecantusDB server (MongoDB wire protocol, SCRAM-SHA-256) on 127.0.0.1 standing in for
/// Amazon DocumentDB: authentication on with an admin `root` holding the `root` role,
/// replica-set name `rs0`, optionally TLS-only with a certificate from a generated CA for
/// `localhost` and `127.0.0.1`. Killed and removed on drop.
///
/// With `ROTATION_TEST_MONGODB_URI` (or, for TLS, `ROTATION_TEST_MONGODB_TLS_URI`) set, the
/// handle is that server instead (see [`Secantus::is_external`]).
#[derive(Debug)]
pub struct Secantus {
    /// None for an external server.
    child: Option<Child>,
    /// The server a variable named, and this test's turn on it.
    external: Option<(External, Turn)>,
    port: u16,
    dir: tempfile::TempDir,
    ca: Option<TestCa>,
    /// The interpreter that runs [`Secantus::python`]'s snippets.
    python: PythonRepl,
}

/// What every snippet of [`Secantus::python`] starts from: pymongo's `MongoClient`, whose
/// clients are closed after each snippet.
const PYTHON_SETUP: &str = "import json, os, sys\n\
import pymongo\n\
_clients = []\n\
class MongoClient(pymongo.MongoClient):\n\
\x20   def __init__(self, *args, **kwargs):\n\
\x20       super().__init__(*args, **kwargs)\n\
\x20       _clients.append(self)\n\
def _after():\n\
\x20   while _clients:\n\
\x20       _clients.pop().close()\n";

fn python_repl(dir: &Path) -> PythonRepl {
    PythonRepl::new(
        "SecantusDB setup",
        PYTHON_SETUP.to_string(),
        dir.join("python.log"),
    )
}

impl Secantus {
    /// Starts a server; `tls` makes it TLS-only. With the variable for it set, hands out that
    /// server instead, reset.
    pub fn start(tls: bool) -> Result<Secantus, TestkitError> {
        let var = if tls {
            MONGODB_TLS_URI_ENV
        } else {
            MONGODB_URI_ENV
        };
        if let Some(external) = External::for_this_test(var)? {
            return Secantus::external(external);
        }
        Secantus::start_own(tls)
    }

    /// Starts a server of the testkit's own even when a variable names one: for a test's
    /// second server, or one it stops.
    pub fn start_own(tls: bool) -> Result<Secantus, TestkitError> {
        let python = venv_dir().join("bin/python");
        if !python.exists() {
            return Err(TestkitError::Missing {
                what: "SecantusDB (Python virtual environment)",
                path: python.display().to_string(),
                hint: "run scripts/setup to create .venv with the pinned secantusdb",
            });
        }
        let script = workspace_root().join("scripts/secantus_server.py");
        let dir = tempfile::Builder::new()
            .prefix("rotation-secantus-")
            .tempdir()?;
        let ca = if tls {
            Some(TestCa::generate(dir.path(), &["localhost", "127.0.0.1"])?)
        } else {
            None
        };
        let password_file = dir.path().join("admin-password");
        fs::write(&password_file, ADMIN_PASSWORD)?;
        let log = dir.path().join("server.log");
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let ready = dir.path().join(format!("ready-{attempt}"));
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .args(["--port", &port.to_string()])
                .arg("--storage-path")
                .arg(dir.path().join(format!("db-{attempt}")))
                .args(["--admin", ADMIN])
                .arg("--admin-password-file")
                .arg(&password_file)
                .arg("--ready-file")
                .arg(&ready)
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log)?)
                .stderr(fs::File::options().append(true).open(&log)?);
            if let Some(ca) = &ca {
                cmd.arg("--tls-cert-file")
                    .arg(&ca.server_pem)
                    .arg("--tls-key-file")
                    .arg(&ca.server_key)
                    .arg("--tls-ca-file")
                    .arg(&ca.ca_pem);
            }
            let mut child = cmd.spawn()?;
            let started = Instant::now();
            while started.elapsed() < START_TIMEOUT {
                if ready.exists() {
                    return Ok(Secantus {
                        child: Some(child),
                        external: None,
                        port,
                        python: python_repl(dir.path()),
                        dir,
                        ca,
                    });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = fs::read_to_string(&log).unwrap_or_default();
        }
        Err(TestkitError::Timeout {
            what: "SecantusDB server",
            secs: START_TIMEOUT.as_secs(),
            detail: last,
        })
    }

    /// The server a variable names, taken for this test (other tests wait) and reset: every
    /// user but the URI's dropped (as `admin.system.users` lists them), every role the tests
    /// made (as `admin.system.roles` lists them on MongoDB, and `rolesInfo` in the databases
    /// that have data or had users on SecantusDB), and every database but `admin`, `config`
    /// and `local`.
    fn external(external: External) -> Result<Secantus, TestkitError> {
        let turn = external.take()?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-secantus-")
            .tempdir()?;
        let server = Secantus {
            child: None,
            port: external.port,
            external: Some((external, turn)),
            python: python_repl(dir.path()),
            dir,
            ca: None,
        };
        server.python(
            "users = list(db.admin['system.users'].find())\n\
             dbs = set(db.list_database_names()) | {u['db'] for u in users} | {'admin'}\n\
             for u in users:\n\
             \x20   if (u['user'], u['db']) != (os.environ['ADMIN_USER'], 'admin'):\n\
             \x20       db[u['db']].command('dropUser', u['user'])\n\
             roles = {(r['role'], r['db']) for r in db.admin['system.roles'].find()}\n\
             for name in dbs:\n\
             \x20   roles |= {(r['role'], r['db']) for r in db[name].command('rolesInfo', 1, showBuiltinRoles=False).get('roles', [])}\n\
             for role, name in roles:\n\
             \x20   db[name].command('dropRole', role)\n\
             for name in dbs:\n\
             \x20   if name not in ('admin', 'config', 'local'):\n\
             \x20       db.drop_database(name)\n",
        )?;
        Ok(server)
    }

    /// Whether this is a server the tests did not start (`ROTATION_TEST_MONGODB_URI`,
    /// `ROTATION_TEST_MONGODB_TLS_URI`).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`, or the external server's host.
    pub fn host(&self) -> &str {
        crate::external::host_or_local(&self.external)
    }

    /// The name secrets give for a TLS server, which its certificate carries: `localhost`, or
    /// the external server's host.
    pub fn tls_host(&self) -> &str {
        crate::external::tls_host_or_local(&self.external)
    }

    /// The admin user (role `root` in `admin`).
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

    /// Runs Python with `db` bound to a pymongo client logged in as the admin (`admin`
    /// database as `db.admin`), for test setup independent of the code under test; returns
    /// standard output. JSON from `json` is available.
    pub fn python(&self, code: &str) -> Result<String, TestkitError> {
        let client = self.client(
            "username=os.environ['ADMIN_USER'], password=os.environ['ADMIN_PASSWORD'], authSource='admin'",
        );
        self.run_python(
            &format!("db = {client}\n{code}"),
            &[
                ("ADMIN_USER", self.admin()),
                ("ADMIN_PASSWORD", self.admin_password()),
            ],
        )
    }

    /// Creates role `selfService` in `admin`, granting `changeOwnPassword` on the cluster and
    /// every database: a user changes its own password (single-user rotation) only with it on
    /// mongod and SecantusDB.
    pub fn create_self_service_role(&self) -> Result<(), TestkitError> {
        self.python(
            "db.admin.command('createRole', 'selfService', privileges=[{'resource': {'cluster': True}, 'actions': ['changeOwnPassword']}, {'resource': {'db': '', 'collection': ''}, 'actions': ['changeOwnPassword']}], roles=[])",
        )
        .map(drop)
    }

    /// Whether `user` of `auth_db` logs in with `password`, checked with pymongo over the
    /// server's TLS (not the code under test). `Ok(false)` only when the server refuses the
    /// authentication (code 18); any other failure is an error, so a refusal is never a
    /// server that was not there. The credentials travel in the environment, never quoted
    /// into code.
    pub fn logs_in(&self, user: &str, password: &str, auth_db: &str) -> Result<bool, TestkitError> {
        let client = self.client(
            "username=os.environ['LOGIN_USER'], password=os.environ['LOGIN_PASSWORD'], authSource=os.environ['LOGIN_DB']",
        );
        let out = self.run_python(
            &format!(
                "from pymongo.errors import OperationFailure\n\
                 c = {client}\n\
                 try:\n    c[os.environ['LOGIN_DB']].command('ping')\n    print('ok')\n\
                 except OperationFailure as e:\n    print('refused', e.code)\n"
            ),
            &[
                ("LOGIN_USER", user),
                ("LOGIN_PASSWORD", password),
                ("LOGIN_DB", auth_db),
            ],
        )?;
        match out.trim() {
            "ok" => Ok(true),
            "refused 18" => Ok(false),
            other => Err(TestkitError::Command {
                command: "pymongo login check".into(),
                detail: format!("unexpected result {other:?}"),
            }),
        }
    }

    /// A pymongo client expression for this server with `credentials` (keyword arguments).
    fn client(&self, credentials: &str) -> String {
        let tls = match self.ca_pem() {
            Some(ca) => format!("tls=True, tlsCAFile={:?}", ca.display().to_string()),
            None => "tls=False".to_string(),
        };
        let host = match self.ca_pem() {
            Some(_) => self.tls_host(),
            None => self.host(),
        };
        format!(
            "MongoClient(host={host:?}, port={}, {credentials}, directConnection=True, serverSelectionTimeoutMS=10000, {tls})",
            self.port
        )
    }

    fn run_python(&self, code: &str, env: &[(&str, &str)]) -> Result<String, TestkitError> {
        self.python.run(code, env)
    }

    /// Kills the server now (tests of "unreachable"). Not an external server: such a test
    /// cannot run against one, and says so.
    pub fn stop(&mut self) {
        if let Some((e, _)) = &self.external {
            panic!(
                "this test stops its server, which it cannot do to {} ({}:{}): run it without {}",
                e.var, e.host, e.port, e.var
            );
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the server keeps its files (the log, the CA).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Secantus {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
