//! Both strategies against real PostgreSQL clusters: TLS verify-full and `"ssl": false`, the
//! RDS CA bundle's path, SCRAM verifiers, hostile names and passwords, error kinds, and the
//! server log. (The "No stranded password" regressions, which every engine must pass, are in
//! the workspace suites: tests/tests/suites/ (stranded.rs, stray_change.rs, late_change.rs).)

#![recursion_limit = "256"]

mod common;

use common::{Env, PgEnv, parse};
use std::sync::Arc;
use std::time::Duration;

use rotation_core::{Deadline, ErrorKind, Rotator, Stage, Step, StepOutcome};
use rotation_postgres::{PgConfig, PostgresRotator, scram};
use rotation_testkit::{PgAuth, PgOptions};
use rotation_trust::Trust;
use secrecy::SecretString;
use serde_json::{Value, json};

#[tokio::test]
async fn client_side_scram_verifier_matches_the_server() {
    let env = common::plain();
    env.create_user("verifier_check", "p@ss w'rd\\ü");
    let stored = env
        .pg()
        .psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_check'")
        .unwrap();
    // SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>
    let (head, _) = stored.split_once('$').unwrap().1.split_once('$').unwrap();
    let (iterations, salt) = head.split_once(':').unwrap();
    use base64::Engine;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(salt)
        .unwrap();
    let ours = scram::verifier_with_salt(
        &SecretString::from("p@ss w'rd\\ü"),
        &salt,
        iterations.parse().unwrap(),
    );
    assert_eq!(ours.expose(), stored);
}

async fn single_user_round(env: &Env, ssl: Option<Value>) {
    env.create_user("app", "Initial-pw-1");
    let initial = env.secret("app", "Initial-pw-1", ssl);
    env.put("app", &initial).await;
    let rotation = env.single();
    let report = rotation.rotate("app").await.unwrap();
    assert_eq!(
        report.steps[1].1,
        StepOutcome::PasswordSet(rotation_core::Credentials::Current)
    );
    let current = env.value("app", Stage::Current).await;
    assert!(env.logs_in(&current).await, "new password logs in");
    assert!(!env.logs_in(&initial).await, "old password no longer does");
    assert_eq!(
        env.pg()
            .psql("SELECT substr(rolpassword, 1, 14) FROM pg_authid WHERE rolname = 'app'")
            .unwrap(),
        "SCRAM-SHA-256$"
    );
    // And again, from the rotated state.
    rotation.rotate("app").await.unwrap();
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
    assert!(!env.logs_in(&current).await);
}

#[tokio::test]
async fn single_user_with_tls_verify_full() {
    single_user_round(&common::tls(), Some(json!(true))).await;
}

#[tokio::test]
async fn single_user_tls_is_the_default_when_ssl_is_absent() {
    single_user_round(&common::tls(), None).await;
}

#[tokio::test]
async fn single_user_with_ssl_false() {
    single_user_round(&common::plain(), Some(json!(false))).await;
}

#[tokio::test]
async fn no_silent_downgrade_without_opt_in() {
    let env = common::plain(); // a server without TLS
    env.create_user("app", "Initial-pw-1");
    let secret = parse(&env.secret("app", "Initial-pw-1", None));
    let strict = PostgresRotator::single_user(env.config().clone());
    let e = strict.check_login(&secret).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    // AWS's fallback, only when asked for.
    let lenient = PostgresRotator::single_user(PgConfig {
        allow_plaintext_fallback: true,
        ..env.config().clone()
    });
    lenient.check_login(&secret).await.unwrap();
    // An explicit "ssl": true never falls back.
    let explicit = parse(&env.secret("app", "Initial-pw-1", Some(json!("true"))));
    assert_eq!(
        lenient.check_login(&explicit).await.unwrap_err().kind(),
        ErrorKind::Tls
    );
}

