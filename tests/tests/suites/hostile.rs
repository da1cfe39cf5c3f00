//! Proof of no lockout, hostile input: one matrix of secrets and events (not JSON, not an
//! object, keys missing or of the wrong type, wrong engine, empty and oversized fields, ports out
//! of range, user names and passwords with every printable ASCII character, unicode, control
//! characters, SQL and Mongo operator injection, odd `ssl`, `dbname` and `masterarn` values,
//! bad event fields) against every engine and strategy on a real server. Each case ends in a
//! correct rotation (`AWSCURRENT` logs in) or a typed error that changed nothing: `AWSCURRENT`
//! on the same version, the same users on the server, the user's password unchanged, and no
//! password in the error. Never a panic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rotation_core::{
    Options, RotationError, RotationEvent, SecretStore, Stage, Step, Strategy, VersionSelector,
};
use rotation_tests::engines::{Engine, EngineRotation, Env};
use rotation_tests::faults::without_changing_keys;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// One hostile secret.
struct Case {
    name: String,
    /// The secret's text, as stored.
    text: String,
    /// A user to create first (name, password), so that the case can rotate if it is valid.
    create: Option<(String, String)>,
    /// The password a leak check looks for in errors.
    password: Option<String>,
}

const PW: &str = "Hostile-pw-1-long-enough";

/// Every printable ASCII character the engine allows in a password, in passwords of at most 43
/// characters (the shortest maximum of the engines is 64), each with the classes engines require.
fn printable_passwords(engine: Engine) -> Vec<String> {
    let rules = &engine.profile().password;
    let allowed: Vec<char> = (b'!'..=b'~')
        .map(char::from)
        .filter(|c| !rules.forbidden.contains(*c))
        .collect();
    allowed
        .chunks(40)
        .map(|chunk| {
            let pw = format!("{}aA1", chunk.iter().collect::<String>());
            assert!(rules.check(&pw).is_ok(), "{engine}: {pw}");
            pw
        })
        .collect()
}

