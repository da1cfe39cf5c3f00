//! The `rotate` command as a script sees it: output, exit codes, the file store.

use std::process::{Command, Output};

use rotation_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};

fn rotate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rotate"));
    cmd.args(args)
        .env_remove("ROTATION_STRATEGY")
        .env_remove("ROTATE_STORE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rotate")
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn demo_proves_both_strategies() {
    let o = rotate(&["demo", "--json"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    assert_eq!(v["ok"], json!(true));
    let proofs = v["proofs"].as_array().unwrap();
    assert!(proofs.len() >= 7, "{proofs:?}");
    assert!(proofs.iter().all(|p| p["ok"] == json!(true)));
    assert!(
        proofs.iter().any(|p| p["expected_login"] == json!(false)),
        "old credentials were checked"
    );
}

#[test]
fn run_status_abort_and_exit_codes_on_a_file_store() {
    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL");
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.json");
    let store = format!("file:{}", store_path.display());
    let secret = json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port(), "username": "app", "password": "Initial-pw-1", "ssl": false});
    std::fs::write(
        &store_path,
        json!({"secrets": {"app": {"arn": "arn:local:secretsmanager:local:000000000000:secret:app", "versions": [
            {"id": "00000000-0000-0000-0000-000000000001", "stages": ["AWSCURRENT"], "value": secret.to_string()}
        ]}}})
        .to_string(),
    )
    .unwrap();
    let with = |args: &[&str]| {
        let mut a = vec!["--store", store.as_str()];
        a.extend_from_slice(args);
        rotate(&a, &[])
    };

    // Usage errors: 2.
    assert_eq!(
        with(&["run", "app"]).status.code(),
        Some(2),
        "strategy is required"
    );
    assert_eq!(
        rotate(&["--store", "s3://x", "status", "app"], &[])
            .status
            .code(),
        Some(2)
    );
    // Unknown secret: 4.
    let o = with(&["status", "nope"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("SecretNotFound"));

    // A rotation.
    let o = with(&["--json", "run", "app", "--strategy", "single-user"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = stdout_json(&o);
    assert_eq!(report["result"], "rotated");
    assert_eq!(report["steps"].as_array().unwrap().len(), 4);
    let o = with(&["--json", "status", "app"]);
    let status = stdout_json(&o);
    assert_eq!(status["rotation_in_flight"], Value::Null);
    let version = report["version"].as_str().unwrap();
    assert_eq!(
        status["versions"][version],
        json!(["AWSCURRENT", "AWSPENDING"])
    );

    // Nothing in flight: abort and resume are refused with 3.
    assert_eq!(
        with(&["abort", "app", "--strategy", "single-user"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        with(&["resume", "app", "--strategy", "single-user"])
            .status
            .code(),
        Some(3)
    );

    // The database is the problem: 5, with the kind named and no password printed.
    pg.psql("ALTER ROLE app PASSWORD 'Changed-out-of-band-1'")
        .unwrap();
    let o = with(&["run", "app", "--strategy", "single-user"]);
    assert_eq!(o.status.code(), Some(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("NoWorkingCredentials") && err.contains("AuthenticationFailed"),
        "{err}"
    );
    assert!(!err.contains("Changed-out-of-band-1") && !err.contains("Initial-pw-1"));
    // That failed run left a rotation in flight: run is refused (3). abort cannot prove that
    // AWSCURRENT logs in (the password was changed out of band), so it changes nothing (3);
    // --force removes AWSPENDING and says what it leaves behind.
    assert_eq!(
        with(&["run", "app", "--strategy", "single-user"])
            .status
            .code(),
        Some(3)
    );
    let before = String::from_utf8_lossy(&with(&["status", "app"]).stdout).into_owned();
    let o = with(&["abort", "app", "--strategy", "single-user"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("AbortUnsafe") && err.contains("--force"),
        "{err}"
    );
    let after = String::from_utf8_lossy(&with(&["status", "app"]).stdout).into_owned();
    assert_eq!(before, after, "a refused abort changes no stage");
    let o = with(&[
        "--json",
        "abort",
        "--force",
        "app",
        "--strategy",
        "single-user",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = stdout_json(&o);
    assert_eq!(report["result"], "aborted");
    assert_eq!(report["current_verified"], false);
    assert!(
        report["left_behind"]
            .as_str()
            .unwrap()
            .contains("AbortUnsafe")
    );
    let text = String::from_utf8_lossy(&with(&["status", "app"]).stdout).into_owned();
    assert!(text.contains("no rotation in flight"), "{text}");
}

#[test]
fn secrets_manager_endpoint_is_honoured() {
    // Checklist 2: AWS's SECRETS_MANAGER_ENDPOINT alone points the store at the service.
    let moto = rotation_testkit::Moto::start().expect("start moto");
    moto.python("sm.create_secret(Name='app', SecretString='{}')")
        .unwrap();
    let endpoint = moto.endpoint();
    let env = [
        ("SECRETS_MANAGER_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rotate"));
    cmd.args(["--store", "aws", "--json", "status", "app"])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .env_remove("ROTATE_STORE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status = stdout_json(&o);
    assert_eq!(status["name"], "app");
    assert!(
        status["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:secretsmanager:us-east-1:")
    );
}

#[test]
fn terminal_output_escapes_names_and_has_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("s.json").display());
    // A secret name carrying an escape sequence, and logs on (-vv): nothing raw reaches stderr.
    let o = rotate(
        &["--store", &store, "-vv", "status", "evil\u{1b}[31mname"],
        &[],
    );
    assert_eq!(o.status.code(), Some(4));
    assert!(
        !o.stderr.contains(&0x1b),
        "{:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("evil\\u{1b}[31mname"), "{err}");
    // status on a store that does not exist creates nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_unknown_engine_is_a_usage_error_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("none/store.json").display());
    for args in [
        &[
            "run",
            "app",
            "--strategy",
            "single-user",
            "--engine",
            "bogus",
        ][..],
        &[
            "abort",
            "app",
            "--strategy",
            "single-user",
            "--engine",
            "bogus",
        ],
        &["plan", "app", "--engine", "bogus"],
    ] {
        let o = rotate(&[&["--store", &store][..], args].concat(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                r#"unknown engine "bogus": use one of {}"#,
                rotation_engines::builtin().names().join(", ")
            )),
            "{args:?}: {err}"
        );
    }
    assert!(
        !dir.path().join("none").exists(),
        "nothing was read or made"
    );
}

#[test]
fn an_engine_setting_that_cannot_be_used_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.json");
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": 1, "username": "app", "password": "Initial-pw-1"});
    std::fs::write(
        &store_path,
        json!({"secrets": {"app": {"arn": "arn:local:secretsmanager:local:000000000000:secret:app",
            "versions": [{"id": "00000000-0000-0000-0000-000000000001", "stages": ["AWSCURRENT"], "value": value.to_string()}]}}})
        .to_string(),
    )
    .unwrap();
    let store = format!("file:{}", store_path.display());
    let before = std::fs::read(&store_path).unwrap();
    let o = rotate(
        &["--store", &store, "run", "app", "--strategy", "single-user"],
        &[("PGOPTIONS", "-c x=y")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("PGOPTIONS").count(), 1, "{err}");
    assert!(
        err.contains("postgres: environment variable PGOPTIONS is set"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&store_path).unwrap(),
        before,
        "nothing changed"
    );
}

#[test]
fn a_failing_command_with_json_prints_its_result_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.json");
    std::fs::write(&path, json!({"secrets": {}}).to_string()).unwrap();
    let store = format!("file:{}", path.display());
    // A refusal of the store (no such secret): exit 4, its kind, as a fleet's failed rows.
    let o = rotate(
        &[
            "--store",
            &store,
            "--json",
            "run",
            "nope",
            "--strategy",
            "single-user",
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = stdout_json(&o);
    assert_eq!(v["result"], json!("failed"));
    assert_eq!(v["kind"], json!("SecretNotFound"));
    assert_eq!(v["exit_code"], json!(4));
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    // The same line for people, on standard error.
    assert!(String::from_utf8_lossy(&o.stderr).contains("error [SecretNotFound]"));
    // A usage error too.
    let o = rotate(&["--store", "s3://x", "--json", "status", "app"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout_json(&o)["kind"], json!("Usage"));
    // And a command line the parser refuses (an unknown flag, a missing argument), with
    // `--json` anywhere before `--`: the parser's own message on standard error, the JSON line
    // on standard output.
    for args in [
        &["--json", "run", "app", "--bogus"][..],
        &["status", "--json"][..],
        &["run", "app", "--strategy", "sideways", "--json"][..],
    ] {
        let o = rotate(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v = stdout_json(&o);
        assert_eq!(v["result"], json!("failed"), "{args:?}");
        assert_eq!(v["kind"], json!("Usage"), "{args:?}");
        assert_eq!(v["exit_code"], json!(2), "{args:?}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{v}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("error:"));
    }
    // Without `--json`, nothing on standard output; help is no failure.
    let o = rotate(&["run", "app", "--bogus"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let o = rotate(&["--json", "--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"));
}
