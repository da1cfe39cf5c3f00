//! The TLS trust store shared by every engine's connections, built once per process.
//!
//! Sources, in order:
//!
//! 1. **The Amazon RDS global CA bundle**, embedded in the binary ([`RDS_GLOBAL_BUNDLE`], 108
//!    root CAs of the commercial partition, decoded to DER at build time; see `data/README.md`
//!    for its origin and how to refresh it). It covers RDS, Aurora and DocumentDB.
//! 2. **The system trust store**, where the platform has one (what AWS's Python rotation
//!    functions trust). `SSL_CERT_FILE` / `SSL_CERT_DIR` when set; otherwise, on Linux, the
//!    platform's bundle file (`/etc/ssl/certs/ca-certificates.crt`,
//!    `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem`, ...) and any regular file placed by
//!    hand in the certificate directories (`/etc/ssl/certs`, `/etc/pki/tls/certs`, ...); links
//!    there are not followed (they lead to the bundle's own certificates; a CA only linked
//!    there belongs in `CA_BUNDLE_PATH`); elsewhere, or without a bundle, what
//!    `rustls-native-certs` reads. Its absence is not an error: the source counts
//!    0 and a log line says so.
//! 3. **`CA_BUNDLE_PATH`**, a PEM file of extra CAs (GovCloud and China RDS bundles, private
//!    CAs). A file that cannot be read, is not PEM, holds no certificate or holds a certificate
//!    that cannot be a trust anchor is a [`TrustError`] at load time, so binaries fail at start.
//! 4. **The Mozilla roots** (`webpki-roots`). Database drivers built on rustls add these
//!    themselves (sqlx with `tls-rustls-aws-lc-rs` starts every connection from them), so they
//!    are counted but left out of the PEM this crate hands out; [`Trust::root_store`] includes
//!    them for drivers that take a [`RootCertStore`].
//!
//! Everything is parsed once. Certificates already trusted through another source (same
//! subject and public key as a Mozilla root or as an earlier source's certificate: one of
//! `CA_BUNDLE_PATH` that repeats an RDS root is dropped, so it is trusted where that root is)
//! are dropped and counted, and so are system certificates that rustls cannot
//! use as trust anchors (sqlx would otherwise fail every connection on them).
//!
//! # Per-host PEM
//!
//! sqlx re-parses the PEM it is given on every connection (`ssl_root_cert_from_pem`, then one
//! `RootCertStore::add` per certificate on top of the Mozilla roots), so [`Trust::pem_for_host`]
//! hands out the smallest PEM that still trusts everything the host can present, joined at its
//! first use (each certificate is encoded at most once):
//!
//! - RDS, Aurora and DocumentDB endpoints ([`is_aws_database_host`]): the RDS CAs of the region
//!   the name gives, plus `CA_BUNDLE_PATH`. An endpoint's certificate chains to its region's
//!   RDS CAs (each region has its own: "Amazon RDS us-east-1 Root CA RSA2048 G1", RSA4096 and
//!   ECC384), or, for RDS Proxy and DocumentDB elastic clusters, to Amazon Trust Services roots,
//!   which are Mozilla roots. A name without a region (a global writer endpoint) or with one the
//!   bundle does not name gets the whole bundle. GovCloud and China endpoints are recognised
//!   too, so their RDS CAs must come through `CA_BUNDLE_PATH` (a CA installed only in the
//!   system store is not used for them).
//! - An IP address: the system store (without the Mozilla duplicates) plus `CA_BUNDLE_PATH`.
//!   No RDS certificate names an IP address, so the RDS bundle could never verify one.
//! - Any other host: the system store plus the RDS bundle plus `CA_BUNDLE_PATH`.
//!
//! A driver that takes only a CA file (the MongoDB driver) gets [`Trust::pem_file_for_host`]:
//! the same RDS narrowing, with `CA_BUNDLE_PATH` and the whole system store.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let trust = rotation_trust::Trust::global()?;
//! trust.log_sources();
//! let pem = trust.pem_for_host("mydb.abc123.us-east-1.rds.amazonaws.com");
//! // sqlx: PgConnectOptions::new().ssl_root_cert_from_pem(pem.to_vec())
//! # let _ = pem;
//! # Ok(())
//! # }
//! ```
//!
//! # Cost
//!
//! Measured with `env -i target/release/examples/trust_timing` (built by `cargo build --release
//! -p rotation-trust --example trust_timing`; `env -i` as on Lambda, where no `SSL_CERT_FILE` or
//! `SSL_CERT_DIR` is set) on a 2-core Linux build machine (rustls 0.23.46, webpki-roots 1.0.10
//! with 120 Mozilla roots; Debian `ca-certificates` giving 145 system certificates, 96 of them
//! Mozilla duplicates and 49 kept: older public roots that webpki-roots no longer ships, plus a
//! few local CAs):
//!
//! | What | Figure |
//! |---|---|
//! | `Trust::load(None)`, first call in the process | 1.1-1.3 ms wall (three runs) |
//! | `Trust::load(None)`, later calls (the system store as the first read it) | 0.27-0.30 ms median |
//! | Per connection, Mozilla roots only (no PEM) | 0.6 µs |
//! | Per connection, an RDS endpoint in us-east-1 (6 certificates, 9 KB) | 19 µs |
//! | Per connection, an RDS endpoint without a region (108 certificates, 165 KB) | 342 µs |
//! | Per connection, an IP address (49 certificates, 75 KB) | 155 µs |
//! | Per connection, another host (157 certificates, 240 KB) | 494 µs |
//!
//! The system store and `CA_BUNDLE_PATH` are read from PEM with a plain base64 decoder
//! (certificates are public; the constant-time one of `rustls-pki-types` is kept for what is not
//! a plain bundle), the RDS bundle is in the binary as DER, and each certificate is encoded back
//! at most once, when a PEM that holds it is first asked for. The system store is
//! read once per process, and the AWS SDK's HTTPS client of the functions trusts the same
//! ([`sdk`]). Reading the bundle file and the directories' own files instead of every link in
//! the directories (`rustls_native_certs::load_native_certs`, which `SSL_CERT_FILE` or
//! `SSL_CERT_DIR` selects) saves about 2 ms: `load_native_certs` alone takes 3.2-4.2 ms here.
//!
//! Per-connection figures are medians over 200 runs (CPU time agrees within a few percent) of
//! what sqlx 0.8.6 and 0.9.0 do with `ssl_root_cert_from_pem`: clone the PEM, build a
//! `RootCertStore` from the Mozilla roots, decode and add every certificate, about 3 µs each.
//! For comparison, a verified-TLS login through sqlx takes several milliseconds (see the
//! workspace BENCHMARKS.md).

