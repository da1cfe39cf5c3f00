//! Hostile setups of the DocumentDB engine against SecantusDB (odd user names, a planted
//! clone, a master without userAdmin, odd `ssl` values, a stalled `updateUser`, the plaintext
//! fallback, the temporary CA file): each is refused with a typed error that changes nothing,
//! or rotates correctly.

use std::time::{Duration, Instant};

use rotation_core::testing::json;
use rotation_core::{Deadline, ErrorKind, Rotator, Stage};
use rotation_documentdb::DocumentDbRotator;
use rotation_testkit::TcpProxy;
use rotation_trust::Trust;
use serde_json::json;

mod common;
use common::{DocumentDbEnv, Env, parse};

/// A self-service user `app` in admin behind a proxy; returns (env, proxy).
fn single_user_behind_proxy() -> (Env, TcpProxy) {
    let env = common::with_app_user(false);
    let proxy = TcpProxy::to_port(env.db().port()).unwrap();
    (env, proxy)
}

/// A network that stalls while `updateUser` is in flight: the step fails by its deadline. The
/// known limit (the crate docs; the test engine's `Limits`): the held `updateUser` reaches
/// the server after the step failed and the client closed, and the server applies it, so the
/// old (AWSCURRENT) password stops working although the step said it failed; the next
/// rotation recovers the password from the unlabelled version (the shared `late_change`
/// suite). Asserted as it is, so that a change of it fails here.
#[tokio::test]
async fn a_stalled_update_user_fails_in_time_and_lands_late_as_documented() {
    let (env, proxy) = single_user_behind_proxy();
    let r = DocumentDbRotator::single_user(env.connect_settings().clone());
    let current = env.secret_at(proxy.port(), "app", "Initial-Passw0rd", None);
    let deadline = Deadline::after(Duration::from_secs(3));
    let mut s = r.login(&parse(&current), deadline).await.expect("login");
    proxy.stall();
    let started = Instant::now();
    let e = r
        .set_own_password(
            &mut s,
            &parse(&env.secret_in("app", "Late-Passw0rd-123", None)),
        )
        .await
        .expect_err("a stalled network fails the step");
    let took = started.elapsed();
    r.close(s).await;
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    // The step reported failure: the old password works (abort's proof would pass now).
    assert!(env.logs_in_db("app", "Initial-Passw0rd", "admin"));
    // The network delivers what it held.
    proxy.resume();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = env.logs_in_db("app", "Initial-Passw0rd", "admin");
    let late = env.logs_in_db("app", "Late-Passw0rd-123", "admin");
    assert!(
        !old && late,
        "the documented limit changed (a late updateUser no longer lands): old logs in {old}, \
         late logs in {late}; update the crate docs, RELIABILITY.md and the test engine's Limits"
    );
}

/// Same, held: the step fails before its deadline when the stall hits the login or a command.
#[tokio::test]
async fn stalls_fail_login_and_test_before_the_deadline() {
    let (env, proxy) = single_user_behind_proxy();
    let r = DocumentDbRotator::single_user(env.connect_settings().clone());
    let current = env.secret_at(proxy.port(), "app", "Initial-Passw0rd", None);
    // Login: the server accepts TCP and never answers.
    proxy.stall();
    let started = Instant::now();
    let e = r
        .login(&parse(&current), Deadline::after(Duration::from_secs(3)))
        .await
        .expect_err("stalled login");
    let took = started.elapsed();
    assert!(
        matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unreachable),
        "{e}"
    );
    assert!(took < Duration::from_millis(3500), "login took {took:?}");
    proxy.resume();
    // testSecret's connectionStatus.
    let deadline = Deadline::after(Duration::from_secs(3));
    let mut s = r.login(&parse(&current), deadline).await.expect("login");
    proxy.stall();
    let started = Instant::now();
    let e = r
        .test_session(&mut s, &parse(&current), None)
        .await
        .expect_err("stalled test");
    let took = started.elapsed();
    r.close(s).await;
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(took < Duration::from_millis(3500), "test took {took:?}");
    assert!(!format!("{e:?}").contains("Initial-Passw0rd"));
    proxy.resume();
}