fn cases(env: &Env, master_arn: Option<&str>) -> Vec<Case> {
    let engine = env.engine;
    let mut out = vec![];
    let base = |user: &str, pw: &str| {
        let mut v = secret_with(env, user, pw);
        if let Some(arn) = master_arn {
            v["masterarn"] = json!(arn);
        }
        v
    };
    let raw = |name: &str, text: &str| Case {
        name: name.into(),
        text: text.into(),
        create: None,
        password: None,
    };
    // Not a JSON object.
    for (name, text) in [
        ("not json", "not json"),
        ("empty", ""),
        ("truncated", "{\"username\": \"a\", \"password\""),
        ("array", "[]"),
        ("string", "\"string\""),
        ("number", "42"),
        ("null", "null"),
        ("empty object", "{}"),
        (
            "duplicate keys",
            "{\"username\": \"a\", \"username\": \"b\"}",
        ),
        ("nul byte", "{\"username\": \"a\u{0}\"}"),
        ("deep nesting", &("[".repeat(10_000) + &"]".repeat(10_000))),
    ] {
        out.push(raw(name, text));
    }
    // Keys missing, empty, of the wrong type, oversized.
    let mutate = |name: &str, f: &dyn Fn(&mut Value)| {
        let mut v = base("hostile_base", PW);
        f(&mut v);
        Case {
            name: name.into(),
            text: v.to_string(),
            create: Some(("hostile_base".into(), PW.into())),
            password: Some(PW.into()),
        }
    };
    for key in [
        "username",
        "password",
        "host",
        "engine",
        "port",
        "masterarn",
    ] {
        out.push(mutate(&format!("no {key}"), &|v| {
            v.as_object_mut().unwrap().remove(key);
        }));
        out.push(mutate(&format!("{key} empty"), &|v| v[key] = json!("")));
        out.push(mutate(&format!("{key} a number"), &|v| v[key] = json!(7)));
        out.push(mutate(&format!("{key} an object"), &|v| {
            v[key] = json!({"$ne": null})
        }));
        out.push(mutate(&format!("{key} null"), &|v| v[key] = Value::Null));
        out.push(mutate(&format!("{key} oversized"), &|v| {
            v[key] = json!("x".repeat(100_000))
        }));
    }
    for engine_name in [
        "sqlserver",
        "POSTGRES",
        "postgres ",
        "mongo\u{0}",
        "aurora-postgres",
    ] {
        out.push(mutate(&format!("engine {engine_name:?}"), &|v| {
            v["engine"] = json!(engine_name)
        }));
    }
    for port in [
        json!(-1),
        json!(0),
        json!(65536),
        json!(1e10),
        json!(1.5),
        json!("abc"),
        json!(" 5432"),
        json!(true),
        json!([5432]),
    ] {
        out.push(mutate(&format!("port {port}"), &|v| {
            v["port"] = port.clone()
        }));
    }
    for ssl in [
        json!("maybe"),
        json!(2),
        json!({}),
        json!("FALSE "),
        json!(null),
    ] {
        out.push(mutate(&format!("ssl {ssl}"), &|v| v["ssl"] = ssl.clone()));
    }
    for dbname in [
        json!("no_such_db"),
        json!("x'; DROP DATABASE postgres; --"),
        json!("$cmd"),
        json!(""),
        json!(5),
    ] {
        out.push(mutate(&format!("dbname {dbname}"), &|v| {
            v["dbname"] = dbname.clone()
        }));
    }
    for host in [
        "127.0.0.1:1",
        "-oProxyCommand=x",
        "localhost\n",
        "ünïcode.invalid",
    ] {
        out.push(mutate(&format!("host {host:?}"), &|v| {
            v["host"] = json!(host)
        }));
    }
    for arn in [
        "arn:local:secretsmanager:local:000000000000:secret:missing-abcdef",
        "not an arn",
    ] {
        out.push(mutate(&format!("masterarn {arn:?}"), &|v| {
            v["masterarn"] = json!(arn)
        }));
    }
    // Hostile user names, created on the server with their own password, then rotated.
    let printable: String = (b'!'..=b'~').map(char::from).collect();
    for user in [
        printable.as_str(),
        "x'; DROP ROLE postgres; --",
        "x\" SUPERUSER --",
        "$where",
        "{\"$ne\": null}",
        "a.b$c",
        "ユーザー",
        "é🙂",
        "tab\tname",
        "Mixed_Case",
        "trailing ",
    ] {
        let mut v = base(user, PW);
        v["team"] = json!("kept");
        out.push(Case {
            name: format!("user {user:?}"),
            text: v.to_string(),
            create: Some((user.into(), PW.into())),
            password: Some(PW.into()),
        });
    }
    // Hostile current passwords (the rotation logs in with them).
    let printable = printable_passwords(engine);
    for (i, pw) in printable
        .iter()
        .map(String::as_str)
        .chain([
            "x'; ALTER ROLE postgres PASSWORD 'y'; --",
            "{\"$ne\": null}xx",
            "pässwörd-ü-1",
            "back\\slash\\\\x",
            "spaces in it 1",
        ])
        .enumerate()
    {
        let user = format!("hostile_pw{i}");
        out.push(Case {
            name: format!("password {i}"),
            text: base(&user, pw).to_string(),
            create: Some((user, pw.into())),
            password: Some(pw.into()),
        });
    }
    out
}

/// `user`'s secret with `password`, whatever the engine's rules say of it.
fn secret_with(env: &Env, user: &str, password: &str) -> Value {
    let mut v = env.plain_secret(user, PW);
    v["password"] = json!(password);
    v
}

/// Whether `env` can create `user` with `password` (the server's own limits).
fn creatable(env: &Env, user: &str, password: &str) -> bool {
    let rules = &env.engine.profile().password;
    !user.is_empty() && !user.contains('\0') && rules.check(password).is_ok()
}

#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    rotated: usize,
    errors: BTreeMap<&'static str, usize>,
    events: usize,
    failures: Vec<String>,
}