mod host;
pub mod probe;
pub mod sdk;
pub mod settings;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use tracing::{debug, info, warn};

pub use host::is_aws_database_host;
pub use settings::{ConnectSettings, SettingsError};
/// The path of a file that is removed when the path is dropped ([`Trust::pem_file_for_host`]).
pub use tempfile::TempPath;

/// `CA_BUNDLE_PATH`: a PEM file of extra CA certificates to trust. Empty means unset.
pub const CA_BUNDLE_ENV: &str = "CA_BUNDLE_PATH";

/// The Amazon RDS global CA bundle (commercial partition), as published at
/// `https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem`.
pub const RDS_GLOBAL_BUNDLE: &[u8] = include_bytes!("../data/rds-global-bundle.pem");

/// [`RDS_GLOBAL_BUNDLE`]'s certificates as DER, one after another, decoded at build time
/// (`build.rs`).
const RDS_GLOBAL_DER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rds-global-bundle.der"));

/// The certificates of [`RDS_GLOBAL_DER`], borrowed from the binary.
fn rds_global_certificates() -> Result<Vec<CertificateDer<'static>>, PemProblem> {
    let mut certs = Vec::with_capacity(108);
    let mut rest = RDS_GLOBAL_DER;
    while !rest.is_empty() {
        // A certificate is one DER SEQUENCE: tag 0x30, then its length (short or long form).
        let (header, length) = match rest {
            [0x30, n, ..] if *n < 0x80 => (2, usize::from(*n)),
            [0x30, 0x81, a, ..] => (3, usize::from(*a)),
            [0x30, 0x82, a, b, ..] => (4, usize::from(*a) << 8 | usize::from(*b)),
            [0x30, 0x83, a, b, c, ..] => (
                5,
                usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
            ),
            _ => return Err(PemProblem::Der),
        };
        let Some((cert, after)) = rest.split_at_checked(header + length) else {
            return Err(PemProblem::Der);
        };
        certs.push(CertificateDer::from(cert));
        rest = after;
    }
    Ok(certs)
}

/// Where trusted certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrustSource {
    /// The RDS CA bundle embedded in the binary (or its stand-in, see
    /// [`Trust::with_rds_bundle`]).
    RdsBundle,
    /// The platform's trust store.
    System,
    /// The PEM file named by `CA_BUNDLE_PATH`.
    CaBundle,
    /// The Mozilla roots of `webpki-roots`.
    Mozilla,
}

impl TrustSource {
    /// A short stable name for logs: `rds-bundle`, `system`, `ca-bundle`, `mozilla`.
    pub fn name(self) -> &'static str {
        match self {
            TrustSource::RdsBundle => "rds-bundle",
            TrustSource::System => "system",
            TrustSource::CaBundle => "ca-bundle",
            TrustSource::Mozilla => "mozilla",
        }
    }
}

impl fmt::Display for TrustSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many certificates one source gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCount {
    /// The source.
    pub source: TrustSource,
    /// The file read, for [`TrustSource::CaBundle`] when `CA_BUNDLE_PATH` is set.
    pub path: Option<PathBuf>,
    /// Certificates read from the source.
    pub loaded: usize,
    /// Dropped because another source already trusts the same subject and public key.
    pub duplicates: usize,
    /// Dropped because rustls cannot use them as trust anchors (system store only; elsewhere
    /// such a certificate is an error).
    pub unusable: usize,
}

impl SourceCount {
    /// Certificates this source adds to the trust store.
    pub fn kept(&self) -> usize {
        self.loaded - self.duplicates - self.unusable
    }
}

/// What is wrong with a PEM source.
#[derive(Debug, thiserror::Error)]
pub enum PemProblem {
    /// Not parseable as PEM.
    #[error("is not valid PEM: {0}")]
    Malformed(#[source] pem::Error),
    /// No `CERTIFICATE` section.
    #[error("holds no certificate")]
    NoCertificate,
    /// The build's DER form of the embedded bundle does not split into certificates.
    #[error("is not a sequence of DER certificates")]
    Der,
    /// A certificate rustls cannot use as a trust anchor.
    #[error(
        "holds a certificate (#{index}, counting from 1) that cannot be a trust anchor: {source}"
    )]
    Unusable {
        /// Position of the certificate in the file, from 1.
        index: usize,
        /// Why rustls rejected it.
        #[source]
        source: rustls::Error,
    },
}

/// The most a CA bundle may hold: the system's is about 0.2 MiB, the RDS bundle 0.2 MiB.
const MAX_CA_BUNDLE_BYTES: u64 = 8 << 20;

