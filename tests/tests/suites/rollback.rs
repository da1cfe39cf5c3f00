//! `rollback`: the previous credentials back after a rotation that clients could not follow
//! (issue 20, item 4), on every engine and strategy against real servers, with the stage moves
//! on both stores, and what it refuses.

use rotation_core::store::{SecretStore, StageMove};
use rotation_core::{AbortMode, RotationError, RotationEvent, Stage, Step, Strategy};
use rotation_tests::all_rotators;
use rotation_tests::engines::{Engine, Env};
use rotation_tests::fixture::Fixture;
use rotation_tests::{Kind, both_stores};
use secrecy::SecretString;
use serde_json::{Value, json};

all_rotators!(rolls_back_and_forward);
both_stores!(
    stages_after_a_rollback,
    refused_without_previous_or_with_a_rotation_in_flight,
    a_rollback_restores_the_keys_a_put_changed
);

const INITIAL: &str = "Initial-pw-1-long-enough";

/// The labels of every version, by version id.
async fn stages(env: &Env, name: &str) -> Vec<(String, Vec<String>)> {
    let d = env.store.describe(name).await.unwrap();
    d.versions
        .iter()
        .map(|(v, s)| (v.clone(), s.labels()))
        .collect()
}

/// The version carrying `stage` on secret `app`.
async fn holder(env: &Env, stage: Stage) -> Option<String> {
    let d = env.store.describe("app").await.unwrap();
    d.version_with(stage).map(str::to_string)
}

async fn rolls_back_and_forward(engine: Engine, strategy: Strategy) {
    let env = Env::plain(engine);
    env.create_user("app", INITIAL);
    let mut value = env.plain_secret("app", INITIAL);
    value["team"] = json!("payments");
    if strategy == Strategy::AlternatingUsers {
        let arn = env
            .put("master", &env.master_secret(Some(json!(false))))
            .await;
        value["masterarn"] = json!(arn);
    }
    env.put("app", &value).await;
    let r = env.rotation_on(env.store.clone(), strategy);

    // Never rotated: nothing to roll back to, and nothing changes.
    let before = stages(&env, "app").await;
    let e = r.rollback("app").await.unwrap_err();
    assert!(matches!(e, RotationError::NoPreviousVersion { .. }), "{e}");
    assert_eq!(stages(&env, "app").await, before);

    let rotated = r.rotate("app").await.unwrap();
    let new: Value = env.value("app", Stage::Current).await;
    assert!(env.logs_in(&new).await);

    // Roll back: the first credentials are AWSCURRENT again and log in; the rotated version is
    // AWSPREVIOUS.
    let report = r.rollback("app").await.expect("rollback");
    let current = env.value("app", Stage::Current).await;
    assert_eq!(
        current, value,
        "AWSCURRENT is the first value, every key kept"
    );
    assert!(env.logs_in(&current).await, "the first credentials log in");
    let previous = env.value("app", Stage::Previous).await;
    assert_eq!(previous, new);
    assert_eq!(
        env.store
            .describe("app")
            .await
            .unwrap()
            .rotation_in_flight(),
        None
    );
    match strategy {
        // One user: the database was set back, so the rotated password no longer logs in.
        Strategy::SingleUser => assert!(!env.logs_in(&new).await),
        // Two users: the rotated user keeps its password (the next rotation changes it).
        Strategy::AlternatingUsers => assert!(env.logs_in(&new).await),
    }
    assert_ne!(
        report.token, rotated.token,
        "the rollback's version is the first one"
    );

    // A second rollback rolls forward.
    r.rollback("app").await.expect("roll forward");
    let current = env.value("app", Stage::Current).await;
    assert_eq!(current, new);
    assert!(env.logs_in(&current).await);
    assert_eq!(env.value("app", Stage::Previous).await, value);

    // A rotation in flight is refused, changing nothing.
    let token = rotation_tests::token();
    env.store.start_rotation("app", &token).await.unwrap();
    let before = stages(&env, "app").await;
    let e = r.rollback("app").await.unwrap_err();
    assert!(matches!(e, RotationError::RotationInFlight { .. }), "{e}");
    assert_eq!(stages(&env, "app").await, before);
    r.abort("app", AbortMode::Safe).await.unwrap();

    // A rollback stopped half-way (its process killed after setSecret) is a rotation in
    // flight: `abort` undoes it and `resume` finishes it, with AWSCURRENT logging in after each.
    for finish in [false, true] {
        let previous_id = holder(&env, Stage::Previous).await.unwrap();
        let pending_on = holder(&env, Stage::Pending).await;
        env.store
            .update_stage(
                "app",
                StageMove {
                    stage: Stage::Pending,
                    move_to: Some(&previous_id),
                    remove_from: pending_on.as_deref(),
                },
            )
            .await
            .unwrap();
        for step in [Step::CreateSecret, Step::SetSecret] {
            r.handle(&RotationEvent::new(step, "app", &previous_id))
                .await
                .unwrap();
        }
        if finish {
            r.resume("app").await.expect("resume finishes the rollback");
        } else {
            r.abort("app", AbortMode::Safe)
                .await
                .expect("abort undoes it");
        }
        let current = env.value("app", Stage::Current).await;
        assert!(env.logs_in(&current).await, "finish={finish}");
    }

    // An AWSPREVIOUS for another database than AWSCURRENT's: refused before anything
    // changes (setSecret would refuse it, after the stage was attached).
    let current_id = holder(&env, Stage::Current).await.unwrap();
    let mut v = env.value("app", Stage::Current).await;
    v["dbname"] = json!("another_db");
    env.store
        .put_current("app", &SecretString::from(v.to_string()), Some(&current_id))
        .await
        .unwrap();
    let before = stages(&env, "app").await;
    let e = r.rollback("app").await.unwrap_err();
    // Alternating users: AWSPREVIOUS is now the same user as AWSCURRENT, not its partner.
    let refused = match strategy {
        Strategy::SingleUser => "ServerMismatch",
        Strategy::AlternatingUsers => "UserMismatch",
    };
    assert_eq!(e.kind(), refused, "{e}");
    assert_eq!(stages(&env, "app").await, before);
}

