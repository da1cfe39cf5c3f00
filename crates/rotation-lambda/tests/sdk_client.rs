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
    with_retries(base, roots, endpoint, timeouts, 1)
}

/// [`with_client`] with up to `attempts` attempts a call, 10 ms apart.
fn with_retries(
    base: SdkConfig,
    roots: rotation_trust::sdk::RootCertStore,
    endpoint: &str,
    timeouts: TimeoutConfig,
    attempts: u32,
) -> AwsSecretStore {
    let retries = RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(10));
    let config = base
        .into_builder()
        .http_client(rotation_trust::sdk::https_client_with_roots(roots))
        .endpoint_url(endpoint)
        .retry_config(retries)
        .timeout_config(timeouts)
        .build();
    AwsSecretStore::from_sdk_config(&config)
}

#[tokio::test]
async fn the_functions_sdk_configuration_carries_this_client_unless_a_proxy_is_set() {
    let config = rotation_lambda::sdk_config().await;
    let client = config.http_client().expect("an HTTP client is set");
    let proxied = rotation_trust::sdk::PROXY_ENV
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
    let ours = format!("{client:?}").contains("SdkHttps");
    assert_eq!(ours, !proxied, "{client:?}");
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
    // Through a relay that counts connections: three attempts allowed, one made, since a new
    // attempt would meet the same certificate.
    let relay = Relay::start(moto.port()).await;
    let untrusted = with_retries(
        base,
        roots_of(&other.ca_pem),
        &format!("https://localhost:{}", relay.port),
        timeouts,
        3,
    );
    let err = untrusted
        .describe("app")
        .await
        .expect_err("moto's certificate is not trusted");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    assert_eq!(relay.connections(), 1, "{err}");
}

/// A TCP relay to `127.0.0.1:target` that counts the connections it accepts.
struct Relay {
    port: u16,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, count, task }
    }

    fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/1.1 server whose first answer is a Secrets Manager 500 and every later one a
/// DescribeSecret result, all kept alive; it records the connection of each request.
async fn flaky_server() -> (u16, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut connection = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            connection += 1;
            let (tx, answered) = (tx.clone(), answered.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                // Appends what the client sent next; false once it is gone.
                async fn more(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
                    let mut chunk = [0u8; 4096];
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => false,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            true
                        }
                    }
                }
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        if !more(&mut socket, &mut buf).await {
                            return;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        if !more(&mut socket, &mut buf).await {
                            return;
                        }
                    }
                    buf.drain(..end + length);
                    let _ = tx.send(connection);
                    let (status, body) = if answered
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                        == 0
                    {
                        (
                            "500 Internal Server Error",
                            r#"{"__type":"InternalServiceError","message":"try again"}"#,
                        )
                    } else {
                        (
                            "200 OK",
                            r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf","Name":"app"}"#,
                        )
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_error_the_retry_goes_out_on_a_new_connection() {
    let moto = Moto::start().expect("start moto");
    let base = moto.sdk_config().await;
    let (port, mut requests) = flaky_server().await;
    let store = with_retries(
        base,
        rotation_trust::sdk::RootCertStore::empty(),
        &format!("http://127.0.0.1:{port}"),
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .build(),
        3,
    );
    let described = store.describe("app").await.expect("the retry succeeds");
    assert_eq!(described.name, "app");
    let (first, second) = (
        requests.recv().await.unwrap(),
        requests.recv().await.unwrap(),
    );
    assert_ne!(first, second, "the retry reused the connection of the 500");
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
        Trust::load(None)
            .unwrap()
            .root_store_of(&[TrustSource::Mozilla]),
        &format!("https://127.0.0.1:{}", silent.port),
        TimeoutConfig::builder().connect_timeout(limit).build(),
    );
    let started = Instant::now();
    let err = store.describe("app").await.expect_err("no answer");
    assert!(
        err.to_string().contains("no connection within 300ms"),
        "{err}"
    );
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
    assert!(
        err.to_string().contains("no response within 300ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
}
