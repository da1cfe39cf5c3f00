//! `rotate put` and `rotate list`: secrets into the file store without editing its JSON, checked
//! as a rotation checks them, and no value in any output.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use rotation_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};

struct Store {
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    spec: String,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.json");
        let spec = format!("file:{}", path.display());
        Store { dir, path, spec }
    }

    /// Runs `rotate --store THIS args`, with `stdin` on standard input.
    fn rotate(&self, args: &[&str], stdin: &str) -> Output {
        self.rotate_with(args, stdin, &[])
    }

    /// [`Store::rotate`] with variables set (`Some`) or removed (`None`).
    fn rotate_with(&self, args: &[&str], stdin: &str, vars: &[(&str, Option<&str>)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rotate"));
        c.args(["--store", &self.spec])
            .args(args)
            .env_remove("ROTATION_STRATEGY")
            .env_remove("ROTATE_STORE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in vars {
            match value {
                Some(v) => c.env(name, v),
                None => c.env_remove(name),
            };
        }
        let mut child = c.spawn().expect("run rotate");
        // A command that does not read its input may have exited already.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// The file as JSON (the test may read values; the commands may not print them).
    fn file(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.path).unwrap()).unwrap()
    }

    /// The stored values of `name`'s versions carrying `stage`.
    fn value(&self, name: &str, stage: &str) -> Value {
        let f = self.file();
        let v = f["secrets"][name]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["stages"].as_array().unwrap().contains(&json!(stage)))
            .unwrap_or_else(|| panic!("no {stage} on {name}"))
            .clone();
        serde_json::from_str(v["value"].as_str().unwrap()).unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(o: &Output) -> &Output {
    assert!(o.status.success(), "{}", text(o));
    o
}

#[track_caller]
fn code(o: &Output, code: i32, says: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert!(text(o).contains(says), "{says:?} not in: {}", text(o));
}

#[track_caller]
fn no_secret(o: &Output, secrets: &[&str]) {
    let all = text(o);
    for s in secrets {
        assert!(!all.contains(s), "{s:?} printed: {all}");
    }
}

