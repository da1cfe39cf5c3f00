//! The rotation state machine with a fake database, against the local file store and against
//! moto: AWS's checklist 1-16, 43-44, 50, plus replays, crashes, resume and abort.

use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator, Op};
use rotation_core::{
    AbortMode, AnyStore, Credentials, EventStep, PasswordPolicy, Rotation, RotationError,
    RotationEvent, Stage, Step, StepOutcome, Strategy, Which,
};
use rotation_tests::{Kind, Service, both_stores, token};
use secrecy::SecretString;
use serde_json::{Value, json};

const PW0: &str = "initial-Password-0";
const ADMIN_PW: &str = "admin-Password-1";

struct Fixture {
    svc: Service,
    db: FakeDatabase,
    secret: String,
    rotation: Rotation<AnyStore, FakeRotator>,
}

fn secret_json(username: &str, masterarn: Option<&str>) -> Value {
    let mut v = json!({
        "engine": "fake", "host": "db.internal", "port": "5432", "username": username,
        "password": PW0, "dbname": "appdb", "ssl": true, "custom": {"team": ["a", 1]}
    });
    if let Some(m) = masterarn {
        v["masterarn"] = json!(m);
    }
    v
}

async fn fixture(kind: Kind, strategy: Strategy) -> Fixture {
    fixture_with(kind, strategy, "app", |_| {}).await
}

async fn fixture_with(
    kind: Kind,
    strategy: Strategy,
    username: &str,
    tweak: impl FnOnce(&mut Value),
) -> Fixture {
    let svc = Service::start(kind).await;
    let db = FakeDatabase::new();
    db.add_user(username, &SecretString::from(PW0));
    let masterarn = if strategy == Strategy::AlternatingUsers {
        db.add_user("admin", &SecretString::from(ADMIN_PW));
        let master = json!({"engine": "fake", "host": "db.internal", "username": "admin", "password": ADMIN_PW});
        Some(svc.create_secret("master", &master.to_string()).await)
    } else {
        None
    };
    let mut value = secret_json(username, masterarn.as_deref());
    tweak(&mut value);
    svc.create_secret("app-secret", &value.to_string()).await;
    let rotation = Rotation::new(
        svc.store(),
        FakeRotator::new(db.clone(), strategy),
        PasswordPolicy::defaults(&FAKE_PROFILE.password),
    );
    Fixture {
        svc,
        db,
        secret: "app-secret".into(),
        rotation,
    }
}

