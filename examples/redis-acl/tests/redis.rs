//! The Redis ACL engine against a real `redis-server` (ACLs on, password authentication,
//! started by the testkit): both strategies, step by step with `AWSCURRENT` checked after each
//! step, over verified TLS with the preflight, a master without the right, and `ACL SETUSER`
//! commands held in the network and delivered after a newer rotation. The toolkit's promise
//! suites, its kill -9 sweep and its end-to-end run hold it too (`tests/`, through
//! `src/testing.rs`), through `rotation_cli::main` and `rotation_lambda::run` over this engine:
//! the calls `redis-acl-rotate` and `redis-acl` (its Lambda function) are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_acl_rotation::{PROFILE, RedisAclRotator};
use rotation_core::plan::CheckStatus;
use rotation_core::{
    AbortMode, EventStep, LocalSecretStore, Options, PasswordPolicy, Rotation, RotationEvent,
    SecretStore, Stage, Step, Strategy, VersionSelector,
};
use rotation_testkit::{RedisServer, TcpProxy, Wire};
use rotation_trust::{ConnectSettings, Trust};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const INITIAL: &str = "Initial-pw-1-long-enough";

struct Setup {
    server: RedisServer,
    /// In front of the server for the master secret's connections (`Setup::proxied`).
    proxy: Option<TcpProxy>,
    store: LocalSecretStore,
    settings: ConnectSettings,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A server with user `app` (its own keys, read and write commands) and secrets `master`
    /// (the admin) and `app` (naming the master).
    async fn start(tls: bool) -> Setup {
        Setup::start_with(tls, false).await
    }

    /// A plaintext server whose secrets connect through a RESP-aware proxy, so that a test can
    /// hold the master's `ACL SETUSER` in the network.
    async fn proxied() -> Setup {
        Setup::start_with(false, true).await
    }

