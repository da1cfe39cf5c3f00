//! End to end through the Lambda runtime: moto's RotateSecret invokes the rotation function
//! (moto forwards Lambda invocations, scripts/moto_server.py, to a
//! [`LambdaService`] running the suites' `lambda_all` binary
//! for the engine, through the Lambda Runtime API as on AWS), and the function rotates a real
//! user over verified TLS, twice. Afterwards the current version
//! logs in (checked with the server's own client, not the code under test), the previous one
//! as the strategy says, every other key of the secret is as it was, the generated passwords
//! meet the engine's rules, and the engine's own checks hold
//! ([`TestEngine::check_rotated`](rotation_testkit::TestEngine::check_rotated)). The same
//! set-up, without TLS and under valgrind, counts a cold rotation's instructions
//! ([`cold_rotation_instructions`]).

use std::path::Path;

use rotation_core::Strategy;
use rotation_testkit::{LambdaService, Moto};
use serde_json::{Value, json};

use crate::engines::{Engine, Env};

/// The initial password of `app`.
const INITIAL: &str = "Initial-pw-1-Long-enough";

/// A JSON string literal, which is also a Python string literal.
fn py(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A server of `engine` with the user `app`, a [`LambdaService`] for its function, moto
/// forwarding Lambda invocations to it, and the function's configuration for the caller to
/// start it with.
struct Staged {
    env: Env,
    lambda: LambdaService,
    moto: Moto,
    vars: Vec<(String, String)>,
    name: &'static str,
}

/// [`Staged`] for `engine` and `strategy`: with `tls`, a TLS-only server whose CA is the
/// function's `CA_BUNDLE_PATH`; with `own`, the testkit's own server even when a variable names
/// an external one. The configuration: moto's endpoint and credentials (as on AWS its role's),
/// the engine and the strategy.
fn staged(engine: Engine, strategy: Strategy, tls: bool, own: bool) -> Staged {
    let env = match (tls, own) {
        (true, _) => Env::tls(engine),
        (false, true) => Env::plain_own(engine),
        (false, false) => Env::plain(engine),
    };
    env.create_user("app", INITIAL);
    let name = engine.engine().function_name;
    let lambda = LambdaService::new(name).expect("serve Lambda's Invoke");
    let moto = Moto::start_with(Some(&lambda.url())).expect("start moto with Lambda forwarding");
    let mut vars = moto.env();
    vars.push((rotation_core::ENGINE_ENV.into(), engine.name().into()));
    vars.push((rotation_core::STRATEGY_ENV.into(), strategy.as_str().into()));
    if tls {
        vars.push((
            rotation_trust::CA_BUNDLE_ENV.into(),
            env.ca_pem().expect("a TLS server").display().to_string(),
        ));
    }
    Staged {
        env,
        lambda,
        moto,
        vars,
        name,
    }
}

/// Python that stores `master` and then `initial` (as `app`, naming the master), leaving
/// `app` the value stored.
fn create_secrets(master: &Value, initial: &Value) -> String {
    format!(
        "m = sm.create_secret(Name='master', SecretString={master})['ARN']\n\
         app = json.loads({initial})\n\
         app['masterarn'] = m\n\
         sm.create_secret(Name='app', SecretString=json.dumps(app))\n",
        master = py(&master.to_string()),
        initial = py(&initial.to_string()),
    )
}

/// Two rotations of `engine`'s secret by moto's RotateSecret through `function` (the suites'
/// `lambda_all`), with `strategy`, over verified TLS.
pub fn rotates_through_its_lambda(engine: Engine, strategy: Strategy, function: &Path) {
    let Staged {
        env,
        mut lambda,
        moto,
        vars,
        name,
    } = staged(engine, strategy, true, false);
    lambda
        .start(function, &vars)
        .expect("start the rotation function");

    let master = env.master_secret(Some(json!(true)));
    let mut initial = env.secret("app", INITIAL, Some(json!(true)));
    // As AWS's console and many tools store it: a string port, which must stay a string.
    initial["port"] = json!(env.port().to_string());
    moto.create_function(name)
        .expect("register the function in moto");
    let out = moto
        .python(&format!(
            "{create}\
             print(json.dumps(app))\n\
             fn = {function}\n\
             for i in range(2):\n\
             \x20   d = sm.describe_secret(SecretId='app')\n\
             \x20   for v, s in d.get('VersionIdsToStages', {{}}).items():\n\
             \x20       if 'AWSPENDING' in s and 'AWSCURRENT' in s:\n\
             \x20           sm.update_secret_version_stage(SecretId='app', VersionStage='AWSPENDING', RemoveFromVersionId=v)\n\
             \x20   sm.rotate_secret(SecretId='app', RotationLambdaARN=fn, RotationRules={{'AutomaticallyAfterDays': 7}})\n\
             \x20   print(sm.get_secret_value(SecretId='app', VersionStage='AWSCURRENT')['SecretString'])\n\
             print(json.dumps(sm.describe_secret(SecretId='app')['VersionIdsToStages']))\n",
            create = create_secrets(&master, &initial),
            function = py(name),
        ))
        .unwrap_or_else(|e| {
            panic!(
                "rotation through the Lambda failed: {e}\nmoto log:\n{}",
                moto.log()
            )
        });
    let lines: Vec<&str> = out.lines().collect();
    let stored: Value = serde_json::from_str(lines[0]).unwrap();
    let first: Value = serde_json::from_str(lines[1]).unwrap();
    let second: Value = serde_json::from_str(lines[2]).unwrap();
    let stages: Value = serde_json::from_str(lines[3]).unwrap();
    let pw = |v: &Value| v["password"].as_str().unwrap().to_string();
    let user = |v: &Value| v["username"].as_str().unwrap().to_string();
    let server = &env.server;

    assert_ne!(pw(&first), INITIAL);
    assert!(
        server.logs_in_with_own_client(&user(&second), &pw(&second)),
        "current logs in"
    );
    match strategy {
        Strategy::SingleUser => {
            assert_eq!(user(&second), "app");
            assert!(
                !server.logs_in_with_own_client("app", &pw(&first)),
                "previous password rejected"
            );
            assert!(
                !server.logs_in_with_own_client("app", INITIAL),
                "initial password rejected"
            );
        }
        Strategy::AlternatingUsers => {
            assert_eq!(user(&first), "app_clone");
            assert_eq!(user(&second), "app");
            assert!(
                server.logs_in_with_own_client(&user(&first), &pw(&first)),
                "previous user still works"
            );
        }
    }
    // Every other key of the secret survived as it was (a string port stays a string).
    let kept = |v: &Value| {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        o.remove("password");
        o.remove("username");
        v
    };
    assert_eq!(kept(&first), kept(&stored));
    assert_eq!(kept(&second), kept(&stored));
    let labelled = stages
        .as_object()
        .unwrap()
        .values()
        .filter(|s| !s.as_array().unwrap().is_empty())
        .count();
    assert_eq!(labelled, 2, "a current and a previous version: {stages}");
    for v in [&first, &second] {
        let p = pw(v);
        if let Err(e) = engine.profile().password.check(&p) {
            panic!("a generated password breaks {engine}'s rules: {e}");
        }
    }
    engine.check_rotated(server.as_ref(), &first, &second);
    // Each rotation's end is one log line naming the engine, the strategy and the rotation's
    // duration (from its pending version's creation to its promotion).
    let log = lambda.output();
    let ends = log
        .lines()
        .filter(|l| l.contains("rotation complete"))
        .filter(|l| l.contains(&format!("\"engine\":\"{}\"", engine.name())))
        .filter(|l| l.contains(&format!("\"strategy\":\"{}\"", strategy.as_str())))
        .filter(|l| l.contains("\"rotation_ms\":"))
        .count();
    // (At least: a finishSecret Secrets Manager retries says it again.)
    assert!(
        ends >= 2,
        "two rotation complete lines with engine, strategy and duration:\n{log}"
    );
    drop(lambda);
}

/// The instructions (valgrind's callgrind) of one cold rotation of `engine`'s secret without
/// TLS by `function` (the suites' `lambda_all`), from its start to its end by SIGTERM after
/// finishSecret: moto's RotateSecret invokes it through a [`LambdaService`], as
/// [`rotates_through_its_lambda`] does. Fails, saying how to install it, without valgrind.
pub fn cold_rotation_instructions(engine: Engine, strategy: Strategy, function: &Path) -> u64 {
    let valgrind = std::process::Command::new("valgrind")
        .arg("--version")
        .output();
    assert!(
        valgrind.is_ok_and(|o| o.status.success()),
        "valgrind is not installed: scripts/setup installs it (apt-get install valgrind)"
    );
    let Staged {
        env,
        mut lambda,
        moto,
        vars,
        name,
    } = staged(engine, strategy, false, true);
    let dir = tempfile::tempdir().expect("a directory for the profile");
    let profile = dir.path().join("callgrind.out");
    let out_file = format!("--callgrind-out-file={}", profile.display());
    lambda
        .start_under(
            &["valgrind", "--tool=callgrind", &out_file],
            function,
            &vars,
        )
        .expect("start the rotation function under valgrind");
    let master = env.master_secret(Some(json!(false)));
    let initial = env.secret("app", INITIAL, Some(json!(false)));
    moto.create_function(name)
        .expect("register the function in moto");
    let out = moto
        .python(&format!(
            "{create}\
             sm.rotate_secret(SecretId='app', RotationLambdaARN={function}, RotationRules={{'AutomaticallyAfterDays': 7}})\n\
             print(sm.get_secret_value(SecretId='app', VersionStage='AWSCURRENT')['SecretString'])\n",
            create = create_secrets(&master, &initial),
            function = py(name),
        ))
        .unwrap_or_else(|e| {
            panic!(
                "rotation through the Lambda failed: {e}\nfunction output:\n{}",
                lambda.output()
            )
        });
    let current: Value = serde_json::from_str(out.trim()).expect("the current version");
    assert_ne!(current["password"], json!(INITIAL), "{out}");
    let status = lambda
        .stop()
        .unwrap_or_else(|e| panic!("{e}; the function's output:\n{}", lambda.output()));
    // valgrind writes the profile, then ends as the signal says.
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        status.signal(),
        Some(15),
        "the function did not end by SIGTERM ({status}); its output:\n{}",
        lambda.output()
    );
    let profile = std::fs::read_to_string(&profile).unwrap_or_else(|e| {
        panic!(
            "no callgrind profile ({e}); the function's output:\n{}",
            lambda.output()
        )
    });
    profile
        .lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .expect("callgrind's total in its profile")
}
