//! The preflight (`rotate plan`, the Lambda's `{"Step": "plan"}`), for every engine against the
//! testkit's servers: a passing setup for each strategy, and a failing case per check that can
//! fail there, each reported on the right line with the right kind; and it changes nothing.

use rotation_core::plan::{CheckStatus, Plan};
use rotation_core::store::SecretStore;
use rotation_core::{MasterAllowList, Options, Strategy};
use rotation_testkit::RightsCheck;
use rotation_tests::all_engines;
use rotation_tests::engines::{Engine, Env};
use serde_json::{Value, json};

all_engines!(
    passing_setups,
    failing_checks,
    tls_checks,
    store_policy_checks
);

#[track_caller]
fn line(plan: &Plan, name: &str, status: CheckStatus, kind: Option<&str>) {
    let c = plan
        .check(name)
        .unwrap_or_else(|| panic!("no {name} line: {:#?}", plan.checks));
    assert_eq!(
        (c.status, c.kind.as_deref()),
        (status, kind),
        "{name}: {:#?}",
        plan.checks
    );
    if status == CheckStatus::Fail {
        assert!(c.fix.is_some(), "a failed check says what to do: {c:?}");
    }
}

/// Plans `name` (holding `value`) under `strategy`, checking it changed nothing.
async fn plan(env: &Env, name: &str, value: &Value, strategy: Strategy, options: Options) -> Plan {
    if env.store.describe(name).await.is_err() {
        env.put(name, value).await;
    }
    let before = (env.store.describe(name).await.ok(), env.fingerprint());
    let plan = env
        .rotation_on(env.store.clone(), strategy)
        .with_options(options)
        .plan(name)
        .await;
    let after = (env.store.describe(name).await.ok(), env.fingerprint());
    assert_eq!(before, after, "the plan of {name} changed something");
    let text = plan.to_json().to_string();
    if let Some(p) = value.get("password").and_then(Value::as_str) {
        assert!(!text.contains(p), "a password in the plan: {text}");
    }
    plan
}

async fn passing_setups(engine: Engine) {
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    let single = env.plain_secret("app", "Initial-pw-1-long-enough");
    let p = plan(
        &env,
        "single",
        &single,
        Strategy::SingleUser,
        Options::default(),
    )
    .await;
    assert!(p.passed(), "{:#?}", p.checks);
    for name in [
        "store", "rotation", "secret", "password", "versions", "tls", "login",
    ] {
        line(&p, name, CheckStatus::Pass, None);
    }
    let tls = p.check("tls").unwrap();
    assert!(tls.detail.contains("not used"), "{tls:?}");
    // Whether the preflight can tell a single user's right to change its own password is
    // the engine's limit (a stand-in that lists no privileges for custom roles cannot).
    // The summary claims success only when every check was made.
    if p.checks.iter().any(|c| c.status == CheckStatus::Skip) {
        assert!(p.summary().contains("could not be made"), "{}", p.summary());
        assert!(
            !p.summary().contains("expected to succeed"),
            "{}",
            p.summary()
        );
    } else {
        assert_eq!(p.summary(), "a rotation is expected to succeed");
    }
    match engine.limits().own_password_rights {
        RightsCheck::Unknown => line(&p, "rights", CheckStatus::Skip, None),
        _ => line(&p, "rights", CheckStatus::Pass, None),
    }

    let master_arn = env
        .put("master", &env.master_secret(Some(json!(false))))
        .await;
    let mut alternating = single.clone();
    alternating["masterarn"] = json!(master_arn);
    let p = plan(
        &env,
        "alternating",
        &alternating,
        Strategy::AlternatingUsers,
        Options::default(),
    )
    .await;
    assert!(p.passed(), "{:#?}", p.checks);
    for name in ["secret", "login", "master", "master-login", "rights"] {
        line(&p, name, CheckStatus::Pass, None);
    }
}

