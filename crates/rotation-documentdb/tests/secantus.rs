//! DocumentDB rotation against SecantusDB (a MongoDB-wire server with SCRAM-SHA-256 and user
//! management) over verified TLS: both strategies, old and new credentials, roles of the pair,
//! hostile user names and passwords. What only a real DocumentDB could show (SCRAM-SHA-1 on
//! 4.0, its error codes and limits) is listed in the crate docs.

use std::time::Duration;

use rotation_core::{Deadline, ErrorKind, Rotator, Stage};
use rotation_documentdb::{DocumentDbRotator, PROFILE};
use rotation_trust::ConnectSettings;
use serde_json::json;

mod common;
use common::{DocumentDbEnv, parse};

#[tokio::test]
async fn single_user_rotates_over_verified_tls() {
    let env = common::start(true);
    env.db()
        .create_self_service_role()
        .expect("create the self-service role");
    env.create_user_in(
        "app",
        "Initial-Passw0rd",
        "admin",
        "[{'role': 'readWrite', 'db': 'appdb'}, {'role': 'selfService', 'db': 'admin'}]",
    );
    let initial = env.secret_in("app", "Initial-Passw0rd", None);
    assert!(
        env.secret_logs_in(&initial).await,
        "the initial password logs in"
    );
    env.put("app", &initial).await;
    let r = env.rotation(DocumentDbRotator::single_user(
        env.connect_settings().clone(),
    ));
    r.rotate("app")
        .await
        .unwrap_or_else(|e| panic!("{}", rotation_core::error_chain(&e)));
    let now = env.value("app", Stage::Current).await;
    let password = now["password"].as_str().unwrap();
    assert!(PROFILE.password.check(password).is_ok());
    assert!(env.secret_logs_in(&now).await, "the new password logs in");
    assert!(env.refused(&initial), "the old password is refused");
    assert!(now.get("dbname").is_none(), "no key was added");
}

#[tokio::test]
async fn alternating_users_create_the_clone_with_the_roles_and_keep_them_in_line() {
    let env = common::start(true);
    env.create_user_in(
        "app",
        "Initial-Passw0rd",
        "appdb",
        "[{'role': 'readWrite', 'db': 'appdb'}, {'role': 'read', 'db': 'reports'}]",
    );
    let master = env.secret_in(env.db().admin(), env.db().admin_password(), None);
    env.put("master", &master).await;
    let mut initial = env.secret_in("app", "Initial-Passw0rd", Some("appdb"));
    initial["masterarn"] = json!("master");
    env.put("app", &initial).await;
    let r = env.rotation(DocumentDbRotator::alternating_users(
        env.connect_settings().clone(),
    ));

    r.rotate("app").await.expect("first rotation");
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "app_clone");
    assert!(env.secret_logs_in(&now).await, "the clone logs in");
    assert!(
        env.secret_logs_in(&initial).await,
        "the original keeps working"
    );
    // The clone lives in the current user's database (AWS: the master's), with its roles.
    assert_eq!(env.roles("app_clone", "appdb"), env.roles("app", "appdb"));
    assert!(env.roles("app_clone", "admin").is_none());

    // A role granted to the original between rotations reaches the clone (in use: it only
    // gains); a role the original loses leaves the clone when the clone is next set.
    env.db()
        .python("db['appdb'].command('grantRolesToUser', 'app', roles=[{'role': 'dbAdmin', 'db': 'appdb'}]); db['appdb'].command('revokeRolesFromUser', 'app', roles=[{'role': 'read', 'db': 'reports'}])")
        .unwrap();
    r.rotate("app").await.expect("second rotation");
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "app");
    assert!(env.secret_logs_in(&now).await);
    let clone = env.roles("app_clone", "appdb").unwrap();
    assert!(
        clone.contains(&("dbAdmin".into(), "appdb".into())),
        "{clone:?}"
    );
    assert!(
        clone.contains(&("read".into(), "reports".into())),
        "the clone in use lost a role mid-rotation: {clone:?}"
    );
    r.rotate("app").await.expect("third rotation");
    assert_eq!(env.roles("app_clone", "appdb"), env.roles("app", "appdb"));
    assert!(
        env.secret_logs_in(&env.value("app", Stage::Current).await)
            .await
    );
    // The master's password never changed.
    assert!(env.secret_logs_in(&master).await);
}

