//! Redshift rotation against the PostgreSQL stand-in (test-infra §4): md5 authentication with
//! `password_encryption = md5`, a `dev` database, verified TLS where the test says so. What
//! only a real Redshift could show (its password checks, name folding at login, its catalog's
//! leader-node functions) is listed in the crate docs; the Redshift-only statement text is pinned by
//! the unit tests in `src/sql.rs`.

use std::collections::BTreeSet;

use rotation_core::{
    Deadline, ErrorKind, LocalSecretStore, PasswordPolicy, Rotation, Rotator, Stage,
};
use rotation_redshift::{PROFILE, RedshiftRotator, sql};
use secrecy::SecretString;
use serde_json::json;

mod common;
#[allow(unused_imports)]
use common::Env;
use common::{Standin, parse};

fn check_rules(password: &str) {
    assert!(
        PROFILE.password.check(password).is_ok(),
        "a generated password breaks Redshift's rules"
    );
}

#[tokio::test]
async fn single_user_rotates_a_mixed_case_user_over_verified_tls_with_an_md5_hash() {
    let env = common::tls_logged();
    env.create_user("AppUser", "Initial-Passw0rd");
    let initial = env.standin_secret("AppUser", "Initial-Passw0rd");
    assert!(env.logs_in(&initial).await, "the initial password logs in");
    env.put("app", &initial).await;

    let r = env.rotation(RedshiftRotator::single_user(env.config().clone()));
    r.rotate("app").await.expect("rotate");

    let now = env.value("app", Stage::Current).await;
    let password = now["password"].as_str().unwrap().to_string();
    check_rules(&password);
    assert!(env.logs_in(&now).await, "the new password logs in");
    assert!(!env.logs_in(&initial).await, "the old password is refused");
    // Everything but the password is kept, and no dbname was added.
    assert_eq!(now["username"], "AppUser");
    assert!(now.get("dbname").is_none());
    // The server holds Redshift's md5 form salted with the stored (here: case-kept) name, and
    // never saw the password itself.
    assert_eq!(
        env.stored_password("AppUser"),
        sql::md5_password(&password, "AppUser")
    );
    let log = env.pg().server_log();
    assert!(log.contains("ALTER USER"), "statements are logged");
    assert!(
        !log.contains(&password),
        "the new password reached the server log"
    );
    assert!(
        !log.contains("lock_timeout"),
        "Redshift has no lock_timeout"
    );
}

#[tokio::test]
async fn a_password_that_breaks_redshifts_rules_changes_nothing() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    let current = env.standin_secret("app", "Initial-Passw0rd");
    let r = RedshiftRotator::single_user(env.config().clone());
    let bad = [
        "Short1a",
        "Has space 1Aa",
        "Quote'1Aa-long",
        "Dquote\"1Aa-long",
        "Back\\slash1Aa",
        "Slash/1Aa-long",
        "At@sign1Aa-long",
        "nouppercase123",
        "NOLOWERCASE123",
        "NoDigitsAtAll",
        "Ünicode1aA-long",
    ];
    let too_long = format!("Aa1{}", "x".repeat(62));
    for pw in bad.iter().copied().chain([too_long.as_str()]) {
        let mut s = r
            .login(
                &parse(&current),
                Deadline::after(std::time::Duration::from_secs(10)),
            )
            .await
            .unwrap();
        let e = r
            .set_own_password(&mut s, &parse(&env.standin_secret("app", pw)))
            .await
            .expect_err("a password Redshift refuses is refused");
        r.close(s).await;
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            !e.to_string().contains(pw),
            "the message shows the password: {e}"
        );
        assert!(env.logs_in(&current).await, "nothing changed for {pw:?}");
    }
}