async fn failing_checks(engine: Engine) {
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    let good = env.plain_secret("app", "Initial-pw-1-long-enough");
    let single = Strategy::SingleUser;
    let no_options = Options::default;

    // store: a secret that is not there; everything after it is skipped.
    let r = env.rotation_on(env.store.clone(), single);
    let p = r.plan("nowhere").await;
    line(&p, "store", CheckStatus::Fail, Some("SecretNotFound"));
    line(&p, "login", CheckStatus::Skip, None);
    assert!(!p.passed());

    // rotation: one in flight.
    env.put("in-flight", &good).await;
    env.store
        .start_rotation("in-flight", &rotation_tests::token())
        .await
        .unwrap();
    let p = plan(&env, "in-flight", &good, single, no_options()).await;
    line(&p, "rotation", CheckStatus::Fail, Some("RotationInFlight"));
    line(&p, "login", CheckStatus::Pass, None);

    // secret: a key missing; for alternating users, no masterarn.
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("username");
    let p = plan(&env, "no-user", &v, single, no_options()).await;
    line(&p, "secret", CheckStatus::Fail, Some("InvalidSecret"));
    line(&p, "login", CheckStatus::Skip, None);
    let mut no_master = good.clone();
    no_master.as_object_mut().unwrap().remove("masterarn");
    let p = plan(
        &env,
        "no-master",
        &no_master,
        Strategy::AlternatingUsers,
        no_options(),
    )
    .await;
    line(&p, "secret", CheckStatus::Fail, Some("MissingMasterArn"));

    // login: a wrong password, a closed port, TLS asked of a server without it.
    let mut v = good.clone();
    v["password"] = json!("Wrong-pw-1-long-enough");
    let p = plan(&env, "wrong-password", &v, single, no_options()).await;
    line(&p, "login", CheckStatus::Fail, Some("AuthenticationFailed"));
    line(&p, "rights", CheckStatus::Skip, None);
    let mut v = good.clone();
    v["port"] = json!(rotation_testkit::free_port());
    let p = plan(&env, "closed-port", &v, single, no_options()).await;
    line(&p, "login", CheckStatus::Fail, Some("Unreachable"));
    let v = env.secret("app", "Initial-pw-1-long-enough", Some(json!(true)));
    let p = plan(&env, "tls", &v, single, no_options()).await;
    let kind = match engine.limits().tls_to_plain_server {
        rotation_core::ErrorKind::Tls => "TlsFailed",
        rotation_core::ErrorKind::Timeout => "Timeout",
        other => panic!("{other:?}"),
    };
    line(&p, "tls", CheckStatus::Fail, Some(kind));
    line(&p, "login", CheckStatus::Fail, Some(kind));

    // master: not in the allow-list; master-login: the master's password is wrong.
    let master_arn = env
        .put("master", &env.master_secret(Some(json!(false))))
        .await;
    let mut v = good.clone();
    v["masterarn"] = json!(master_arn);
    let options = Options {
        master_allow_list: Some(
            MasterAllowList::parse(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-??????",
            )
            .unwrap(),
        ),
        ..Options::default()
    };
    let p = plan(&env, "not-allowed", &v, Strategy::AlternatingUsers, options).await;
    line(&p, "master", CheckStatus::Fail, Some("MasterNotAllowed"));
    line(&p, "master-login", CheckStatus::Skip, None);
    let mut bad_master = env.master_secret(Some(json!(false)));
    bad_master["password"] = json!("Wrong-pw-1-long-enough");
    let bad_arn = env.put("bad-master", &bad_master).await;
    let mut v = good.clone();
    v["masterarn"] = json!(bad_arn);
    let p = plan(
        &env,
        "with-bad-master",
        &v,
        Strategy::AlternatingUsers,
        no_options(),
    )
    .await;
    line(&p, "master", CheckStatus::Pass, None);
    line(
        &p,
        "master-login",
        CheckStatus::Fail,
        Some("AuthenticationFailed"),
    );

    // rights: a user that may not change its own password (where the engine's users
    // always may, the stand-in's read-only role is not the engine's and is not checked).
    env.create_user("readonly", "Initial-pw-1-long-enough");
    env.forbid_own_password_change("readonly");
    let v = env.plain_secret("readonly", "Initial-pw-1-long-enough");
    let p = plan(&env, "readonly", &v, single, no_options()).await;
    rights_line(&p, engine.limits().own_password_rights);
    // For alternating users, a master that may not manage users (PostgreSQL: no CREATEROLE).
    {
        env.create_user("weakadmin", "Initial-pw-1-long-enough");
        let weak = env.plain_secret("weakadmin", "Initial-pw-1-long-enough");
        let weak_arn = env.put("weak-master", &weak).await;
        let mut v = good.clone();
        v["masterarn"] = json!(weak_arn);
        let p = plan(
            &env,
            "with-weak-master",
            &v,
            Strategy::AlternatingUsers,
            no_options(),
        )
        .await;
        line(&p, "master-login", CheckStatus::Pass, None);
        rights_line(&p, engine.limits().master_rights);
    }
}

/// The `rights` line as the engine's limits say the preflight reports a missing right.
fn rights_line(p: &Plan, check: RightsCheck) {
    match check {
        RightsCheck::Checked => line(p, "rights", CheckStatus::Fail, Some("PermissionDenied")),
        RightsCheck::AlwaysGranted => line(p, "rights", CheckStatus::Pass, None),
        RightsCheck::Unknown => line(p, "rights", CheckStatus::Skip, None),
    }
}