/// NUL, very long and normalisation-sensitive names, `$`/dots, a user named like the admin
/// in another database: single user rotates each.
#[tokio::test]
async fn more_hostile_user_names_rotate() {
    let env = common::start(false);
    env.db().create_self_service_role().unwrap();
    let names = [
        // `,` and `=` (SCRAM's =2C / =3D escapes) are left out: SecantusDB itself refuses
        // pymongo's login for such names, so it cannot judge the engine there.
        "nul\0name".to_string(),
        "x".repeat(4000),
        "caf\u{e9}".to_string(),   // composed
        "cafe\u{301}".to_string(), // decomposed: a different user
        "\u{fb01}le".to_string(),  // ligature, NFKC "file"
        "root".to_string(),        // the admin's name, in another database
        "$where".to_string(),
        "a.b.$c".to_string(),
    ];
    let r = env.rotation(DocumentDbRotator::single_user(
        env.connect_settings().clone(),
    ));
    let mut skipped = vec![];
    for (i, name) in names.iter().enumerate() {
        let db = if name == "root" { "appdb" } else { "admin" };
        let pw = format!("Initial-Passw0rd-{i}");
        if !env.try_create_user(name, &pw, db, "[{'role': 'selfService', 'db': 'admin'}]") {
            skipped.push(name.chars().take(20).collect::<String>());
            continue;
        }
        let initial = env.secret_in(name, &pw, Some(db));
        let id = format!("s{i}");
        json::put(&env.store, &id, &initial).await;
        r.rotate(&id).await.unwrap_or_else(|e| {
            panic!(
                "{:?}: {}",
                &name[..name.len().min(20)],
                rotation_core::error_chain(&e)
            )
        });
        let now = json::at(&env.store, &id, Stage::Current).await;
        let new = now["password"].as_str().unwrap();
        if name.contains('\0') {
            // The independent check passes credentials in the environment: no NUL there.
            let engine = DocumentDbRotator::single_user(env.connect_settings().clone());
            assert!(json::logs_in(&engine, &now).await, "{name:?}: new logs in");
            assert!(
                !json::logs_in(&engine, &initial).await,
                "{name:?}: old refused"
            );
            continue;
        }
        assert!(env.logs_in_db(name, new, db), "{name:.20}: new logs in");
        assert!(!env.logs_in_db(name, &pw, db), "{name:.20}: old refused");
    }
    // The admin was not touched by the `root` of appdb.
    assert!(env.logs_in_db(env.db().admin(), env.db().admin_password(), "admin"));
    // The two café users are distinct and the other one was not changed by the first.
    eprintln!("names the server refused to create: {skipped:?}");
}

/// A user named like the master in another database is a different user, but the known limit
/// (the check compares names without the authentication database) refuses alternating users
/// for `root` in appdb (master `root` in admin) as "master in pair": more than needed, and
/// nothing changes. Asserted as it is, so that a change of it fails here.
#[tokio::test]
async fn a_pair_named_like_the_master_in_another_database_is_refused_and_changes_nothing() {
    let env = common::start(true);
    env.create_user_in(
        "root",
        "Initial-Passw0rd",
        "appdb",
        "[{'role': 'readWrite', 'db': 'appdb'}]",
    );
    let master = env.secret_in(env.db().admin(), env.db().admin_password(), None);
    json::put(&env.store, "master", &master).await;
    let mut initial = env.secret_in("root", "Initial-Passw0rd", Some("appdb"));
    initial["masterarn"] = json!("master");
    json::put(&env.store, "app", &initial).await;
    let r = env.rotation(DocumentDbRotator::alternating_users(
        env.connect_settings().clone(),
    ));
    let e = r
        .rotate("app")
        .await
        .expect_err("refused as master in pair");
    assert_eq!(
        e.kind(),
        "MasterInPair",
        "{}",
        rotation_core::error_chain(&e)
    );
    assert!(env.logs_in_db("root", "Initial-Passw0rd", "appdb"));
    assert!(env.logs_in_db(env.db().admin(), env.db().admin_password(), "admin"));
    assert_eq!(
        json::at(&env.store, "app", Stage::Current).await["password"],
        "Initial-Passw0rd"
    );
}

