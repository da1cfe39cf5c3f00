//! The Redis ACL engine against a real `redis-server` (ACLs on, password authentication,
//! started by the testkit), on the one test environment (`rotation_testkit::Env`) that the
//! built-in engines' suites use, through this engine's `testing` server: both strategies, step by step with `AWSCURRENT` checked after each
//! step, over verified TLS with the preflight, a master without the right, and `ACL SETUSER`
//! commands held in the network and delivered after a newer rotation. The toolkit's promise
//! suites, its kill -9 sweep and its end-to-end run hold it too (`tests/`, through
//! `src/testing.rs`), through `rotation_cli::main` and `rotation_lambda::run` over this engine:
//! the calls `redis-acl-rotate` and `redis-acl` (its Lambda function) are.

use std::time::{Duration, Instant};

use redis_acl_rotation::RedisAclRotator;
use redis_acl_rotation::testing::{REDIS, RedisTestServer};
use rotation_core::plan::CheckStatus;
use rotation_core::{
    AbortMode, EventStep, LocalSecretStore, Options, Rotation, RotationEvent, Stage, Step, Strategy,
};
use rotation_testkit::TcpProxy;
use rotation_testkit::env::{Engine, EngineRotation, Env};
use rotation_trust::ConnectSettings;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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
    /// A rotation whose steps give up after 2 s, so a step whose command the proxy holds
    /// fails soon.
    fn short_steps(&self, strategy: Strategy) -> EngineRotation;
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

    fn short_steps(&self, strategy: Strategy) -> EngineRotation {
        self.rotation_on(self.store.clone(), strategy)
            .with_options(Options {
                step_timeout: Duration::from_secs(2),
                ..Options::default()
            })
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

/// The ACL hash of a password: 64 hex digits.
fn sha256_hex(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How many `ACL SETUSER` calls the server has refused (`INFO commandstats`).
fn failed_setusers(s: &Env) -> u64 {
    let info = s.redis().cli(&["INFO", "commandstats"]);
    info.lines()
        .find(|l| l.starts_with("cmdstat_acl|setuser:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("failed_calls=")))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Releases the command the proxy holds and waits until Redis has refused it (one more failed
/// `ACL SETUSER` in `INFO commandstats`): the late command reached the server.
async fn deliver_late_and_see_it_refused(s: &Env, proxy: &TcpProxy) {
    let refused = failed_setusers(s);
    proxy.resume();
    let started = Instant::now();
    while failed_setusers(s) == refused && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        failed_setusers(s),
        refused + 1,
        "the late command reached the server and was refused"
    );
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

/// Single user: finishSecret's drop of the other passwords, held in the network until a newer
/// rotation has finished, then delivered. It names the password it removes (`!<hash>`), which
/// the newer rotation already removed, so Redis refuses all of it; a `resetpass` here would
/// have left the user only the older rotation's password.
#[tokio::test]
async fn late_drop_of_the_other_passwords_cannot_lock_out() {
    let s = start(false).await;
    let proxy = s.front();
    let rotation = s.short_steps(Strategy::SingleUser);
    rotation.rotate("app").await.expect("first rotation");
    let first = s.value("app", Stage::Current).await;
    // The next drop removes only the first rotation's password: a 4-argument ACL SETUSER on
    // app whose last argument is a removal.
    proxy.stall_on_query("*4\r\n$3\r\nACL\r\n$7\r\nSETUSER\r\n$3\r\napp\r\n$65\r\n!");
    rotation
        .rotate("app")
        .await
        .expect("a failed drop is not the step's failure");
    assert_eq!(proxy.stalls_triggered(), 1, "the drop was held");
    let second = s.value("app", Stage::Current).await;
    assert!(
        s.cli_logs_in(&second) && s.cli_logs_in(&first),
        "the drop did not land"
    );
    // A newer rotation drops both older passwords (its command has 5 arguments: not held).
    rotation.rotate("app").await.expect("third rotation");
    let third = s.value("app", Stage::Current).await;
    assert!(!s.cli_logs_in(&first) && !s.cli_logs_in(&second));
    deliver_late_and_see_it_refused(&s, proxy).await;
    assert!(
        s.cli_logs_in(&third),
        "AWSCURRENT logs in after the late drop"
    );
    assert_eq!(s.passwords("app"), 1);
}

/// Alternating users: an aborted rotation's setSecret on the clone, held in the network until
/// a newer rotation made the clone `AWSCURRENT`, then delivered. It removes the clone's
/// password of that time by its hash, which the newer rotation already removed, so Redis
/// refuses all of it (with `resetpass` it would have replaced the clone's current password).
#[tokio::test]
async fn late_clone_update_from_an_aborted_rotation_cannot_lock_out() {
    let s = start(false).await;
    let proxy = s.front();
    let rotation = s.short_steps(Strategy::AlternatingUsers);
    // app_clone, then app again: the clone has a password of its own.
    rotation.rotate("app").await.expect("first rotation");
    rotation.rotate("app").await.expect("second rotation");
    assert_eq!(s.value("app", Stage::Current).await["username"], "app");
    // The third rotation's setSecret on the clone is held (matched by its new password's
    // hash), fails at its deadline, and the rotation is aborted.
    let t = token(3);
    s.store.start_rotation("app", &t).await.unwrap();
    rotation
        .handle(&RotationEvent::new(Step::CreateSecret, "app", &t))
        .await
        .unwrap();
    let aborted = s.value("app", Stage::Pending).await;
    assert_eq!(aborted["username"], "app_clone");
    let held = format!("#{}", sha256_hex(aborted["password"].as_str().unwrap()));
    proxy.stall_on_query(&held);
    let set = rotation
        .handle(&RotationEvent::new(Step::SetSecret, "app", &t))
        .await;
    assert!(set.is_err(), "the clone's ACL SETUSER is held");
    assert_eq!(proxy.stalls_triggered(), 1);
    rotation
        .abort("app", AbortMode::Safe)
        .await
        .expect("abort: AWSCURRENT (app) logs in");
    // A newer rotation makes the clone AWSCURRENT with another password.
    rotation.rotate("app").await.expect("fourth rotation");
    let current = s.value("app", Stage::Current).await;
    assert_eq!(current["username"], "app_clone");
    assert!(s.cli_logs_in(&current));
    deliver_late_and_see_it_refused(&s, proxy).await;
    assert!(
        s.cli_logs_in(&current),
        "AWSCURRENT logs in after the late command"
    );
    assert!(
        !s.cli_logs_in(&aborted),
        "the aborted version's password was not added"
    );
    assert_eq!(s.passwords("app_clone"), 1);
}

/// Alternating users: the first rotation's clone remake (the clone is new: it has no password
/// of its own to remove), held until a newer rotation made the clone `AWSCURRENT`, then
/// delivered. It removes the one-time fence password added just before it, which the newer
/// rotation removed, so Redis refuses all of it: neither the aborted password nor the rights of
/// that time come back.
#[tokio::test]
async fn late_first_clone_remake_cannot_change_the_clone() {
    let s = start(false).await;
    let proxy = s.front();
    let rotation = s.short_steps(Strategy::AlternatingUsers);
    let t = token(1);
    s.store.start_rotation("app", &t).await.unwrap();
    rotation
        .handle(&RotationEvent::new(Step::CreateSecret, "app", &t))
        .await
        .unwrap();
    let aborted = s.value("app", Stage::Pending).await;
    assert_eq!(aborted["username"], "app_clone");
    proxy.stall_on_query(&format!(
        "#{}",
        sha256_hex(aborted["password"].as_str().unwrap())
    ));
    let set = rotation
        .handle(&RotationEvent::new(Step::SetSecret, "app", &t))
        .await;
    assert!(set.is_err(), "the clone's remake is held");
    assert_eq!(proxy.stalls_triggered(), 1);
    rotation
        .abort("app", AbortMode::Safe)
        .await
        .expect("abort: AWSCURRENT (app) logs in");
    // The original loses a right; a newer rotation makes the clone AWSCURRENT with it.
    s.redis().cli(&["ACL", "SETUSER", "app", "-del"]);
    rotation.rotate("app").await.expect("newer rotation");
    let current = s.value("app", Stage::Current).await;
    assert_eq!(current["username"], "app_clone");
    let rights = s.rights("app_clone");
    deliver_late_and_see_it_refused(&s, proxy).await;
    assert!(
        s.cli_logs_in(&current),
        "AWSCURRENT logs in after the late remake"
    );
    assert!(
        !s.cli_logs_in(&aborted),
        "the aborted version's password came back"
    );
    assert_eq!(s.rights("app_clone"), rights, "the clone's rights changed");
    assert_eq!(s.passwords("app_clone"), 1);
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
