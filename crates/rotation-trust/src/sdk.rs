//! The AWS SDK's HTTPS client over the system store this crate has already read.
//!
//! The SDK's default client loads the platform's roots itself (`rustls-native-certs` with the
//! constant-time PEM reader), which was the largest item of a plaintext cold start after the
//! database's own work (a third of it), and it has no public way to take a parsed store: handed
//! a PEM instead, it parses it again at every connector it builds. [`https_client`] is a small
//! client (hyper over rustls, HTTP/1.1, the SDK's connect and read timeouts) that trusts the
//! system store [`crate::Trust`] reads, read once per process and shared with it.
//!
//! When a proxy variable is set (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, in either case),
//! [`https_client`] gives `None` and the SDK's own client, which honours them, is used.
//!
//! As the SDK's client: TLS 1.2 and 1.3 with the SDK's cipher suites (AES-GCM, and
//! ChaCha20 for RSA on TLS 1.2), its connect timeout over TCP and the handshake, its read
//! timeout up to the response's headers, and a connection the SDK marks after a transient
//! error (a 5xx answer, say) is closed, so that the retry opens a new one. Unlike it: a
//! certificate refused while connecting is not retried (a new attempt meets the same
//! certificate), and only HTTP/1.1 is offered. The system store is read as the crate docs say
//! (with `SSL_CERT_FILE` or `SSL_CERT_DIR` set, as `rustls-native-certs` reads it, links in
//! certificate directories included). Timers are tokio's: the
//! runtime needs its time driver (`tokio::main` and `lambda_runtime` have it).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{
    CaptureConnection, HttpConnector as TcpConnector, capture_connection,
};
use hyper_util::rt::{TokioExecutor, TokioTimer};
pub use rustls::RootCertStore;

/// The proxy variables the SDK's own client reads; when one is set, it is used instead.
pub const PROXY_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The SDK's HTTPS client trusting the system store, or `None` when a proxy variable is set.
/// Give it to `aws_config::ConfigLoader::http_client`.
pub fn https_client() -> Option<SharedHttpClient> {
    https_client_unless_proxied(|v| std::env::var_os(v))
}

/// [`https_client`] with the environment read through `lookup`.
pub fn https_client_unless_proxied(
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<SharedHttpClient> {
    if let Some(var) = PROXY_ENV
        .iter()
        .find(|v| lookup(v).is_some_and(|p| !p.is_empty()))
    {
        tracing::debug!(
            var,
            "a proxy is set: the AWS SDK's own HTTPS client is used"
        );
        return None;
    }
    let roots = crate::system_root_store();
    if roots.is_empty() {
        // As the SDK's own client: no root, no verified connection.
        tracing::warn!("no system trust store: the AWS SDK's HTTPS calls cannot be verified");
    }
    Some(https_client_with_roots(roots))
}

/// The cipher suites the SDK's own client offers, in its order.
const SUITES: &[rustls::CipherSuite] = &[
    rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The SDK's HTTPS client trusting `roots` only (http:// endpoints are reached without TLS).
pub fn https_client_with_roots(roots: RootCertStore) -> SharedHttpClient {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let all = std::mem::take(&mut provider.cipher_suites);
    provider.cipher_suites = SUITES
        .iter()
        .filter_map(|s| all.iter().find(|c| c.suite() == *s).copied())
        .collect();
    // No ALPN: HTTP/1.1, as the connector below speaks only that.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    SharedHttpClient::new(SdkHttps {
        tls,
        connectors: Mutex::new(Vec::new()),
    })
}

/// One connector (with its connection pool) per timeout setting, as the SDK asks for one at
/// every attempt.
struct SdkHttps {
    tls: rustls::ClientConfig,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl fmt::Debug for SdkHttps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkHttps").finish_non_exhaustive()
    }
}

impl HttpClient for SdkHttps {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = connectors.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(self.tls.clone(), key));
        connectors.push((key, connector.clone()));
        connector
    }
}

type Https = hyper_rustls::HttpsConnector<TcpConnector>;

struct Connector {
    client: Client<ConnectWithin<Https>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    fn new(tls: rustls::ClientConfig, (connect, read): Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(ConnectWithin {
                inner: https,
                limit: connect,
            });
        Connector {
            client,
            read_timeout: read,
        }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        // The SDK closes the connection after a transient error through this (its retry then
        // connects again).
        let captured = capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || poisonable(&captured));
        }
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                None => response.await,
                Some(limit) => match tokio::time::timeout(limit, response).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(ConnectorError::timeout(Box::new(TimedOut {
                            waiting_for: "response",
                            limit,
                        })));
                    }
                },
            };
            match response {
                Ok(r) => HttpResponse::try_from(r.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(Box::new(e))),
            }
        })
    }
}