/// Reads the file `CA_BUNDLE_PATH` names: a regular file (a FIFO would block the start, a
/// device such as `/dev/zero` never ends), at most [`MAX_CA_BUNDLE_BYTES`]. Opened without
/// blocking, then checked on the open file, so a path swapped for a FIFO in between cannot
/// hang either.
fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, TrustError> {
    use std::io::Read;
    let unreadable = |source| TrustError::CaBundleUnreadable {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(unreadable)?;
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(unreadable(std::io::Error::other(
            "not a regular file (a FIFO, a device or a directory)",
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CA_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_CA_BUNDLE_BYTES {
        return Err(unreadable(std::io::Error::other(format!(
            "larger than {} MiB, more than any CA bundle",
            MAX_CA_BUNDLE_BYTES >> 20
        ))));
    }
    Ok(bytes)
}

/// The trust store cannot be built; a configuration error to report at start-up.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// `CA_BUNDLE_PATH` names a file that cannot be read.
    #[error("{CA_BUNDLE_ENV} points at {}, which cannot be read: {source}", path.display())]
    CaBundleUnreadable {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `CA_BUNDLE_PATH` names a file that does not hold usable certificates.
    #[error("{CA_BUNDLE_ENV} points at {}, which {problem}", path.display())]
    CaBundle {
        /// The path.
        path: PathBuf,
        /// What is wrong with its contents.
        #[source]
        problem: PemProblem,
    },
    /// The CA file for drivers that take only a file cannot be written.
    #[error(
        "cannot write the CA file for the database driver in the temporary directory: {message}"
    )]
    PemFile {
        /// The I/O error, as text (it is kept for every later call).
        message: String,
    },
    /// The RDS bundle given to [`Trust::with_rds_bundle`] (never the embedded one, which a test
    /// checks) does not hold usable certificates.
    #[error("the RDS CA bundle {problem}")]
    RdsBundle {
        /// What is wrong with its contents.
        #[source]
        problem: PemProblem,
    },
}

/// The PEMs handed out, by host.
struct Pems {
    rds: Sections,
    ca: Sections,
    /// The whole system store (the CA file replaces a driver's own roots).
    system: Sections,
    /// The system certificates that are not Mozilla roots or another source's, by position.
    system_kept: Vec<usize>,
    aws_databases: Pem,
    /// One region's RDS certificates plus `CA_BUNDLE_PATH`, made on first use.
    rds_regions: RdsRegions,
    ip_hosts: Pem,
    other_hosts: Pem,
    complete: Pem,
}

impl Pems {
    /// `pem`, joined from the sections `parts` names at its first use.
    fn get<'a>(&'a self, pem: &'a Pem, parts: impl FnOnce(&'a Self) -> Vec<&'a [u8]>) -> Arc<[u8]> {
        Arc::clone(pem.bytes.get_or_init(|| join(parts(self))))
    }

    fn aws_databases(&self) -> Arc<[u8]> {
        self.get(&self.aws_databases, |p| {
            p.rds.all().chain(p.ca.all()).collect()
        })
    }

    fn ip_hosts(&self) -> Arc<[u8]> {
        self.get(&self.ip_hosts, |p| {
            p.ca.all().chain(p.system_kept()).collect()
        })
    }

    fn other_hosts(&self) -> Arc<[u8]> {
        self.get(&self.other_hosts, |p| {
            p.rds
                .all()
                .chain(p.ca.all())
                .chain(p.system_kept())
                .collect()
        })
    }

    fn complete(&self) -> Arc<[u8]> {
        self.get(&self.complete, |p| {
            p.rds
                .all()
                .chain(p.ca.all())
                .chain(p.system.all())
                .collect()
        })
    }

    fn system_kept(&self) -> impl Iterator<Item = &[u8]> {
        self.system_kept.iter().map(|&i| self.system.section(i))
    }
}

/// A PEM joined at its first use, with its certificate count (known at load).
struct Pem {
    bytes: OnceLock<Arc<[u8]>>,
    certificates: usize,
}

impl Pem {
    fn of(certificates: usize) -> Pem {
        Pem {
            bytes: OnceLock::new(),
            certificates,
        }
    }
}

/// A PEM file written for a driver, or why it could not be.
type PemFile = Result<tempfile::TempPath, String>;

/// `pem` in a private temporary file (mode 0600), removed when the path is dropped.
fn write_pem_file(pem: &[u8]) -> PemFile {
    let write = || -> std::io::Result<tempfile::TempPath> {
        let mut file = tempfile::Builder::new()
            .prefix("rotation-trust-")
            .suffix(".pem")
            .tempfile()?;
        std::io::Write::write_all(&mut file, pem)?;
        Ok(file.into_temp_path())
    };
    write().map_err(|e| e.to_string())
}

/// Sections made by [`pem_section`], one after another.
fn join(sections: Vec<&[u8]>) -> Arc<[u8]> {
    Arc::from(sections.concat())
}

/// One source's certificates, each encoded as a PEM section at its first use (a plaintext
/// connection, or an endpoint that gets its region's RDS certificates, needs few or none).
struct Sections {
    certs: Vec<CertificateDer<'static>>,
    pem: Vec<OnceLock<Vec<u8>>>,
}

impl Sections {
    fn new(certs: Vec<CertificateDer<'static>>) -> Sections {
        let pem = certs.iter().map(|_| OnceLock::new()).collect();
        Sections { certs, pem }
    }

    fn len(&self) -> usize {
        self.certs.len()
    }