/// The `tls` line on a TLS-only server: which source anchored the certificate, and each way it
/// fails to verify (a CA in no trust source, a name the certificate is not for).
async fn tls_checks(engine: Engine) {
    let env = Env::tls(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    let single = Strategy::SingleUser;
    let good = env.secret("app", "Initial-pw-1-long-enough", Some(json!(true)));
    let p = plan(&env, "verified", &good, single, Options::default()).await;
    assert!(p.passed(), "{:#?}", p.checks);
    line(&p, "tls", CheckStatus::Pass, None);
    let detail = &p.check("tls").unwrap().detail;
    let ca = env
        .ca_pem()
        .expect("a TLS server has a CA")
        .display()
        .to_string();
    assert!(
        detail.contains(&format!("anchored by ca-bundle ({ca})")),
        "the test CA comes through CA_BUNDLE_PATH: {detail}"
    );

    // The same server, with a trust store that lacks its CA.
    let untrusting = env
        .settings_with(&[(rotation_trust::CA_BUNDLE_ENV, "")])
        .rotation(env.store.clone(), single);
    let p = untrusting.plan("verified").await;
    line(&p, "tls", CheckStatus::Fail, Some("TlsFailed"));
    let tls = p.check("tls").unwrap();
    assert!(tls.detail.contains("none of the trust sources"), "{tls:?}");
    line(&p, "login", CheckStatus::Fail, Some("TlsFailed"));

    // A server whose certificate is for another name (PostgreSQL: the testkit's cluster takes
    // the certificate's names), reached as `localhost`: the check connects where the driver
    // does, to the name it verifies.
    if engine.engine() == rotation_postgres::ENGINE {
        let other = rotation_testkit::PgCluster::start(rotation_testkit::PgOptions {
            tls_names: Some(vec!["db.example.invalid".into()]),
            ..rotation_testkit::PgOptions::tls()
        })
        .expect("start PostgreSQL");
        other
            .psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
            .unwrap();
        let mut v = good.clone();
        v["port"] = json!(other.port().to_string());
        env.put("wrong-name", &v).await;
        let ca = other.ca_pem().unwrap().display().to_string();
        let p = env
            .settings_with(&[(rotation_trust::CA_BUNDLE_ENV, &ca)])
            .rotation(env.store.clone(), single)
            .plan("wrong-name")
            .await;
        line(&p, "tls", CheckStatus::Fail, Some("TlsFailed"));
        let tls = p.check("tls").unwrap();
        assert!(tls.detail.contains("not issued for that name"), "{tls:?}");
        line(&p, "login", CheckStatus::Fail, Some("TlsFailed"));
    }
}

/// The `password`, `versions`, `rotation` and `secret` lines: a password policy whose passwords
/// the engine refuses, a store whose ListSecretVersionIds or GetRandomPassword fails, rotation
/// disabled, a clone name that does not fit.
async fn store_policy_checks(engine: Engine) {
    use rotation_core::testing::{Fault, FaultPlan, FaultyStore};
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    let good = env.plain_secret("app", "Initial-pw-1-long-enough");
    env.put("app", &good).await;
    let single = Strategy::SingleUser;

    // password: one character shorter than the engine accepts.
    let mut settings = env.settings.clone();
    settings.policy.length = engine.profile().password.min_length - 1;
    settings.policy.require_each_included_type = false;
    let short = settings.rotation(env.store.clone(), single);
    let p = short.plan("app").await;
    line(
        &p,
        "password",
        CheckStatus::Fail,
        Some("GeneratedPasswordRejected"),
    );
    line(&p, "login", CheckStatus::Pass, None);
    assert!(!p.passed());

    // versions and password: ListSecretVersionIds or GetRandomPassword failing in the store
    // (as a role without the permission, or a throttled call, would).
    let faults = FaultPlan::new();
    let store = FaultyStore::new(env.store.clone(), faults.clone());
    let r = env.rotation_on(store, single);
    assert!(r.plan("app").await.passed());
    let calls = faults.calls();
    for (call, check) in [
        ("ListSecretVersionIds", "versions"),
        ("GetRandomPassword", "password"),
    ] {
        let k = calls
            .iter()
            .position(|c| *c == call)
            .unwrap_or_else(|| panic!("the plan calls {call}: {calls:?}"))
            + 1;
        faults.arm(k, Fault::Before);
        let p = r.plan("app").await;
        line(&p, check, CheckStatus::Fail, Some("SecretsManagerError"));
        assert!(
            p.check(check).unwrap().detail.contains(call),
            "{:#?}",
            p.checks
        );
        line(&p, "login", CheckStatus::Pass, None);
        assert!(!p.passed());
    }
    faults.disarm();

    // rotation: disabled on the secret.
    env.put("disabled", &good).await;
    env.store
        .set_rotation_enabled("disabled", Some(false))
        .await
        .unwrap();
    let p = env
        .rotation_on(env.store.clone(), single)
        .plan("disabled")
        .await;
    line(
        &p,
        "rotation",
        CheckStatus::Fail,
        Some("RotationNotEnabled"),
    );

    // secret: a user name whose clone would not fit the engine's limit (alternating users).
    if let Some(limit) = engine.profile().max_username_bytes {
        let mut v = good.clone();
        v["username"] = json!("u".repeat(limit));
        v["masterarn"] = json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:m-abcdef");
        env.put("long-name", &v).await;
        let p = env
            .rotation_on(env.store.clone(), Strategy::AlternatingUsers)
            .plan("long-name")
            .await;
        line(&p, "secret", CheckStatus::Fail, Some("UsernameTooLong"));
        line(&p, "login", CheckStatus::Skip, None);
    }
}