#[tokio::test]
async fn hostile_user_names_and_passwords_rotate() {
    let env = common::start();
    let names = [
        "Mixed Case",
        "quote\"in",
        "apos'trophe",
        "semi;colon",
        "back\\slash",
        "dollar$sign",
        "percent%s",
        "unicodé",
        "--dash",
        "drop table x;--",
        "select",
        "MiXeD",
    ];
    let passwords = [
        "Aa1$$$$$$",
        "Aa1--;DROP",
        "Aa1%s%n%x",
        "Aa1${HOME}",
        "Aa1:::::::",
        "Aa1`echo`x",
        "Aa1~~~~~~",
        "Aa1!#&*()",
        "Aa1<>?|[]",
        "Aa1+=^,.;",
        "Aa1-0123456789-0123456789-0123456789-0123456789-0123456789-01234",
    ];
    let r = env.rotation(RedshiftRotator::single_user(env.config().clone()));
    for (i, name) in names.iter().enumerate() {
        let pw = passwords[i % passwords.len()];
        env.create_user(name, pw);
        let initial = env.standin_secret(name, pw);
        assert!(env.logs_in(&initial).await, "{name:?} logs in with {pw:?}");
        let id = format!("s{i}");
        env.put(&id, &initial).await;
        r.rotate(&id)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {}", rotation_core::error_chain(&e)));
        let now = env.value(&id, Stage::Current).await;
        assert!(
            env.logs_in(&now).await,
            "{name:?}: the new password logs in"
        );
        assert!(
            !env.logs_in(&initial).await,
            "{name:?}: the old one is refused"
        );
    }
    // The last password (64 characters) rotates too.
    let pw = passwords[passwords.len() - 1];
    assert_eq!(pw.len(), 64);
    env.create_user("long_pw", pw);
    env.put("long", &env.standin_secret("long_pw", pw)).await;
    r.rotate("long")
        .await
        .expect("rotate a 64-character password");

    // Alternating users with hostile names: the clone is created and logs in.
    let master = env.standin_secret(env.pg().superuser(), env.pg().superuser_password());
    env.put("master", &master).await;
    let alt = env.rotation(RedshiftRotator::alternating_users(env.config().clone()));
    for (i, name) in ["Mixed Case", "quote\"in", "drop table x;--", "unicodé"]
        .iter()
        .enumerate()
    {
        let id = format!("a{i}");
        let mut v = env
            .value(
                &format!("s{}", names.iter().position(|n| n == name).unwrap()),
                Stage::Current,
            )
            .await;
        v["masterarn"] = json!("master");
        env.put(&id, &v).await;
        alt.rotate(&id)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {}", rotation_core::error_chain(&e)));
        let now = env.value(&id, Stage::Current).await;
        assert_eq!(now["username"], format!("{name}_clone"));
        assert!(env.logs_in(&now).await, "{name:?}_clone logs in");
        assert!(env.logs_in(&v).await, "{name:?} still logs in");
    }
}

const GRANTS: &str = "
CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE SCHEMA empty;
CREATE TABLE s1.t1 (x int); CREATE TABLE s1.t2 (x int); CREATE TABLE s2.t3 (x int);
CREATE VIEW s1.v AS SELECT x FROM s1.t1;
CREATE GROUP g1; CREATE GROUP g2; CREATE GROUP g3;
GRANT CREATE, TEMP ON DATABASE dev TO app;
GRANT USAGE ON SCHEMA s1 TO app; GRANT USAGE, CREATE ON SCHEMA s2 TO app;
GRANT USAGE ON SCHEMA empty TO app;
GRANT SELECT, INSERT ON s1.t1 TO app; GRANT SELECT ON s1.v TO app; GRANT UPDATE ON s2.t3 TO app;
ALTER GROUP g1 ADD USER app;
GRANT SELECT ON s1.t2 TO GROUP g2;
";