    fn section(&self, i: usize) -> &[u8] {
        self.pem[i].get_or_init(|| pem_section(&self.certs[i]))
    }

    fn all(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.section(i))
    }
}

/// One certificate as a PEM section (64 characters a line, as the published bundles are).
fn pem_section(cert: &CertificateDer<'_>) -> Vec<u8> {
    let base64 = BASE64.encode(cert.as_ref());
    let mut bytes = Vec::with_capacity(base64.len() + base64.len() / 64 + 60);
    bytes.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"-----END CERTIFICATE-----\n");
    bytes
}

/// The trust store: every source parsed once, the per-host PEMs and the full
/// [`RootCertStore`] prepared at load, the per-host PEMs at their first use. Cheap to clone.
#[derive(Clone)]
pub struct Trust {
    sources: Arc<[SourceCount]>,
    pems: Arc<Pems>,
    complete_file: Arc<OnceLock<PemFile>>,
    root_store: Arc<RootCertStore>,
    /// The source of each anchor of `root_store`, index for index.
    anchor_sources: Arc<Vec<TrustSource>>,
    /// Whether the system store holds each anchor (whatever source it is counted under).
    anchor_in_system: Arc<Vec<bool>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("sources", &self.sources)
            .field(
                "aws_database_pem_certificates",
                &self.pems.aws_databases.certificates,
            )
            .field("ip_host_pem_certificates", &self.pems.ip_hosts.certificates)
            .field(
                "other_host_pem_certificates",
                &self.pems.other_hosts.certificates,
            )
            .field("root_store_len", &self.root_store.len())
            .finish()
    }
}

static GLOBAL: OnceLock<Result<Trust, TrustError>> = OnceLock::new();

impl Trust {
    /// Loads the embedded RDS bundle, the system store and `ca_bundle_path` (when given).
    pub fn load(ca_bundle_path: Option<&Path>) -> Result<Trust, TrustError> {
        let rds = rds_global_certificates().map_err(|problem| TrustError::RdsBundle { problem })?;
        Trust::with_system_store(rds, ca_bundle_path)
    }

    /// [`Trust::build_from`] with the process's system store.
    fn with_system_store(
        rds: Vec<CertificateDer<'static>>,
        ca_bundle_path: Option<&Path>,
    ) -> Result<Trust, TrustError> {
        let system = system_store();
        Trust::build_from(rds, system.certs.clone(), &system.errors, ca_bundle_path)
    }

    /// [`Trust::load`] with the path from `CA_BUNDLE_PATH` (unset, empty or blank: none).
    pub fn from_env() -> Result<Trust, TrustError> {
        let path = path_from_env(std::env::var_os(CA_BUNDLE_ENV));
        Trust::load(path.as_deref())
    }

    /// [`Trust::load`] with `rds_pem` (read from PEM here) in place of the embedded RDS
    /// bundle, then the same code path: a test CA can stand in for RDS's CAs (its endpoints
    /// get the narrowed PEM).
    pub fn with_rds_bundle(
        rds_pem: &[u8],
        ca_bundle_path: Option<&Path>,
    ) -> Result<Trust, TrustError> {
        let rds = parse_pem(rds_pem).map_err(|problem| TrustError::RdsBundle { problem })?;
        Trust::with_system_store(rds, ca_bundle_path)
    }

    /// The process-wide trust store: the one given to [`Trust::set_global`], else
    /// [`Trust::from_env`] on first use. A load error is kept and returned on every call.
    pub fn global() -> Result<&'static Trust, &'static TrustError> {
        GLOBAL.get_or_init(Trust::from_env).as_ref()
    }

