//! A rotation changes only its own user's password on its own server, and never after its step
//! gave up: a pending version naming another port, database or TLS server name, a previous
//! version on another server, the master's own password, a store write reported as timed out,
//! a password change queued past its deadline. Each reproduced a real problem found by
//! attacking the toolkit (it failed before the fix).

use rotation_core::{AbortMode, RotationEvent, SecretStore, Stage, Step};
use rotation_tests::engines::{Engine, EngineRotation, Env};
use rotation_tests::{all_engines, token};
use secrecy::SecretString;
use serde_json::{Value, json};

all_engines!(
    pending_with_another_port_must_not_change_the_password,
    pending_with_another_dbname_must_not_change_the_password,
    pending_with_another_tls_server_name_must_not_change_the_password,
    previous_on_another_server_is_not_changed,
    alternating_users_never_change_the_master_secrets_password,
    a_store_write_reported_as_timed_out_does_not_land_later,
    // Where the server has no lock a client can hold (its limits say so), it asserts the
    // engine's limits say so; a change still on its way in the network is `late_change`'s
    // an_alter_role_still_in_the_network_does_not_land_after_abort.
    a_timed_out_alter_role_does_not_land_after_abort,
);

/// Starts a rotation of `name` and runs createSecret; returns the token.
async fn create(env: &Env, r: &EngineRotation, name: &str) -> String {
    let t = token();
    env.store.start_rotation(name, &t).await.unwrap();
    r.handle(&RotationEvent::new(Step::CreateSecret, name, &t))
        .await
        .unwrap();
    t
}

/// Replaces the pending value the way an operator can on Secrets Manager: PutSecretValue of a
/// new version with the AWSPENDING label (the label moves to it).
async fn repoint_pending(env: &Env, name: &str, value: &Value) -> String {
    let t = token();
    env.store
        .put_value(
            name,
            &t,
            &SecretString::from(value.to_string()),
            &[Stage::Pending],
            None,
        )
        .await
        .unwrap();
    t
}

async fn pending_value(env: &Env, name: &str) -> Value {
    env.value(name, Stage::Pending).await
}

/// Found by attack (it failed before the fix). Single user: an AWSPENDING version whose `port` differs from AWSCURRENT's (same user
/// and host) passes setSecret's user/host check; setSecret logs in with AWSCURRENT (the right
/// server) and sets the pending password there, though the pending credentials can never log
/// in as written. testSecret then fails forever, `abort` cannot log in with the pending value
/// either (AbortUnsafe), and after `abort --force` no later rotation recovers it (recovery logs
/// in with the unlabelled version's own port). The password is stranded.
///
/// Expected: setSecret refuses (a typed mismatch error) and changes nothing, as it does for a
/// different host.
async fn pending_with_another_port_must_not_change_the_password(engine: Engine) {
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = env.single();
    create(&env, &r, "app").await;
    let mut edited = pending_value(&env, "app").await;
    let dead_port = rotation_testkit::free_port();
    edited["port"] = json!(dead_port);
    // A whole new pending value (else the first pending version, now unlabelled and holding
    // the same password, lets abort recover by luck).
    edited["password"] = env.password("Edited-pending-pw-1");
    repoint_pending(&env, "app", &edited).await;

    let e = r.resume("app").await.unwrap_err();
    eprintln!("resume: {}", rotation_core::error_chain(&e));
    let current = env.value("app", Stage::Current).await;
    let current_ok = env.logs_in(&current).await;
    if !current_ok {
        // Show that nothing recovers it.
        let a = r.abort("app", AbortMode::Safe).await;
        eprintln!(
            "abort: {:?}",
            a.as_ref().map_err(|e| rotation_core::error_chain(e))
        );
        let again = r.resume("app").await;
        eprintln!(
            "resume again: {:?}",
            again
                .as_ref()
                .map(|_| ())
                .map_err(|e| rotation_core::error_chain(e))
        );
    }
    assert!(
        current_ok,
        "the database no longer accepts AWSCURRENT after a resume that failed on a pending \
         version pointing at another port"
    );
}

