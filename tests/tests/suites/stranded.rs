//! "No stranded password" against a real database of each engine: the failures an attack on
//! the CLI found, as regression tests. Each ends with the database on a password that a
//! labelled version holds, or that a later command recovers, never on one nothing can reach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::{
    AbortMode, Credentials, ErrorKind, Options, RotationError, RotationEvent, SecretStore, Stage,
    StageMove, Step, StepOutcome,
};
use rotation_testkit::TcpProxy;
use rotation_tests::engines::{Engine, EngineRotation, Env};
use rotation_tests::{all_engines, token};
use serde_json::{Value, json};

all_engines!(
    abort_with_the_database_down_changes_nothing,
    abort_waits_for_nobody_while_a_run_holds_the_secret,
    a_rotation_after_a_hand_removed_pending_label_recovers_the_password,
    a_stalled_connection_fails_the_step_before_its_deadline,
    other_secret_data_round_trips_exactly,
    single_user_abort_recovers_from_an_unlabelled_version,
);

/// A cluster reached through a fault-injecting proxy: the secret's port is the proxy's.
struct Proxied {
    env: Env,
    proxy: TcpProxy,
}

impl Proxied {
    fn start(engine: Engine) -> Proxied {
        let env = Env::plain(engine);
        let proxy = env.proxy();
        Proxied { env, proxy }
    }
    fn secret(&self, user: &str, password: &str) -> Value {
        let mut v = self.env.plain_secret(user, password);
        v["port"] = json!(self.proxy.port());
        v
    }
    fn rotation(&self, step_timeout: Duration) -> EngineRotation {
        self.env.single().with_options(Options {
            step_timeout,
            ..Options::default()
        })
    }
}

async fn steps(r: &EngineRotation, name: &str, token: &str, which: &[Step]) {
    for step in which {
        r.handle(&RotationEvent::new(*step, name, token))
            .await
            .unwrap_or_else(|e| panic!("{step}: {}", rotation_core::error_chain(&e)));
    }
}

/// A single-user rotation of "app" interrupted after setSecret, whose AWSPENDING label is then
/// removed by hand: the database holds the password of a version without a label. Returns
/// that version's value.
async fn interrupt_then_unlabel(env: &Env, r: &EngineRotation) -> Value {
    let t1 = token();
    env.store.start_rotation("app", &t1).await.unwrap();
    steps(r, "app", &t1, &[Step::CreateSecret, Step::SetSecret]).await;
    assert_eq!(
        env.logs_in(&env.value("app", Stage::Current).await).await,
        env.engine.limits().single_user_keeps_current
    );
    env.store
        .update_stage(
            "app",
            StageMove {
                stage: Stage::Pending,
                move_to: None,
                remove_from: Some(&t1),
            },
        )
        .await
        .unwrap();
    let v = env
        .store
        .get_value(
            "app",
            rotation_core::VersionSelector {
                version_id: Some(&t1),
                stage: None,
            },
        )
        .await
        .unwrap();
    serde_json::from_str(secrecy::ExposeSecret::expose_secret(&v.value)).unwrap()
}