/// The connection a request went out on, for the SDK to close.
fn poisonable(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    captured.connection_metadata().as_ref()?;
    let captured = captured.clone();
    Some(
        ConnectionMetadata::builder()
            .proxied(false)
            .poison_fn(move || {
                if let Some(c) = captured.connection_metadata().as_ref() {
                    c.poison();
                }
            })
            .build(),
    )
}

/// The SDK's connect timeout over the whole connection: TCP and the TLS handshake.
#[derive(Clone)]
struct ConnectWithin<C> {
    inner: C,
    limit: Option<Duration>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<C> tower_service::Service<http::Uri> for ConnectWithin<C>
where
    C: tower_service::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = BoxFuture<C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match limit {
                None => connecting.await.map_err(Into::into),
                Some(limit) => match tokio::time::timeout(limit, connecting).await {
                    Ok(r) => r.map_err(Into::into),
                    Err(_) => Err(Box::new(TimedOut {
                        waiting_for: "connection",
                        limit,
                    }) as BoxError),
                },
            }
        })
    }
}

/// A connect or read timeout of the SDK's settings ran out.
#[derive(Debug, thiserror::Error)]
#[error("no {waiting_for} within {limit:?}")]
struct TimedOut {
    waiting_for: &'static str,
    limit: Duration,
}

/// Each error in `e`'s chain; after an `io::Error`, its payload (whose `source` skips it).
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|p| p as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// The SDK's retry classes for a failed request: a timeout; a certificate refused while
/// connecting, which a new attempt would meet again (not retried); a failure to connect or a
/// connection lost (another TLS failure included), which a new attempt may avoid; anything
/// else unknown.
fn classify(e: BoxError) -> ConnectorError {
    let any = |f: &dyn Fn(&(dyn StdError + 'static)) -> bool| chain(e.as_ref()).any(f);
    if any(&|e| e.is::<TimedOut>()) {
        return ConnectorError::timeout(e);
    }
    let connecting = chain(e.as_ref())
        .find_map(|e| e.downcast_ref::<hyper_util::client::legacy::Error>())
        .is_some_and(|l| l.is_connect());
    let certificate = |e: &(dyn StdError + 'static)| {
        matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::InvalidCertRevocationList(_)
            )
        )
    };
    if connecting && any(&certificate) {
        return ConnectorError::other(e, None);
    }
    let hyper = chain(e.as_ref()).find_map(|e| e.downcast_ref::<hyper::Error>());
    if let Some(h) = hyper {
        if h.is_user() {
            return ConnectorError::user(e);
        }
        if h.is_incomplete_message() {
            return ConnectorError::other(e, Some(ErrorKind::TransientError));
        }
    }
    if connecting
        || hyper.is_some_and(|h| h.is_closed() || h.is_canceled())
        || any(&|e| e.is::<std::io::Error>())
    {
        return ConnectorError::io(e);
    }
    ConnectorError::other(e, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_anywhere_in_the_chain_is_a_timeout() {
        let inner = TimedOut {
            waiting_for: "connection",
            limit: Duration::from_secs(3),
        };
        let wrapped = std::io::Error::other(inner);
        let e = classify(Box::new(wrapped));
        assert!(e.is_timeout(), "{e:?}");
    }

    #[test]
    fn a_tls_failure_on_an_open_connection_is_retried_as_a_network_failure() {
        let tls = rustls::Error::DecryptError;
        let e = classify(Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls,
        )));
        assert!(e.is_io(), "{e:?}");
    }

    #[test]
    fn a_proxy_variable_leaves_the_sdk_its_own_client() {
        for var in PROXY_ENV {
            let lookup = |v: &str| (v == *var).then(|| "http://10.0.0.1:3128".into());
            assert!(https_client_unless_proxied(lookup).is_none(), "{var}");
        }
        let empty = |v: &str| (v == "HTTPS_PROXY").then(std::ffi::OsString::new);
        let client = https_client_unless_proxied(empty).expect("an empty variable is unset");
        assert!(format!("{client:?}").contains("SdkHttps"), "{client:?}");
    }

    #[test]
    fn a_connection_reset_is_an_io_failure() {
        let e = classify(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(e.is_io(), "{e:?}");
    }
}
