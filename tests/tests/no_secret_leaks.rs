//! No password from a rotation shows up in any log line (at TRACE level, JSON) or in the `Debug`
//! and `Display` output of the values and errors the suite produces.

use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator};
use rotation_core::{
    DatabaseSecret, PasswordPolicy, Rotation, RotationEvent, SecretStore, Stage, Step, Strategy,
    VersionSelector,
};
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