/// A clone that already exists with more roles than the original (here `root`, planted by
/// someone) loses them when it is set; a clone in another database is not the pair's.
#[tokio::test]
async fn a_planted_clone_loses_its_extra_roles_and_another_databases_clone_is_ignored() {
    let env = common::start(true);
    env.create_user_in(
        "app",
        "Initial-Passw0rd",
        "appdb",
        "[{'role': 'readWrite', 'db': 'appdb'}]",
    );
    env.create_user_in(
        "app_clone",
        "Planted-Passw0rd",
        "appdb",
        "[{'role': 'readWrite', 'db': 'appdb'}, {'role': 'root', 'db': 'admin'}]",
    );
    env.create_user_in(
        "app_clone",
        "Other-Db-Passw0rd",
        "admin",
        "[{'role': 'root', 'db': 'admin'}]",
    );
    let master = env.secret_in(env.db().admin(), env.db().admin_password(), None);
    json::put(&env.store, "master", &master).await;
    let mut initial = env.secret_in("app", "Initial-Passw0rd", Some("appdb"));
    initial["masterarn"] = json!("master");
    json::put(&env.store, "app", &initial).await;
    let r = env.rotation(DocumentDbRotator::alternating_users(
        env.connect_settings().clone(),
    ));
    r.rotate("app").await.expect("rotation");
    let now = json::at(&env.store, "app", Stage::Current).await;
    assert_eq!(now["username"], "app_clone");
    assert_eq!(now["dbname"], "appdb");
    assert_eq!(
        env.roles("app_clone", "appdb"),
        env.roles("app", "appdb"),
        "the planted clone kept extra roles"
    );
    assert!(!env.logs_in_db("app_clone", "Planted-Passw0rd", "appdb"));
    // The other database's clone is untouched (not the pair's).
    assert!(env.logs_in_db("app_clone", "Other-Db-Passw0rd", "admin"));
}

/// A master without userAdmin rights: PermissionDenied, nothing created, current still works.
#[tokio::test]
async fn a_master_without_user_admin_changes_nothing() {
    let env = common::start(true);
    env.create_user_in(
        "app",
        "Initial-Passw0rd",
        "appdb",
        "[{'role': 'readWrite', 'db': 'appdb'}]",
    );
    env.create_user_in(
        "weakmaster",
        "Weak-Passw0rd-1",
        "admin",
        "[{'role': 'readAnyDatabase', 'db': 'admin'}]",
    );
    let master = env.secret_in("weakmaster", "Weak-Passw0rd-1", None);
    json::put(&env.store, "master", &master).await;
    let mut initial = env.secret_in("app", "Initial-Passw0rd", Some("appdb"));
    initial["masterarn"] = json!("master");
    json::put(&env.store, "app", &initial).await;
    let r = env.rotation(DocumentDbRotator::alternating_users(
        env.connect_settings().clone(),
    ));
    let e = r.rotate("app").await.expect_err("refused");
    let text = format!("{e:?} {e} {}", rotation_core::error_chain(&e));
    assert!(!text.contains("Weak-Passw0rd-1"), "{text}");
    assert!(!text.contains("Initial-Passw0rd"), "{text}");
    assert!(env.roles("app_clone", "appdb").is_none(), "clone created");
    assert!(env.logs_in_db("app", "Initial-Passw0rd", "appdb"));
    let now = json::at(&env.store, "app", Stage::Current).await;
    assert_eq!(now["username"], "app");
}