#[test]
fn put_then_list_then_rotate_a_real_postgres_user() {
    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL");
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
        .unwrap();
    let store = Store::new();
    let port = pg.port().to_string();
    let port_arg = format!("port={port}");
    let o = store.rotate(
        &[
            "put",
            "app",
            "engine=postgres",
            "host=127.0.0.1",
            &port_arg,
            "username=app",
            "--password-stdin",
        ],
        "Initial-pw-1\n",
    );
    ok(&o);
    no_secret(&o, &["Initial-pw-1"]);
    assert!(text(&o).contains("created secret app"), "{}", text(&o));
    assert_eq!(
        store.value("app", "AWSCURRENT"),
        json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port(), "username": "app", "password": "Initial-pw-1"})
    );

    // list: a line per secret, engine, no rotation in flight, no value.
    let o = store.rotate(&["list"], "");
    ok(&o);
    no_secret(&o, &["Initial-pw-1"]);
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("app "))
        .expect("a line for app")
        .to_string();
    assert!(line.contains("postgres") && line.ends_with("no"), "{line}");

    // A rotation from what put stored. The testkit's server has no TLS: say so in the secret.
    let o = store.rotate(&["put", "app", "--value-file", "-"], "");
    code(&o, 2, "not valid JSON");
    let mut v = store.value("app", "AWSCURRENT");
    v["ssl"] = json!(false);
    let file = store.dir.path().join("v.json");
    std::fs::write(&file, v.to_string()).unwrap();
    ok(&store.rotate(&["put", "app", "--value-file", file.to_str().unwrap()], ""));
    // plan: every check passes (strategy inferred: no masterarn), no value printed.
    let o = store.rotate(&["plan", "app"], "");
    ok(&o);
    no_secret(&o, &["Initial-pw-1"]);
    assert!(text(&o).contains("pass  login"), "{}", text(&o));
    assert!(
        text(&o).contains("a rotation is expected to succeed"),
        "{}",
        text(&o)
    );
    let o = store.rotate(&["run", "app", "--strategy", "single-user"], "");
    ok(&o);
    let rotated = store.value("app", "AWSCURRENT");
    assert_ne!(rotated["password"], json!("Initial-pw-1"));
    assert_eq!(
        store.value("app", "AWSPREVIOUS")["password"],
        json!("Initial-pw-1")
    );

    // list --json after the rotation: still no value, the engine and the dates.
    let o = store.rotate(&["--json", "list"], "");
    ok(&o);
    no_secret(&o, &["Initial-pw-1", rotated["password"].as_str().unwrap()]);
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["name"], json!("app"));
    assert_eq!(rows[0]["engine"], json!("postgres"));
    assert_eq!(rows[0]["rotation_in_flight"], Value::Null);
    assert!(rows[0]["current_since"].as_u64().unwrap() > 1_700_000_000);

    // rollback: the first password is AWSCURRENT again, and the database holds it.
    let o = store.rotate(
        &[
            "--json",
            "-v",
            "rollback",
            "app",
            "--strategy",
            "single-user",
        ],
        "",
    );
    ok(&o);
    no_secret(&o, &["Initial-pw-1", rotated["password"].as_str().unwrap()]);
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["result"], json!("rolled back"));
    // With --json, the log lines are JSON too: one event per step and one per rotation, with
    // the secret, version, engine, strategy, outcome and duration.
    let events: Vec<Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let done = events
        .iter()
        .find(|e| e["fields"]["message"] == json!("rotation complete"))
        .expect("a rotation event");
    assert_eq!(done["fields"]["outcome"], json!("rotated"));
    assert!(done["fields"]["duration_ms"].is_number());
    assert_eq!(done["span"]["engine"], json!("postgres"));
    assert_eq!(done["span"]["strategy"], json!("single-user"));
    assert!(
        done["span"]["secret_id"]
            .as_str()
            .unwrap()
            .contains(":secret:app-")
    );
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e["fields"]["message"] == json!("step finished"))
        .map(|e| {
            e["fields"]["step"]
                .as_str()
                .or(e["span"]["step"].as_str())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        steps,
        ["createSecret", "setSecret", "testSecret", "finishSecret"],
        "each step as its own event"
    );
    assert_eq!(
        store.value("app", "AWSCURRENT")["password"],
        json!("Initial-pw-1")
    );
    assert_eq!(store.value("app", "AWSPREVIOUS"), rotated);
    assert!(
        pg.logs_in("app", "Initial-pw-1"),
        "the first password logs in again"
    );
    assert!(!pg.logs_in("app", rotated["password"].as_str().unwrap()));

    // plan of a secret whose password the database no longer has: exit 5, the login line
    // says why and what to do, as JSON too.
    let mut v = store.value("app", "AWSCURRENT");
    v["password"] = json!("Wrong-pw-1");
    std::fs::write(&file, v.to_string()).unwrap();
    ok(&store.rotate(&["put", "app", "--value-file", file.to_str().unwrap()], ""));
    // A put after rotations (AWSPENDING stays on the version a rotation made current) starts
    // no rotation: list shows none in flight, and plan's rotation line passes.
    let o = store.rotate(&["--json", "list"], "");
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["rotation_in_flight"], Value::Null, "{rows}");
    let o = store.rotate(&["--json", "plan", "app"], "");
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rotation = p["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == json!("rotation"))
        .unwrap();
    assert_eq!(rotation["status"], json!("pass"), "{p}");
    no_secret(&o, &["Wrong-pw-1", "Initial-pw-1"]);
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["passed"], json!(false));
    let login = p["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == json!("login"))
        .unwrap();
    assert_eq!(login["status"], json!("fail"));
    assert_eq!(login["kind"], json!("AuthenticationFailed"));
    assert!(login["fix"].as_str().unwrap().contains("password"));
}

#[test]
fn put_changes_keys_keeps_the_rest_and_moves_previous() {
    let store = Store::new();
    ok(&store.rotate(
        &[
            "put",
            "db",
            "engine=postgres",
            "host=a.example.com",
            "username=etl",
            "dbname=dev",
            "--password-stdin",
        ],
        "Pw-with-Upper-1\n",
    ));
    let o = store.rotate(
        &["--json", "put", "db", "host=b.example.com", "port=5439"],
        "",
    );
    ok(&o);
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["result"], json!("updated"));
    assert_eq!(
        store.value("db", "AWSCURRENT"),
        json!({"engine": "postgres", "host": "b.example.com", "port": 5439, "username": "etl", "dbname": "dev", "password": "Pw-with-Upper-1"})
    );
    assert_eq!(
        store.value("db", "AWSPREVIOUS")["host"],
        json!("a.example.com")
    );
    // The new version is the one put reported.
    let f = store.file();
    let current = f["secrets"]["db"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stages"] == json!(["AWSCURRENT"]))
        .unwrap()["id"]
        .clone();
    assert_eq!(out["version"], current);
}

