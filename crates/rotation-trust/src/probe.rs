//! The preflight's TLS check: one handshake with a server, verified as the engine's driver
//! verifies it, that says which trust source anchored the certificate chain, or why none did.
//!
//! The drivers do not expose the chain they verified, so `rotate plan` makes a handshake of its
//! own: a TCP connection (for the PostgreSQL protocol, after its `SSLRequest`), then TLS with a
//! verifier that tries the sources the driver uses one at a time, in order. Duplicates are
//! dropped at load, so an anchor belongs to one source (for a CA-file driver, a system
//! certificate that repeats another source's also counts as `system`, as the file holds it): the
//! chain verifies against the driver's whole store exactly when it verifies against one of the
//! sources, and the first such source is the answer. Nothing is sent after the handshake; the
//! connection is closed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotation_core::secret::DatabaseSecret;
use rotation_core::tls::{TlsPlan, server_name};
use rotation_core::{EngineError, ErrorKind};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Trust, TrustSource};

/// How the server starts TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// TLS from the first byte (the MongoDB wire protocol).
    Direct,
    /// The PostgreSQL protocol's `SSLRequest`, answered `S`, then TLS (every engine on the PostgreSQL protocol).
    PostgresSslRequest,
    /// The MySQL protocol: the server's greeting (whose capabilities say whether it offers
    /// TLS), the client's `SSLRequest` packet, then TLS (MySQL, MariaDB).
    MysqlSslRequest,
}

/// MySQL capability flags of the probe's `SSLRequest`: long password, protocol 4.1, TLS,
/// secure connection.
const MYSQL_CAPABILITIES: u32 = 0x0001 | 0x0200 | 0x0800 | 0x8000;
/// MySQL's `CLIENT_SSL` capability.
const MYSQL_CLIENT_SSL: u16 = 0x0800;

/// Whether a MySQL server greeting (the packet's payload) offers TLS; `Err` with the reason
/// when the payload is no greeting (an error packet: the server refused this client).
pub fn mysql_greeting_offers_tls(payload: &[u8]) -> Result<bool, String> {
    match payload.first() {
        Some(0xff) => {
            let message = payload.get(3..).unwrap_or_default();
            return Err(format!(
                "the server refused the connection: {}",
                String::from_utf8_lossy(message).trim_start_matches('#')
            ));
        }
        Some(10) => {}
        _ => return Err("the server did not greet with the MySQL protocol (version 10)".into()),
    }
    // Protocol version, server version (NUL-terminated), connection id (4), scramble (8),
    // filler (1), then the capabilities' lower two bytes.
    let end = payload[1..]
        .iter()
        .position(|&b| b == 0)
        .ok_or("a MySQL greeting without a server version")?;
    let at = 1 + end + 1 + 4 + 8 + 1;
    let caps = payload
        .get(at..at + 2)
        .ok_or("a MySQL greeting cut short before its capabilities")?;
    Ok(u16::from_le_bytes([caps[0], caps[1]]) & MYSQL_CLIENT_SSL != 0)
}

/// The probe's `SSLRequest` packet (sequence 1): capabilities, largest packet, utf8mb4, zeros.
fn mysql_ssl_request() -> [u8; 36] {
    let mut p = [0u8; 36];
    p[0] = 32;
    p[3] = 1;
    p[4..8].copy_from_slice(&MYSQL_CAPABILITIES.to_le_bytes());
    p[8..12].copy_from_slice(&(16u32 << 20).to_le_bytes());
    p[12] = 45;
    p
}

/// What the probe needs to know about the engine's connections.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The trust store the engine's connections use.
    pub trust: &'a Trust,
    /// The sources its driver trusts, in the order to report them
    /// ([`Trust::sources_for_host`], [`Trust::PEM_FILE_SOURCES`]).
    pub sources: &'a [TrustSource],
    /// Whether the driver is given [`Trust::pem_for_host`] or [`Trust::pem_file_for_host`],
    /// whose RDS CAs are those of the host's region: the probe then trusts those only, as the
    /// driver does.
    pub pem_for_host: bool,
    /// How the server starts TLS.
    pub handshake: Handshake,
    /// The port when the secret names none.
    pub default_port: u16,
    /// `ALLOW_PLAINTEXT_FALLBACK`.
    pub allow_plaintext_fallback: bool,
    /// Bound on the whole probe.
    pub timeout: Duration,
}

