//! W6: the database holds the password of a version that lost its label (an interrupted
//! rotation whose AWSPENDING was removed by hand, or a forced abort). Rotation and abort find
//! it among the unlabelled versions, newest first; an abort that cannot prove the current
//! credentials changes nothing unless forced.

use rotation_core::testing::Operation;
use rotation_core::{
    AbortMode, Credentials, ErrorCategory, ErrorKind, Options, RotationError, Stage, Step,
    StepOutcome, Strategy,
};
use rotation_tests::fixture::Fixture;
use rotation_tests::{Kind, both_stores, token};
use secrecy::SecretString;

both_stores!(
    rotation_recovers_from_an_unlabelled_version,
    abort_restores_current_through_an_unlabelled_version,
    abort_with_the_database_unreachable_is_refused_unless_forced,
);

/// A single-user rotation interrupted after setSecret: the database holds the pending
/// password, `AWSCURRENT` does not log in. Returns the token.
async fn interrupted_after_set_secret(f: &Fixture) -> String {
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    f.step(Step::SetSecret, &t).await.unwrap();
    let pending = f.svc.version_value(&f.secret, &t).await.unwrap();
    assert!(f.logs_in(&pending) && !f.current_logs_in().await);
    t
}

async fn rotation_recovers_from_an_unlabelled_version(kind: Kind) {
    let f = Fixture::new(kind, Strategy::SingleUser).await;
    let t = interrupted_after_set_secret(&f).await;
    // The operator's way out of a stuck rotation: remove AWSPENDING by hand.
    f.remove_pending(&t).await;
    assert_eq!(
        f.rotation
            .status(&f.secret)
            .await
            .unwrap()
            .rotation_in_flight(),
        None
    );
    f.store.reset();
    let report = f.rotation.rotate(&f.secret).await.unwrap();
    assert_eq!(
        report.steps[1],
        (
            Step::SetSecret,
            StepOutcome::PasswordSet(Credentials::Recovered)
        )
    );
    assert!(f.current_logs_in().await);
    assert_eq!(f.store.count(Operation::ListSecretVersionIds), 1);
    assert!(
        f.store
            .calls()
            .iter()
            .any(|c| c.operation == Operation::GetSecretValue
                && c.version_id.as_deref() == Some(t.as_str())
                && c.stage.is_none()),
        "the unlabelled version was read by id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_tries_the_newest_unlabelled_version_first() {
    // Two unlabelled versions, u1 older than u2. The local store keeps the order they were made
    // in (moto's creation dates have one-second resolution, so the order is proven here).
    for (db_on, logins, read) in [
        // The database on the newer one: pending, current, then u2; u1 is never read.
        ("newer-Password-2", 3, vec![1]),
        // On the older one: u2 is tried (and fails) before u1.
        ("older-Password-1", 4, vec![1, 0]),
    ] {
        let f = Fixture::new(Kind::Local, Strategy::SingleUser).await;
        let versions = [token(), token()];
        f.put_unlabelled(
            &versions[0],
            &f.current_with_password("older-Password-1").await,
        )
        .await;
        f.put_unlabelled(
            &versions[1],
            &f.current_with_password("newer-Password-2").await,
        )
        .await;
        f.db.add_user("app", &SecretString::from(db_on));
        let t = token();
        f.svc.start_rotation(&f.secret, &t).await;
        f.step(Step::CreateSecret, &t).await.unwrap();
        let before = f.db.logins();
        f.store.reset();
        assert_eq!(
            f.step(Step::SetSecret, &t).await.unwrap(),
            StepOutcome::PasswordSet(Credentials::Recovered),
            "{db_on}"
        );
        assert_eq!(f.db.logins() - before, logins, "{db_on}");
        let reads: Vec<usize> = f
            .store
            .calls()
            .iter()
            .filter_map(|c| {
                versions
                    .iter()
                    .position(|v| c.version_id.as_ref() == Some(v))
            })
            .collect();
        assert_eq!(reads, read, "{db_on}: unlabelled versions read, in order");
        f.step(Step::TestSecret, &t).await.unwrap();
        f.step(Step::FinishSecret, &t).await.unwrap();
        assert!(f.current_logs_in().await);
    }

    // recovery_limit bounds how many are tried: with 1, the older one is out of reach.
    let mut f = Fixture::new(Kind::Local, Strategy::SingleUser).await;
    f.rotation = f.rotation.with_options(Options {
        recovery_limit: 1,
        ..Options::default()
    });
    let older = token();
    f.put_unlabelled(&older, &f.current_with_password("older-Password-1").await)
        .await;
    f.put_unlabelled(&token(), &f.current_with_password("newer-Password-2").await)
        .await;
    f.db.add_user("app", &SecretString::from("older-Password-1"));
    let e = f.rotation.rotate(&f.secret).await.unwrap_err();
    let RotationError::NoWorkingCredentials { attempts, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(attempts.0.len(), 3, "{attempts}");
    assert!(!attempts.to_string().contains(&older), "{attempts}");
}

async fn abort_restores_current_through_an_unlabelled_version(kind: Kind) {
    let f = Fixture::new(kind, Strategy::SingleUser).await;
    // The database is on the password of a version without a label; AWSCURRENT fails.
    f.put_unlabelled(&token(), &f.current_with_password("stray-Password-9").await)
        .await;
    f.db.add_user("app", &SecretString::from("stray-Password-9"));
    assert!(!f.current_logs_in().await);
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();

    let report = f.rotation.abort(&f.secret, AbortMode::Safe).await.unwrap();
    assert_eq!(report.token, t);
    assert_eq!(report.restored_with, Some(Credentials::Recovered));
    assert!(report.current_verified);
    assert_eq!(report.left_behind, None);
    assert!(f.current_logs_in().await, "AWSCURRENT restored");
    assert!(!f.svc.stages(&f.secret).await.contains_key(&t));
    assert_eq!(
        f.rotation
            .status(&f.secret)
            .await
            .unwrap()
            .rotation_in_flight(),
        None
    );
}

async fn abort_with_the_database_unreachable_is_refused_unless_forced(kind: Kind) {
    let f = Fixture::new(kind, Strategy::SingleUser).await;
    let t = interrupted_after_set_secret(&f).await;
    f.db.set_unreachable(true);
    let before = f.svc.stages(&f.secret).await;

    let e = f
        .rotation
        .abort(&f.secret, AbortMode::Safe)
        .await
        .unwrap_err();
    assert!(matches!(e, RotationError::AbortUnsafe { .. }), "{e:?}");
    assert_eq!(e.kind(), "AbortUnsafe");
    assert_eq!(e.category(), ErrorCategory::Refused);
    assert_eq!(e.engine_kind(), Some(ErrorKind::Unreachable));
    assert_eq!(f.svc.stages(&f.secret).await, before, "stages unchanged");
    assert_eq!(before[&t], vec![Stage::Pending]);

    let report = f.rotation.abort(&f.secret, AbortMode::Force).await.unwrap();
    assert!(!report.current_verified);
    assert_eq!(report.restored_with, None);
    let left = report
        .left_behind
        .expect("a forced abort says what it left");
    assert!(left.contains(&t) && left.contains("AbortUnsafe"), "{left}");
    assert!(!f.svc.stages(&f.secret).await.contains_key(&t));

    // The database comes back on the pending password; the next rotation recovers it.
    f.db.set_unreachable(false);
    let report = f.rotation.rotate(&f.secret).await.unwrap();
    assert_eq!(
        report.steps[1].1,
        StepOutcome::PasswordSet(Credentials::Recovered)
    );
    assert!(f.current_logs_in().await);
}