#[tokio::test]
async fn alternating_users_keep_the_clones_privileges_in_line_with_the_originals() {
    let env = common::tls();
    env.create_user("app", "Initial-Passw0rd");
    env.pg().psql_db("dev", GRANTS).expect("grants");
    let master = env.standin_secret(env.pg().superuser(), env.pg().superuser_password());
    env.put("master", &master).await;
    let mut initial = env.standin_secret("app", "Initial-Passw0rd");
    initial["masterarn"] = json!("master");
    env.put("app", &initial).await;
    let r = env.rotation(RedshiftRotator::alternating_users(env.config().clone()));
    let app_privs = env.privileges("app");
    assert!(app_privs.contains("group g1"), "{app_privs:?}");
    assert!(app_privs.contains("schema empty USAGE"), "{app_privs:?}");
    assert!(app_privs.contains("table s1.v SELECT"), "{app_privs:?}");

    // First rotation: the clone is created with the original's privileges.
    r.rotate("app").await.expect("first rotation");
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "app_clone");
    check_rules(now["password"].as_str().unwrap());
    assert!(env.logs_in(&now).await);
    assert!(env.logs_in(&initial).await, "the original keeps working");
    assert_eq!(env.privileges("app_clone"), env.privileges("app"));
    assert!(
        env.stored_password("app_clone").starts_with("md5"),
        "the clone's password is stored as an md5 hash"
    );

    // Between rotations the original gains and loses privileges and groups.
    env.pg()
        .psql_db(
            "dev",
            "GRANT DELETE ON s1.t2 TO app; REVOKE INSERT ON s1.t1 FROM app; \
             ALTER GROUP g2 ADD USER app; ALTER GROUP g1 DROP USER app; \
             REVOKE CREATE ON SCHEMA s2 FROM app; REVOKE TEMP ON DATABASE dev FROM app; \
             GRANT CREATE ON SCHEMA s1 TO app; GRANT SELECT ON s2.t3 TO app;",
        )
        .unwrap();
    // Second rotation: pending is the original, current the clone. The clone, which
    // applications use during this rotation, gains what the original gained and loses
    // nothing yet.
    r.rotate("app").await.expect("second rotation");
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "app");
    assert!(env.logs_in(&now).await);
    let (a, c) = (env.privileges("app"), env.privileges("app_clone"));
    assert!(c.is_superset(&a), "the clone lacks {:?}", a.difference(&c));
    assert!(
        c.contains("table s1.t2 DELETE")
            && c.contains("group g2")
            && c.contains("schema s1 CREATE"),
        "{c:?}"
    );
    assert!(
        c.contains("table s1.t1 INSERT") && c.contains("group g1"),
        "the clone in use lost a privilege mid-rotation: {c:?}"
    );

    // A table the clone creates stays fully its own after the next rotation.
    env.pg()
        .psql_db(
            "dev",
            "SET ROLE app_clone; CREATE TABLE s1.owned (x int); RESET ROLE;",
        )
        .unwrap();
    // Third rotation: the clone is pending and follows the original exactly, losses too.
    r.rotate("app").await.expect("third rotation");
    let c = env.privileges("app_clone");
    assert!(
        !c.contains("table s1.t1 INSERT") && !c.contains("group g1"),
        "{c:?}"
    );
    assert!(!c.contains("schema s2 CREATE"), "{c:?}");
    assert!(
        c.contains("table s1.owned SELECT") && c.contains("table s1.owned DELETE"),
        "{c:?}"
    );
    // Apart from its own table, the pair is equal.
    let a = env.privileges("app");
    let c_without: BTreeSet<_> = c
        .iter()
        .filter(|l| !l.contains("s1.owned"))
        .cloned()
        .collect();
    let a_without: BTreeSet<_> = a
        .iter()
        .filter(|l| !l.contains("s1.owned"))
        .cloned()
        .collect();
    assert_eq!(c_without, a_without);
    // A fourth rotation with nothing changed changes no privilege.
    let before = (env.privileges("app"), env.privileges("app_clone"));
    r.rotate("app").await.expect("fourth rotation");
    assert_eq!(before, (env.privileges("app"), env.privileges("app_clone")));
}