impl Fixture {
    async fn step(&self, step: Step, token: &str) -> Result<StepOutcome, RotationError> {
        self.rotation
            .handle(&RotationEvent::new(step, &self.secret, token))
            .await
    }
    async fn current(&self) -> Value {
        self.svc.value(&self.secret, Stage::Current).await
    }
    fn logs_in(&self, v: &Value) -> bool {
        self.db.accepts(
            v["username"].as_str().unwrap(),
            v["password"].as_str().unwrap(),
        )
    }
    async fn full_rotation(&self, token: &str) {
        self.svc.start_rotation(&self.secret, token).await;
        for step in Step::ALL {
            self.step(step, token)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
    }
}

both_stores!(
    single_user_rotation_end_to_end,
    alternating_users_alternate_and_reassert_membership,
    every_step_twice_gives_the_same_end_state,
    entry_checks,
    create_secret_rules,
    clone_name_too_long_writes_nothing,
    single_user_fallbacks_and_guards,
    alternating_users_guards,
    interrupted_rotation_resumes,
    crash_inside_set_secret_recovers,
    stale_pending_is_reported_and_aborted,
    finish_refuses_unproven_credentials,
    a_server_that_accepts_any_password_is_refused_before_any_change,
    disabled_rotation_is_refused,
);

async fn single_user_rotation_end_to_end(kind: Kind) {
    let f = fixture(kind, Strategy::SingleUser).await;
    let before = f.current().await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    let outcomes = [
        f.step(Step::CreateSecret, &t).await.unwrap(),
        f.step(Step::SetSecret, &t).await.unwrap(),
        f.step(Step::TestSecret, &t).await.unwrap(),
        f.step(Step::FinishSecret, &t).await.unwrap(),
    ];
    assert_eq!(
        outcomes,
        [
            StepOutcome::PendingCreated,
            StepOutcome::PasswordSet(Credentials::Current),
            StepOutcome::Tested,
            StepOutcome::Promoted
        ]
    );
    let after = f.current().await;
    // Checklist 13: only the password changed; every key kept, port still a string.
    let mut expected = before.clone();
    expected["password"] = after["password"].clone();
    assert_eq!(after, expected);
    assert_ne!(after["password"], before["password"]);
    assert!(after.to_string().contains("\"port\":\"5432\""));
    assert!(f.logs_in(&after) && !f.logs_in(&before));
    // Checklist 44: AWSPENDING stays on the token; the old version is AWSPREVIOUS.
    let stages = f.svc.stages(&f.secret).await;
    assert_eq!(stages[&t], vec![Stage::Current, Stage::Pending]);
    assert_eq!(
        stages
            .values()
            .filter(|s| s.contains(&Stage::Previous))
            .count(),
        1
    );
    assert_eq!(f.svc.value(&f.secret, Stage::Previous).await, before);
    // A second rotation from there (AWSPENDING still on the current version) works too.
    f.full_rotation(&token()).await;
    assert!(f.logs_in(&f.current().await));
    assert_eq!(f.svc.value(&f.secret, Stage::Previous).await, after);
}

async fn alternating_users_alternate_and_reassert_membership(kind: Kind) {
    let f = fixture(kind, Strategy::AlternatingUsers).await;
    let before = f.current().await;
    f.full_rotation(&token()).await;
    let first = f.current().await;
    assert_eq!(first["username"], "app_clone");
    let mut expected = before.clone();
    expected["username"] = json!("app_clone");
    expected["password"] = first["password"].clone();
    assert_eq!(first, expected, "only username and password change");
    // Both users work after the rotation: clients on the old secret keep going.
    assert!(f.logs_in(&first) && f.logs_in(&before));
    assert!(f.db.memberships("app_clone").contains("app"));

    f.full_rotation(&token()).await;
    let second = f.current().await;
    assert_eq!(second["username"], "app");
    assert!(f.logs_in(&second) && f.logs_in(&first));

    // Drift: the clone loses its membership; the next rotation of the clone re-asserts it (W7).
    f.db.revoke("app_clone", "app");
    f.full_rotation(&token()).await;
    assert_eq!(f.current().await["username"], "app_clone");
    assert!(f.db.memberships("app_clone").contains("app"));
}

async fn every_step_twice_gives_the_same_end_state(kind: Kind) {
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let f = fixture(kind, strategy).await;
        let t = token();
        f.svc.start_rotation(&f.secret, &t).await;
        let mut outcomes = vec![];
        for step in Step::ALL {
            outcomes.push(f.step(step, &t).await.unwrap());
            outcomes.push(f.step(step, &t).await.unwrap());
        }
        assert_eq!(outcomes[1], StepOutcome::PendingExists, "{strategy}");
        assert_eq!(outcomes[3], StepOutcome::AlreadySet, "{strategy}");
        assert_eq!(outcomes[5], StepOutcome::Tested, "{strategy}");
        assert_eq!(outcomes[7], StepOutcome::AlreadyCurrent, "{strategy}");
        assert_eq!(
            f.db.password_changes(),
            1,
            "{strategy}: one password change"
        );
        let current = f.current().await;
        assert!(f.logs_in(&current));
        assert_eq!(f.svc.version_value(&f.secret, &t).await.unwrap(), current);
    }
}

