//! What only Redis ACL users show, against a real `redis-server` (ACLs on, password
//! authentication, started by the testkit) on the one test environment
//! (`rotation_testkit::Env`), through this engine's `testing` server: both strategies step by
//! step with `AWSCURRENT` checked after each step, verified TLS with the preflight, a master
//! without the right, odd rules copied to the clone, a replayed finishSecret, a `nopass` user.
//! The toolkit's promise suites hold it too (`tests/`: late changes held in the network, the
//! kill -9 sweep, the end-to-end run through `rotation_cli::main` and `rotation_lambda::run`).

use std::time::{Duration, Instant};

use redis_acl_rotation::RedisAclRotator;
use redis_acl_rotation::testing::{REDIS, RedisTestServer};
use rotation_core::plan::CheckStatus;
use rotation_core::{
    AbortMode, EventStep, LocalSecretStore, Rotation, RotationEvent, Stage, Step, Strategy,
};
use rotation_testkit::TcpProxy;
use rotation_testkit::env::{Engine, Env};
use rotation_trust::ConnectSettings;
use serde_json::{Value, json};

const INITIAL: &str = "Initial-pw-1-long-enough";

/// A server with user `app` (its own keys, read and write commands) and secret `app` naming
/// the admin's secret as its master; every secret reaches the server through its front proxy,
/// so that a test can hold the master's `ACL SETUSER` in the network.
async fn start(tls: bool) -> Env {
    let env = Env::start(&REDIS as Engine, tls);
    env.create_user("app", INITIAL);
    env.put("app", &env.secret("app", INITIAL, Some(json!(tls))))
        .await;
    env
}

/// What this suite needs of the environment beyond every engine's.
trait RedisEnv {
    fn redis(&self) -> &RedisTestServer;
    /// The proxy every secret names.
    fn front(&self) -> &TcpProxy;
    /// Whether a secret value's credentials log in (checked with redis-cli).
    fn cli_logs_in(&self, v: &Value) -> bool;
    /// `user`'s rules as `ACL LIST` shows them, passwords left out.
    fn rules(&self, user: &str) -> String;
    /// `user`'s rights as `ACL GETUSER` shows them: commands, keys, channels, selectors (its
    /// flags and passwords left out).
    fn rights(&self, user: &str) -> String;
    /// How many passwords `user` has.
    fn passwords(&self, user: &str) -> usize;
}

impl RedisEnv for Env {
    fn redis(&self) -> &RedisTestServer {
        self.server_as::<RedisTestServer>()
    }

    fn front(&self) -> &TcpProxy {
        self.redis().front()
    }

    fn cli_logs_in(&self, v: &Value) -> bool {
        self.server.logs_in_with_own_client(
            v["username"].as_str().unwrap(),
            v["password"].as_str().unwrap(),
        )
    }

    fn rules(&self, user: &str) -> String {
        let list = self.redis().cli(&["ACL", "LIST"]);
        let line = list
            .lines()
            .find(|l| l.starts_with(&format!("user {user} ")))
            .unwrap_or_else(|| panic!("no user {user}: {list}"));
        line.split(' ')
            .skip(2)
            .filter(|t| !t.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn rights(&self, user: &str) -> String {
        let out = self.redis().cli(&["ACL", "GETUSER", user]);
        let at = out
            .find("commands\n")
            .unwrap_or_else(|| panic!("no user {user}: {out}"));
        out[at..].to_string()
    }

    fn passwords(&self, user: &str) -> usize {
        let list = self.redis().cli(&["ACL", "LIST"]);
        let line = list
            .lines()
            .find(|l| l.starts_with(&format!("user {user} ")))
            .unwrap();
        line.split(' ').filter(|t| t.starts_with('#')).count()
    }
}

fn token(i: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:08x}-0000-4000-8000-{i:012x}")
}

#[tokio::test]
async fn single_user_adds_then_drops_and_awscurrent_never_fails() {
    let s = start(false).await;
    let rotation = s.single();
    let before = s.value("app", Stage::Current).await;
    let rules = s.rules("app");
    for round in 0..2 {
        let t = token(round);
        s.store.start_rotation("app", &t).await.unwrap();
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            let event = RotationEvent {
                step: EventStep::Known(step),
                secret_id: "app".into(),
                client_request_token: t.clone(),
                rotation_token: None,
            };
            rotation.handle(&event).await.unwrap();
            let current = s.value("app", Stage::Current).await;
            assert!(s.cli_logs_in(&current), "AWSCURRENT fails after {step:?}");
            if step == Step::SetSecret {
                // Both passwords work between setSecret and finishSecret.
                let pending = s.value("app", Stage::Pending).await;
                assert!(s.cli_logs_in(&pending));
                assert_eq!(s.passwords("app"), 2);
            }
        }
        // After finishSecret only the new password works.
        assert_eq!(s.passwords("app"), 1);
        let previous = s.value("app", Stage::Previous).await;
        assert!(
            !s.cli_logs_in(&previous),
            "the replaced password still works"
        );
    }
    let after = s.value("app", Stage::Current).await;
    assert_ne!(after["password"], before["password"]);
    // The user's rules are untouched; Redis holds the password only as a hash.
    assert_eq!(s.rules("app"), rules);
    let list = s.redis().cli(&["ACL", "LIST"]);
    assert!(!list.contains(after["password"].as_str().unwrap()));
}

