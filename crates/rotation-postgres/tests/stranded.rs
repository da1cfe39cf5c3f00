//! "No stranded password" against a real cluster: the failures an attack on the CLI found, as
//! regression tests. Each ends with the database on a password that a labelled version holds,
//! or that a later command recovers, never on one nothing can reach.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Env, parse};
use rotation_core::{
    AbortMode, Credentials, ErrorKind, LocalSecretStore, Options, Rotation, RotationError,
    RotationEvent, SecretStore, Stage, StageMove, Step, StepOutcome,
};
use rotation_postgres::{PgConfig, PostgresRotator};
use rotation_testkit::TcpProxy;
use rotation_trust::Trust;
use serde_json::{Value, json};
use sqlx::Connection;

fn token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A cluster reached through a fault-injecting proxy: the secret's port is the proxy's.
struct Proxied {
    env: Env,
    proxy: TcpProxy,
}

impl Proxied {
    fn start() -> Proxied {
        let env = Env::plain();
        let proxy = TcpProxy::to_port(env.pg.port()).expect("start the proxy");
        Proxied { env, proxy }
    }
    fn secret(&self, user: &str, password: &str) -> Value {
        let mut v = self.env.secret(user, password, Some(json!(false)));
        v["port"] = json!(self.proxy.port());
        v
    }
    fn rotation(&self, step_timeout: Duration) -> Rotation<LocalSecretStore, PostgresRotator> {
        self.env.single().with_options(Options {
            step_timeout,
            ..Options::default()
        })
    }
}

async fn steps(
    r: &Rotation<LocalSecretStore, PostgresRotator>,
    name: &str,
    token: &str,
    which: &[Step],
) {
    for step in which {
        r.handle(&RotationEvent::new(*step, name, token))
            .await
            .unwrap_or_else(|e| panic!("{step}: {}", rotation_core::error_chain(&e)));
    }
}