#[tokio::test]
async fn a_server_that_keeps_case_never_touches_the_lower_case_namesake() {
    // On the stand-in (as on Redshift with enable_case_sensitive_identifier) `App_clone` and
    // `app_clone` are two users: creating the clone of `App` must not change `app_clone`.
    let env = common::start();
    env.create_user("App", "Initial-Passw0rd");
    env.create_user("app_clone", "Bystander-Passw0rd");
    let bystander = env.stored_password("app_clone");
    env.put(
        "master",
        &env.standin_secret(env.pg().superuser(), env.pg().superuser_password()),
    )
    .await;
    let mut initial = env.standin_secret("App", "Initial-Passw0rd");
    initial["masterarn"] = json!("master");
    env.put("app", &initial).await;
    let r = env.rotation(RedshiftRotator::alternating_users(env.config().clone()));
    r.rotate("app").await.expect("rotate");
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "App_clone");
    assert!(env.logs_in(&now).await);
    assert_eq!(
        env.stored_password("app_clone"),
        bystander,
        "the namesake was changed"
    );
    assert_eq!(
        env.stored_password("App_clone"),
        sql::md5_password(now["password"].as_str().unwrap(), "App_clone")
    );
    // And back: the original `App` is set, not `app`.
    r.rotate("app").await.expect("rotate back");
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "App");
    assert!(env.logs_in(&now).await);
    assert_eq!(env.stored_password("app_clone"), bystander);
}

#[tokio::test]
async fn a_redshift_session_has_only_the_settings_redshift_accepts() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    let r = RedshiftRotator::single_user(env.config().clone());
    let mut s = r
        .login(
            &parse(&env.standin_secret("app", "Initial-Passw0rd")),
            Deadline::after(std::time::Duration::from_secs(10)),
        )
        .await
        .unwrap();
    let settings: (String, String, String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), \
         current_setting('idle_in_transaction_session_timeout'), current_setting('extra_float_digits'), \
         current_setting('application_name'), current_database()",
    )
    .fetch_one(s.connection())
    .await
    .unwrap();
    r.close(s).await;
    // statement_timeout set (after login), the others left at the server's defaults, and the
    // database is Redshift's default `dev` (the secret has no dbname).
    assert_ne!(settings.0, "0", "{settings:?}");
    assert_eq!(
        (
            settings.1.as_str(),
            settings.2.as_str(),
            settings.3.as_str(),
            settings.4.as_str(),
            settings.5.as_str()
        ),
        ("0", "0", "1", "", "dev"),
        "{settings:?}"
    );
}

#[tokio::test]
async fn a_clone_name_over_127_bytes_is_refused_before_anything_is_written() {
    use rotation_core::testing::{FakeDatabase, FakeRotator, Operation, RecordingStore};
    let dir = tempfile::tempdir().unwrap();
    let local = LocalSecretStore::new(dir.path().join("s.json"));
    // 122 bytes: "_clone" makes 128, one over Redshift's limit; 121 fits exactly.
    for (len, fits) in [(122, false), (121, true)] {
        let name = "u".repeat(len);
        let id = format!("s{len}");
        let value = json!({"engine": "redshift", "host": "h", "username": name, "password": "Initial-Passw0rd", "masterarn": "m"});
        local
            .create_secret(&id, &SecretString::from(value.to_string()))
            .await
            .unwrap();
        let store = RecordingStore::new(local.clone());
        let db = FakeDatabase::new();
        let r = Rotation::new(
            store.clone(),
            FakeRotator::new(db, rotation_core::Strategy::AlternatingUsers).with_profile(&PROFILE),
            PasswordPolicy::defaults(&PROFILE.password),
        );
        let e = r.rotate(&id).await;
        if fits {
            // It gets past createSecret (the fake has no master to act as).
            assert_eq!(store.count(Operation::PutSecretValue), 1, "{e:?}");
        } else {
            let e = e.unwrap_err();
            assert_eq!(e.kind(), "UsernameTooLong", "{e}");
            assert_eq!(store.count(Operation::PutSecretValue), 0);
            assert_eq!(store.count(Operation::GetRandomPassword), 0);
        }
    }
}