#[tokio::test]
async fn alternating_users_make_the_clone_from_the_original() {
    let s = start(false).await;
    let rotation = s.alternating();
    let mut previous = s.value("app", Stage::Current).await;
    for (round, user) in ["app_clone", "app", "app_clone"].into_iter().enumerate() {
        rotation
            .rotate("app")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let current = s.value("app", Stage::Current).await;
        assert_eq!(current["username"], json!(user));
        assert!(s.cli_logs_in(&current), "round {round}");
        // The previous user keeps working until the next rotation.
        assert!(
            s.cli_logs_in(&previous),
            "round {round}: AWSPREVIOUS stopped working"
        );
        assert_eq!(s.rights("app_clone"), s.rights("app"), "round {round}");
        previous = current;
    }
    // The original's first password was replaced in the second round.
    assert!(!s.server.logs_in_with_own_client("app", INITIAL));
}

#[tokio::test]
async fn verified_tls_and_the_preflight() {
    let s = start(true).await;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let rotation = s.rotation_on(s.store.clone(), strategy);
        let plan = rotation.plan("app").await;
        assert!(plan.passed(), "{strategy}: {:#?}", plan.checks);
        let tls = plan.check("tls").unwrap();
        assert!(tls.detail.contains("anchored by ca-bundle"), "{tls:?}");
        for line in ["master", "master-login", "rights"] {
            assert_eq!(
                plan.check(line).unwrap().status,
                CheckStatus::Pass,
                "{line}"
            );
        }
        rotation.rotate("app").await.unwrap();
        assert!(s.cli_logs_in(&s.value("app", Stage::Current).await));
    }
    // Without the test CA, TLS does not verify and nothing changes.
    let untrusting: Rotation<LocalSecretStore, _> = s.rotation_with(RedisAclRotator::new(
        Strategy::SingleUser,
        ConnectSettings::default(),
    ));
    let plan = untrusting.plan("app").await;
    assert_eq!(plan.check("tls").unwrap().status, CheckStatus::Fail);
    assert_eq!(
        plan.check("tls").unwrap().kind.as_deref(),
        Some("TlsFailed")
    );
    let before = s.value("app", Stage::Current).await;
    assert!(untrusting.rotate("app").await.is_err());
    assert_eq!(s.value("app", Stage::Current).await, before);
    assert!(s.cli_logs_in(&before));
}

#[tokio::test]
async fn a_master_without_acl_rights_is_reported_and_changes_nothing() {
    let s = start(false).await;
    s.redis().cli(&[
        "ACL",
        "SETUSER",
        "weak",
        "on",
        ">Weak-pw-1-long-enough",
        "~*",
        "+@all",
        "-@admin",
    ]);
    let mut weak = s.plain_secret("weak", "Weak-pw-1-long-enough");
    weak.as_object_mut().unwrap().remove("masterarn");
    let weak = s.put("weak", &weak).await;
    let mut app = s.plain_secret("app", INITIAL);
    app["masterarn"] = json!(weak);
    s.put("app-weak", &app).await;
    let rotation = s.single();
    let plan = rotation.plan("app-weak").await;
    let rights = plan.check("rights").unwrap();
    assert_eq!(rights.status, CheckStatus::Fail, "{:#?}", plan.checks);
    assert_eq!(rights.kind.as_deref(), Some("PermissionDenied"));
    let e = rotation.rotate("app-weak").await.unwrap_err();
    assert_eq!(e.kind(), "SetPasswordFailed", "{e}");
    assert!(s.server.logs_in_with_own_client("app", INITIAL));
    assert_eq!(s.passwords("app"), 1);
}

#[tokio::test]
async fn the_clone_gets_exactly_odd_rules() {
    let s = start(false).await;
    // A selector whose key pattern holds a `)`, read-only key patterns, channels reset: the
    // clone must get exactly these rights and no more.
    s.redis().cli(&[
        "ACL",
        "SETUSER",
        "app",
        "reset",
        "on",
        &format!(">{INITIAL}"),
        "~app:*",
        "%R~ro:*",
        "+@read",
        "+ping",
        "(~tmp:) +ping +del +unlink +get|x)",
    ]);
    s.alternating().rotate("app").await.unwrap();
    assert_eq!(s.rights("app_clone"), s.rights("app"));
    for user in ["app", "app_clone"] {
        let del = s.redis().cli(&["ACL", "DRYRUN", user, "DEL", "app:victim"]);
        assert!(
            !del.trim().starts_with("OK"),
            "{user} may DEL app:victim: {del}"
        );
    }
}