    /// Makes `trust` the process-wide store; gives it back if one is already set (or a load
    /// through [`Trust::global`] already happened).
    pub fn set_global(trust: Trust) -> Result<&'static Trust, Trust> {
        match GLOBAL.set(Ok(trust)) {
            Ok(()) => Ok(GLOBAL
                .get()
                .and_then(|r| r.as_ref().ok())
                .expect("just set")),
            Err(rejected) => Err(rejected.expect("OnceLock::set hands back the value given")),
        }
    }

    /// The PEM to give a driver that adds the Mozilla roots itself (sqlx:
    /// `ssl_root_cert_from_pem(pem.to_vec())`), narrowed for `host` (see the crate docs).
    /// Joined at its first use (each certificate encoded once per process); later calls only
    /// clone an `Arc`.
    pub fn pem_for_host(&self, host: &str) -> Arc<[u8]> {
        let pems = &self.pems;
        if let Some((region, positions)) = pems.rds_regions.for_host(host) {
            pems.rds_regions.pem(region, positions, &pems.rds, &pems.ca)
        } else if is_aws_database_host(host) {
            pems.aws_databases()
        } else if is_ip_address(host) {
            pems.ip_hosts()
        } else {
            pems.other_hosts()
        }
    }

    /// For drivers that take only a CA file, which replaces their own roots (the MongoDB
    /// driver): a private temporary file (mode 0600) holding the RDS bundle, `CA_BUNDLE_PATH`
    /// and the whole system store (where the public roots, Amazon Trust Services' among them,
    /// come from: the Mozilla roots have no certificate form to write), written at the first
    /// call and removed when the last clone of this store goes (never, for a store kept in a
    /// `static`: [`Trust::pem_file_for_host`] leaves nothing behind).
    pub fn pem_file(&self) -> Result<&Path, TrustError> {
        self.complete_file
            .get_or_init(|| write_pem_file(&self.pems.complete()))
            .as_ref()
            .map(|p| p.as_ref())
            .map_err(|message| TrustError::PemFile {
                message: message.clone(),
            })
    }

    /// A CA file for a driver that reads one when its client is made (the MongoDB driver),
    /// narrowed for `host` as [`Trust::pem_for_host`] narrows the RDS CAs: for an endpoint
    /// whose name gives a region the bundle names, that region's RDS CAs, `CA_BUNDLE_PATH` and
    /// the whole system store (about 150 certificates instead of about 250); for any other
    /// host, what [`Trust::pem_file`] holds. A new private file (mode 0600) at each call,
    /// removed when the returned path is dropped: keep it until the driver has read it.
    pub fn pem_file_for_host(&self, host: &str) -> Result<tempfile::TempPath, TrustError> {
        let p = &self.pems;
        let pem = match p.rds_regions.for_host(host) {
            // The driver's PEM for the host, then the system store.
            Some((region, positions)) => {
                let region = p.rds_regions.pem(region, positions, &p.rds, &p.ca);
                join(std::iter::once(&*region).chain(p.system.all()).collect())
            }
            None => p.complete(),
        };
        write_pem_file(&pem).map_err(|message| TrustError::PemFile { message })
    }

    /// All four sources as one rustls store (Mozilla roots included), for drivers that take a
    /// [`RootCertStore`] rather than a PEM.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.root_store)
    }

    /// The anchors of `sources` that a driver given [`Trust::pem_for_host`] for `host` trusts
    /// (the RDS CAs of the host's region only, where it gives one), as one rustls store.
    /// Without [`TrustSource::Mozilla`] among `sources` (a driver given a CA file, which
    /// replaces its own roots: [`Trust::PEM_FILE_SOURCES`]), `System` is the whole system
    /// store, as the file holds it: its certificates that repeat a Mozilla root or another
    /// source's certificate count as `System` too.
    pub fn root_store_for_host(&self, host: &str, sources: &[TrustSource]) -> RootCertStore {
        let region = self.pems.rds_regions.for_host(host).map(|(_, p)| p);
        // The RDS anchors are the kept RDS certificates, in their order.
        let mut rds = 0..;
        self.anchors_where(sources, |s| match s {
            TrustSource::RdsBundle => {
                let i = rds.next().expect("unbounded");
                sources.contains(&s) && region.is_none_or(|p| p.contains(&i))
            }
            _ => sources.contains(&s),
        })
    }

    /// The anchors of `sources` only, as one rustls store (for telling which source anchors a
    /// chain: see [`probe`]); `System` as [`Trust::root_store_for_host`] says.
    pub fn root_store_of(&self, sources: &[TrustSource]) -> RootCertStore {
        self.anchors_where(sources, |s| sources.contains(&s))
    }

    /// The anchors whose source `keep` accepts (called once per anchor, in order), and, for a
    /// CA-file driver's `sources`, those the system store repeats.
    fn anchors_where(
        &self,
        sources: &[TrustSource],
        mut keep: impl FnMut(TrustSource) -> bool,
    ) -> RootCertStore {
        let whole_system =
            sources.contains(&TrustSource::System) && !sources.contains(&TrustSource::Mozilla);
        let roots = self
            .root_store
            .roots
            .iter()
            .zip(self.anchor_sources.iter())
            .zip(self.anchor_in_system.iter())
            .filter(|((_, s), in_system)| keep(**s) | (whole_system && **in_system))
            .map(|((a, _), _)| a.clone())
            .collect();
        RootCertStore { roots }
    }

    /// The sources a driver given [`Trust::pem_for_host`] trusts for `host` (it adds the
    /// Mozilla roots itself), in the order [`probe`] reports them.
    pub fn sources_for_host(host: &str) -> &'static [TrustSource] {
        if is_aws_database_host(host) {
            &[
                TrustSource::RdsBundle,
                TrustSource::CaBundle,
                TrustSource::Mozilla,
            ]
        } else if is_ip_address(host) {
            &[
                TrustSource::CaBundle,
                TrustSource::System,
                TrustSource::Mozilla,
            ]
        } else {
            &[
                TrustSource::RdsBundle,
                TrustSource::CaBundle,
                TrustSource::System,
                TrustSource::Mozilla,
            ]
        }
    }

    /// The sources a driver given [`Trust::pem_file`] trusts (no Mozilla roots: the file
    /// replaces the driver's own).
    pub const PEM_FILE_SOURCES: &'static [TrustSource] = &[
        TrustSource::RdsBundle,
        TrustSource::CaBundle,
        TrustSource::System,
    ];

    /// The path of `CA_BUNDLE_PATH`'s file, when one was loaded.
    pub fn ca_bundle_path(&self) -> Option<&Path> {
        self.sources
            .iter()
            .find(|c| c.source == TrustSource::CaBundle)
            .and_then(|c| c.path.as_deref())
    }

    /// What each source gave, in order: RDS bundle, system store, `CA_BUNDLE_PATH`, Mozilla.
    pub fn sources(&self) -> Vec<SourceCount> {
        self.sources.to_vec()
    }

    /// Logs [`Trust::sources`] as one `tracing` info line with a field per count.
    pub fn log_sources(&self) {
        let count = |s: TrustSource| {
            self.sources
                .iter()
                .find(|c| c.source == s)
                .cloned()
                .unwrap_or_else(|| SourceCount::empty(s, None))
        };
        let (rds, system, ca, mozilla) = (
            count(TrustSource::RdsBundle),
            count(TrustSource::System),
            count(TrustSource::CaBundle),
            count(TrustSource::Mozilla),
        );
        let ca_path = ca
            .path
            .as_deref()
            .map_or_else(|| "unset".to_owned(), |p| p.display().to_string());
        info!(
            rds_bundle = rds.kept(),
            system = system.kept(),
            system_loaded = system.loaded,
            system_duplicates = system.duplicates,
            system_unusable = system.unusable,
            ca_bundle = ca.kept(),
            ca_bundle_duplicates = ca.duplicates,
            ca_bundle_path = %ca_path,
            mozilla = mozilla.kept(),
            pem_aws_databases = self.pems.aws_databases.certificates,
            pem_other_hosts = self.pems.other_hosts.certificates,
            "TLS trust sources loaded"
        );
    }

    /// Builds the store from the three sources, the RDS bundle as PEM (for the tests' exact
    /// stores); `system_errors` are logged, never fatal.
    #[cfg(test)]
    fn build(
        rds_pem: &[u8],
        system: Vec<CertificateDer<'static>>,
        system_errors: &[String],
        ca_bundle_path: Option<&Path>,
    ) -> Result<Trust, TrustError> {
        let rds_certs = parse_pem(rds_pem).map_err(|problem| TrustError::RdsBundle { problem })?;
        Trust::build_from(rds_certs, system, system_errors, ca_bundle_path)
    }

    /// Builds the store from the three parsed sources; `system_errors` are logged, never fatal.
    fn build_from(
        rds_certs: Vec<CertificateDer<'static>>,
        system: Vec<CertificateDer<'static>>,
        system_errors: &[String],
        ca_bundle_path: Option<&Path>,
    ) -> Result<Trust, TrustError> {
        let mut store = Store::mozilla();
        let mozilla = SourceCount {
            source: TrustSource::Mozilla,
            path: None,
            loaded: store.anchors.len(),
            duplicates: 0,
            unusable: 0,
        };

        let (rds_kept, rds) = store
            .add_all(TrustSource::RdsBundle, None, rds_certs)
            .map_err(|problem| TrustError::RdsBundle { problem })?;

        let (ca_kept, ca) = match ca_bundle_path {
            None => (Vec::new(), SourceCount::empty(TrustSource::CaBundle, None)),
            Some(path) => {
                let bytes = read_ca_bundle(path)?;
                let ca_error = |problem| TrustError::CaBundle {
                    path: path.to_owned(),
                    problem,
                };
                let certs = parse_pem(&bytes).map_err(ca_error)?;
                store
                    .add_all(TrustSource::CaBundle, Some(path), certs)
                    .map_err(ca_error)?
            }
        };

        if let Some(first) = system_errors.first() {
            warn!(
                errors = system_errors.len(),
                first_error = %first,
                "system trust store partly unreadable; continuing with what was read"
            );
        }
        if system.is_empty() {
            info!("no system trust store found; continuing without it");
        }
        let (system_kept, system_count) = store.add_lenient(&system);
        // Each certificate is encoded at most once, at its first use; the PEMs share the
        // sections.
        let (rds_n, ca_n, kept_n) = (rds_kept.len(), ca_kept.len(), system_kept.len());
        // The RDS certificates are the store's first anchors after the Mozilla roots, in order.
        let rds_subjects = store
            .anchors
            .roots
            .iter()
            .zip(&store.sources)
            .filter(|(_, s)| **s == TrustSource::RdsBundle)
            .map(|(a, _)| a.subject.as_ref());
        let rds_regions = RdsRegions::new(rds_subjects);
        Ok(Trust {
            sources: Arc::new([rds, system_count, ca, mozilla]),
            pems: Arc::new(Pems {
                aws_databases: Pem::of(rds_n + ca_n),
                rds_regions,
                ip_hosts: Pem::of(ca_n + kept_n),
                other_hosts: Pem::of(rds_n + ca_n + kept_n),
                complete: Pem::of(rds_n + ca_n + system.len()),
                rds: Sections::new(rds_kept),
                ca: Sections::new(ca_kept),
                system: Sections::new(system),
                system_kept,
            }),
            complete_file: Arc::new(OnceLock::new()),
            anchor_sources: Arc::new(store.sources),
            anchor_in_system: Arc::new(store.in_system),
            root_store: Arc::new(store.anchors),
        })
    }
}

