//! End to end: moto's RotateSecret invokes the built `rds-postgres` and `redshift` binaries
//! through `cargo lambda watch` (moto forwards Lambda invocations, scripts/moto_server.py), and
//! the function rotates a real user, for both strategies: on PostgreSQL, and on the Redshift
//! stand-in (PostgreSQL with md5 authentication and a `dev` database).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rotation_testkit::{
    Moto, PgAuth, PgCluster, PgOptions, free_port, venv_dir, wait_for_port, workspace_root,
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

/// The function under test and the server it rotates on.
#[derive(Debug, Clone, Copy)]
struct Engine {
    /// The Lambda binary.
    function: &'static str,
    /// The secret's `engine` key.
    key: &'static str,
    /// The database the secrets name (`None`: no `dbname`, the engine's default).
    dbname: Option<&'static str>,
    /// The database the server is checked in.
    check_db: &'static str,
    auth: PgAuth,
}

const POSTGRES: Engine = Engine {
    function: "rds-postgres",
    key: "postgres",
    dbname: Some("postgres"),
    check_db: "postgres",
    auth: PgAuth::Scram,
};

const REDSHIFT: Engine = Engine {
    function: "redshift",
    key: "redshift",
    dbname: None,
    check_db: "dev",
    auth: PgAuth::Md5,
};

fn sql_login_works(pg: &PgCluster, db: &str, user: &str, password: &str) -> bool {
    let ca = pg.ca_pem().unwrap().display().to_string();
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

fn rotate_through_lambda(engine: Engine, strategy: &str) {
    let pg = PgCluster::start(PgOptions {
        auth: engine.auth,
        ..PgOptions::tls()
    })
    .expect("start PostgreSQL");
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
        .unwrap();
    if engine.check_db != "postgres" {
        pg.psql(&format!("CREATE DATABASE {}", engine.check_db))
            .unwrap();
    }
    let sql_login_works =
        |user: &str, password: &str| sql_login_works(&pg, engine.check_db, user, password);

    // moto forwards Lambda invocations to `cargo lambda watch` on a port chosen now.
    let lambda_port = free_port();
    let moto = Moto::start_with(Some(&format!("http://127.0.0.1:{lambda_port}")))
        .expect("start moto with Lambda forwarding");
    let mut env = moto.env();
    env.push(("ROTATION_STRATEGY".into(), strategy.into()));
    env.push((
        "CA_BUNDLE_PATH".into(),
        pg.ca_pem().unwrap().display().to_string(),
    ));
    let watch = Watch::start(lambda_port, &env);

    let master = json!({"engine": engine.key, "host": "localhost", "port": pg.port(), "username": "postgres", "password": pg.superuser_password(), "ssl": true});
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
             app = {{'engine': '{key}', 'host': 'localhost', 'port': str({port}), 'username': 'app', 'password': 'Initial-pw-1', {dbname}'ssl': True, 'masterarn': m}}\n\
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
            // A JSON string literal is also a Python string literal.
            master = serde_json::to_string(&master.to_string()).unwrap(),
            port = pg.port(),
            key = engine.key,
        ))
        .unwrap_or_else(|e| panic!("rotation through the Lambda failed: {e}\nmoto log:\n{}", moto.log()));
    let lines: Vec<&str> = out.lines().collect();
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    let stages: Value = serde_json::from_str(lines[2]).unwrap();
    let pw = |v: &Value| v["password"].as_str().unwrap().to_string();
    let user = |v: &Value| v["username"].as_str().unwrap().to_string();

    assert_ne!(pw(&first), "Initial-pw-1");
    assert!(
        sql_login_works(&user(&second), &pw(&second)),
        "current logs in"
    );
    match strategy {
        "single-user" => {
            assert_eq!(user(&second), "app");
            assert!(
                !sql_login_works("app", &pw(&first)),
                "previous password rejected"
            );
        }
        _ => {
            assert_eq!(user(&first), "app_clone");
            assert_eq!(user(&second), "app");
            assert!(
                sql_login_works(&user(&first), &pw(&first)),
                "previous user still works"
            );
        }
    }
    // Every key of the secret survived; the port is still a string.
    assert_eq!(second["port"], json!(pg.port().to_string()));
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
    if engine.key == "redshift" {
        // Redshift's rules hold for what the function generated, and the server got hashes.
        for v in [&first, &second] {
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
                user(&second)
            ))
            .unwrap();
        assert!(stored.starts_with("md5"), "stored as an md5 hash");
    }
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