/// Single user: a finishSecret replayed for an earlier, promoted version (which drops the
/// user's other passwords again, for a crash between promotion and drop) while a newer
/// rotation is in flight leaves the newer pending password alone.
#[tokio::test]
async fn a_replayed_finish_spares_a_newer_rotations_password() {
    let s = start(false).await;
    let rotation = s.single();
    let run = |step: Step, t: &str| {
        let event = RotationEvent::new(step, "app", t);
        let rotation = &rotation;
        async move { rotation.handle(&event).await }
    };
    let first = token(1);
    s.store.start_rotation("app", &first).await.unwrap();
    for step in [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ] {
        run(step, &first).await.unwrap();
    }
    let second = token(2);
    s.store.start_rotation("app", &second).await.unwrap();
    run(Step::CreateSecret, &second).await.unwrap();
    run(Step::SetSecret, &second).await.unwrap();
    let pending = s.value("app", Stage::Pending).await;
    assert!(s.cli_logs_in(&pending));
    // The earlier finishSecret, delivered again.
    run(Step::FinishSecret, &first).await.unwrap();
    assert!(
        s.cli_logs_in(&pending),
        "the replay dropped the newer pending password"
    );
    run(Step::TestSecret, &second).await.unwrap();
    run(Step::FinishSecret, &second).await.unwrap();
    assert!(s.cli_logs_in(&s.value("app", Stage::Current).await));
    assert_eq!(s.passwords("app"), 1);
}

/// Single user: an abort after setSecret (the new password added beside the current one)
/// proves `AWSCURRENT` logs in, then drops the abandoned password through the master.
#[tokio::test]
async fn single_user_abort_drops_the_abandoned_password() {
    let s = start(false).await;
    let rotation = s.single();
    let t = token(1);
    s.store.start_rotation("app", &t).await.unwrap();
    for step in [Step::CreateSecret, Step::SetSecret] {
        rotation
            .handle(&RotationEvent::new(step, "app", &t))
            .await
            .unwrap();
    }
    let abandoned = s.value("app", Stage::Pending).await;
    assert!(s.cli_logs_in(&abandoned));
    assert_eq!(s.passwords("app"), 2);
    let report = rotation.abort("app", AbortMode::Safe).await.unwrap();
    assert!(report.current_verified);
    assert!(
        !s.cli_logs_in(&abandoned),
        "the abandoned password still works"
    );
    assert!(s.cli_logs_in(&s.value("app", Stage::Current).await));
    assert_eq!(s.passwords("app"), 1);
}

/// Alternating users: a right revoked from the original while setSecret remakes the clone. The
/// read-back compares the clone with the original as it is then, finds it differs, and the
/// clone never gets the new password; the retried setSecret remakes it with the right rights.
#[tokio::test]
async fn a_clone_with_other_rights_never_gets_the_password() {
    let s = start(false).await;
    let proxy = s.front();
    let rotation = s.alternating();
    let t = token(1);
    s.store.start_rotation("app", &t).await.unwrap();
    rotation
        .handle(&RotationEvent::new(Step::CreateSecret, "app", &t))
        .await
        .unwrap();
    let pending = s.value("app", Stage::Pending).await;
    // Hold the remake (the command that resets the clone's keys) while app loses DEL.
    proxy.stall_on_query("resetkeys");
    let set = {
        let event = RotationEvent::new(Step::SetSecret, "app", &t);
        let set = rotation.handle(&event);
        let revoke = async {
            let started = Instant::now();
            while proxy.stalls_triggered() == 0 && started.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            s.redis().cli(&["ACL", "SETUSER", "app", "-del"]);
            proxy.resume();
        };
        tokio::join!(set, revoke).0
    };
    let e = set.expect_err("the clone's rights differ from app's now");
    assert!(
        format!("{e}").contains("did not get exactly app's rights"),
        "{e}"
    );
    assert!(
        !s.cli_logs_in(&pending),
        "a clone with other rights got the password"
    );
    // The retry remakes it from app's rights as they are.
    rotation
        .handle(&RotationEvent::new(Step::SetSecret, "app", &t))
        .await
        .expect("the retry");
    assert!(s.cli_logs_in(&pending));
    assert_eq!(s.rights("app_clone"), s.rights("app"));
    assert!(!s.rights("app_clone").contains("+del"));
}

/// A `nopass` user logs in with any password: the preflight and the rotation refuse it.
#[tokio::test]
async fn a_nopass_user_is_refused() {
    let s = start(false).await;
    s.redis().cli(&["ACL", "SETUSER", "app", "nopass"]);
    let rotation = s.single();
    let e = rotation.rotate("app").await.expect_err("nopass is refused");
    // setSecret finds the pending password logging in, and a wrong one too.
    assert_eq!(e.kind(), "PasswordsNotChecked", "{e}");
    // The preflight names the cause.
    let plan = rotation.plan("app").await;
    assert!(
        plan.checks
            .iter()
            .any(|c| c.status == CheckStatus::Fail && c.detail.contains("nopass")),
        "{:#?}",
        plan.checks
    );
    // Nothing was left in flight with a password nothing enforces.
    assert_eq!(s.passwords("app"), 0);
}
