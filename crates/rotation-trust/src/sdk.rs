//! The AWS SDK's HTTPS client over the system store this crate has already read.
//!
//! The SDK's default client loads the platform's roots itself (`rustls-native-certs` with the
//! constant-time PEM reader), the largest item of a plaintext cold start after the database's
//! own work (BENCHMARKS.md's profiles), and it has no public way to take a parsed store: handed
//! a PEM instead, it parses it again at every connector it builds. [`https_client`] is a small
//! client (hyper over rustls, HTTP/1.1, the SDK's connect and read timeouts) that trusts the
//! system store [`crate::Trust`] reads, read once per process and shared with it.
//!
//! When a proxy variable is set (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, in either case),
//! [`https_client`] gives `None` and the SDK's own client, which honours them, is used.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
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
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
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

/// The SDK's HTTPS client trusting the system store (the Mozilla roots when the platform has
/// none), or `None` when a proxy variable is set. Give it to
/// `aws_config::ConfigLoader::http_client`.
pub fn https_client() -> Option<SharedHttpClient> {
    let proxied = PROXY_ENV
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
    if proxied {
        tracing::debug!("a proxy variable is set: the AWS SDK's own HTTPS client is used");
        return None;
    }
    let mut roots = crate::system_root_store();
    if roots.is_empty() {
        tracing::info!("no system trust store: the AWS SDK's client trusts the Mozilla roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Some(https_client_with_roots(roots))
}

/// The SDK's HTTPS client trusting `roots` only (http:// endpoints are reached without TLS).
pub fn https_client_with_roots(roots: RootCertStore) -> SharedHttpClient {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // ALPN: set by the connector (HTTP/1.1 only).
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    SharedHttpClient::new(SdkHttps {
        tls: Arc::new(tls),
        connectors: Mutex::new(Vec::new()),
    })
}

/// One connector (with its connection pool) per timeout setting, as the SDK asks for one at
/// every attempt.
struct SdkHttps {
    tls: Arc<rustls::ClientConfig>,
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
        let connector = SharedHttpConnector::new(Connector::new(Arc::clone(&self.tls), key));
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
    fn new(tls: Arc<rustls::ClientConfig>, (connect, read): Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
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
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
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
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|p| p as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// The SDK's retry classes for a failed request: a timeout; a refused certificate or another
/// TLS failure, which a new attempt would meet again (not retried); a failure to connect or a
/// connection lost, which a new attempt may avoid; anything else unknown.
fn classify(e: BoxError) -> ConnectorError {
    let any = |f: &dyn Fn(&(dyn StdError + 'static)) -> bool| chain(e.as_ref()).any(f);
    if any(&|e| e.is::<TimedOut>()) {
        return ConnectorError::timeout(e);
    }
    if any(&|e| e.is::<rustls::Error>()) {
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
    let connect = chain(e.as_ref())
        .find_map(|e| e.downcast_ref::<hyper_util::client::legacy::Error>())
        .is_some_and(|l| l.is_connect());
    if connect
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
    fn a_refused_certificate_is_not_retried_as_a_network_failure() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = classify(Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls,
        )));
        assert!(e.is_other() && e.as_other().is_none(), "{e:?}");
        assert!(
            aws_smithy_types::error::display::DisplayErrorContext(&e)
                .to_string()
                .contains("invalid peer certificate"),
        );
    }

    #[test]
    fn a_connection_reset_is_an_io_failure() {
        let e = classify(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(e.is_io(), "{e:?}");
    }
}