/// A single-user rotation of "app" interrupted after setSecret, whose AWSPENDING label is then
/// removed by hand: the database holds the password of a version without a label.
async fn interrupt_then_unlabel(env: &Env, r: &Rotation<LocalSecretStore, PostgresRotator>) {
    let t1 = token();
    env.store.start_rotation("app", &t1).await.unwrap();
    steps(r, "app", &t1, &[Step::CreateSecret, Step::SetSecret]).await;
    assert!(!env.logs_in(&env.value("app", Stage::Current).await).await);
    env.store
        .update_stage(
            "app",
            StageMove {
                stage: Stage::Pending,
                move_to: None,
                remove_from: Some(&t1),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn abort_with_the_database_down_changes_nothing() {
    // Failure 2: abort after setSecret while the database is down used to remove AWSPENDING
    // and leave the database on the pending password.
    let p = Proxied::start();
    p.env.create_role("app", "Initial-pw-1");
    p.env.put("app", &p.secret("app", "Initial-pw-1")).await;
    let r = p.rotation(Duration::from_secs(10));
    let t = token();
    p.env.store.start_rotation("app", &t).await.unwrap();
    steps(&r, "app", &t, &[Step::CreateSecret, Step::SetSecret]).await;

    p.proxy.refuse_new();
    let before = p.env.store.describe("app").await.unwrap();
    let e = r.abort("app", AbortMode::Safe).await.unwrap_err();
    assert!(matches!(e, RotationError::AbortUnsafe { .. }), "{e}");
    assert_eq!(e.category().exit_code(), 3);
    let text = rotation_core::error_chain(&e);
    assert!(
        text.contains("AWSCURRENT") && text.contains("AWSPENDING"),
        "{text}"
    );
    assert_eq!(p.env.store.describe("app").await.unwrap(), before);

    // With the database back, abort sets the current password back, proves it, and only then
    // removes the label.
    p.proxy.accept_new();
    let report = r.abort("app", AbortMode::Safe).await.unwrap();
    assert_eq!(report.restored_with, Some(Credentials::Pending));
    assert!(report.current_verified);
    assert!(
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    );
    let d = p.env.store.describe("app").await.unwrap();
    assert_eq!(d.rotation_in_flight(), None);
}

#[tokio::test]
async fn abort_waits_for_nobody_while_a_run_holds_the_secret() {
    // Failure 3: abort succeeded while a run waited on a role lock; the run's ALTER ROLE then
    // went through. The run holds the secret's claim, so abort is refused and changes nothing.
    let env = Env::plain();
    env.create_role("app", "Initial-pw-1");
    env.put(
        "app",
        &env.secret("app", "Initial-pw-1", Some(json!(false))),
    )
    .await;
    // Another session holds the role's row lock.
    let admin = parse(&env.master_secret(Some(json!(false))));
    let mut blocker = rotation_postgres::connect::connect(&admin, &env.config)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("ALTER ROLE app CONNECTION LIMIT 50")
        .execute(&mut blocker)
        .await
        .unwrap();

    let run = Arc::new(env.single());
    let runner = {
        let run = run.clone();
        tokio::spawn(async move { run.rotate("app").await })
    };
    // Wait until the run is blocked on the lock.
    let started = Instant::now();
    loop {
        let waiting = env
            .pg
            .psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            .unwrap();
        if waiting.trim() != "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "run never blocked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = env
        .single()
        .abort("app", AbortMode::Safe)
        .await
        .unwrap_err();
    assert!(matches!(e, RotationError::Busy { .. }), "{e}");
    assert_eq!(e.category().exit_code(), 3);

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    let report = runner.await.unwrap().unwrap();
    assert_eq!(report.steps.len(), 4);
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

#[tokio::test]
async fn a_rotation_after_a_hand_removed_pending_label_recovers_the_password() {
    // Failure 4 (W6): interrupted after setSecret, the operator removes AWSPENDING by hand (the
    // documented way out), a new rotation starts. The database holds the password of a version
    // that no longer has a label; setSecret finds it and carries on.
    let env = Env::plain();
    env.create_role("app", "Initial-pw-1");
    env.put(
        "app",
        &env.secret("app", "Initial-pw-1", Some(json!(false))),
    )
    .await;
    let r = env.single();
    interrupt_then_unlabel(&env, &r).await;
    let t2 = token();
    env.store.start_rotation("app", &t2).await.unwrap();
    r.handle(&RotationEvent::new(Step::CreateSecret, "app", &t2))
        .await
        .unwrap();
    let outcome = r
        .handle(&RotationEvent::new(Step::SetSecret, "app", &t2))
        .await
        .unwrap();
    assert_eq!(outcome, StepOutcome::PasswordSet(Credentials::Recovered));
    steps(&r, "app", &t2, &[Step::TestSecret, Step::FinishSecret]).await;
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

#[tokio::test]
async fn a_stalled_connection_fails_the_step_before_its_deadline() {
    // Failure 5: a connection that stops forwarding at ALTER ROLE, or at the first query after
    // login, used to hang the step until it was killed.
    let p = Proxied::start();
    p.env.create_role("app", "Initial-pw-1");
    p.env.put("app", &p.secret("app", "Initial-pw-1")).await;
    let r = p.rotation(Duration::from_secs(3));

    p.proxy.stall_on_query("ALTER ROLE");
    let started = Instant::now();
    let e = r.rotate("app").await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert!(
        matches!(e, RotationError::SetPasswordFailed { .. }),
        "{}",
        rotation_core::error_chain(&e)
    );
    assert_eq!(e.engine_kind(), Some(ErrorKind::Timeout));
    // The network is gone for good: connections reset, the held statement never arrives.
    p.proxy.drop_all();
    p.proxy.resume();
    assert!(
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    );
    // The rotation in flight resumes once the database answers again.
    r.resume("app").await.unwrap();
    assert!(
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    );

    // Stalled at the first query after login: testSecret's.
    p.proxy.stall_on_query("SELECT 1");
    let started = Instant::now();
    let e = r.rotate("app").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(3500));
    assert!(matches!(e, RotationError::PendingTestFailed { .. }), "{e}");
    assert_eq!(e.engine_kind(), Some(ErrorKind::Timeout));
    p.proxy.drop_all();
    p.proxy.resume();
    r.resume("app").await.unwrap();
    assert!(
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    );

    // Stalled before the login completes.
    p.proxy.stall();
    let started = Instant::now();
    let e = r.rotate("app").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(3500));
    assert_eq!(e.engine_kind(), Some(ErrorKind::Timeout), "{e}");
    p.proxy.drop_all();
    p.proxy.resume();
    r.resume("app").await.unwrap();
    assert!(
        p.env
            .logs_in(&p.env.value("app", Stage::Current).await)
            .await
    );
}

#[tokio::test]
async fn other_secret_data_round_trips_exactly() {
    // Failure 6: big integers and precise decimals in extra keys were rewritten as floats.
    let env = Env::plain();
    env.create_role("app", "Initial-pw-1");
    let mut v = env.secret("app", "Initial-pw-1", Some(json!(false)));
    v["team"] = json!("payments");
    let text = v
        .to_string()
        .replace(
            "\"team\":\"payments\"",
            "\"big\":12345678901234567890123,\"ratio\":0.1000000000000000000001,\"exp\":1e400,\"team\":\"payments\"",
        );
    env.store
        .create_secret("app", &secrecy::SecretString::from(text.clone()))
        .await
        .unwrap();
    env.single().rotate("app").await.unwrap();
    let rotated = env
        .store
        .get_value("app", rotation_core::VersionSelector::stage(Stage::Current))
        .await
        .unwrap();
    let rotated = secrecy::ExposeSecret::expose_secret(&rotated.value).to_string();
    for literal in [
        "\"big\":12345678901234567890123",
        "\"ratio\":0.1000000000000000000001",
        "\"exp\":1e400",
    ] {
        assert!(rotated.contains(literal), "{literal} lost");
    }
}

#[tokio::test]
async fn an_rds_style_chain_is_trusted_through_the_embedded_bundle_path() {
    // The test CA stands in for Amazon RDS's: it goes where the embedded bundle goes, with no
    // CA_BUNDLE_PATH, and verify-full succeeds.
    let env = Env::tls();
    env.create_role("app", "Initial-pw-1");
    let ca = std::fs::read(env.pg.ca_pem().unwrap()).unwrap();
    let config = PgConfig {
        trust: Arc::new(Trust::with_rds_bundle(&ca, None).unwrap()),
        ..PgConfig::default()
    };
    let secret = parse(&env.secret("app", "Initial-pw-1", None));
    PostgresRotator::single_user(config)
        .check_login(&secret)
        .await
        .unwrap();
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

#[tokio::test]
async fn single_user_abort_recovers_from_an_unlabelled_version() {
    // The database holds the password of a version without a label, AWSCURRENT fails: abort
    // logs in with the unlabelled version, sets AWSCURRENT's password back, and proves it.
    let env = Env::plain();
    env.create_role("app", "Initial-pw-1");
    env.put(
        "app",
        &env.secret("app", "Initial-pw-1", Some(json!(false))),
    )
    .await;
    let r = env.single();
    interrupt_then_unlabel(&env, &r).await;
    let t2 = token();
    env.store.start_rotation("app", &t2).await.unwrap();
    steps(&r, "app", &t2, &[Step::CreateSecret]).await;
    let report = r.abort("app", AbortMode::Safe).await.unwrap();
    assert_eq!(report.restored_with, Some(Credentials::Recovered));
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}