async fn stages_after_a_rollback(kind: Kind) {
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let f = Fixture::new(kind, strategy).await;
        let first = f.rotation.status(&f.secret).await.unwrap();
        let first_id = first.version_with(Stage::Current).unwrap().to_string();
        let first_value = f.current().await;
        let rotated = f.rotation.rotate(&f.secret).await.unwrap();
        f.rotation.rollback(&f.secret).await.expect("rollback");
        let d = f.rotation.status(&f.secret).await.unwrap();
        assert_eq!(d.version_with(Stage::Current), Some(first_id.as_str()));
        assert_eq!(
            d.version_with(Stage::Previous),
            Some(rotated.token.as_str())
        );
        assert_eq!(d.rotation_in_flight(), None);
        assert_eq!(f.current().await, first_value);
        assert!(f.current_logs_in().await, "{kind:?} {strategy:?}");
    }
}

async fn refused_without_previous_or_with_a_rotation_in_flight(kind: Kind) {
    let f = Fixture::new(kind, Strategy::SingleUser).await;
    let before = f.rotation.status(&f.secret).await.unwrap();
    let e = f.rotation.rollback(&f.secret).await.unwrap_err();
    assert_eq!(e.kind(), "NoPreviousVersion");
    assert_eq!(f.rotation.status(&f.secret).await.unwrap(), before);

    f.rotation.rotate(&f.secret).await.unwrap();
    let t = rotation_tests::token();
    f.svc.start_rotation(&f.secret, &t).await;
    let before = f.rotation.status(&f.secret).await.unwrap();
    let e = f.rotation.rollback(&f.secret).await.unwrap_err();
    assert_eq!(e.kind(), "RotationInFlight");
    assert_eq!(f.rotation.status(&f.secret).await.unwrap(), before);
    f.rotation.abort(&f.secret, AbortMode::Force).await.unwrap();

    // An AWSPREVIOUS whose password breaks the engine's rules (the fake engine's: at least 4
    // characters): the fault is the value's, said before the pending stage is attached.
    let short = f.current_with_password("Q7z").await;
    f.db.add_user("app", &SecretString::from("Q7z"));
    f.put_current(&short).await;
    f.put_current(&f.current_with_password("Set-by-hand-2").await)
        .await;
    let before = f.rotation.status(&f.secret).await.unwrap();
    let e = f.rotation.rollback(&f.secret).await.unwrap_err();
    assert_eq!(e.category(), rotation_core::ErrorCategory::Secret, "{e}");
    assert!(e.to_string().contains("AWSPREVIOUS"), "{e}");
    assert!(!e.to_string().contains("Q7z"), "{e}");
    assert_eq!(f.rotation.status(&f.secret).await.unwrap(), before);
}

async fn a_rollback_restores_the_keys_a_put_changed(kind: Kind) {
    // A rollback's pending value is AWSPREVIOUS itself, whose keys may differ from AWSCURRENT's
    // on purpose: setSecret's check that a pending value was built from AWSCURRENT does not
    // apply to it.
    let f = Fixture::new(kind, Strategy::SingleUser).await;
    f.rotation.rotate(&f.secret).await.unwrap();
    let rotated = f.current().await;
    // An operator sets a password by hand and stores it with another key changed.
    let mut put = rotated.clone();
    put["password"] = json!("Set-by-hand-1");
    put["team"] = json!("another team");
    f.db.add_user(
        rotated["username"].as_str().unwrap(),
        &SecretString::from("Set-by-hand-1"),
    );
    f.put_current(&put).await;
    f.rotation
        .rollback(&f.secret)
        .await
        .expect("rollback to the value before the put");
    assert_eq!(f.current().await, rotated);
    assert!(f.current_logs_in().await);
}