#[test]
fn hostile_values_round_trip_and_are_never_printed() {
    let store = Store::new();
    let passwords = [
        "p\"w'\\ `$(x)` ;DROP ROLE x;--",
        "パスワード🔑",
        "tab\tand\u{7}bell",
        "{\"$ne\": null}",
        "%s%n%x {0} {{}}",
    ];
    for (i, pw) in passwords.iter().enumerate() {
        let name = format!("s{i}");
        let value = json!({"engine": "mongo", "host": "h", "username": "ü-ser\u{1b}[31m", "password": pw, "nested": {"k": ["v", 1, null]}, "x": "\u{0}"});
        let o = store.rotate(&["put", &name, "--value-file", "-"], &value.to_string());
        ok(&o);
        no_secret(&o, &[pw]);
        assert_eq!(store.value(&name, "AWSCURRENT"), value, "stored exactly");
        // The password from standard input, with a Windows line ending.
        let o = store.rotate(&["put", &name, "--password-stdin"], &format!("{pw}\r\n"));
        ok(&o);
        assert_eq!(store.value(&name, "AWSCURRENT")["password"], json!(pw));
    }
    for args in [vec!["list"], vec!["--json", "list"], vec!["status", "s0"]] {
        let o = store.rotate(&args, "");
        ok(&o);
        no_secret(&o, &passwords);
        // An escape sequence in a value never reaches the terminal, nor does a user name.
        assert!(!text(&o).contains('\u{1b}'), "{}", text(&o));
    }
}