async fn entry_checks(kind: Kind) {
    let f = fixture(kind, Strategy::SingleUser).await;
    // Checklist 4: a token that is not a version.
    let e = f.step(Step::CreateSecret, &token()).await.unwrap_err();
    assert!(matches!(e, RotationError::TokenNotStaged { .. }), "{e}");
    assert!(e.to_string().contains("has no stage for rotation"));

    let t = token();
    f.full_rotation(&t).await;
    // Checklist 5: the token is AWSCURRENT -> success for any step, even an unknown one.
    for step in Step::ALL {
        assert_eq!(f.step(step, &t).await.unwrap(), StepOutcome::AlreadyCurrent);
    }
    let bogus = RotationEvent {
        step: EventStep::Unknown("bogusStep".into()),
        ..RotationEvent::new(Step::SetSecret, &f.secret, &t)
    };
    assert_eq!(
        f.rotation.handle(&bogus).await.unwrap(),
        StepOutcome::AlreadyCurrent
    );

    // Checklist 6: the old version now holds only AWSPREVIOUS.
    let previous = f
        .svc
        .stages(&f.secret)
        .await
        .into_iter()
        .find(|(_, s)| s == &vec![Stage::Previous])
        .unwrap()
        .0;
    let e = f.step(Step::SetSecret, &previous).await.unwrap_err();
    assert!(matches!(e, RotationError::TokenNotPending { .. }), "{e}");
    assert!(e.to_string().contains("not set as AWSPENDING"));

    // Checklist 7: an unknown step on a pending token.
    let t2 = token();
    f.svc.start_rotation(&f.secret, &t2).await;
    let bogus = RotationEvent {
        step: EventStep::Unknown("bogusStep".into()),
        ..RotationEvent::new(Step::SetSecret, &f.secret, &t2)
    };
    let e = f.rotation.handle(&bogus).await.unwrap_err();
    assert!(matches!(e, RotationError::InvalidStep { .. }));
    assert_eq!(e.kind(), "InvalidStep");
    assert!(
        e.to_string()
            .starts_with("Invalid step parameter bogusStep for secret")
    );
}