/// The RDS certificates of each region, found by the region their subject names ("Amazon RDS
/// us-east-1 Root CA RSA2048 G1"), as positions among the kept RDS certificates (their
/// sections in [`Pems`], and their anchors in the store, in the same order); and each region's
/// PEM, with `CA_BUNDLE_PATH`'s certificates, joined at its first use.
struct RdsRegions {
    by_region: HashMap<String, Vec<usize>>,
    pems: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl RdsRegions {
    /// `subjects`: the kept RDS certificates' subjects, in the order of `rds`.
    fn new<'a>(subjects: impl Iterator<Item = &'a [u8]>) -> RdsRegions {
        let mut by_region: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, subject) in subjects.enumerate() {
            for region in regions_named(subject) {
                by_region.entry(region).or_default().push(i);
            }
        }
        RdsRegions {
            by_region,
            pems: Mutex::new(HashMap::new()),
        }
    }

    /// The region and the positions of the RDS certificates `host` is given, when its name
    /// gives a region the bundle names; `None` for all of them (no region, a region newer
    /// than the bundle, a stand-in bundle).
    fn for_host(&self, host: &str) -> Option<(&str, &[usize])> {
        let region = host::aws_database_endpoint(host)??;
        self.by_region
            .get_key_value(&region)
            .map(|(r, positions)| (r.as_str(), positions.as_slice()))
    }

    /// The PEM of `region`'s certificates (`positions` among `rds`) and `ca`'s.
    fn pem(&self, region: &str, positions: &[usize], rds: &Sections, ca: &Sections) -> Arc<[u8]> {
        let mut pems = self.pems.lock().unwrap_or_else(|e| e.into_inner());
        let pem = pems.entry(region.to_string()).or_insert_with(|| {
            let rds = positions.iter().map(|&i| rds.section(i));
            join(rds.chain(ca.all()).collect())
        });
        Arc::clone(pem)
    }
}