#[tokio::test]
async fn hostile_user_names_and_passwords_rotate() {
    let env = common::start(false);
    env.db().create_self_service_role().unwrap();
    let names = [
        "Mixed Case",
        "quote\"in",
        "apos'trophe",
        "colon:name",
        "slash/name",
        "at@name",
        "percent%41",
        "unicodé",
        "$dollar",
        "dot.name",
        "{\"$ne\": 1}",
        "back\\slash",
    ];
    let passwords = [
        "Aa1:colon:pw",
        "Aa1%41%2F%40",
        "Aa1$$$$$$",
        "Aa1{\"$ne\":1}",
        "Aa1'quote'",
        "Aa1\\back\\",
        "Aa1;--DROP",
        "Aa1`echo`x",
        "Aa1<>?|[]",
        "Aa1~!#^&*()",
        "Aa1+=,.",
    ];
    let r = env.rotation(DocumentDbRotator::single_user(
        env.connect_settings().clone(),
    ));
    for (i, name) in names.iter().enumerate() {
        let pw = passwords[i % passwords.len()];
        env.create_user_in(
            name,
            pw,
            "admin",
            "[{'role': 'selfService', 'db': 'admin'}]",
        );
        let initial = env.secret_in(name, pw, None);
        assert!(
            env.secret_logs_in(&initial).await,
            "{name:?} logs in with {pw:?}"
        );
        let id = format!("s{i}");
        env.put(&id, &initial).await;
        r.rotate(&id)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {}", rotation_core::error_chain(&e)));
        let now = env.value(&id, Stage::Current).await;
        assert!(
            env.secret_logs_in(&now).await,
            "{name:?}: the new password logs in"
        );
        assert!(env.refused(&initial), "{name:?}: the old one is refused");
    }
}

#[tokio::test]
async fn bad_input_changes_nothing_and_errors_are_told_apart() {
    let env = common::with_app_user(true);
    let current = env.secret_in("app", "Initial-Passw0rd", None);
    let r = DocumentDbRotator::single_user(env.connect_settings().clone());
    let deadline = || Deadline::after(Duration::from_secs(10));
    // Passwords DocumentDB refuses: nothing is sent.
    for bad in [
        "short1",
        "has/slash-pw",
        "has@at-password",
        "has\"quote-pw",
        "has space-pw",
    ] {
        let mut s = r.login(&parse(&current), deadline()).await.unwrap();
        let e = r
            .set_own_password(&mut s, &parse(&env.secret_in("app", bad, None)))
            .await
            .expect_err("refused");
        r.close(s).await;
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(!e.to_string().contains(bad), "{e}");
        assert!(env.secret_logs_in(&current).await);
    }
    // A wrong password, an untrusted certificate, plaintext to a TLS server, nothing
    // listening: four different kinds, no secret in the messages.
    let wrong = env.secret_in("app", "Wrong-Passw0rd", None);
    let e = r.login(&parse(&wrong), deadline()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    let untrusted = DocumentDbRotator::single_user(ConnectSettings::default());
    let started = std::time::Instant::now();
    let e = untrusted
        .login(&parse(&current), deadline())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "an untrusted certificate waited {:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("CA_BUNDLE_PATH"), "{e}");
    // Plaintext to a TLS-only server: told as a TLS problem, with the fix.
    let mut plain = current.clone();
    plain["ssl"] = json!(false);
    let e = r.login(&parse(&plain), deadline()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("ssl"), "{e}");
    let mut nothing = current.clone();
    nothing["port"] = json!(rotation_testkit::free_port());
    let started = std::time::Instant::now();
    let e = r.login(&parse(&nothing), deadline()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    // The monitor's first failed heartbeat ends the attempt: no wait for the connect timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(!format!("{e:?} {e}").contains("Initial-Passw0rd"));
}