    async fn start_with(tls: bool, proxied: bool) -> Setup {
        let server =
            RedisServer::start(tls).expect("start redis-server (scripts/setup installs it)");
        server
            .cli(&[
                "ACL",
                "SETUSER",
                "app",
                "on",
                &format!(">{INITIAL}"),
                "~app:*",
                "&*",
                "-@all",
                "+@read",
                "+@write",
                "+ping",
            ])
            .unwrap();
        let settings = match server.ca_pem() {
            Some(ca) => ConnectSettings::with_trust(Arc::new(Trust::load(Some(ca)).unwrap())),
            None => ConnectSettings::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let proxy = proxied
            .then(|| TcpProxy::to_port_with(server.port(), Wire::Resp).expect("start the proxy"));
        let setup = Setup {
            server,
            proxy,
            store,
            settings,
            _dir: dir,
        };
        let master = setup.secret(setup.server.admin(), setup.server.admin_password(), None);
        let arn = setup.put("master", &master).await;
        setup
            .put("app", &setup.secret("app", INITIAL, Some(&arn)))
            .await;
        setup
    }

    fn secret(&self, user: &str, password: &str, masterarn: Option<&str>) -> Value {
        let tls = self.server.ca_pem().is_some();
        let mut v = json!({"engine": "redis", "host": if tls { self.server.tls_host() } else { self.server.host() },
            "port": self.server.port(), "username": user, "password": password, "ssl": tls});
        if let Some(proxy) = &self.proxy {
            v["host"] = json!("127.0.0.1");
            v["port"] = json!(proxy.port());
        }
        if let Some(arn) = masterarn {
            v["masterarn"] = json!(arn);
        }
        v
    }

    async fn put(&self, name: &str, value: &Value) -> String {
        self.store
            .create_secret(name, &SecretString::from(value.to_string()))
            .await
            .unwrap()
    }

    fn rotation(&self, strategy: Strategy) -> Rotation<LocalSecretStore, RedisAclRotator> {
        Rotation::new(
            self.store.clone(),
            RedisAclRotator::new(strategy, self.settings.clone()),
            PasswordPolicy::defaults(&PROFILE.password),
        )
    }

    /// A rotation whose steps give up after 2 s, so a step whose command the proxy holds
    /// fails soon.
    fn short_steps(&self, strategy: Strategy) -> Rotation<LocalSecretStore, RedisAclRotator> {
        self.rotation(strategy).with_options(Options {
            step_timeout: Duration::from_secs(2),
            ..Options::default()
        })
    }

    async fn value(&self, name: &str, stage: Stage) -> Value {
        let v = self
            .store
            .get_value(name, VersionSelector::stage(stage))
            .await
            .unwrap();
        serde_json::from_str(v.value.expose_secret()).unwrap()
    }

    /// Whether a secret value's credentials log in (checked with redis-cli).
    fn logs_in(&self, v: &Value) -> bool {
        self.server
            .logs_in(
                v["username"].as_str().unwrap(),
                v["password"].as_str().unwrap(),
            )
            .unwrap()
    }

    /// `user`'s rules as `ACL LIST` shows them, passwords left out.
    fn rules(&self, user: &str) -> String {
        let list = self.server.cli(&["ACL", "LIST"]).unwrap();
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

    /// `user`'s rights as `ACL GETUSER` shows them: commands, keys, channels, selectors (its
    /// flags and passwords left out).
    fn rights(&self, user: &str) -> String {
        let out = self.server.cli(&["ACL", "GETUSER", user]).unwrap();
        let at = out
            .find("commands\n")
            .unwrap_or_else(|| panic!("no user {user}: {out}"));
        out[at..].to_string()
    }

    /// How many passwords `user` has.
    fn passwords(&self, user: &str) -> usize {
        let list = self.server.cli(&["ACL", "LIST"]).unwrap();
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
fn failed_setusers(s: &Setup) -> u64 {
    let info = s.server.cli(&["INFO", "commandstats"]).unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_acl|setuser:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("failed_calls=")))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Releases the command the proxy holds and waits until Redis has refused it (one more failed
/// `ACL SETUSER` in `INFO commandstats`): the late command reached the server.
async fn deliver_late_and_see_it_refused(s: &Setup, proxy: &TcpProxy) {
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
    let s = Setup::start(false).await;
    let rotation = s.rotation(Strategy::SingleUser);
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
            assert!(s.logs_in(&current), "AWSCURRENT fails after {step:?}");
            if step == Step::SetSecret {
                // Both passwords work between setSecret and finishSecret.
                let pending = s.value("app", Stage::Pending).await;
                assert!(s.logs_in(&pending));
                assert_eq!(s.passwords("app"), 2);
            }
        }
        // After finishSecret only the new password works.
        assert_eq!(s.passwords("app"), 1);
        let previous = s.value("app", Stage::Previous).await;
        assert!(!s.logs_in(&previous), "the replaced password still works");
    }
    let after = s.value("app", Stage::Current).await;
    assert_ne!(after["password"], before["password"]);
    // The user's rules are untouched; Redis holds the password only as a hash.
    assert_eq!(s.rules("app"), rules);
    let list = s.server.cli(&["ACL", "LIST"]).unwrap();
    assert!(!list.contains(after["password"].as_str().unwrap()));
}

#[tokio::test]
async fn alternating_users_make_the_clone_from_the_original() {
    let s = Setup::start(false).await;
    let rotation = s.rotation(Strategy::AlternatingUsers);
    let mut previous = s.value("app", Stage::Current).await;
    for (round, user) in ["app_clone", "app", "app_clone"].into_iter().enumerate() {
        rotation
            .rotate("app")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let current = s.value("app", Stage::Current).await;
        assert_eq!(current["username"], json!(user));
        assert!(s.logs_in(&current), "round {round}");
        // The previous user keeps working until the next rotation.
        assert!(
            s.logs_in(&previous),
            "round {round}: AWSPREVIOUS stopped working"
        );
        assert_eq!(s.rights("app_clone"), s.rights("app"), "round {round}");
        previous = current;
    }
    // The original's first password was replaced in the second round.
    assert!(!s.server.logs_in("app", INITIAL).unwrap());
}

#[tokio::test]
async fn verified_tls_and_the_preflight() {
    let s = Setup::start(true).await;
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let rotation = s.rotation(strategy);
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
        assert!(s.logs_in(&s.value("app", Stage::Current).await));
    }
    // Without the test CA, TLS does not verify and nothing changes.
    let untrusting = Rotation::new(
        s.store.clone(),
        RedisAclRotator::new(Strategy::SingleUser, ConnectSettings::default()),
        PasswordPolicy::defaults(&PROFILE.password),
    );
    let plan = untrusting.plan("app").await;
    assert_eq!(plan.check("tls").unwrap().status, CheckStatus::Fail);
    assert_eq!(
        plan.check("tls").unwrap().kind.as_deref(),
        Some("TlsFailed")
    );
    let before = s.value("app", Stage::Current).await;
    assert!(untrusting.rotate("app").await.is_err());
    assert_eq!(s.value("app", Stage::Current).await, before);
    assert!(s.logs_in(&before));
}

#[tokio::test]
async fn a_master_without_acl_rights_is_reported_and_changes_nothing() {
    let s = Setup::start(false).await;
    s.server
        .cli(&[
            "ACL",
            "SETUSER",
            "weak",
            "on",
            ">Weak-pw-1-long-enough",
            "~*",
            "+@all",
            "-@admin",
        ])
        .unwrap();
    let weak = s
        .put("weak", &s.secret("weak", "Weak-pw-1-long-enough", None))
        .await;
    s.put("app-weak", &s.secret("app", INITIAL, Some(&weak)))
        .await;
    let rotation = s.rotation(Strategy::SingleUser);
    let plan = rotation.plan("app-weak").await;
    let rights = plan.check("rights").unwrap();
    assert_eq!(rights.status, CheckStatus::Fail, "{:#?}", plan.checks);
    assert_eq!(rights.kind.as_deref(), Some("PermissionDenied"));
    let e = rotation.rotate("app-weak").await.unwrap_err();
    assert_eq!(e.kind(), "SetPasswordFailed", "{e}");
    assert!(s.server.logs_in("app", INITIAL).unwrap());
    assert_eq!(s.passwords("app"), 1);
}

#[tokio::test]
async fn the_clone_gets_exactly_odd_rules() {
    let s = Setup::start(false).await;
    // A selector whose key pattern holds a `)`, read-only key patterns, channels reset: the
    // clone must get exactly these rights and no more.
    s.server
        .cli(&[
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
        ])
        .unwrap();
    s.rotation(Strategy::AlternatingUsers)
        .rotate("app")
        .await
        .unwrap();
    assert_eq!(s.rights("app_clone"), s.rights("app"));
    for user in ["app", "app_clone"] {
        let del = s
            .server
            .cli(&["ACL", "DRYRUN", user, "DEL", "app:victim"])
            .unwrap();
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
    let s = Setup::proxied().await;
    let proxy = s.proxy.as_ref().unwrap();
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
        s.logs_in(&second) && s.logs_in(&first),
        "the drop did not land"
    );
    // A newer rotation drops both older passwords (its command has 5 arguments: not held).
    rotation.rotate("app").await.expect("third rotation");
    let third = s.value("app", Stage::Current).await;
    assert!(!s.logs_in(&first) && !s.logs_in(&second));
    deliver_late_and_see_it_refused(&s, proxy).await;
    assert!(s.logs_in(&third), "AWSCURRENT logs in after the late drop");
    assert_eq!(s.passwords("app"), 1);
}

/// Alternating users: an aborted rotation's setSecret on the clone, held in the network until
/// a newer rotation made the clone `AWSCURRENT`, then delivered. It removes the clone's
/// password of that time by its hash, which the newer rotation already removed, so Redis
/// refuses all of it (with `resetpass` it would have replaced the clone's current password).
#[tokio::test]
async fn late_clone_update_from_an_aborted_rotation_cannot_lock_out() {
    let s = Setup::proxied().await;
    let proxy = s.proxy.as_ref().unwrap();
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
    assert!(s.logs_in(&current));
    deliver_late_and_see_it_refused(&s, proxy).await;
    assert!(
        s.logs_in(&current),
        "AWSCURRENT logs in after the late command"
    );
    assert!(
        !s.logs_in(&aborted),
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
    let s = Setup::proxied().await;
    let proxy = s.proxy.as_ref().unwrap();
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
    s.server.cli(&["ACL", "SETUSER", "app", "-del"]).unwrap();
    rotation.rotate("app").await.expect("newer rotation");
    let current = s.value("app", Stage::Current).await;
    assert_eq!(current["username"], "app_clone");
    let rights = s.rights("app_clone");
    deliver_late_and_see_it_refused(&s, proxy).await;
    assert!(
        s.logs_in(&current),
        "AWSCURRENT logs in after the late remake"
    );
    assert!(
        !s.logs_in(&aborted),
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
    let s = Setup::start(false).await;
    let rotation = s.rotation(Strategy::SingleUser);
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
    assert!(s.logs_in(&pending));
    // The earlier finishSecret, delivered again.
    run(Step::FinishSecret, &first).await.unwrap();
    assert!(
        s.logs_in(&pending),
        "the replay dropped the newer pending password"
    );
    run(Step::TestSecret, &second).await.unwrap();
    run(Step::FinishSecret, &second).await.unwrap();
    assert!(s.logs_in(&s.value("app", Stage::Current).await));
    assert_eq!(s.passwords("app"), 1);
}

/// Single user: an abort after setSecret (the new password added beside the current one)
/// proves `AWSCURRENT` logs in, then drops the abandoned password through the master.
#[tokio::test]
async fn single_user_abort_drops_the_abandoned_password() {
    let s = Setup::start(false).await;
    let rotation = s.rotation(Strategy::SingleUser);
    let t = token(1);
    s.store.start_rotation("app", &t).await.unwrap();
    for step in [Step::CreateSecret, Step::SetSecret] {
        rotation
            .handle(&RotationEvent::new(step, "app", &t))
            .await
            .unwrap();
    }
    let abandoned = s.value("app", Stage::Pending).await;
    assert!(s.logs_in(&abandoned));
    assert_eq!(s.passwords("app"), 2);
    let report = rotation.abort("app", AbortMode::Safe).await.unwrap();
    assert!(report.current_verified);
    assert!(!s.logs_in(&abandoned), "the abandoned password still works");
    assert!(s.logs_in(&s.value("app", Stage::Current).await));
    assert_eq!(s.passwords("app"), 1);
}

/// Alternating users: a right revoked from the original while setSecret remakes the clone. The
/// read-back compares the clone with the original as it is then, finds it differs, and the
/// clone never gets the new password; the retried setSecret remakes it with the right rights.
#[tokio::test]
async fn a_clone_with_other_rights_never_gets_the_password() {
    let s = Setup::proxied().await;
    let proxy = s.proxy.as_ref().unwrap();
    let rotation = s.rotation(Strategy::AlternatingUsers);
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
            s.server.cli(&["ACL", "SETUSER", "app", "-del"]).unwrap();
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
        !s.logs_in(&pending),
        "a clone with other rights got the password"
    );
    // The retry remakes it from app's rights as they are.
    rotation
        .handle(&RotationEvent::new(Step::SetSecret, "app", &t))
        .await
        .expect("the retry");
    assert!(s.logs_in(&pending));
    assert_eq!(s.rights("app_clone"), s.rights("app"));
    assert!(!s.rights("app_clone").contains("+del"));
}

/// A `nopass` user logs in with any password: the preflight and the rotation refuse it.
#[tokio::test]
async fn a_nopass_user_is_refused() {
    let s = Setup::start(false).await;
    s.server.cli(&["ACL", "SETUSER", "app", "nopass"]).unwrap();
    let rotation = s.rotation(Strategy::SingleUser);
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
