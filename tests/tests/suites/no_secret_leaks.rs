//! No password from a rotation shows up in any log line (at TRACE level, JSON) or in the `Debug`
//! and `Display` output of the values and errors the suite produces: rotations, replays and
//! aborts, recovery from unlabelled versions, NoWorkingCredentials with every kind of attempt,
//! AbortUnsafe and forced aborts, and the recording store.

use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator};
use rotation_core::{
    AbortMode, AnyStore, CredentialSource, Credentials, DatabaseSecret, PasswordPolicy, Rotation,
    RotationError, RotationEvent, SecretStore, Stage, Step, StepOutcome, Strategy, VersionSelector,
};
use rotation_tests::fixture::{self, Fixture};
use rotation_tests::{Kind, Service, capture_logs, token};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const PW0: &str = "Leak-Canary-Initial-7f3a";
const ADMIN: &str = "Leak-Canary-Admin-91bc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_or_debug_output() {
    let logs = capture_logs();
    let mut passwords = vec![PW0.to_string(), ADMIN.to_string()];
    let mut printed = String::new();

    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let svc = Service::start(Kind::Local).await;
        let db = FakeDatabase::new();
        db.add_user("app", &SecretString::from(PW0));
        db.add_user("admin", &SecretString::from(ADMIN));
        let master = svc
            .create_secret(
                "master",
                &json!({"engine":"fake","host":"h","username":"admin","password":ADMIN})
                    .to_string(),
            )
            .await;
        let value =
            json!({"engine":"fake","host":"h","username":"app","password":PW0,"masterarn":master});
        svc.create_secret("app", &value.to_string()).await;
        let rotation = Rotation::new(
            svc.store(),
            FakeRotator::new(db.clone(), strategy),
            PasswordPolicy::defaults(&FAKE_PROFILE.password),
        );
        // Two good rotations, then a failing one of each kind.
        for _ in 0..2 {
            let report = rotation.rotate("app").await.unwrap();
            printed += &format!("{report:?}");
        }
        db.add_user("app", &SecretString::from("Leak-Canary-OutOfBand-1"));
        db.add_user("app_clone", &SecretString::from("Leak-Canary-OutOfBand-2"));
        passwords.push("Leak-Canary-OutOfBand-1".into());
        passwords.push("Leak-Canary-OutOfBand-2".into());
        let t = token();
        svc.start_rotation("app", &t).await;
        for step in Step::ALL {
            match rotation.handle(&RotationEvent::new(step, "app", &t)).await {
                Ok(o) => printed += &format!("{o:?}"),
                Err(e) => printed += &format!("{e:?} {e} {}", rotation_core::error_chain(&e)),
            }
        }
        let abort = rotation.abort("app", rotation_core::AbortMode::Safe).await;
        printed += &format!("{abort:?}");

        // Every password any version of either secret ever held.
        for id in ["app", "master"] {
            let d = svc.store().describe(id).await.unwrap();
            printed += &format!("{d:?}");
            for version in d.versions.keys() {
                let sel = VersionSelector {
                    version_id: Some(version),
                    stage: None,
                };
                if let Ok(v) = svc.store().get_value(id, sel).await {
                    printed += &format!("{v:?}");
                    let s = DatabaseSecret::parse(&v.value).unwrap();
                    printed += &format!("{s:?}");
                    passwords.push(s.password().unwrap().expose_secret().to_string());
                }
            }
        }
        let current = svc
            .store()
            .get_value("app", VersionSelector::stage(Stage::Current))
            .await
            .unwrap();
        printed += &format!("{current:?} {db:?} {rotation:?}");
    }

    let text = logs.text();
    assert!(
        text.contains("createSecret: Successfully put secret"),
        "logs were captured"
    );
    assert!(
        passwords.len() >= 8,
        "collected {} passwords",
        passwords.len()
    );
    for pw in &passwords {
        assert!(
            !text.contains(pw.as_str()),
            "a password appeared in the logs"
        );
        assert!(
            !printed.contains(pw.as_str()),
            "a password appeared in Debug/Display output"
        );
    }
}