async fn matrix(engine: Engine, strategy: Strategy) {
    let env = Env::plain(engine);
    let master =
        (strategy == Strategy::AlternatingUsers).then(|| env.master_secret(Some(json!(false))));
    let master_arn = match &master {
        Some(m) => Some(env.put("master", m).await),
        None => None,
    };
    // Connections to this local server take milliseconds; a case that asks TLS of it waits out
    // the connect timeout where the server neither answers nor closes a handshake (Redis).
    let settings = env.settings_with(&[(rotation_trust::settings::CONNECT_TIMEOUT_ENV, "2")]);
    let r = Arc::new(
        settings
            .rotation(env.store.clone(), strategy)
            .with_options(Options {
                step_timeout: Duration::from_secs(10),
                ..Options::default()
            }),
    );
    let mut tally = Tally::default();
    let mut created = std::collections::BTreeSet::new();
    for (i, case) in cases(&env, master_arn.as_deref()).into_iter().enumerate() {
        tally.cases += 1;
        if let Some((user, pw)) = &case.create
            && creatable(&env, user, pw)
            && created.insert(user.clone())
        {
            env.create_user(user, pw);
        }
        let users_before = env.fingerprint();
        let privileged_before = env.privileged();
        // Whether the case's user logs in before: if so, it must after an error too.
        let logged_in_before = match &case.create {
            Some((user, pw)) if created.contains(user) => {
                env.logs_in(&secret_with(&env, user, pw)).await
            }
            _ => false,
        };
        let name = format!("case{i}");
        env.store
            .create_secret(&name, &SecretString::from(case.text.clone()))
            .await
            .unwrap();
        let current_before = current_version(&env, &name).await;
        let token = rotation_tests::token();
        env.store.start_rotation(&name, &token).await.unwrap();
        let stages_before = env.store.describe(&name).await.unwrap().versions;
        let outcome = run_one(&r, &name, &token).await;
        match outcome {
            Outcome::Panic(step) => tally
                .failures
                .push(format!("{}: panicked in {step}", case.name)),
            Outcome::Rotated => {
                tally.rotated += 1;
                let logs_in = match current_value(&env, &name).await {
                    Some(v) => env.logs_in(&v).await,
                    None => false,
                };
                if !logs_in {
                    tally.failures.push(format!(
                        "{}: rotated, but AWSCURRENT does not log in",
                        case.name
                    ));
                }
                // A rotation changes passwords (and may create the clone), nothing else: the
                // secret's other keys and who holds administrative rights are as they were.
                let original: Value = serde_json::from_str(&case.text).unwrap_or(Value::Null);
                if let Some(v) = current_value(&env, &name).await
                    && without_changing_keys(&v) != without_changing_keys(&original)
                {
                    tally
                        .failures
                        .push(format!("{}: rotated, but other keys changed", case.name));
                }
                if env.privileged() != privileged_before {
                    tally
                        .failures
                        .push(format!("{}: rotated, and privileges changed", case.name));
                }
                if let Some(master) = &master
                    && !env.logs_in(master).await
                {
                    tally.failures.push(format!(
                        "{}: rotated, and the master no longer logs in",
                        case.name
                    ));
                }
                // Later cases of the same user start from its first password again.
                if let Some((user, pw)) = &case.create
                    && strategy == Strategy::SingleUser
                {
                    env.set_password(user, pw);
                }
            }
            Outcome::Failed(e) => {
                *tally.errors.entry(e.kind()).or_default() += 1;
                let chain = rotation_core::error_chain(&e);
                if let Some(pw) = &case.password
                    && pw.len() >= 8
                    && chain.contains(pw.as_str())
                {
                    tally
                        .failures
                        .push(format!("{}: the password is in the error", case.name));
                }
                if current_version(&env, &name).await != current_before {
                    tally.failures.push(format!(
                        "{}: AWSCURRENT moved on error ({chain})",
                        case.name
                    ));
                }
                if env.fingerprint() != users_before {
                    tally.failures.push(format!(
                        "{}: a user, password or privilege changed on error ({chain})",
                        case.name
                    ));
                }
                if env.store.describe(&name).await.unwrap().versions != stages_before {
                    tally
                        .failures
                        .push(format!("{}: stages changed on error ({chain})", case.name));
                }
                if let Some((user, pw)) = &case.create
                    && logged_in_before
                    && !env.logs_in(&secret_with(&env, user, pw)).await
                {
                    tally.failures.push(format!(
                        "{}: the user's password changed on error ({chain})",
                        case.name
                    ));
                }
                if e.kind() == "Other" {
                    tally
                        .failures
                        .push(format!("{}: untyped error {chain}", case.name));
                }
            }
        }
    }
    events(&env, &r, &mut tally).await;
    eprintln!("HOSTILE {engine} {strategy}: {tally:?}");
    assert!(
        tally.failures.is_empty(),
        "{} failures: {:#?}",
        tally.failures.len(),
        tally.failures
    );
    assert!(tally.rotated >= 10, "{tally:?}");
}