/// Checks the TLS of `secret`'s server as a rotation would use it: `Ok(detail)` when the
/// certificate verifies (the detail names the anchoring source) or TLS is not used; a
/// [`ErrorKind::Tls`] error when it does not verify or the server offers no TLS (unless
/// `ALLOW_PLAINTEXT_FALLBACK` would connect without it, which the detail then says);
/// [`ErrorKind::Unreachable`] or [`ErrorKind::Timeout`] when no handshake could be made.
pub async fn check(probe: Probe<'_>, secret: &DatabaseSecret) -> Result<String, EngineError> {
    let plan = TlsPlan::for_secret(secret, probe.allow_plaintext_fallback);
    if plan == TlsPlan::Disabled {
        return Ok("not used: the secret has \"ssl\": false".into());
    }
    // The drivers connect to the name they verify (`tls_server_name` when the secret has
    // one), so the probe does too.
    let host = server_name(secret).to_string();
    let port = secret.port().unwrap_or(probe.default_port);
    let outcome = tokio::time::timeout(probe.timeout, handshake(probe, &host, port))
        .await
        .unwrap_or_else(|_| {
            Err(EngineError::new(
                ErrorKind::Timeout,
                format!(
                    "the TLS handshake with {host}:{port} did not finish within {} s",
                    probe.timeout.as_secs_f32()
                ),
            ))
        });
    match outcome {
        Err(e) if e.kind() == ErrorKind::Tls && plan == TlsPlan::RequiredWithFallback => {
            Ok(format!(
                "{}; ALLOW_PLAINTEXT_FALLBACK lets the rotation connect without TLS (the secret has no \"ssl\" key)",
                e.message()
            ))
        }
        other => other,
    }
}