/// Every password any version of `secret` holds, labelled or not.
async fn every_password(store: &AnyStore, secret: &str) -> Vec<String> {
    let mut out = vec![];
    for version in store.list_versions(secret).await.unwrap() {
        let sel = VersionSelector {
            version_id: Some(&version.id),
            stage: None,
        };
        if let Ok(v) = store.get_value(secret, sel).await
            && let Ok(s) = DatabaseSecret::parse(&v.value)
            && let Some(pw) = s.password()
        {
            out.push(pw.expose_secret().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_and_refusals_leak_nothing() {
    let logs = capture_logs();
    let mut secrets = vec![
        fixture::PW0.to_string(),
        "Leak-Canary-Rotation-Token".to_string(),
    ];
    let mut printed = String::new();
    let show_err = |e: &RotationError| format!("{e:?} {e} {}", rotation_core::error_chain(e));

    // Recovery (W6): interrupted after setSecret, AWSPENDING removed by hand, a new rotation
    // carries on from the unlabelled version.
    let f = Fixture::new(Kind::Local, Strategy::SingleUser).await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    let create = RotationEvent {
        rotation_token: Some("Leak-Canary-Rotation-Token".into()),
        ..RotationEvent::new(Step::CreateSecret, &f.secret, &t)
    };
    printed += &format!("{:?}", f.rotation.handle(&create).await.unwrap());
    f.step(Step::SetSecret, &t).await.unwrap();
    f.remove_pending(&t).await;
    let report = f.rotation.rotate(&f.secret).await.unwrap();
    assert_eq!(
        report.steps[1].1,
        StepOutcome::PasswordSet(Credentials::Recovered)
    );
    printed += &format!("{report:?} {:?} {:?}", f.store, f.store.puts());
    printed += &format!("{:?}", f.store.calls());

    // NoWorkingCredentials with every kind of attempt: pending, current, previous and an
    // unlabelled version, none of which the database accepts.
    f.put_unlabelled(
        &token(),
        &f.current_with_password("Leak-Canary-Unlabelled-1").await,
    )
    .await;
    f.db.add_user("app", &SecretString::from("Leak-Canary-OutOfBand-3"));
    secrets.push("Leak-Canary-OutOfBand-3".into());
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    let e = f.step(Step::SetSecret, &t).await.unwrap_err();
    let RotationError::NoWorkingCredentials { attempts, .. } = &e else {
        panic!("{e:?}")
    };
    let sources: Vec<_> = attempts.0.iter().map(|a| a.source.clone()).collect();
    assert!(sources.contains(&CredentialSource::Previous), "{attempts}");
    assert!(
        sources
            .iter()
            .any(|s| matches!(s, CredentialSource::Recovered(_))),
        "{attempts}"
    );
    printed += &show_err(&e);

    // AbortUnsafe (the database unreachable), then a forced abort.
    f.db.set_unreachable(true);
    let e = f
        .rotation
        .abort(&f.secret, AbortMode::Safe)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "AbortUnsafe");
    printed += &show_err(&e);
    let report = f.rotation.abort(&f.secret, AbortMode::Force).await.unwrap();
    printed += &format!("{report:?}");
    f.db.set_unreachable(false);
    printed += &format!("{:?} {:?}", f.db, f.rotation);

    // Abort restoring AWSCURRENT through an unlabelled version.
    let g = Fixture::on(f.svc.clone(), "abort-recovered", Strategy::SingleUser).await;
    g.put_unlabelled(
        &token(),
        &g.current_with_password("Leak-Canary-Stray-4").await,
    )
    .await;
    g.db.add_user("app", &SecretString::from("Leak-Canary-Stray-4"));
    let t = token();
    g.svc.start_rotation(&g.secret, &t).await;
    g.step(Step::CreateSecret, &t).await.unwrap();
    let report = g.rotation.abort(&g.secret, AbortMode::Safe).await.unwrap();
    assert_eq!(report.restored_with, Some(Credentials::Recovered));
    printed += &format!("{report:?}");

    for fx in [&f, &g] {
        secrets.extend(every_password(&fx.svc.store(), &fx.secret).await);
    }
    let text = logs.text();
    assert!(
        text.contains("recovery: the database holds the password of a version without a label"),
        "recovery was logged"
    );
    assert!(
        text.contains("abort --force: the AWSCURRENT credentials are not proven"),
        "the forced abort was logged with its cause"
    );
    assert!(secrets.len() >= 8, "collected {} secrets", secrets.len());
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret appeared in the logs"
        );
        assert!(
            !printed.contains(secret.as_str()),
            "a secret appeared in Debug/Display output"
        );
    }
}