enum Outcome {
    Rotated,
    Failed(RotationError),
    Panic(Step),
}

async fn run_one(r: &Arc<EngineRotation>, secret: &str, token: &str) -> Outcome {
    for step in Step::ALL {
        let (r, event) = (r.clone(), RotationEvent::new(step, secret, token));
        match tokio::spawn(async move { r.handle(&event).await }).await {
            Err(_) => return Outcome::Panic(step),
            Ok(Err(e)) => return Outcome::Failed(e),
            Ok(Ok(_)) => {}
        }
    }
    Outcome::Rotated
}

async fn current_version(env: &Env, secret: &str) -> Option<String> {
    let d = env.store.describe(secret).await.ok()?;
    d.versions
        .iter()
        .find(|(_, s)| s.has(Stage::Current))
        .map(|(v, _)| v.clone())
}

async fn current_value(env: &Env, secret: &str) -> Option<Value> {
    let v = env
        .store
        .get_value(secret, VersionSelector::stage(Stage::Current))
        .await
        .ok()?;
    serde_json::from_str(v.value.expose_secret()).ok()
}

/// Bad invocation events: refused with a typed error before anything is read or changed.
async fn events(env: &Env, r: &Arc<EngineRotation>, tally: &mut Tally) {
    let payloads = [
        json!(null),
        json!([]),
        json!("createSecret"),
        json!({}),
        json!({"Step": "createSecret"}),
        json!({"Step": 1, "SecretId": "x", "ClientRequestToken": "t"}),
        json!({"Step": "createSecret", "SecretId": "", "ClientRequestToken": "t"}),
        json!({"Step": "createSecret", "SecretId": "x\u{0}", "ClientRequestToken": "t"}),
        json!({"Step": "createSecret", "SecretId": "ünï", "ClientRequestToken": "t"}),
        json!({"Step": "createSecret", "SecretId": "x", "ClientRequestToken": ["t"]}),
        json!({"Step": "createSecret", "SecretId": "x", "ClientRequestToken": "t", "RotationToken": 5}),
    ];
    for p in payloads {
        tally.events += 1;
        if RotationEvent::from_json(&p).is_ok() {
            tally.failures.push(format!("event {p} accepted"));
        }
    }
    // Well-formed events naming what is not there.
    env.put("event-target", &env.plain_secret("nobody", PW))
        .await;
    let before = env.store.describe("event-target").await.unwrap().versions;
    for (step, secret, token) in [
        ("createSecret", "no-such-secret", "t"),
        ("createSecret", "event-target", "not-staged"),
        ("deleteSecret", "event-target", "t"),
        ("setSecret", "event-target", &"t".repeat(10_000)),
    ] {
        tally.events += 1;
        let event = RotationEvent::from_json(
            &json!({"Step": step, "SecretId": secret, "ClientRequestToken": token}),
        )
        .unwrap();
        let r = r.clone();
        match tokio::spawn(async move { r.handle(&event).await }).await {
            Err(_) => tally
                .failures
                .push(format!("event {step} {secret}: panicked")),
            Ok(Ok(o)) => tally
                .failures
                .push(format!("event {step} {secret}: accepted ({o:?})")),
            Ok(Err(e)) => *tally.errors.entry(e.kind()).or_default() += 1,
        }
    }
    if env.store.describe("event-target").await.unwrap().versions != before {
        tally
            .failures
            .push("bad events changed the secret's stages".into());
    }
}

rotation_tests::all_rotators!(matrix);
