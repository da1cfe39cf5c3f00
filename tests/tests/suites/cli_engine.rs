//! `rotate` picks the engine the secret's `engine` key names, for every registered engine
//! (`rotate_all` is `rotation_cli::main` over the registered list): a secret is rotated by its
//! own engine over verified TLS with no `--engine`, and every other verb (plan, status, list,
//! rollback, a fleet run) works on it; a value no engine takes, or `--engine` naming another
//! engine, is refused before anything changes.

use std::process::{Command, Output};

use rotation_core::Stage;
use rotation_core::store::SecretStore;
use rotation_tests::all_engines;
use rotation_tests::engines::{ALL, Engine, Env};
use serde_json::json;

all_engines!(the_secret_names_its_engine);

const PW: &str = "Initial-pw-1-long-enough";

fn rotate(env: &Env, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rotate_all"));
    c.arg("--store")
        .arg(format!("file:{}", env.store.path().display()))
        .args(args)
        .env_remove("ROTATE_STORE")
        .env_remove("ROTATION_STRATEGY");
    match env.ca_pem() {
        Some(ca) => c.env("CA_BUNDLE_PATH", ca),
        None => c.env_remove("CA_BUNDLE_PATH"),
    };
    c.output().expect("run rotate_all")
}

async fn the_secret_names_its_engine(engine: Engine) {
    let env = Env::tls(engine);
    env.create_user("app", PW);
    let initial = env.secret("app", PW, None);
    env.put("app", &initial).await;
    let o = rotate(&env, &["--json", "run", "app", "--strategy", "single-user"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{engine}: {err}");
    let current = env.value("app", Stage::Current).await;
    assert_ne!(current["password"], initial["password"]);
    assert!(env.logs_in(&current).await, "{engine}: AWSCURRENT logs in");
    engine.check_rotated(&*env.server, &initial, &current);

    // Every other verb on the same engine: plan, status, list, rollback, a fleet run.
    for args in [
        &["--json", "plan", "app", "--strategy", "single-user"][..],
        &["--json", "status", "app"],
        &["--json", "list"],
        &["--json", "rollback", "app", "--strategy", "single-user"],
        &[
            "--json",
            "run",
            "--prefix",
            "app",
            "--strategy",
            "single-user",
        ],
    ] {
        let o = rotate(&env, args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{engine}: {args:?}: {err}");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).is_ok();
        assert!(
            !out.trim().is_empty() && (json(&out) || out.lines().all(json)),
            "{engine}: {args:?} prints JSON: {out}"
        );
        if args.contains(&"rollback") {
            let back = env.value("app", Stage::Current).await;
            assert_eq!(
                back, initial,
                "{engine}: the rollback put the first value back"
            );
            assert!(env.logs_in(&back).await, "{engine}: and it logs in");
        }
    }
    let after_all = env.value("app", Stage::Current).await;
    assert_ne!(after_all["password"], current["password"]);
    assert_ne!(after_all["password"], initial["password"]);
    assert!(
        env.logs_in(&after_all).await,
        "{engine}: AWSCURRENT logs in"
    );

    // A value no engine takes: exit 4, naming it and the values that are taken; no change.
    let mut odd = current.clone();
    odd["engine"] = json!("oracle");
    env.put("odd", &odd).await;
    let before = (env.store.describe("odd").await.ok(), env.fingerprint());
    let o = rotate(&env, &["run", "odd", "--strategy", "single-user"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(4), "{engine}: {err}");
    assert!(err.contains("oracle"), "{engine}: {err}");
    for e in ALL {
        assert!(err.contains(e.profile().engines[0]), "{engine}: {err}");
    }
    let after = (env.store.describe("odd").await.ok(), env.fingerprint());
    assert_eq!(before, after, "{engine}: a refused run changed something");

    // `--engine` overrides the key: another engine refuses the secret, and nothing changes.
    let key = current["engine"].as_str().unwrap_or_default().to_string();
    let other = ALL
        .into_iter()
        .find(|e| !e.profile().engines.contains(&key.as_str()))
        .expect("another engine");
    let before = (env.store.describe("app").await.ok(), env.fingerprint());
    let o = rotate(
        &env,
        &[
            "run",
            "app",
            "--strategy",
            "single-user",
            "--engine",
            other.name(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(4), "{engine} as {other}: {err}");
    let after = (env.store.describe("app").await.ok(), env.fingerprint());
    assert_eq!(
        before, after,
        "{engine} as {other}: a refused run changed something"
    );
}