#[tokio::test]
async fn certificate_for_another_host_is_refused() {
    let env = common::start(PgOptions {
        tls_names: Some(vec!["db.example.test".into()]),
        ..PgOptions::default()
    });
    env.create_user("app", "Initial-pw-1");
    let rotator = PostgresRotator::single_user(env.config().clone());
    for host in ["localhost", "127.0.0.1"] {
        let mut v = env.secret("app", "Initial-pw-1", Some(json!(true)));
        v["host"] = json!(host);
        let e = rotator.check_login(&parse(&v)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{host}: {e}");
    }
    // Without the CA, even the right name fails: nothing is trusted by accident.
    let no_ca = PostgresRotator::single_user(PgConfig::default());
    let e = no_ca
        .check_login(&parse(&env.secret(
            "app",
            "Initial-pw-1",
            Some(json!(true)),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls);
}

#[tokio::test]
async fn alternating_users_create_clone_and_keep_privileges() {
    for tls in [true, false] {
        let env = if tls { common::tls() } else { common::plain() };
        let ssl = Some(json!(tls));
        env.create_user("app", "Initial-pw-1");
        env.pg().psql("CREATE TABLE app_data (x int); ALTER TABLE app_data OWNER TO app; INSERT INTO app_data VALUES (7)").unwrap();
        let master = env.put("master", &env.master_secret(ssl.clone())).await;
        let mut initial = env.secret("app", "Initial-pw-1", ssl.clone());
        initial["masterarn"] = json!(master);
        env.put("app", &initial).await;
        let rotation = env.alternating();

        rotation.rotate("app").await.unwrap();
        let first = env.value("app", Stage::Current).await;
        assert_eq!(first["username"], "app_clone");
        assert!(
            env.logs_in(&first).await && env.logs_in(&initial).await,
            "both users work"
        );
        assert_eq!(
            env.pg()
                .psql("SELECT pg_has_role('app_clone', 'app', 'MEMBER')")
                .unwrap(),
            "t"
        );
        // The clone reaches the original's data through membership.
        let clone = parse(&first);
        let mut conn = rotation_postgres::connect::connect(&clone, &env.config())
            .await
            .unwrap();
        let x: i32 = sqlx::query_scalar("SELECT x FROM app_data")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(x, 7);

        rotation.rotate("app").await.unwrap();
        let second = env.value("app", Stage::Current).await;
        assert_eq!(second["username"], "app");
        assert!(env.logs_in(&second).await && env.logs_in(&first).await);
        assert!(
            !env.logs_in(&initial).await,
            "the original's old password is gone"
        );

        // Drift: membership revoked by hand; the next rotation (to the clone) restores it (W7).
        env.pg().psql("REVOKE app FROM app_clone").unwrap();
        rotation.rotate("app").await.unwrap();
        assert_eq!(
            env.pg()
                .psql("SELECT pg_has_role('app_clone', 'app', 'MEMBER')")
                .unwrap(),
            "t"
        );
        // Every key of the AWS layout kept: masterarn, string port, dbname.
        let third = env.value("app", Stage::Current).await;
        assert_eq!(third["masterarn"], initial["masterarn"]);
        assert_eq!(third["port"], initial["port"]);
        assert!(third["port"].is_string());
    }
}

#[tokio::test]
async fn alternating_test_secret_detects_drift() {
    let env = common::plain();
    env.create_user("app", "Initial-pw-1");
    let master = env
        .put("master", &env.master_secret(Some(json!(false))))
        .await;
    let mut initial = env.secret("app", "Initial-pw-1", Some(json!(false)));
    initial["masterarn"] = json!(master);
    env.put("app", &initial).await;
    let rotation = env.alternating();
    let t = uuid_token();
    env.store.start_rotation("app", &t).await.unwrap();
    let ev = |s| rotation_core::RotationEvent::new(s, "app", &t);
    rotation.handle(&ev(Step::CreateSecret)).await.unwrap();
    rotation.handle(&ev(Step::SetSecret)).await.unwrap();
    env.pg().psql("REVOKE app FROM app_clone").unwrap();
    let e = rotation.handle(&ev(Step::TestSecret)).await.unwrap_err();
    assert_eq!(e.kind(), "PendingTestFailed");
    assert_eq!(e.engine_kind(), Some(ErrorKind::PermissionDenied), "{e}");
}

fn uuid_token() -> String {
    format!(
        "{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn server_log_never_holds_a_password() {
    let env = common::start(PgOptions {
        log_statements: true,
        ..PgOptions::default()
    });
    env.create_user("app", "Initial-pw-1");
    env.create_user("solo", "Initial-pw-2");
    let master = env
        .put("master", &env.master_secret(Some(json!(false))))
        .await;
    let mut alt = env.secret("app", "Initial-pw-1", Some(json!(false)));
    alt["masterarn"] = json!(master);
    env.put("app", &alt).await;
    env.put(
        "solo",
        &env.secret("solo", "Initial-pw-2", Some(json!(false))),
    )
    .await;
    let mut passwords = vec![];
    for _ in 0..2 {
        env.alternating().rotate("app").await.unwrap();
        env.single().rotate("solo").await.unwrap();
        for name in ["app", "solo"] {
            passwords.push(
                env.value(name, Stage::Current).await["password"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    let log = env.pg().server_log();
    assert!(log.contains("ALTER ROLE"), "statements were logged");
    assert!(
        log.contains("SCRAM-SHA-256$"),
        "only verifiers reach the server"
    );
    for pw in &passwords {
        assert!(
            !log.contains(pw.as_str()),
            "a new password appeared in the server log"
        );
    }
}

const HOSTILE_USERS: [&str; 12] = [
    "UpperCase",
    "with space",
    "quote\"double",
    "quote'single",
    "per%cent",
    "per%s",
    "ünïcödé",
    "semi;colon",
    "back\\slash",
    "dollar$$sign",
    "中文用户",
    "x_clone_clone",
];
// No control characters and nothing unassigned in Unicode 3.2 (emoji): SASLprep prohibits
// them and sqlx then refuses to authenticate (GetRandomPassword never generates them); see
// `names_sqlx_cannot_log_in_with_fail_clearly`.
const HOSTILE_PASSWORDS: [&str; 11] = [
    "it's",
    "dq\"inside",
    "back\\slash\\",
    "$$dollar$$",
    "per%s%d",
    "-- comment",
    "'; DROP ROLE postgres; --",
    "ünïcödé pässwörd",
    "sp ace",
    "back`tick`",
    "中文密码",
];

#[tokio::test]
async fn hostile_usernames_and_passwords_rotate() {
    let env = common::plain();
    let rotator = PostgresRotator::single_user(env.config().clone());
    for (i, user) in HOSTILE_USERS.iter().enumerate() {
        let initial_pw = HOSTILE_PASSWORDS[i % HOSTILE_PASSWORDS.len()];
        env.create_user(user, initial_pw);
        let name = format!("secret-{i}");
        let initial = env.secret(user, initial_pw, Some(json!(false)));
        env.put(&name, &initial).await;
        if let Err(e) = rotation_postgres::connect::check(&parse(&initial), &env.config()).await {
            panic!("{user}: initial login: {}", rotation_core::error_chain(&e));
        }
        env.single()
            .rotate(&name)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let rotated = env.value(&name, Stage::Current).await;
        assert!(env.logs_in(&rotated).await, "{user}: rotated login");
        assert!(!env.logs_in(&initial).await, "{user}");
    }
    // Every hostile password, set by the engine, logs in.
    env.create_user("pwtest", "start");
    let mut acting = env.secret("pwtest", "start", Some(json!(false)));
    for pw in HOSTILE_PASSWORDS {
        let target = env.secret("pwtest", pw, Some(json!(false)));
        let deadline = Deadline::after(Duration::from_secs(30));
        let mut session = rotator.login(&parse(&acting), deadline).await.unwrap();
        rotator
            .set_own_password(&mut session, &parse(&target))
            .await
            .unwrap_or_else(|e| panic!("{pw:?}: {e}"));
        rotator.close(session).await;
        assert!(env.logs_in(&target).await, "{pw:?}");
        assert!(!env.logs_in(&acting).await);
        acting = target;
    }
    // Alternating users with hostile names: the clone gets the same treatment.
    let master = env
        .put("master", &env.master_secret(Some(json!(false))))
        .await;
    for (i, user) in HOSTILE_USERS.iter().take(10).enumerate() {
        let name = format!("alt-{i}");
        let user = &format!("A{user}");
        let pw = HOSTILE_PASSWORDS[i % HOSTILE_PASSWORDS.len()];
        env.create_user(user, pw);
        let mut v = env.secret(user, pw, Some(json!(false)));
        v["masterarn"] = json!(master);
        env.put(&name, &v).await;
        env.alternating()
            .rotate(&name)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let rotated = env.value(&name, Stage::Current).await;
        assert_eq!(
            rotated["username"].as_str().unwrap(),
            format!("{user}_clone")
        );
        assert!(env.logs_in(&rotated).await, "{user}_clone");
    }
}

#[tokio::test]
async fn errors_tell_apart_what_went_wrong() {
    let env = common::plain();
    env.create_user("app", "Initial-pw-1");
    env.create_user("weak", "Weak-pw-1");
    let rotator = PostgresRotator::single_user(PgConfig {
        connect_timeout: std::time::Duration::from_secs(1),
        ..env.config().clone()
    });
    let base = env.secret("app", "Initial-pw-1", Some(json!(false)));
    let kind = |v: Value| {
        let r = rotator.clone();
        async move { r.check_login(&parse(&v)).await.unwrap_err() }
    };
    let mut wrong_pw = base.clone();
    wrong_pw["password"] = json!("Wrong-pw-9");
    let e = kind(wrong_pw).await;
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert!(
        !e.to_string().contains("Wrong-pw-9")
            && !rotation_core::error_chain(&e).contains("Wrong-pw-9")
    );

    let mut unknown_db = base.clone();
    unknown_db["dbname"] = json!("nosuchdb");
    assert_eq!(kind(unknown_db).await.kind(), ErrorKind::UnknownDatabase);

    let mut closed = base.clone();
    closed["port"] = json!(rotation_testkit::free_port());
    assert_eq!(kind(closed).await.kind(), ErrorKind::Unreachable);

    // A server that accepts TCP and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut hung = base.clone();
    hung["port"] = json!(silent.local_addr().unwrap().port());
    assert_eq!(kind(hung).await.kind(), ErrorKind::Timeout);

    let mut tls_required = base.clone();
    tls_required["ssl"] = json!(true);
    assert_eq!(kind(tls_required).await.kind(), ErrorKind::Tls);

    // A master without the right to create roles: permission denied, named as such.
    let master = env
        .put(
            "weak-master",
            &env.secret("weak", "Weak-pw-1", Some(json!(false))),
        )
        .await;
    let mut v = base.clone();
    v["masterarn"] = json!(master);
    env.put("app", &v).await;
    let e = env.alternating().rotate("app").await.unwrap_err();
    assert_eq!(e.kind(), "SetPasswordFailed", "{e}");
    assert_eq!(e.engine_kind(), Some(ErrorKind::PermissionDenied), "{e}");
    assert!(e.to_string().contains("app_clone"));
}

#[tokio::test]
async fn aws_layout_secrets_rotate_unchanged_but_for_the_password() {
    let env = common::plain();
    env.create_user("app", "Initial-pw-1");
    let mut aws = env.secret("app", "Initial-pw-1", Some(json!("false")));
    aws["engine"] = json!("aurora-postgresql");
    aws["dbInstanceIdentifier"] = json!("db-1");
    aws["dbClusterIdentifier"] = json!("cluster-1");
    aws["custom"] = json!({"nested": [1, "two", null]});
    env.put("app", &aws).await;
    env.single().rotate("app").await.unwrap();
    let rotated = env.value("app", Stage::Current).await;
    let mut expected = aws.clone();
    expected["password"] = rotated["password"].clone();
    assert_eq!(rotated, expected);
    // Key order kept too.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&rotated), keys(&aws));
}

#[tokio::test]
async fn md5_server_accepts_scram_verifiers() {
    // RDS clusters with password_encryption=md5 still accept the SCRAM verifier we send.
    let env = common::start(PgOptions {
        auth: PgAuth::Md5,
        ..PgOptions::default()
    });
    env.create_user("app", "Initial-pw-1");
    env.put(
        "app",
        &env.secret("app", "Initial-pw-1", Some(json!(false))),
    )
    .await;
    env.single().rotate("app").await.unwrap();
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

#[tokio::test]
async fn names_sqlx_cannot_log_in_with_fail_clearly() {
    // sqlx SASLpreps the user name and the password on the client and refuses characters that
    // SASLprep prohibits (emoji are unassigned in its Unicode 3.2 tables). The error says so.
    let env = common::plain();
    env.create_user("emoji😀", "Plain-pw-1");
    let rotator = PostgresRotator::single_user(env.config().clone());
    let e = rotator
        .check_login(&parse(&env.secret(
            "emoji😀",
            "Plain-pw-1",
            Some(json!(false)),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(rotation_core::error_chain(&e).contains("SASLprep"), "{e}");
}

#[tokio::test]
async fn tls_server_name_verifies_a_host_alias_against_the_certificate_name() {
    // W2: the secret's host is an alias (here the address) of the name the certificate
    // carries; `tls_server_name` names the endpoint to connect to and verify.
    let env = common::start(PgOptions {
        tls_names: Some(vec!["localhost".into()]),
        ..PgOptions::tls()
    });
    env.create_user("app", "Initial-pw-1");
    let mut v = env.secret("app", "Initial-pw-1", Some(json!(true)));
    v["host"] = json!("127.0.0.1");
    let rotator = PostgresRotator::single_user(env.config().clone());
    let e = rotator.check_login(&parse(&v)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    v["tls_server_name"] = json!("localhost");
    rotator.check_login(&parse(&v)).await.unwrap();
    // A rotation keeps the key and uses it at every login.
    env.put("app", &v).await;
    env.single().rotate("app").await.unwrap();
    let rotated = env.value("app", Stage::Current).await;
    assert_eq!(rotated["tls_server_name"], "localhost");
    assert!(env.logs_in(&rotated).await);
}

#[tokio::test]
async fn an_rds_style_chain_is_trusted_through_the_embedded_bundle_path() {
    // The test CA stands in for Amazon RDS's: it goes where the embedded bundle goes, with no
    // CA_BUNDLE_PATH, and verify-full succeeds.
    let env = common::tls();
    env.create_user("app", "Initial-pw-1");
    let ca = std::fs::read(env.pg().ca_pem().unwrap()).unwrap();
    let config = PgConfig {
        trust: Arc::new(Trust::with_rds_bundle(&ca, None).unwrap()),
        ..PgConfig::default()
    };
    let mut v = env.secret("app", "Initial-pw-1", None);
    let secret = parse(&v);
    PostgresRotator::single_user(config.clone())
        .check_login(&secret)
        .await
        .unwrap();
    // Connected by address (which the certificate names too): no RDS certificate names one,
    // so the RDS CAs are not offered for it.
    v["host"] = json!("127.0.0.1");
    let e = PostgresRotator::single_user(config)
        .check_login(&parse(&v))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    // Without it, the secret (no `ssl` key: verified TLS) fails, saying what to change.
    let e = PostgresRotator::single_user(PgConfig::default())
        .check_login(&secret)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls);
    let text = e.to_string();
    assert!(
        text.contains("CA_BUNDLE_PATH") && text.contains("\"ssl\": false"),
        "{text}"
    );
}
