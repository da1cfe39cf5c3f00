//! End to end: moto's RotateSecret invokes the built `rds-postgres`, `redshift` and
//! `documentdb` binaries through `cargo lambda watch` (moto forwards Lambda invocations,
//! scripts/moto_server.py), and the function rotates a real user over verified TLS, for both
//! strategies: on PostgreSQL, on the Redshift stand-in (PostgreSQL with md5 authentication and
//! a `dev` database), and on the DocumentDB stand-in (SecantusDB, MongoDB wire protocol).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rotation_testkit::{
    Moto, PgAuth, PgCluster, PgOptions, Secantus, free_port, venv_dir, wait_for_port,
    workspace_root,
};
use serde_json::{Value, json};

/// `cargo lambda watch` serving this package's binaries on 127.0.0.1, killed on drop.
struct Watch {
    child: Child,
}

impl Watch {
    fn start(port: u16, env: &[(String, String)]) -> Watch {
        let bin = venv_dir().join("bin");
        assert!(
            bin.join("cargo-lambda").exists(),
            "cargo-lambda missing: run scripts/setup"
        );
        let mut cmd = Command::new("cargo");
        cmd.current_dir(workspace_root().join("crates/rotation-lambda"))
            .args([
                "lambda",
                "watch",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(port.to_string())
            .arg("--ignore-changes")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.arg("--env-var").arg(format!("{k}={v}"));
        }
        let child = cmd.spawn().expect("start cargo lambda watch");
        assert!(
            wait_for_port(port, Duration::from_secs(60)),
            "cargo lambda watch did not listen"
        );
        Watch { child }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The initial password of `app` on every server (valid for every engine).
const INITIAL: &str = "Initial-pw-1";

/// The kind of server a function rotates on.
#[derive(Debug, Clone, Copy)]
enum ServerKind {
    /// PostgreSQL with this authentication (the Redshift stand-in: md5).
    Postgres(PgAuth),
    /// SecantusDB, the MongoDB-wire stand-in for DocumentDB.
    Secantus,
}

/// The function under test and the server it rotates on.
#[derive(Debug, Clone, Copy)]
struct Engine {
    /// The Lambda binary.
    function: &'static str,
    /// The secret's `engine` key.
    key: &'static str,
    /// The database the secrets name (`None`: no `dbname`, the engine's default).
    dbname: Option<&'static str>,
    /// The database logins are checked in (DocumentDB: the authentication database).
    check_db: &'static str,
    server: ServerKind,
}

const POSTGRES: Engine = Engine {
    function: "rds-postgres",
    key: "postgres",
    dbname: Some("postgres"),
    check_db: "postgres",
    server: ServerKind::Postgres(PgAuth::Scram),
};

const REDSHIFT: Engine = Engine {
    function: "redshift",
    key: "redshift",
    dbname: None,
    check_db: "dev",
    server: ServerKind::Postgres(PgAuth::Md5),
};

const DOCUMENTDB: Engine = Engine {
    function: "documentdb",
    key: "mongo",
    dbname: None,
    check_db: "admin",
    server: ServerKind::Secantus,
};

/// A JSON string literal, which is also a Python string literal.
fn py(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The server under test, TLS-only with a certificate from its own CA, and a user `app` with
/// password [`INITIAL`] in the engine's check database.
enum Server {
    Postgres { pg: PgCluster, db: &'static str },
    Secantus { db: Secantus, auth_db: &'static str },
}

impl Server {
    fn start(engine: Engine) -> Server {
        match engine.server {
            ServerKind::Postgres(auth) => {
                let pg = PgCluster::start(PgOptions {
                    auth,
                    ..PgOptions::tls()
                })
                .expect("start PostgreSQL");
                pg.psql(&format!("CREATE ROLE app LOGIN PASSWORD '{INITIAL}'"))
                    .unwrap();
                if engine.check_db != "postgres" {
                    pg.psql(&format!("CREATE DATABASE {}", engine.check_db))
                        .unwrap();
                }
                Server::Postgres {
                    pg,
                    db: engine.check_db,
                }
            }
            ServerKind::Secantus => {
                let db =
                    Secantus::start(true).expect("start SecantusDB (scripts/setup installs it)");
                db.create_self_service_role()
                    .expect("create the self-service role");
                db.python(&format!(
                    "db[{auth_db}].command('createUser', 'app', pwd={pw}, roles=[{{'role': 'readWrite', 'db': 'appdb'}}, {{'role': 'selfService', 'db': 'admin'}}])",
                    auth_db = py(engine.check_db),
                    pw = py(INITIAL),
                ))
                .expect("create app");
                Server::Secantus {
                    db,
                    auth_db: engine.check_db,
                }
            }
        }
    }

    fn port(&self) -> u16 {
        match self {
            Server::Postgres { pg, .. } => pg.port(),
            Server::Secantus { db, .. } => db.port(),
        }
    }

    /// The CA the server's certificate comes from.
    fn ca_pem(&self) -> &Path {
        match self {
            Server::Postgres { pg, .. } => pg.ca_pem(),
            Server::Secantus { db, .. } => db.ca_pem(),
        }
        .expect("a TLS server")
    }

    /// The master user's name and password.
    fn master(&self) -> (&str, &str) {
        match self {
            Server::Postgres { pg, .. } => ("postgres", pg.superuser_password()),
            Server::Secantus { db, .. } => (db.admin(), db.admin_password()),
        }
    }

    /// Whether `user` logs in with `password` over verified TLS, checked with the engine's
    /// usual client (psql, pymongo), not the code under test.
    fn logs_in(&self, user: &str, password: &str) -> bool {
        match self {
            Server::Postgres { pg, db } => {
                let ca = self.ca_pem().display().to_string();
                Command::new("psql")
                    .arg(format!(
                        "host=localhost port={} user={user} dbname={db} sslmode=verify-full sslrootcert={ca}",
                        pg.port()
                    ))
                    .args(["-X", "-t", "-c", "SELECT 1"])
                    .env("PGPASSWORD", password)
                    .env("PGCONNECT_TIMEOUT", "5")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            }
            Server::Secantus { db, auth_db } => db
                .logs_in(user, password, auth_db)
                .unwrap_or_else(|e| panic!("the login check failed: {e}")),
        }
    }
}

/// Engine-specific checks of the rotated secrets (`previous`, then `current`).
fn engine_checks(engine: Engine, server: &Server, previous: &Value, current: &Value) {
    let pw = |v: &Value| v["password"].as_str().unwrap().to_string();
    let user = |v: &Value| v["username"].as_str().unwrap().to_string();
    match server {
        Server::Postgres { pg, .. } if engine.key == "redshift" => {
            // Redshift's rules hold for what the function generated, and the server got hashes.
            for v in [previous, current] {
                let p = pw(v);
                assert!(
                    (8..=64).contains(&p.len())
                        && p.chars().any(|c| c.is_ascii_uppercase())
                        && p.chars().any(|c| c.is_ascii_lowercase())
                        && p.chars().any(|c| c.is_ascii_digit())
                        && !p.chars().any(|c| "'\"\\/@ ".contains(c)),
                    "a generated password breaks Redshift's rules"
                );
            }
            let stored = pg
                .psql(&format!(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
                    user(current)
                ))
                .unwrap();
            assert!(stored.starts_with("md5"), "stored as an md5 hash");
        }
        Server::Postgres { .. } => {}
        Server::Secantus { db, auth_db } => {
            // DocumentDB's rules: 8-100 printable ASCII without / @ " or space.
            for v in [previous, current] {
                let p = pw(v);
                assert!(
                    (8..=100).contains(&p.len())
                        && p.chars().all(|c| c.is_ascii_graphic())
                        && !p.chars().any(|c| "/@\"".contains(c)),
                    "a generated password breaks DocumentDB's rules"
                );
            }
            // Alternating users: the clone got the original's roles, in the same database.
            let roles = |u: &str| {
                db.python(&format!(
                    "u = db[{auth_db}].command('usersInfo', {{'user': {u}, 'db': {auth_db}}})['users']\n\
                     print(json.dumps(sorted([[r['role'], r['db']] for r in u[0]['roles']]) if u else None))",
                    auth_db = py(auth_db),
                    u = py(u),
                ))
                .unwrap()
            };
            if user(previous) != user(current) {
                assert_eq!(roles(&user(previous)), roles(&user(current)));
            }
        }
    }
}

fn rotate_through_lambda(engine: Engine, strategy: &str) {
    let server = Server::start(engine);

    // moto forwards Lambda invocations to `cargo lambda watch` on a port chosen now.
    let lambda_port = free_port();
    let moto = Moto::start_with(Some(&format!("http://127.0.0.1:{lambda_port}")))
        .expect("start moto with Lambda forwarding");
    let mut env = moto.env();
    env.push(("ROTATION_STRATEGY".into(), strategy.into()));
    env.push((
        "CA_BUNDLE_PATH".into(),
        server.ca_pem().display().to_string(),
    ));
    let watch = Watch::start(lambda_port, &env);

    let (master_user, master_password) = server.master();
    let master = json!({"engine": engine.key, "host": "localhost", "port": server.port(), "username": master_user, "password": master_password, "ssl": true});
    let function = moto
        .create_function(engine.function)
        .expect("register the function in moto");
    let dbname = match engine.dbname {
        Some(db) => format!("'dbname': '{db}', "),
        None => String::new(),
    };
    let out = moto
        .python(&format!(
            "m = sm.create_secret(Name='master', SecretString={master})['ARN']\n\
             app = {{'engine': '{key}', 'host': 'localhost', 'port': str({port}), 'username': 'app', 'password': '{INITIAL}', {dbname}'ssl': True, 'masterarn': m}}\n\
             sm.create_secret(Name='app', SecretString=json.dumps(app))\n\
             fn = '{function}'\n\
             for i in range(2):\n\
             \x20   d = sm.describe_secret(SecretId='app')\n\
             \x20   for v, s in d.get('VersionIdsToStages', {{}}).items():\n\
             \x20       if 'AWSPENDING' in s and 'AWSCURRENT' in s:\n\
             \x20           sm.update_secret_version_stage(SecretId='app', VersionStage='AWSPENDING', RemoveFromVersionId=v)\n\
             \x20   sm.rotate_secret(SecretId='app', RotationLambdaARN=fn, RotationRules={{'AutomaticallyAfterDays': 7}})\n\
             \x20   print(sm.get_secret_value(SecretId='app', VersionStage='AWSCURRENT')['SecretString'])\n\
             print(json.dumps(sm.describe_secret(SecretId='app')['VersionIdsToStages']))\n",
            master = py(&master.to_string()),
            port = server.port(),
            key = engine.key,
        ))
        .unwrap_or_else(|e| panic!("rotation through the Lambda failed: {e}\nmoto log:\n{}", moto.log()));
    let lines: Vec<&str> = out.lines().collect();
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    let stages: Value = serde_json::from_str(lines[2]).unwrap();
    let pw = |v: &Value| v["password"].as_str().unwrap().to_string();
    let user = |v: &Value| v["username"].as_str().unwrap().to_string();

    assert_ne!(pw(&first), INITIAL);
    assert!(
        server.logs_in(&user(&second), &pw(&second)),
        "current logs in"
    );
    match strategy {
        "single-user" => {
            assert_eq!(user(&second), "app");
            assert!(
                !server.logs_in("app", &pw(&first)),
                "previous password rejected"
            );
            assert!(!server.logs_in("app", INITIAL), "initial password rejected");
        }
        _ => {
            assert_eq!(user(&first), "app_clone");
            assert_eq!(user(&second), "app");
            assert!(
                server.logs_in(&user(&first), &pw(&first)),
                "previous user still works"
            );
        }
    }
    // Every key of the secret survived; the port is still a string.
    assert_eq!(second["port"], json!(server.port().to_string()));
    assert_eq!(second["engine"], json!(engine.key));
    assert_eq!(second["host"], json!("localhost"));
    assert_eq!(second["ssl"], json!(true));
    assert!(
        second["masterarn"]
            .as_str()
            .unwrap()
            .contains(":secret:master")
    );
    let labelled = stages
        .as_object()
        .unwrap()
        .values()
        .filter(|s| !s.as_array().unwrap().is_empty())
        .count();
    assert_eq!(labelled, 2, "a current and a previous version: {stages}");
    assert_eq!(second.get("dbname").is_some(), engine.dbname.is_some());
    engine_checks(engine, &server, &first, &second);
    drop(watch);
}

#[test]
fn moto_rotate_secret_runs_the_lambda_single_user() {
    rotate_through_lambda(POSTGRES, "single-user");
}

#[test]
fn moto_rotate_secret_runs_the_lambda_alternating_users() {
    rotate_through_lambda(POSTGRES, "alternating-users");
}

#[test]
fn moto_rotate_secret_runs_the_redshift_lambda_single_user() {
    rotate_through_lambda(REDSHIFT, "single-user");
}

#[test]
fn moto_rotate_secret_runs_the_redshift_lambda_alternating_users() {
    rotate_through_lambda(REDSHIFT, "alternating-users");
}

#[test]
fn moto_rotate_secret_runs_the_documentdb_lambda_single_user() {
    rotate_through_lambda(DOCUMENTDB, "single-user");
}

#[test]
fn moto_rotate_secret_runs_the_documentdb_lambda_alternating_users() {
    rotate_through_lambda(DOCUMENTDB, "alternating-users");
}