async fn create_secret_rules(kind: Kind) {
    let f = fixture(kind, Strategy::SingleUser).await;
    use rotation_core::SecretStore;
    // Checklist 10: an existing pending value is kept (no new password).
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    let pending = f.svc.version_value(&f.secret, &t).await.unwrap();
    assert_eq!(
        f.step(Step::CreateSecret, &t).await.unwrap(),
        StepOutcome::PendingExists
    );
    assert_eq!(f.svc.version_value(&f.secret, &t).await.unwrap(), pending);

    // Checklist 12: an existing pending value that is not valid fails the step.
    let bad = fixture(kind, Strategy::SingleUser).await;
    let t = token();
    bad.svc.start_rotation(&bad.secret, &t).await;
    bad.svc
        .store()
        .put_value(
            &bad.secret,
            &t,
            &SecretString::from("not json"),
            &[Stage::Pending],
            None,
        )
        .await
        .unwrap();
    let e = bad.step(Step::CreateSecret, &t).await.unwrap_err();
    assert!(
        matches!(
            e,
            RotationError::InvalidSecret {
                which: Which::Pending,
                ..
            }
        ),
        "{e}"
    );

    // Checklist 9: an invalid current fails the step even though pending exists.
    let g = fixture_with(kind, Strategy::SingleUser, "app", |v| {
        v["engine"] = json!("mysql")
    })
    .await;
    let t = token();
    g.svc.start_rotation(&g.secret, &t).await;
    let e = g.step(Step::CreateSecret, &t).await.unwrap_err();
    assert!(
        matches!(
            e,
            RotationError::InvalidSecret {
                which: Which::Current,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("Database engine must be set to 'fake'")
    );
    assert!(
        g.svc.version_value(&g.secret, &t).await.is_none(),
        "nothing written"
    );
    let h = fixture_with(kind, Strategy::SingleUser, "app", |v| {
        v.as_object_mut().unwrap().remove("host");
    })
    .await;
    let t = token();
    h.svc.start_rotation(&h.secret, &t).await;
    let e = h.step(Step::CreateSecret, &t).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("host key is missing from secret JSON"),
        "{e}"
    );
}

async fn clone_name_too_long_writes_nothing(kind: Kind) {
    let long = "a".repeat(58);
    let f = fixture_with(kind, Strategy::AlternatingUsers, &long, |_| {}).await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    let e = f.step(Step::CreateSecret, &t).await.unwrap_err();
    assert!(
        matches!(
            e,
            RotationError::UsernameTooLong {
                length: 64,
                unit: "bytes",
                limit: 63,
                ..
            }
        ),
        "{e}"
    );
    assert!(f.svc.version_value(&f.secret, &t).await.is_none());
    assert_eq!(f.db.password_changes(), 0);
}

async fn single_user_fallbacks_and_guards(kind: Kind) {
    // Checklist 21: current no longer logs in, previous does -> changed using previous.
    let f = fixture(kind, Strategy::SingleUser).await;
    f.full_rotation(&token()).await;
    let previous = f.svc.value(&f.secret, Stage::Previous).await;
    f.db.add_user("app", &SecretString::from(PW0)); // the database went back to the old password
    assert!(f.logs_in(&previous) && !f.logs_in(&f.current().await));
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    assert_eq!(
        f.step(Step::SetSecret, &t).await.unwrap(),
        StepOutcome::PasswordSet(Credentials::Previous)
    );

    // Checklist 24: nothing logs in.
    let g = fixture(kind, Strategy::SingleUser).await;
    g.db.add_user("app", &SecretString::from("changed-out-of-band"));
    let t = token();
    g.svc.start_rotation(&g.secret, &t).await;
    g.step(Step::CreateSecret, &t).await.unwrap();
    let e = g.step(Step::SetSecret, &t).await.unwrap_err();
    assert!(
        matches!(e, RotationError::NoWorkingCredentials { .. }),
        "{e}"
    );
    assert_eq!(e.engine_kind(), Some(rotation_core::ErrorKind::AuthFailed));
    assert!(
        e.to_string()
            .starts_with("Unable to log into database with previous, current, or pending secret")
    );

    // Checklists 18 and 19: the pending secret may not name another user or host.
    for (key, value, kind_name) in [
        ("username", "postgres", "UserMismatch"),
        ("host", "evil.example", "HostMismatch"),
    ] {
        let h = fixture(kind, Strategy::SingleUser).await;
        let t = token();
        h.svc.start_rotation(&h.secret, &t).await;
        let mut pending = h.current().await;
        pending[key] = json!(value);
        pending["password"] = json!("x-Pending-1");
        use rotation_core::SecretStore;
        h.svc
            .store()
            .put_value(
                &h.secret,
                &t,
                &SecretString::from(pending.to_string()),
                &[Stage::Pending],
                None,
            )
            .await
            .unwrap();
        let e = h.step(Step::SetSecret, &t).await.unwrap_err();
        assert_eq!(e.kind(), kind_name, "{e}");
        assert_eq!(h.db.password_changes(), 0);
    }
}

async fn alternating_users_guards(kind: Kind) {
    // Checklist 30: current must log in, and the master secret is never read otherwise.
    let f = fixture_with(kind, Strategy::AlternatingUsers, "app", |v| {
        v["masterarn"] =
            json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist");
    })
    .await;
    f.db.add_user("app", &SecretString::from("changed-out-of-band"));
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    let e = f.step(Step::SetSecret, &t).await.unwrap_err();
    assert!(matches!(e, RotationError::CurrentLoginFailed { .. }), "{e}");

    // Checklist 31: no masterarn.
    let g = fixture_with(kind, Strategy::AlternatingUsers, "app", |v| {
        v.as_object_mut().unwrap().remove("masterarn");
    })
    .await;
    let t = token();
    g.svc.start_rotation(&g.secret, &t).await;
    // Refused at createSecret, before a pending value is stored (AWS: at setSecret).
    let e = g.step(Step::CreateSecret, &t).await.unwrap_err();
    assert!(matches!(e, RotationError::MissingMasterArn { .. }), "{e}");
    assert_eq!(
        g.svc.version_value(&g.secret, &t).await,
        None,
        "no pending value was stored"
    );

    // Checklist 35/36: master on another host; master that cannot log in.
    let h = fixture(kind, Strategy::AlternatingUsers).await;
    h.svc.create_secret("master-elsewhere", &json!({"engine":"fake","host":"other.internal","username":"admin","password":ADMIN_PW}).to_string()).await;
    h.svc
        .create_secret(
            "master-wrong",
            &json!({"engine":"fake","host":"db.internal","username":"admin","password":"nope"})
                .to_string(),
        )
        .await;
    for (master, want) in [
        ("master-elsewhere", "MasterHostMismatch"),
        ("master-wrong", "MasterLoginFailed"),
    ] {
        let s = format!("child-{master}");
        h.svc
            .create_secret(&s, &secret_json("app", Some(master)).to_string())
            .await;
        let t = token();
        h.svc.start_rotation(&s, &t).await;
        let ev = |step| RotationEvent::new(step, &s, &t);
        h.rotation.handle(&ev(Step::CreateSecret)).await.unwrap();
        let e = h.rotation.handle(&ev(Step::SetSecret)).await.unwrap_err();
        assert_eq!(e.kind(), want, "{e}");
    }
    assert_eq!(h.db.password_changes(), 0);
    assert!(!h.db.has_user("app_clone"));
}

async fn interrupted_rotation_resumes(kind: Kind) {
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for done in 0..4 {
            let f = fixture(kind, strategy).await;
            let t = token();
            f.svc.start_rotation(&f.secret, &t).await;
            for step in &Step::ALL[..done] {
                f.step(*step, &t).await.unwrap();
            }
            // The service gave up here; the operator resumes the rotation in flight.
            let report = f
                .rotation
                .resume(&f.secret)
                .await
                .unwrap_or_else(|e| panic!("{strategy} after {done}: {e}"));
            assert_eq!(report.token, t);
            let current = f.current().await;
            assert!(f.logs_in(&current), "{strategy} after {done} steps");
            assert_eq!(f.svc.stages(&f.secret).await[&t][0], Stage::Current);
            assert_eq!(f.db.password_changes(), 1);
        }
    }
}