/// Found by attack (it failed before the fix). Same with `dbname`: a pending version naming a database that does not exist.
async fn pending_with_another_dbname_must_not_change_the_password(engine: Engine) {
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = env.single();
    create(&env, &r, "app").await;
    let mut edited = pending_value(&env, "app").await;
    edited["dbname"] = json!("no_such_database");
    edited["password"] = env.password("Edited-pending-pw-1");
    repoint_pending(&env, "app", &edited).await;

    let e = r.resume("app").await.unwrap_err();
    eprintln!("resume: {}", rotation_core::error_chain(&e));
    let current_ok = env.logs_in(&env.value("app", Stage::Current).await).await;
    if !current_ok {
        let a = r.abort("app", AbortMode::Safe).await;
        eprintln!(
            "abort: {:?}",
            a.as_ref().map_err(|e| rotation_core::error_chain(e))
        );
    }
    assert!(current_ok, "resume changed the password and failed");
}

/// Found by attack (it failed before the fix). Same with `tls_server_name`: the engine connects to `tls_server_name`, not `host`, so
/// a pending version with the same `host` but another `tls_server_name` points elsewhere.
async fn pending_with_another_tls_server_name_must_not_change_the_password(engine: Engine) {
    let env = Env::tls(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put(
        "app",
        &env.secret("app", "Initial-pw-1-long-enough", Some(json!(true))),
    )
    .await;
    let r = env.single();
    create(&env, &r, "app").await;
    let mut edited = pending_value(&env, "app").await;
    edited["tls_server_name"] = json!("nowhere.invalid");
    edited["password"] = env.password("Edited-pending-pw-1");
    repoint_pending(&env, "app", &edited).await;

    let e = r.resume("app").await.unwrap_err();
    eprintln!("resume: {}", rotation_core::error_chain(&e));
    let current_ok = env.logs_in(&env.value("app", Stage::Current).await).await;
    if !current_ok {
        let a = r.abort("app", AbortMode::Safe).await;
        eprintln!(
            "abort: {:?}",
            a.as_ref().map_err(|e| rotation_core::error_chain(e))
        );
    }
    assert!(current_ok, "resume changed the password and failed");
}

/// Found by attack (it failed before the fix). AWSPREVIOUS (same user and host, another port: another server on the same machine)
/// is used when AWSCURRENT does not log in: setSecret logs in to the *other* server and changes
/// the user's password there. A rotation of one secret must not change another database.
async fn previous_on_another_server_is_not_changed(engine: Engine) {
    let env = Env::plain(engine);
    let other = Env::plain_own(engine);
    env.create_user("app", "Current-pw-1-long-enough");
    other.create_user("app", "Old-server-pw-1-long");
    // First version: the old server; second (AWSCURRENT): this one. AWSPREVIOUS is the old.
    env.put("app", &other.plain_secret("app", "Old-server-pw-1-long"))
        .await;
    env.store
        .put_value(
            "app",
            &token(),
            &SecretString::from(
                env.plain_secret("app", "Current-pw-1-long-enough")
                    .to_string(),
            ),
            &[Stage::Current],
            None,
        )
        .await
        .unwrap();
    // The current password drifts on this server (an operator, an interrupted rotation...).
    env.set_password("app", "Drifted-pw-1");

    let r = env.single();
    let e = r.rotate("app").await;
    eprintln!(
        "rotate: {:?}",
        e.as_ref()
            .map(|_| ())
            .map_err(|e| rotation_core::error_chain(e))
    );
    let untouched = other
        .logs_in(&other.plain_secret("app", "Old-server-pw-1-long"))
        .await;
    assert!(
        untouched,
        "a rotation of a secret on port {} changed the password of `app` on the server at port {}",
        env.port(),
        other.port()
    );
}

/// Found by attack (it failed before the fix). A run whose password change
/// waits on a row lock past the step's deadline gives up on the
/// client side (Timeout, exit 5), closes its socket and releases its claim; the statement is
/// still queued in the server (PostgreSQL: lock_timeout 5 s, statement_timeout 15 s; others
/// a statement_timeout only). `abort` then proves
/// AWSCURRENT logs in, removes AWSPENDING and reports success; the lock is released and the
/// dead run's ALTER ROLE commits: the database is on the aborted password, AWSCURRENT is
/// refused, and `status` shows no rotation in flight. (The next rotation recovers it from the
/// unlabelled version; until then every client reading AWSCURRENT is locked out.)
async fn a_timed_out_alter_role_does_not_land_after_abort(engine: Engine) {
    use rotation_core::Options;
    use std::time::Duration;
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    // A lock on the role's row that does not update it (so the late ALTER goes through).
    let Some(blocker) = env.server.hold_in_server("app") else {
        return crate::late_change::no_server_lock(engine);
    };
    let blocker = blocker.await;
    let r = env.single().with_options(Options {
        step_timeout: Duration::from_secs(2),
        ..Options::default()
    });
    let e = r.rotate("app").await.unwrap_err();
    eprintln!("run: {}", rotation_core::error_chain(&e));
    drop(r);
    // While the lock is still held, abort either proves its guarantee or changes nothing: it
    // sets the current password once more on a session of its own, which queues behind any
    // statement the dead run left waiting, so nothing earlier can land after it.
    let abort = env.single().abort("app", AbortMode::Safe).await;
    blocker.release().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.logs_in(&env.value("app", Stage::Current).await).await,
        "the timed-out run's ALTER ROLE landed after the step reported failure: AWSCURRENT \
         no longer logs in"
    );
    let d = env.store.describe("app").await.unwrap();
    match abort {
        Ok(report) => {
            assert!(report.current_verified);
            assert_eq!(d.rotation_in_flight(), None);
        }
        Err(e) => {
            // Refused while the role was locked: nothing was removed, and a later abort works.
            eprintln!("abort while locked: {}", rotation_core::error_chain(&e));
            assert!(d.rotation_in_flight().is_some());
            let report = env.single().abort("app", AbortMode::Safe).await.unwrap();
            assert!(report.current_verified);
        }
    }
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

/// Found by attack (it failed before the fix). Alternating users on a secret whose user is the master's own user (`postgres`, with
/// `masterarn` naming the master secret): the first rotation creates `postgres_clone` (a LOGIN
/// member of the superuser role); the second sets the *master's* password through the master
/// session, and the master secret's AWSCURRENT no longer logs in. Expected: refuse (typed
/// error, nothing changed) when the user to change is the master secret's user on that host.
async fn alternating_users_never_change_the_master_secrets_password(engine: Engine) {
    let env = Env::plain(engine);
    let master = env.master_secret(Some(json!(false)));
    let master_arn = env.put("master", &master).await;
    let mut s = master.clone();
    s["masterarn"] = json!(master_arn);
    env.put("pg", &s).await;
    let r = env.alternating();
    for round in 1..=2 {
        let out = r.rotate("pg").await;
        eprintln!(
            "round {round}: {:?}",
            out.as_ref()
                .map(|_| ())
                .map_err(|e| rotation_core::error_chain(e))
        );
    }
    assert!(
        env.logs_in(&env.value("master", Stage::Current).await)
            .await,
        "the master secret's AWSCURRENT no longer logs in: a rotation of another secret changed it"
    );
}

/// Found by attack (it failed before the fix). `rotate --timeout 1 run` while another process holds the local store's lock: the
/// createSecret PutSecretValue is reported as timed out (SecretsManagerTimeout, exit 4), yet
/// the blocking write keeps waiting for the lock and lands once it is free (the CLI does not
/// even exit until then). A failure reported as a timeout must not change the store later.
async fn a_store_write_reported_as_timed_out_does_not_land_later(engine: Engine) {
    use rotation_core::Options;
    use std::time::Duration;
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let mut lock_path = env.store.path().as_os_str().to_owned();
    lock_path.push(".lock");
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.lock().unwrap();
    let r = env.single().with_options(Options {
        step_timeout: Duration::from_secs(1),
        ..Options::default()
    });
    let e = r.rotate("app").await.unwrap_err();
    eprintln!("run: {}", rotation_core::error_chain(&e));
    assert_eq!(e.kind(), "SecretsManagerTimeout");
    holder.unlock().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = env.store.describe("app").await.unwrap();
    assert_eq!(
        d.rotation_in_flight(),
        None,
        "the write reported as timed out landed after the lock was released"
    );
}