/// The crate docs: "a `replicaSet` key in the secret asks for replica-set discovery instead" (the key
/// is read from the secret's raw JSON). A set name the server does not have must fail the
/// login (the driver checks `setName`); the right one logs in.
#[tokio::test]
async fn replica_set_key_is_honoured() {
    let env = common::with_app_user(true);
    let r = DocumentDbRotator::single_user(env.connect_settings().clone());
    let mut s = env.secret_in("app", "Initial-Passw0rd", None);
    s["replicaSet"] = json!("rs0");
    let sess = r
        .login(&parse(&s), Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap_or_else(|e| panic!("rs0: {e}"));
    r.close(sess).await;
    s["replicaSet"] = json!("wrong-set");
    let started = Instant::now();
    let result = r
        .login(&parse(&s), Deadline::after(Duration::from_secs(4)))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "{:?}",
        started.elapsed()
    );
    match result {
        Ok(sess) => {
            r.close(sess).await;
            panic!("a secret naming replica set wrong-set logged in to set rs0 (key ignored)");
        }
        Err(e) => assert!(!format!("{e:?}").contains("Initial-Passw0rd"), "{e:?}"),
    }
}

/// `ssl` odd values: anything but false / "false" means verified TLS, so against a
/// plaintext-only server they must all fail (never a quiet plaintext login).
#[tokio::test]
async fn odd_ssl_values_never_mean_plaintext() {
    let env = common::with_app_user(false);
    let r = DocumentDbRotator::single_user(env.connect_settings().clone());
    for v in [
        json!("no"),
        json!(0),
        json!("0"),
        json!(null),
        json!({"$ne": true}),
        json!("FALSE "),
        json!(" false"),
        json!([false]),
        json!("off"),
    ] {
        let mut s = env.secret_in("app", "Initial-Passw0rd", None);
        s["ssl"] = v.clone();
        let started = Instant::now();
        match r
            .login(&parse(&s), Deadline::after(Duration::from_secs(5)))
            .await
        {
            Ok(sess) => {
                r.close(sess).await;
                panic!("ssl {v}: logged in over plaintext");
            }
            Err(e) => {
                // TLS against a plaintext server: the server drops the handshake, which ends
                // the attempt at once as a TLS failure (so ALLOW_PLAINTEXT_FALLBACK applies).
                assert_eq!(e.kind(), ErrorKind::Tls, "ssl {v}: {e}");
                assert!(
                    started.elapsed() < Duration::from_millis(1500),
                    "ssl {v}: {:?}",
                    started.elapsed()
                );
            }
        }
    }
}

/// `ALLOW_PLAINTEXT_FALLBACK`: against a server without TLS, the TLS attempt fails at once
/// (the server drops the handshake) and the login falls back to plaintext, within a second,
/// not after the connect timeout. Without the setting, the same login is a TLS error.
#[tokio::test]
async fn plaintext_fallback_is_prompt_and_only_when_allowed() {
    let env = common::with_app_user(false);
    let secret = env.secret_in("app", "Initial-Passw0rd", None);
    let mut with_tls = secret.clone();
    with_tls.as_object_mut().unwrap().remove("ssl");
    let strict = DocumentDbRotator::single_user(env.connect_settings().clone());
    let e = strict
        .login(&parse(&with_tls), Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let mut settings = env.connect_settings().clone();
    settings.allow_plaintext_fallback = true;
    let lenient = DocumentDbRotator::single_user(settings);
    let started = Instant::now();
    let session = lenient
        .login(&parse(&with_tls), Deadline::after(Duration::from_secs(10)))
        .await
        .expect("falls back to plaintext");
    lenient.close(session).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "fallback took {:?}",
        started.elapsed()
    );
}

/// The temporary CA file: private, only certificates, the same file for the process.
#[tokio::test]
async fn the_temporary_ca_file_is_private_and_only_certificates() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = rotation_testkit::TestCa::generate(dir.path(), &["localhost"]).unwrap();
    let trust = Trust::load(Some(&ca.ca_pem)).unwrap();
    let p1 = trust.pem_file().unwrap().to_path_buf();
    let p2 = trust.pem_file().unwrap().to_path_buf();
    assert_eq!(p1, p2);
    let meta = std::fs::metadata(&p1).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "{:o}",
        meta.permissions().mode()
    );
    let text = std::fs::read_to_string(&p1).unwrap();
    assert!(!text.contains("PRIVATE KEY"));
    drop(trust);
    assert!(!p1.exists(), "the CA file outlives its Trust");
}