async fn crash_inside_set_secret_recovers(kind: Kind) {
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for op in [Op::SetPasswordBefore, Op::SetPasswordAfter] {
            let f = fixture(kind, strategy).await;
            let t = token();
            f.svc.start_rotation(&f.secret, &t).await;
            f.step(Step::CreateSecret, &t).await.unwrap();
            f.db.fail(op, 1);
            let e = f.step(Step::SetSecret, &t).await.unwrap_err();
            assert_eq!(e.kind(), "SetPasswordFailed");
            // Secrets Manager retries the step; it converges.
            let retry = f.step(Step::SetSecret, &t).await.unwrap();
            match op {
                Op::SetPasswordAfter => assert_eq!(retry, StepOutcome::AlreadySet),
                _ => assert!(matches!(retry, StepOutcome::PasswordSet(_))),
            }
            f.step(Step::TestSecret, &t).await.unwrap();
            f.step(Step::FinishSecret, &t).await.unwrap();
            assert!(f.logs_in(&f.current().await), "{strategy} {op:?}");
        }
    }
}

async fn stale_pending_is_reported_and_aborted(kind: Kind) {
    // A single-user rotation abandoned after setSecret: the database holds the pending password.
    let f = fixture(kind, Strategy::SingleUser).await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    f.step(Step::SetSecret, &t).await.unwrap();
    assert!(
        !f.logs_in(&f.current().await),
        "the lockout window AWS leaves open"
    );

    let e = f.rotation.rotate(&f.secret).await.unwrap_err();
    assert!(
        matches!(e, RotationError::RotationInFlight { ref version, .. } if *version == t),
        "{e}"
    );
    let status = f.rotation.status(&f.secret).await.unwrap();
    assert_eq!(status.rotation_in_flight(), Some(t.as_str()));

    let report = f.rotation.abort(&f.secret, AbortMode::Safe).await.unwrap();
    assert_eq!(report.restored_with, Some(Credentials::Pending));
    assert!(report.current_verified);
    assert!(
        f.logs_in(&f.current().await),
        "abort restores the current password"
    );
    assert_eq!(
        f.rotation
            .status(&f.secret)
            .await
            .unwrap()
            .rotation_in_flight(),
        None
    );
    assert!(matches!(
        f.rotation.abort(&f.secret, AbortMode::Safe).await,
        Err(RotationError::NoRotationInFlight { .. })
    ));

    let report = f.rotation.rotate(&f.secret).await.unwrap();
    assert_eq!(report.steps.len(), 4);
    assert!(f.logs_in(&f.current().await));

    // An abandoned RotateSecret stub with no value is aborted without touching the database.
    let g = fixture(kind, Strategy::AlternatingUsers).await;
    g.svc.start_rotation(&g.secret, &token()).await;
    let report = g.rotation.abort(&g.secret, AbortMode::Safe).await.unwrap();
    assert_eq!(report.restored_with, None);
    g.rotation.rotate(&g.secret).await.unwrap();
    assert_eq!(g.current().await["username"], "app_clone");
}

