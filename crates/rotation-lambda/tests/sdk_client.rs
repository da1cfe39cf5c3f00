//! The functions' AWS SDK client (`rotation_trust::sdk`): Secrets Manager over TLS verified
//! against the roots it is given, and the SDK's connect and read timeouts kept against a server
//! that accepts a connection and then says nothing.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use rotation_core::{AwsSecretStore, SecretStore};
use rotation_testkit::Moto;
use rotation_trust::{Trust, TrustSource};

/// `base` with our client trusting `roots`, one attempt per call, and `timeouts`.
fn with_client(
    base: SdkConfig,
    roots: rotation_trust::sdk::RootCertStore,
    endpoint: &str,
    timeouts: TimeoutConfig,
) -> AwsSecretStore {
    let config = base
        .into_builder()
        .http_client(rotation_trust::sdk::https_client_with_roots(roots))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(timeouts)
        .build();
    AwsSecretStore::from_sdk_config(&config)
}

fn roots_of(ca_pem: &std::path::Path) -> rotation_trust::sdk::RootCertStore {
    Trust::load(Some(ca_pem))
        .expect("load the test CA")
        .root_store_of(&[TrustSource::CaBundle])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_is_read_over_tls_verified_by_the_roots_given_and_refused_otherwise() {
    let moto = Moto::start_tls().expect("start moto over HTTPS");
    moto.python("sm.create_secret(Name='app', SecretString='{}')")
        .expect("create a secret over HTTPS");
    let base = moto.sdk_config().await;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .build();

    let trusted = with_client(
        base.clone(),
        roots_of(moto.ca_pem().unwrap()),
        &moto.endpoint(),
        timeouts.clone(),
    );
    // Two calls: the second goes through the same connector (and pool).
    for _ in 0..2 {
        let described = trusted.describe("app").await.expect("describe over TLS");
        assert_eq!(described.name, "app");
    }

    let dir = tempfile::tempdir().unwrap();
    let other = rotation_testkit::TestCa::generate(dir.path(), &["127.0.0.1", "localhost"])
        .expect("another CA");
    let untrusted = with_client(base, roots_of(&other.ca_pem), &moto.endpoint(), timeouts);
    let err = untrusted
        .describe("app")
        .await
        .expect_err("moto's certificate is not trusted");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

/// A TCP server that accepts connections and never answers, held open until dropped.
struct Silent {
    port: u16,
    _task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Silent { port, _task: task }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self._task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_gives_the_sdks_timeouts_not_a_hang() {
    let moto = Moto::start().expect("start moto");
    let base = moto.sdk_config().await;
    let silent = Silent::start().await;
    let limit = Duration::from_millis(300);

    // HTTPS: the TLS handshake never completes; the connect timeout covers it.
    let store = with_client(
        base.clone(),
        Trust::load(None).unwrap().root_store_of(&[TrustSource::Mozilla]),
        &format!("https://127.0.0.1:{}", silent.port),
        TimeoutConfig::builder().connect_timeout(limit).build(),
    );
    let started = Instant::now();
    let err = store.describe("app").await.expect_err("no answer");
    assert!(err.to_string().contains("no connection within 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");

    // HTTP: connected, the request sent, no response; the read timeout covers it.
    let store = with_client(
        base,
        rotation_trust::sdk::RootCertStore::empty(),
        &format!("http://127.0.0.1:{}", silent.port),
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(limit)
            .build(),
    );
    let started = Instant::now();
    let err = store.describe("app").await.expect_err("no answer");
    assert!(err.to_string().contains("no response within 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
}