/// The regions (`us-east-1`) a certificate's subject names, as words of its DER bytes.
fn regions_named(subject: &[u8]) -> Vec<String> {
    let mut regions: Vec<String> = subject
        .split(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-'))
        .filter_map(|word| std::str::from_utf8(word).ok())
        .filter(|word| host::is_region(word))
        .map(str::to_string)
        .collect();
    regions.dedup();
    regions
}

/// An IP address literal (`10.0.0.5`, `::1`, `[::1]`): no RDS certificate names one.
fn is_ip_address(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().is_ok()
}

impl SourceCount {
    fn empty(source: TrustSource, path: Option<&Path>) -> SourceCount {
        SourceCount {
            source,
            path: path.map(Path::to_owned),
            loaded: 0,
            duplicates: 0,
            unusable: 0,
        }
    }
}

/// The system trust store as [`load_system`] read it at its first use in the process (the
/// platform's store does not change under a running function; reading it again cost as much
/// as the rest of a load).
struct SystemStore {
    certs: Vec<CertificateDer<'static>>,
    errors: Vec<String>,
}

fn system_store() -> &'static SystemStore {
    static SYSTEM: OnceLock<SystemStore> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let found = load_system();
        SystemStore {
            certs: found.certs,
            errors: found.errors.iter().map(ToString::to_string).collect(),
        }
    })
}

/// The system store's certificates that rustls can use as anchors, as one store (for the AWS
/// SDK's client: [`sdk::https_client`]).
fn system_root_store() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_store().certs.iter().cloned());
    roots
}

/// The system trust store. `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set (as
/// `rustls-native-certs` reads them). Otherwise, on Linux and the BSDs, the platform's bundle
/// file (the one OpenSSL reads as its CA file) and the files placed by hand in the certificate
/// directories ([`bundle_and_loose_files`]), when the bundle gives certificates without an
/// error; else, and on other platforms, `rustls_native_certs::load_native_certs`.
fn load_system() -> rustls_native_certs::CertificateResult {
    let from_env =
        std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    #[cfg(all(unix, not(target_os = "macos")))]
    if !from_env {
        let probe = openssl_probe::probe();
        if let Some(file) = &probe.cert_file
            && let Some(found) = bundle_and_loose_files(file, &probe.cert_dir)
        {
            return found;
        }
    }
    let _ = from_env;
    rustls_native_certs::load_native_certs()
}

/// The certificates of `bundle`, and of the regular files (not links) in `dirs` other than the
/// bundle; `None` when the bundle gives none or an error. A certificate directory holds links
/// to the certificates the bundle is built from (`update-ca-certificates`, `update-ca-trust`,
/// `c_rehash`): reading them as well, as `load_native_certs` does, opened about 300 files here
/// and parsed every system certificate twice. A file copied into the directory by hand is not
/// a link, and is read.
fn bundle_and_loose_files(
    bundle: &Path,
    dirs: &[PathBuf],
) -> Option<rustls_native_certs::CertificateResult> {
    let mut found = load_pem_file(bundle);
    if found.certs.is_empty() || !found.errors.is_empty() {
        return None;
    }
    let bundle = std::fs::canonicalize(bundle).ok();
    // The probe may list one directory twice.
    let mut seen = HashSet::new();
    for dir in dirs.iter().filter(|d| seen.insert(*d)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file())
                || std::fs::canonicalize(&path).ok() == bundle
            {
                continue;
            }
            let more = load_pem_file(&path);
            found.certs.extend(more.certs);
            found.errors.extend(more.errors);
        }
    }
    found
        .certs
        .sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    found.certs.dedup();
    Some(found)
}