async fn finish_refuses_unproven_credentials(kind: Kind) {
    let f = fixture(kind, Strategy::SingleUser).await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    // finishSecret out of order (W23): the database does not know the pending password.
    let before = f.svc.stages(&f.secret).await;
    let e = f.step(Step::FinishSecret, &t).await.unwrap_err();
    assert!(matches!(e, RotationError::PendingNotVerified { .. }), "{e}");
    assert_eq!(f.svc.stages(&f.secret).await, before, "no stage change");
    assert!(f.logs_in(&f.current().await));
    // testSecret fails the same way.
    let e = f.step(Step::TestSecret, &t).await.unwrap_err();
    assert_eq!(e.kind(), "PendingTestFailed");
    assert!(
        e.to_string()
            .starts_with("Unable to log into database with pending secret")
    );
}

async fn a_server_that_accepts_any_password_is_refused_before_any_change(kind: Kind) {
    // Trust authentication: the pending login works before any change, and so does a wrong
    // password. Taking that as "already set" would promote a password the database never got.
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let f = fixture(kind, strategy).await;
        f.db.add_user("app_clone", &SecretString::from("clone-Password-2"));
        f.db.accept_any_password(true);
        let t = token();
        f.svc.start_rotation(&f.secret, &t).await;
        f.step(Step::CreateSecret, &t).await.unwrap();
        let stages = f.svc.stages(&f.secret).await;
        let e = f.step(Step::SetSecret, &t).await.unwrap_err();
        assert!(
            matches!(e, RotationError::PasswordsNotChecked { .. }),
            "{strategy}: {e}"
        );
        assert_eq!(f.db.password_changes(), 0, "{strategy}");
        assert_eq!(f.svc.stages(&f.secret).await, stages, "{strategy}");
        // With passwords checked again, the same rotation goes on.
        f.db.accept_any_password(false);
        for step in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
            f.step(step, &t).await.unwrap();
        }
        assert!(f.logs_in(&f.current().await), "{strategy}");
    }
}

async fn disabled_rotation_is_refused(kind: Kind) {
    let f = fixture(kind, Strategy::SingleUser).await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.svc.disable_rotation(&f.secret).await;
    let e = f.step(Step::CreateSecret, &t).await.unwrap_err();
    assert!(matches!(e, RotationError::NotEnabled { .. }), "{e}");
    assert!(e.to_string().ends_with("is not enabled for rotation"));
    assert!(matches!(
        f.rotation.rotate(&f.secret).await,
        Err(RotationError::NotEnabled { .. })
    ));
    assert_eq!(f.db.password_changes(), 0);
    assert_eq!(f.db.logins(), 0, "refused before any database access");
}

#[tokio::test]
async fn rotation_enabled_absent_counts_as_enabled() {
    // Checklist 3: DB functions fail only when RotationEnabled is present and false.
    let f = fixture(Kind::Local, Strategy::SingleUser).await;
    if let AnyStore::Local(store) = f.svc.store() {
        store.set_rotation_enabled(&f.secret, None).await.unwrap();
    }
    assert_eq!(
        f.rotation.status(&f.secret).await.unwrap().rotation_enabled,
        None
    );
    f.rotation.rotate(&f.secret).await.unwrap();
    assert!(f.logs_in(&f.current().await));
}