async fn handshake(probe: Probe<'_>, host: &str, port: u16) -> Result<String, EngineError> {
    // One name for both: where to connect and what the certificate must be for.
    let name = host;
    let server = ServerName::try_from(name.to_string()).map_err(|_| {
        EngineError::new(
            ErrorKind::InvalidInput,
            format!("{name:?} is not a host name or address a certificate can be checked against"),
        )
    })?;
    let mut tcp = TcpStream::connect((host, port)).await.map_err(|e| {
        EngineError::new(
            ErrorKind::Unreachable,
            format!("cannot connect to {host}:{port}"),
        )
        .with_source(e)
    })?;
    if probe.handshake == Handshake::MysqlSslRequest {
        let closed = |e: std::io::Error| {
            EngineError::new(
                ErrorKind::Unreachable,
                format!("{host}:{port} closed the connection before its MySQL greeting"),
            )
            .with_source(e)
        };
        let mut head = [0u8; 4];
        tcp.read_exact(&mut head).await.map_err(closed)?;
        let len = usize::from(head[0]) | (usize::from(head[1]) << 8) | (usize::from(head[2]) << 16);
        let mut payload = vec![0u8; len.min(1 << 16)];
        tcp.read_exact(&mut payload).await.map_err(closed)?;
        match mysql_greeting_offers_tls(&payload) {
            Ok(true) => {}
            Ok(false) => {
                return Err(EngineError::new(
                    ErrorKind::Tls,
                    format!(
                        "{host}:{port} does not offer TLS (its greeting lacks the SSL capability)"
                    ),
                ));
            }
            Err(why) => {
                return Err(EngineError::new(
                    ErrorKind::Server,
                    format!("{host}:{port}: {why}"),
                ));
            }
        }
        tcp.write_all(&mysql_ssl_request()).await.map_err(|e| {
            EngineError::new(
                ErrorKind::Unreachable,
                format!("{host}:{port} closed the connection at the TLS request"),
            )
            .with_source(e)
        })?;
    }
    if probe.handshake == Handshake::PostgresSslRequest {
        // Length 8, then the SSLRequest code 80877103.
        let request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let mut answer = [0u8; 1];
        let exchange = async {
            tcp.write_all(&request).await?;
            tcp.read_exact(&mut answer).await
        };
        exchange.await.map_err(|e| {
            EngineError::new(
                ErrorKind::Unreachable,
                format!("{host}:{port} closed the connection before answering the TLS request"),
            )
            .with_source(e)
        })?;
        match answer[0] {
            b'S' => {}
            b'N' => {
                return Err(EngineError::new(
                    ErrorKind::Tls,
                    format!("{host}:{port} does not offer TLS (it refused the SSLRequest)"),
                ));
            }
            other => {
                return Err(EngineError::new(
                    ErrorKind::Server,
                    format!(
                        "{host}:{port} answered the TLS request with byte {other:#04x}, not the PostgreSQL protocol's S or N"
                    ),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = |sources: &[TrustSource]| match probe.pem_for_host {
        true => probe.trust.root_store_for_host(name, sources),
        false => probe.trust.root_store_of(sources),
    };
    let verifier = Arc::new(Anchoring::new(roots, probe.sources, &provider)?);
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::new(ErrorKind::Other, "no TLS version to offer").with_source(e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = connector.connect(server, tcp).await;
    let (anchor, rejection) = verifier.outcome();
    match (result, anchor) {
        (Ok(mut tls), Some(source)) => {
            let _ = tls.shutdown().await;
            let from = match (source, probe.trust.ca_bundle_path()) {
                (TrustSource::CaBundle, Some(path)) => {
                    format!("{source} ({})", path.display())
                }
                _ => source.to_string(),
            };
            Ok(format!(
                "the certificate of {host}:{port} verifies for {name}, anchored by {from}"
            ))
        }
        (_, _) => match rejection {
            Some(e) => Err(EngineError::new(
                ErrorKind::Tls,
                format!(
                    "the certificate of {host}:{port} does not verify for {name}: {}",
                    explain(&e, probe.sources)
                ),
            )),
            None => Err(EngineError::new(
                ErrorKind::Tls,
                format!("the TLS handshake with {host}:{port} failed"),
            )),
        },
    }
}

/// Why a certificate was refused, in an operator's words.
fn explain(e: &rustls::Error, sources: &[TrustSource]) -> String {
    let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "its CA is in none of the trust sources used ({})",
            names.join(", ")
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "it is not issued for that name (set tls_server_name in the secret when connecting through another name)".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "it has expired".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "it is not valid yet (check the clock)".into(),
        other => other.to_string(),
    }
}

/// A verifier that tries each source on its own and remembers which one anchored the chain,
/// or the whole store's reason for refusing it.
#[derive(Debug)]
struct Anchoring {
    per_source: Vec<(TrustSource, Arc<WebPkiServerVerifier>)>,
    all: Arc<WebPkiServerVerifier>,
    outcome: Mutex<(Option<TrustSource>, Option<rustls::Error>)>,
}

impl Anchoring {
    /// `roots` gives the anchors of some sources, as the driver has them.
    fn new(
        roots: impl Fn(&[TrustSource]) -> rustls::RootCertStore,
        sources: &[TrustSource],
        provider: &Arc<CryptoProvider>,
    ) -> Result<Anchoring, EngineError> {
        let build = |roots: rustls::RootCertStore| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .ok()
        };
        let per_source = sources
            .iter()
            .filter_map(|&s| build(roots(&[s])).map(|v| (s, v)))
            .collect();
        let all = build(roots(sources)).ok_or_else(|| {
            EngineError::new(
                ErrorKind::Tls,
                "no trust source holds a certificate: nothing could verify the server",
            )
        })?;
        Ok(Anchoring {
            per_source,
            all,
            outcome: Mutex::new((None, None)),
        })
    }

    fn outcome(&self) -> (Option<TrustSource>, Option<rustls::Error>) {
        let mut o = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        (o.0, o.1.take())
    }
}

impl ServerCertVerifier for Anchoring {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |v: &WebPkiServerVerifier| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        };
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        for (source, v) in &self.per_source {
            if let Ok(ok) = verify(v) {
                outcome.0 = Some(*source);
                return Ok(ok);
            }
        }
        let e = match verify(&self.all) {
            // Cannot happen (the union verifies only through one source); refuse anyway.
            Ok(_) => rustls::Error::General("verified by no single trust source".into()),
            Err(e) => e,
        };
        outcome.1 = Some(e.clone());
        Err(e)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.all.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.all.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.all.supported_verify_schemes()
    }
}