#[test]
fn bad_input_is_refused_with_the_reason_and_changes_nothing() {
    let store = Store::new();
    ok(&store.rotate(
        &[
            "put",
            "app",
            "engine=postgres",
            "host=h",
            "username=app",
            "--password-stdin",
        ],
        "Secret-pw-1\n",
    ));
    let before = store.file();
    let json_file = store.dir.path().join("bad.json");
    let file_arg = json_file.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str, &str, i32, &str)> = vec![
        // (args, stdin, file content, exit code, what the error says)
        (
            vec!["put", "app", "password=Secret-pw-2"],
            "",
            "",
            2,
            "never an argument",
        ),
        (vec!["put", "app", "colour=blue"], "", "", 2, "unknown key"),
        (vec!["put", "app", "hostonly"], "", "", 2, "KEY=VALUE"),
        (vec!["put", "app", "port=0"], "", "", 2, "port must be"),
        (vec!["put", "app", "port=99999"], "", "", 2, "port must be"),
        (
            vec!["put", "app", "engine=oracle"],
            "",
            "",
            4,
            "[InvalidSecret]",
        ),
        (
            vec!["put", "app", "--password-stdin"],
            "\n",
            "",
            2,
            "empty password",
        ),
        (
            vec!["put", "app", "--value-file", "-", "--password-stdin"],
            "{}",
            "",
            2,
            "both read standard input",
        ),
        (
            vec!["put", "app", "--value-file", &file_arg],
            "",
            "{\"password\": \"Secret-pw-2\",",
            2,
            "not valid JSON",
        ),
        (
            vec!["put", "app", "--value-file", &file_arg],
            "",
            "[\"Secret-pw-2\"]",
            2,
            "must be a JSON object",
        ),
        (
            vec!["put", "app", "--value-file", &file_arg],
            "",
            "{\"password\": \"Secret-pw-2\", \"host\": \"h\", \"username\": \"u\"}",
            4,
            "[InvalidSecret]",
        ),
        (
            vec!["put", "app", "--value-file", &file_arg],
            "",
            "{\"engine\": \"postgres\", \"password\": \"Secret-pw-2\", \"host\": \"h\"}",
            4,
            "[InvalidSecret]",
        ),
        (
            vec!["put", "app", "--strategy", "alternating-users"],
            "",
            "",
            4,
            "[MissingMasterArn]",
        ),
        (
            vec![
                "put",
                "app",
                "username=a_name_of_sixty_bytes_is_fine_but_its_clone_is_too_long_for_pg",
                "masterarn=arn:aws:secretsmanager:us-east-1:123456789012:secret:m",
            ],
            "",
            "",
            4,
            "[UsernameTooLong]",
        ),
        (
            vec![
                "put",
                "bad name!",
                "engine=postgres",
                "host=h",
                "username=u",
                "--password-stdin",
            ],
            "Secret-pw-2\n",
            "",
            4,
            "1 to 512 characters",
        ),
        (
            vec![
                "put",
                "arn:local:secretsmanager:local:000000000000:secret:nope",
                "engine=postgres",
                "host=h",
                "username=u",
                "--password-stdin",
            ],
            "Secret-pw-2\n",
            "",
            4,
            "[SecretNotFound]",
        ),
    ];
    for (args, stdin, content, exit, says) in cases {
        std::fs::write(&json_file, content).unwrap();
        let o = store.rotate(&args, stdin);
        code(&o, exit, says);
        no_secret(&o, &["Secret-pw-1", "Secret-pw-2"]);
        assert_eq!(store.file(), before, "{args:?} changed the store");
    }

    // The Secrets Manager store: refused, naming the AWS CLI instead.
    for args in [vec!["put", "app", "host=x"], vec!["list"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_rotate"))
            .args(["--store", "aws"])
            .args(&args)
            .output()
            .unwrap();
        code(&o, 2, "works on the file store");
    }
    assert_eq!(store.file(), before);

    // A rotation in flight: put is refused (exit 3) and nothing changes.
    let mut f = store.file();
    f["secrets"]["app"]["versions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "11111111-1111-1111-1111-111111111111", "stages": ["AWSPENDING"], "value": null}));
    std::fs::write(&store.path, f.to_string()).unwrap();
    let o = store.rotate(&["put", "app", "host=other"], "");
    code(&o, 3, "[RotationInFlight]");
    assert_eq!(store.file(), f);
    let o = store.rotate(&["list"], "");
    ok(&o);
    assert!(
        text(&o).contains("version 11111111-1111-1111-1111-111111111111"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_refused_put_on_a_new_store_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("not-yet");
    let store = Store {
        path: nested.join("store.json"),
        spec: format!("file:{}", nested.join("store.json").display()),
        dir,
    };
    for name in [
        "bad name!",
        "arn:local:secretsmanager:local:000000000000:secret:x",
    ] {
        let o = store.rotate(
            &[
                "put",
                name,
                "engine=postgres",
                "host=h",
                "username=u",
                "--password-stdin",
            ],
            "Secret-pw-1\n",
        );
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        no_secret(&o, &["Secret-pw-1"]);
        assert!(
            !nested.exists(),
            "{name:?}: the store's directory was created"
        );
    }
}

#[test]
fn a_secret_without_awscurrent_is_given_one_by_put() {
    let store = Store::new();
    ok(&store.rotate(
        &[
            "put",
            "app",
            "engine=postgres",
            "host=h",
            "username=app",
            "--password-stdin",
        ],
        "Secret-pw-1\n",
    ));
    // A hand edit (or a tool) took AWSCURRENT off every version.
    let mut f = store.file();
    for v in f["secrets"]["app"]["versions"].as_array_mut().unwrap() {
        v["stages"] = json!([]);
    }
    std::fs::write(&store.path, f.to_string()).unwrap();
    // Without a whole value there is nothing to build on: the missing keys are named.
    let o = store.rotate(&["put", "app", "host=other"], "");
    code(&o, 4, "[InvalidSecret]");
    assert_eq!(store.file(), f);
    // With one, the secret gets an AWSCURRENT version again.
    let file = store.dir.path().join("value.json");
    std::fs::write(
        &file,
        r#"{"engine": "postgres", "host": "h2", "username": "app", "password": "Secret-pw-2"}"#,
    )
    .unwrap();
    ok(&store.rotate(&["put", "app", "--value-file", file.to_str().unwrap()], ""));
    assert_eq!(store.value("app", "AWSCURRENT")["host"], json!("h2"));
}

#[test]
fn put_waits_for_a_held_store_lock_no_longer_than_its_timeout() {
    let store = Store::new();
    ok(&store.rotate(
        &[
            "put",
            "db",
            "engine=postgres",
            "host=a.example.com",
            "username=app",
            "--password-stdin",
        ],
        "Pw-with-Upper-1\n",
    ));
    let before = store.file();
    // Another writer holds the store's lock.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{}.lock", store.path.display()))
        .unwrap();
    lock.lock().unwrap();
    let started = std::time::Instant::now();
    let o = store.rotate(&["--timeout", "2", "put", "db", "host=b.example.com"], "");
    let took = started.elapsed();
    assert!(!o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("lock"), "{said}");
    assert!(
        said.contains("waiting for the local store's lock"),
        "a line says what it waits for: {said}"
    );
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(6),
        "waited {took:?} with --timeout 2"
    );
    assert_eq!(store.file(), before, "a refused put changed the store");
    drop(lock);
    ok(&store.rotate(&["--timeout", "2", "put", "db", "host=b.example.com"], ""));
}

#[test]
fn a_value_file_nobody_writes_to_fails_within_the_timeout() {
    let store = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("value.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let started = std::time::Instant::now();
    let o = store.rotate(
        &[
            "--timeout",
            "2",
            "put",
            "db",
            "--value-file",
            fifo.to_str().unwrap(),
        ],
        "",
    );
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("nothing to read within --timeout"), "{said}");
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(6),
        "waited {took:?} with --timeout 2"
    );
    assert!(!store.path.exists(), "a refused put created the store");
}

#[test]
fn odd_json_in_other_keys_is_kept_as_the_rotations_read_it() {
    // A number beyond f64, a lone surrogate, deep nesting: the rotations keep other keys as
    // raw JSON, so `put` takes them too (it used to call them a missing engine).
    let store = Store::new();
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    for (i, odd) in ["1e400", r#""\ud800""#, deep.as_str()]
        .into_iter()
        .enumerate()
    {
        let value = format!(
            r#"{{"engine":"postgres","host":"h.example.com","username":"app","password":"Pw-with-Upper-1","odd":{odd}}}"#
        );
        let name = format!("odd{i}");
        ok(&store.rotate(&["put", &name, "--value-file", "-"], &value));
        let stored = store.file()["secrets"][&name]["versions"][0]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(stored.contains(odd), "{stored}");
    }
    // Text that is not JSON is said to be so, and so is nesting deeper than any JSON reader of
    // the rotations takes (128 levels), rather than a missing engine key.
    let too_deep = format!(
        r#"{{"engine":"postgres","host":"h.example.com","username":"app","odd":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for bad in ["{\"engine\": \"postgres\",", too_deep.as_str()] {
        let o = store.rotate(&["put", "bad", "--value-file", "-"], bad);
        assert!(!o.status.success());
        let said = text(&o);
        assert!(!said.contains("engine key is missing"), "{said}");
        assert!(said.to_lowercase().contains("json"), "{said}");
    }
    assert!(
        store.file()["secrets"].get("bad").is_none(),
        "a refused put stored the secret"
    );
}

#[test]
fn a_secret_cannot_be_its_own_master() {
    let store = Store::new();
    ok(&store.rotate(
        &[
            "put",
            "db",
            "engine=postgres",
            "host=h.example.com",
            "username=app",
            "--password-stdin",
        ],
        "Pw-with-Upper-1\n",
    ));
    let before = store.file();
    let arn = before["secrets"]["db"]["arn"].as_str().unwrap().to_string();
    for itself in ["db", arn.as_str()] {
        let o = store.rotate(&["put", "db", &format!("masterarn={itself}")], "");
        code(&o, 4, "alternating pair");
        assert_eq!(
            store.file(),
            before,
            "{itself}: a refused put changed the store"
        );
    }
    // Another secret as master is fine.
    ok(&store.rotate(
        &[
            "put",
            "admin",
            "engine=postgres",
            "host=h.example.com",
            "username=admin",
            "--password-stdin",
        ],
        "Pw-with-Upper-1\n",
    ));
    ok(&store.rotate(&["put", "db", "masterarn=admin"], ""));
}

#[test]
fn put_counts_the_clone_name_as_the_rotation_does() {
    // MySQL: 16 characters for `mysql` (USERNAME_CHARACTER_LIMIT), 80 for `mariadb`; counted in
    // characters, not bytes. `put` refuses what createSecret would refuse, and nothing else.
    let put = |engine: &str, username: &str, limit: Option<&str>| {
        let store = Store::new();
        let (engine, username) = (format!("engine={engine}"), format!("username={username}"));
        let o = store.rotate_with(
            &[
                "put",
                "app",
                &engine,
                "host=h",
                "port=3306",
                &username,
                "masterarn=arn:aws:secretsmanager:us-east-1:123456789012:secret:m",
                "--password-stdin",
            ],
            "Initial-pw-1-Long\n",
            &[("USERNAME_CHARACTER_LIMIT", limit)],
        );
        let stored = store.path.exists() && store.file()["secrets"].get("app").is_some();
        (o, stored)
    };
    // `app_user_1` + `_clone`: 16 characters, the limit.
    let (o, stored) = put("mysql", "app_user_1", None);
    ok(&o);
    assert!(stored);
    // One more is refused before anything is stored ...
    let (o, stored) = put("mysql", "app_user_12", None);
    code(&o, 4, "[UsernameTooLong]");
    assert!(text(&o).contains("17 characters"), "{}", text(&o));
    assert!(!stored);
    // ... unless the limit is raised, as the rotation would read it, or the engine is MariaDB.
    ok(&put("mysql", "app_user_12", Some("32")).0);
    ok(&put("mariadb", "app_user_12", None).0);
    // Characters, not bytes: ten two-byte letters and `_clone` are 16 characters.
    ok(&put(
        "mysql",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        None,
    )
    .0);
}