/// The value of `CA_BUNDLE_PATH` as a path: trimmed, empty meaning unset (a value that is not
/// UTF-8 is taken as it is).
fn path_from_env(value: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let value = value?;
    match value.to_str() {
        Some(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(PathBuf::from),
        None => Some(PathBuf::from(value)),
    }
}

/// Every certificate of a PEM file; at least one.
fn parse_pem(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemProblem> {
    if let Some(certs) = plain_certificates(bytes).filter(|c| !c.is_empty()) {
        return Ok(certs);
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemProblem::Malformed)?;
    if certs.is_empty() {
        return Err(PemProblem::NoCertificate);
    }
    Ok(certs)
}

/// The certificates of a PEM text made only of `CERTIFICATE` sections (and text around them),
/// as CA bundles are; `None` for anything else (another kind of section, base64 that does not
/// decode), which [`parse_pem`] then reads with `rustls-pki-types`' parser, for its errors.
///
/// Certificates are public, so this decodes with the fast base64 engine; `rustls-pki-types`
/// decodes in constant time, line by line, for private keys, which cost about half of a cold
/// start's trust store load (a profile of the Lambda function under callgrind).
fn plain_certificates(bytes: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    const BEGIN: &str = "-----BEGIN ";
    const HEAD: &str = "-----BEGIN CERTIFICATE-----";
    const TAIL: &str = "-----END CERTIFICATE-----";
    let mut rest = std::str::from_utf8(bytes).ok()?;
    let mut certs = Vec::new();
    let mut base64 = Vec::new();
    // A marker must start a line, as the strict reader has it (an indented section, a byte
    // order mark: left to it).
    let line_start =
        |before: &str, first: bool| before.ends_with('\n') || (first && before.is_empty());
    while let Some(at) = rest.find(BEGIN) {
        if !line_start(&rest[..at], certs.is_empty()) {
            return None;
        }
        rest = rest[at..].strip_prefix(HEAD)?;
        let end = rest.find(TAIL)?;
        if !line_start(&rest[..end], false) {
            return None;
        }
        base64.clear();
        for line in rest[..end].split('\n') {
            base64.extend_from_slice(line.trim_ascii().as_bytes());
        }
        let der = BASE64.decode(&base64).ok()?;
        certs.push(CertificateDer::from(der));
        rest = &rest[end + TAIL.len()..];
    }
    Some(certs)
}

/// A PEM file's certificates, as `rustls_native_certs::load_certs_from_paths` gives them, read
/// with [`parse_pem`].
fn load_pem_file(path: &Path) -> rustls_native_certs::CertificateResult {
    match std::fs::read(path) {
        Ok(bytes) => match plain_certificates(&bytes) {
            Some(certs) => {
                let mut found = rustls_native_certs::CertificateResult::default();
                found.certs = certs;
                found
            }
            None => rustls_native_certs::load_certs_from_paths(Some(path), None),
        },
        Err(_) => rustls_native_certs::load_certs_from_paths(Some(path), None),
    }
}

/// The combined rustls store being built, and the (subject, public key) of every anchor in it.
struct Store {
    anchors: RootCertStore,
    /// The source of each of `anchors.roots`, index for index.
    sources: Vec<TrustSource>,
    /// Whether the system store holds each of `anchors.roots`, index for index.
    in_system: Vec<bool>,
    /// The anchors (positions in `anchors.roots`) by a hash of their subject and public key.
    seen: HashMap<u64, Vec<usize>>,
}

enum Added {
    New,
    Duplicate,
}

impl Store {
    fn mozilla() -> Store {
        let anchors = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, anchor) in anchors.roots.iter().enumerate() {
            seen.entry(key(anchor)).or_default().push(i);
        }
        let sources = vec![TrustSource::Mozilla; anchors.roots.len()];
        Store {
            in_system: vec![false; sources.len()],
            anchors,
            sources,
            seen,
        }
    }

    /// Adds `cert` unless an anchor with the same subject and public key is already present.
    fn add(
        &mut self,
        source: TrustSource,
        cert: &CertificateDer<'_>,
    ) -> Result<Added, rustls::Error> {
        self.anchors.add(CertificateDer::from(cert.as_ref()))?;
        let roots = &self.anchors.roots;
        let (last, anchor) = (roots.len() - 1, &roots[roots.len() - 1]);
        let same = |other: &rustls::pki_types::TrustAnchor<'_>| {
            other.subject == anchor.subject
                && other.subject_public_key_info == anchor.subject_public_key_info
        };
        let earlier = self.seen.entry(key(anchor)).or_default();
        let system = source == TrustSource::System;
        if let Some(&i) = earlier.iter().find(|&&i| same(&roots[i])) {
            self.anchors.roots.pop();
            self.in_system[i] |= system;
            Ok(Added::Duplicate)
        } else {
            earlier.push(last);
            self.sources.push(source);
            self.in_system.push(system);
            Ok(Added::New)
        }
    }

    /// Adds a whole file; a certificate rustls cannot use is an error.
    fn add_all(
        &mut self,
        source: TrustSource,
        path: Option<&Path>,
        certs: Vec<CertificateDer<'static>>,
    ) -> Result<(Vec<CertificateDer<'static>>, SourceCount), PemProblem> {
        let mut count = SourceCount::empty(source, path);
        count.loaded = certs.len();
        let mut kept = Vec::with_capacity(certs.len());
        for (i, cert) in certs.into_iter().enumerate() {
            match self.add(source, &cert) {
                Ok(Added::New) => kept.push(cert),
                Ok(Added::Duplicate) => count.duplicates += 1,
                Err(source) => {
                    return Err(PemProblem::Unusable {
                        index: i + 1,
                        source,
                    });
                }
            }
        }
        if count.duplicates > 0 {
            debug!(
                source = %source,
                duplicates = count.duplicates,
                "certificates already trusted through another source dropped"
            );
        }
        Ok((kept, count))
    }

    /// Adds the system store's certificates, skipping (and counting) those rustls cannot use;
    /// gives the positions of those kept.
    fn add_lenient(&mut self, certs: &[CertificateDer<'static>]) -> (Vec<usize>, SourceCount) {
        let mut count = SourceCount::empty(TrustSource::System, None);
        count.loaded = certs.len();
        let mut kept = Vec::new();
        for (i, cert) in certs.iter().enumerate() {
            match self.add(TrustSource::System, cert) {
                Ok(Added::New) => kept.push(i),
                Ok(Added::Duplicate) => count.duplicates += 1,
                Err(error) => {
                    debug!(%error, "system certificate skipped: not usable as a trust anchor");
                    count.unusable += 1;
                }
            }
        }
        (kept, count)
    }
}

/// A hash of an anchor's subject and public key (FNV-1a over 8-byte words: they are public,
/// and an equal hash is compared in full).
fn key(anchor: &rustls::pki_types::TrustAnchor<'_>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        anchor.subject.as_ref(),
        anchor.subject_public_key_info.as_ref(),
    ] {
        let words = part.chunks_exact(8);
        let tail = words.remainder();
        for word in words.map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))) {
            hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in tail {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash = (hash ^ part.len() as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests;
