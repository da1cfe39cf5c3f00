//! W16: a function step ends before the invocation's own deadline, whatever the database does:
//! a server that accepts and never answers (the login hangs), or one that hangs on the password
//! change itself. The step reports a typed error with time to spare for the report, and the
//! password is not changed behind it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rotation_core::{LocalSecretStore, Strategy};
use rotation_lambda::{DEADLINE_MARGIN, handle, invocation_deadline};
use rotation_postgres::{PgConfig, connect};
use rotation_testkit::{PgCluster, PgOptions, TcpProxy};
use secrecy::SecretString;
use serde_json::json;

const INVOCATION: Duration = Duration::from_secs(8);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn stalled_set_secret(stall: impl Fn(&TcpProxy)) {
    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL (scripts/setup)");
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
        .unwrap();
    let proxy = TcpProxy::to_port(pg.port()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("s.json"));
    let secret = json!({"engine": "postgres", "host": "localhost", "port": proxy.port(),
        "username": "app", "password": "Initial-pw-1", "dbname": "postgres", "ssl": false});
    store
        .create_secret("app", &SecretString::from(secret.to_string()))
        .await
        .unwrap();
    store
        .start_rotation("app", "t0000000000000000000000000000001")
        .await
        .unwrap();
    let settings = rotation_core::EngineSettings::with_config(
        rotation_postgres::ENGINE,
        std::sync::Arc::new(rotation_postgres::PostgresConfig {
            config: PgConfig::default(),
            rds: None,
        }),
    );
    let rotation = settings.rotation(store, Strategy::SingleUser);
    let event = |step: &str| json!({"Step": step, "SecretId": "app", "ClientRequestToken": "t0000000000000000000000000000001"});
    handle(
        &rotation,
        &event("createSecret"),
        invocation_deadline(now_ms() + 60_000),
    )
    .await
    .unwrap();

    stall(&proxy);
    let started = Instant::now();
    let deadline = invocation_deadline(now_ms() + INVOCATION.as_millis() as u64);
    let failure = handle(&rotation, &event("setSecret"), deadline)
        .await
        .expect_err("the step cannot succeed");
    let took = started.elapsed();
    eprintln!("setSecret failed after {took:?}: {failure:?}");
    assert!(
        took <= INVOCATION - DEADLINE_MARGIN + Duration::from_millis(500),
        "the step ran {took:?}, past its budget of {:?}",
        INVOCATION - DEADLINE_MARGIN
    );
    assert!(
        [
            "DatabaseError",
            "NoWorkingCredentials",
            "SetPasswordFailed",
            "SecretsManagerTimeout"
        ]
        .contains(&failure.kind()),
        "{failure:?}"
    );
    // Nothing changed behind the failed step: the first password still logs in.
    proxy.resume();
    let mut direct = secret.clone();
    direct["port"] = json!(pg.port());
    let parsed =
        rotation_core::DatabaseSecret::parse(&SecretString::from(direct.to_string())).unwrap();
    assert!(connect::check(&parsed, &PgConfig::default()).await.is_ok());
}

#[tokio::test]
async fn a_server_that_never_answers_ends_the_step_before_the_invocation_deadline() {
    stalled_set_secret(TcpProxy::stall).await
}

#[tokio::test]
async fn a_password_change_that_never_answers_ends_the_step_before_the_invocation_deadline() {
    stalled_set_secret(|p| p.stall_on_query("ALTER ROLE")).await
}
