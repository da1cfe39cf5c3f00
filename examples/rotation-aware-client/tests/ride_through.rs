//! The example application rides through real single-user rotations (moto for Secrets Manager,
//! a throwaway PostgreSQL with password authentication): between setSecret and finishSecret it
//! logs in with AWSPENDING, after finishSecret with the new AWSCURRENT, and a failure that is
//! not a refusal is returned at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rotation_aware_client::{Credentials, Error, LoginError, Secret, postgres_login};
use rotation_core::AnyRotator;
use rotation_core::{AwsSecretStore, Rotation, RotationEvent, Step, Strategy};
use rotation_postgres::PgConfig;
use rotation_testkit::{Moto, PgCluster, PgOptions};
use serde_json::json;

const SECRET: &str = "app/db";

struct Lab {
    _pg: PgCluster,
    _moto: Moto,
    client: aws_sdk_secretsmanager::Client,
    function: String,
    rotation: Rotation<AwsSecretStore, AnyRotator>,
}

async fn lab() -> Lab {
    let pg = PgCluster::start(PgOptions::default())
        .expect("a throwaway PostgreSQL (scripts/setup installs the server binaries)");
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'Initial-pw-1'")
        .unwrap();
    let moto = Moto::start().expect("moto (scripts/setup installs it in .venv)");
    let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port(),
        "username": "app", "password": "Initial-pw-1", "dbname": "postgres", "ssl": false});
    client
        .create_secret()
        .name(SECRET)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
    let function = moto.create_function("rotation").unwrap();
    let settings = rotation_core::EngineSettings::with_config(
        rotation_postgres::ENGINE,
        std::sync::Arc::new(rotation_postgres::PostgresConfig {
            config: PgConfig::default(),
            rds: None,
        }),
    );
    let rotation = settings.rotation(AwsSecretStore::new(client.clone()), Strategy::SingleUser);
    Lab {
        _pg: pg,
        _moto: moto,
        client,
        function,
        rotation,
    }
}

impl Lab {
    /// RotateSecret's pending stub, as Secrets Manager makes it before invoking the function.
    async fn start_rotation(&self, token: &str) {
        Moto::rotate_secret(&self.client, SECRET, token, &self.function)
            .await
            .unwrap();
    }

    async fn step(&self, step: Step, token: &str) {
        self.rotation
            .handle(&RotationEvent::new(step, SECRET, token))
            .await
            .unwrap_or_else(|e| panic!("{step:?}: {}", rotation_core::error_chain(&e)));
    }
}

/// Logs in through the example, counting the attempts.
async fn login(creds: &mut Credentials, attempts: &Arc<AtomicUsize>) -> Result<(), String> {
    let n = attempts.clone();
    creds
        .connect(move |s: Secret| {
            n.fetch_add(1, Ordering::SeqCst);
            postgres_login(s, false)
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_rides_through_a_single_user_rotation() {
    let lab = lab().await;
    let mut creds = Credentials::new(lab.client.clone(), SECRET);
    let attempts = Arc::new(AtomicUsize::new(0));
    login(&mut creds, &attempts).await.unwrap();
    assert_eq!(creds.known().unwrap().password, "Initial-pw-1");

    // Mid-rotation: the database holds AWSPENDING's password; AWSCURRENT is refused.
    let token = "11111111-1111-4111-8111-111111111111";
    lab.start_rotation(token).await;
    lab.step(Step::CreateSecret, token).await;
    lab.step(Step::SetSecret, token).await;
    attempts.store(0, Ordering::SeqCst);
    login(&mut creds, &attempts).await.unwrap();
    let pending = creds.known().unwrap().password.clone();
    assert_ne!(pending, "Initial-pw-1");
    // The cached (now refused) password, then AWSPENDING: AWSCURRENT is the same value.
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    lab.step(Step::TestSecret, token).await;
    lab.step(Step::FinishSecret, token).await;
    attempts.store(0, Ordering::SeqCst);
    login(&mut creds, &attempts).await.unwrap();
    assert_eq!(creds.known().unwrap().password, pending);
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "the cached one works");

    // A whole rotation behind its back: the cached password is refused, AWSCURRENT works.
    lab.rotation.rotate(SECRET).await.unwrap();
    attempts.store(0, Ordering::SeqCst);
    login(&mut creds, &attempts).await.unwrap();
    assert_ne!(creds.known().unwrap().password, pending);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert!(!format!("{:?}", creds).contains(&pending));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_failures_are_not_retried_with_other_credentials() {
    let lab = lab().await;
    let mut creds = Credentials::new(lab.client.clone(), SECRET);
    let attempts = Arc::new(AtomicUsize::new(0));
    let n = attempts.clone();
    let e = creds
        .connect(move |_s: Secret| {
            n.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(LoginError::Other("network down")) }
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Login("network down")), "{e:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    // All refused: the error says so, and names no password.
    let e = creds
        .connect(|_s: Secret| async { Err::<(), _>(LoginError::Refused("bad password")) })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused { .. }), "{e:?}");
    assert!(!e.to_string().contains("Initial-pw-1"), "{e}");
}