async fn abort_with_the_database_down_changes_nothing(engine: Engine) {
    // Failure 2: abort after setSecret while the database is down used to remove AWSPENDING
    // and leave the database on the pending password.
    let p = Proxied::start(engine);
    p.env.create_user("app", "Initial-pw-1-long-enough");
    p.env
        .put("app", &p.secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = p.rotation(Duration::from_secs(10));
    let t = token();
    p.env.store.start_rotation("app", &t).await.unwrap();
    steps(&r, "app", &t, &[Step::CreateSecret, Step::SetSecret]).await;

    p.proxy.refuse_new();
    let before = p.env.store.describe("app").await.unwrap();
    let e = r.abort("app", AbortMode::Safe).await.unwrap_err();
    assert!(matches!(e, RotationError::AbortUnsafe { .. }), "{e}");
    assert_eq!(e.category().exit_code(), 3);
    let text = rotation_core::error_chain(&e);
    assert!(
        text.contains("AWSCURRENT") && text.contains("AWSPENDING"),
        "{text}"
    );
    assert_eq!(p.env.store.describe("app").await.unwrap(), before);

    // With the database back, abort sets the current password back, proves it, and only then
    // removes the label.
    p.proxy.accept_new();
    let report = r.abort("app", AbortMode::Safe).await.unwrap();
    let restored = if engine.limits().single_user_keeps_current {
        // The current password never stopped working: nothing to restore.
        None
    } else {
        Some(Credentials::Pending)
    };
    assert_eq!(report.restored_with, restored);
    assert!(report.current_verified);
    assert!(
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    );
    let d = p.env.store.describe("app").await.unwrap();
    assert_eq!(d.rotation_in_flight(), None);
}

async fn abort_waits_for_nobody_while_a_run_holds_the_secret(engine: Engine) {
    // Failure 3: abort succeeded while a run waited on a role lock; the run's password change
    // then went through. The run holds the secret's claim, so abort is refused and changes
    // nothing. (Engines with no server lock: the run's change is held in the network instead.)
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    // The run's password change will be held (PostgreSQL: another session holds the role's
    // row lock).
    let hold = env.hold_password_change("app").await;

    let run = Arc::new(env.single());
    let runner = {
        let run = run.clone();
        tokio::spawn(async move { run.rotate("app").await })
    };
    // Wait until the run is blocked at its password change.
    env.wait_until_held(hold.as_ref()).await;
    let e = env
        .single()
        .abort("app", AbortMode::Safe)
        .await
        .unwrap_err();
    assert!(matches!(e, RotationError::Busy { .. }), "{e}");
    assert_eq!(e.category().exit_code(), 3);

    hold.release().await;
    let report = runner.await.unwrap().unwrap();
    assert_eq!(report.steps.len(), 4);
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

async fn a_rotation_after_a_hand_removed_pending_label_recovers_the_password(engine: Engine) {
    // Failure 4 (W6): interrupted after setSecret, the operator removes AWSPENDING by hand (the
    // documented way out), a new rotation starts. The database holds the password of a version
    // that no longer has a label; setSecret finds it and carries on.
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = env.single();
    let unlabelled = interrupt_then_unlabel(&env, &r).await;
    let t2 = token();
    env.store.start_rotation("app", &t2).await.unwrap();
    r.handle(&RotationEvent::new(Step::CreateSecret, "app", &t2))
        .await
        .unwrap();
    let outcome = r
        .handle(&RotationEvent::new(Step::SetSecret, "app", &t2))
        .await
        .unwrap();
    if engine.limits().single_user_keeps_current {
        // The current password still logs in: nothing was stranded, nothing to recover.
        assert!(
            matches!(outcome, StepOutcome::PasswordSet(c) if c != Credentials::Recovered),
            "{outcome:?}"
        );
    } else {
        assert_eq!(outcome, StepOutcome::PasswordSet(Credentials::Recovered));
    }
    steps(&r, "app", &t2, &[Step::TestSecret, Step::FinishSecret]).await;
    if engine.limits().single_user_keeps_current {
        assert!(
            !env.logs_in(&unlabelled).await,
            "finishSecret left the abandoned rotation's password working"
        );
    }
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

/// Starts a rotation of "app", runs `before`, has `stall` hold the connection and runs
/// `stalled`: it must fail with a timeout before its deadline (3 s, with half a second to
/// spare; only this step is timed, so slow steps before it on a busy machine do not count).
/// Then the network is gone for good: connections reset, the held bytes never arrive. The
/// rotation stays in flight.
async fn stalled_step(
    p: &Proxied,
    r: &EngineRotation,
    before: &[Step],
    stall: impl FnOnce(&TcpProxy),
    stalled: Step,
) -> RotationError {
    let t = token();
    p.env.store.start_rotation("app", &t).await.unwrap();
    steps(r, "app", &t, before).await;
    stall(&p.proxy);
    let started = Instant::now();
    let e = r
        .handle(&RotationEvent::new(stalled, "app", &t))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "{stalled} took {took:?}"
    );
    assert_eq!(
        e.engine_kind(),
        Some(ErrorKind::Timeout),
        "{}",
        rotation_core::error_chain(&e)
    );
    p.proxy.drop_all();
    p.proxy.resume();
    e
}

async fn a_stalled_connection_fails_the_step_before_its_deadline(engine: Engine) {
    // Failure 5: a connection that stops forwarding at the password change, or at the first
    // query after login, used to hang the step until it was killed.
    let p = Proxied::start(engine);
    p.env.create_user("app", "Initial-pw-1-long-enough");
    p.env
        .put("app", &p.secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = p.rotation(Duration::from_secs(3));
    let current_logs_in = || async {
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    };

    let e = stalled_step(
        &p,
        &r,
        &[Step::CreateSecret],
        |proxy| proxy.stall_on_query(p.env.password_statement()),
        Step::SetSecret,
    )
    .await;
    assert!(
        matches!(e, RotationError::SetPasswordFailed { .. }),
        "{}",
        rotation_core::error_chain(&e)
    );
    assert!(current_logs_in().await);
    // The rotation in flight resumes once the database answers again.
    r.resume("app").await.unwrap();
    assert!(current_logs_in().await);

    // Stalled at testSecret's query.
    let e = stalled_step(
        &p,
        &r,
        &[Step::CreateSecret, Step::SetSecret],
        |proxy| proxy.stall_on_query(p.env.test_statement()),
        Step::TestSecret,
    )
    .await;
    assert!(matches!(e, RotationError::PendingTestFailed { .. }), "{e}");
    r.resume("app").await.unwrap();
    assert!(current_logs_in().await);

    // Stalled before the login completes.
    stalled_step(
        &p,
        &r,
        &[Step::CreateSecret],
        TcpProxy::stall,
        Step::SetSecret,
    )
    .await;
    r.resume("app").await.unwrap();
    assert!(current_logs_in().await);
}

async fn other_secret_data_round_trips_exactly(engine: Engine) {
    // Failure 6: big integers and precise decimals in extra keys were rewritten as floats.
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    let mut v = env.plain_secret("app", "Initial-pw-1-long-enough");
    v["team"] = json!("payments");
    let text = v
        .to_string()
        .replace(
            "\"team\":\"payments\"",
            "\"big\":12345678901234567890123,\"ratio\":0.1000000000000000000001,\"exp\":1e400,\"team\":\"payments\"",
        );
    env.store
        .create_secret("app", &secrecy::SecretString::from(text.clone()))
        .await
        .unwrap();
    env.single().rotate("app").await.unwrap();
    let rotated = env
        .store
        .get_value("app", rotation_core::VersionSelector::stage(Stage::Current))
        .await
        .unwrap();
    let rotated = secrecy::ExposeSecret::expose_secret(&rotated.value).to_string();
    for literal in [
        "\"big\":12345678901234567890123",
        "\"ratio\":0.1000000000000000000001",
        "\"exp\":1e400",
    ] {
        assert!(rotated.contains(literal), "{literal} lost");
    }
}

async fn single_user_abort_recovers_from_an_unlabelled_version(engine: Engine) {
    // The database holds the password of a version without a label, AWSCURRENT fails: abort
    // logs in with the unlabelled version, sets AWSCURRENT's password back, and proves it.
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = env.single();
    let unlabelled = interrupt_then_unlabel(&env, &r).await;
    let t2 = token();
    env.store.start_rotation("app", &t2).await.unwrap();
    steps(&r, "app", &t2, &[Step::CreateSecret]).await;
    let report = r.abort("app", AbortMode::Safe).await.unwrap();
    if engine.limits().single_user_keeps_current {
        // Nothing to restore; abort dropped the abandoned rotation's password.
        assert_eq!(report.restored_with, None);
        assert!(
            !env.logs_in(&unlabelled).await,
            "the abandoned rotation's password still logs in after abort"
        );
    } else {
        assert_eq!(report.restored_with, Some(Credentials::Recovered));
    }
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}
