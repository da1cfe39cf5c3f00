use std::io::Write as _;

use sha2::{Digest, Sha256};

use super::*;

const TEST_CA_1: &[u8] = include_bytes!("../testdata/test-ca-1.pem");
const TEST_CA_2: &[u8] = include_bytes!("../testdata/test-ca-2.pem");
/// ISRG Root X1, one of the Mozilla roots.
const MOZILLA_ROOT: &[u8] = include_bytes!("../testdata/isrg-root-x1.pem");
/// A `CERTIFICATE` section whose contents are not a certificate.
const GARBAGE: &[u8] = b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";

const RDS_HOST: &str = "mydb.c9akciq32.us-east-1.rds.amazonaws.com";
/// An RDS endpoint whose name gives no region: the whole RDS bundle.
const GLOBAL_HOST: &str = "gdb.global-c9akciq32.global.rds.amazonaws.com";

fn der(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).expect("one certificate")
}

fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.expect("valid PEM").as_ref().to_vec())
        .collect()
}

fn bundle_file(parts: &[&[u8]]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for p in parts {
        f.write_all(p).unwrap();
    }
    f.flush().unwrap();
    f
}

fn source(trust: &Trust, s: TrustSource) -> SourceCount {
    trust
        .sources()
        .into_iter()
        .find(|c| c.source == s)
        .expect("every source is listed")
}

/// A store without the machine's system certificates, for exact counts.
fn build(rds: &[u8], system: Vec<CertificateDer<'static>>, ca: Option<&Path>) -> Trust {
    Trust::build(rds, system, &[], ca).expect("builds")
}

#[test]
fn embedded_rds_bundle_is_the_published_one() {
    let hex: String = Sha256::digest(RDS_GLOBAL_BUNDLE)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "e5bb2084ccf45087bda1c9bffdea0eb15ee67f0b91646106e466714f9de3c7e3"
    );
    assert_eq!(parse_pem(RDS_GLOBAL_BUNDLE).unwrap().len(), 108);
    // What the binary carries, decoded at build time, is the same certificates in order.
    assert_eq!(
        rds_global_certificates().unwrap(),
        parse_pem(RDS_GLOBAL_BUNDLE).unwrap()
    );

    let trust = build(RDS_GLOBAL_BUNDLE, vec![], None);
    let rds = source(&trust, TrustSource::RdsBundle);
    assert_eq!((rds.loaded, rds.duplicates, rds.unusable), (108, 0, 0));
    // Re-encoded once, certificate for certificate (an endpoint without a region gets it all).
    assert_eq!(
        ders(&trust.pem_for_host(GLOBAL_HOST)),
        ders(RDS_GLOBAL_BUNDLE)
    );
}

#[test]
fn an_rds_endpoint_gets_the_rds_roots_of_its_region_only() {
    let f = bundle_file(&[TEST_CA_1]);
    let trust = build(RDS_GLOBAL_BUNDLE, vec![der(TEST_CA_2)], Some(f.path()));
    let subject_of = |cert: &Vec<u8>| {
        let mut store = RootCertStore::empty();
        store.add(CertificateDer::from(cert.clone())).unwrap();
        String::from_utf8_lossy(store.roots[0].subject.as_ref()).into_owned()
    };
    let mut covered = HashSet::new();
    for (host, region, roots) in [
        (RDS_HOST, "us-east-1", 6), // and the Beta us-east-1 roots
        (
            "c.cluster-ro-c9akciq32.eu-west-1.rds.amazonaws.com",
            "eu-west-1",
            3,
        ),
        (
            "d.cluster-c9akciq32.ap-southeast-2.docdb.amazonaws.com",
            "ap-southeast-2",
            3,
        ),
        ("db.c9akciq32.us-east-2.rds.amazonaws.com.", "us-east-2", 6), // and Preview
        (
            "MYDB.C9AKCIQ32.AF-SOUTH-1.RDS.AMAZONAWS.COM",
            "af-south-1",
            3,
        ),
    ] {
        let pem = ders(&trust.pem_for_host(host));
        // The region's RSA2048, RSA4096 and ECC384 roots, then CA_BUNDLE_PATH's.
        assert_eq!(pem.len(), roots + 1, "{host}");
        assert_eq!(pem.last(), Some(&der(TEST_CA_1).to_vec()), "{host}");
        for cert in &pem[..roots] {
            let subject = subject_of(cert);
            assert!(
                subject.contains(&format!(" {region} Root CA ")),
                "{host}: {subject}"
            );
            covered.insert(cert.clone());
        }
        assert!(
            !pem.contains(&der(TEST_CA_2).to_vec()),
            "no system store: {host}"
        );
        // Made once per region.
        assert!(Arc::ptr_eq(
            &trust.pem_for_host(host),
            &trust.pem_for_host(host)
        ));
    }
    // Every root of the bundle belongs to a region an endpoint name can give.
    let mut regions = HashSet::new();
    for cert in ders(RDS_GLOBAL_BUNDLE) {
        let subject = subject_of(&cert);
        let found = regions_named(subject.as_bytes());
        assert_eq!(found.len(), 1, "{subject}");
        regions.insert(found[0].clone());
    }
    let mut all = 0;
    for region in &regions {
        let pem = ders(&trust.pem_for_host(&format!("db.c9akciq32.{region}.rds.amazonaws.com")));
        all += pem.len() - 1;
    }
    assert_eq!(all, 108, "each root in exactly one region's PEM");
    // A region the bundle does not name, and a name without one: the whole bundle.
    for host in [
        "db.c9akciq32.ap-southeast-99.rds.amazonaws.com",
        "gdb.global-c9akciq32.global.rds.amazonaws.com",
        "db.c9akciq32.rds.amazonaws.com",
    ] {
        assert_eq!(ders(&trust.pem_for_host(host)).len(), 109, "{host}");
    }
}

#[test]
fn an_ip_address_gets_no_rds_roots() {
    let f = bundle_file(&[TEST_CA_1]);
    let trust = build(RDS_GLOBAL_BUNDLE, vec![der(TEST_CA_2)], Some(f.path()));
    for host in ["127.0.0.1", "10.0.0.5", "::1", "[::1]", "fd00::5"] {
        assert_eq!(
            ders(&trust.pem_for_host(host)),
            vec![der(TEST_CA_1).to_vec(), der(TEST_CA_2).to_vec()],
            "{host}"
        );
        assert_eq!(
            Trust::sources_for_host(host),
            [
                TrustSource::CaBundle,
                TrustSource::System,
                TrustSource::Mozilla
            ]
        );
    }
    // A name may be anything, an RDS endpoint through a CNAME included: everything.
    assert_eq!(ders(&trust.pem_for_host("localhost")).len(), 110);
}

#[test]
fn ca_bundle_without_certificate_is_an_error_naming_the_path() {
    for contents in [
        &b""[..],
        b"not PEM at all\n",
        b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n",
    ] {
        let f = bundle_file(&[contents]);
        let err = Trust::load(Some(f.path())).unwrap_err();
        assert!(
            matches!(&err, TrustError::CaBundle { path, problem: PemProblem::NoCertificate } if path == f.path()),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("CA_BUNDLE_PATH"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }
}

#[test]
fn ca_bundle_that_is_malformed_or_unusable_is_an_error() {
    let f = bundle_file(&[TEST_CA_1, b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n"]);
    let err = Trust::load(Some(f.path())).unwrap_err();
    assert!(
        matches!(
            &err,
            TrustError::CaBundle {
                problem: PemProblem::Malformed(_),
                ..
            }
        ),
        "{err:?}"
    );

    let f = bundle_file(&[TEST_CA_1, GARBAGE]);
    let err = Trust::load(Some(f.path())).unwrap_err();
    assert!(
        matches!(
            &err,
            TrustError::CaBundle {
                problem: PemProblem::Unusable { index: 2, .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_ca_bundle_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let err = Trust::load(Some(&missing)).unwrap_err();
    assert!(
        matches!(&err, TrustError::CaBundleUnreadable { path, source } if path == &missing && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains(&missing.display().to_string()));

    // A directory is not a bundle either.
    let err = Trust::load(Some(dir.path())).unwrap_err();
    assert!(
        matches!(err, TrustError::CaBundleUnreadable { .. }),
        "{err:?}"
    );
}

#[test]
fn valid_ca_bundle_is_counted_and_trusted_for_every_host() {
    let f = bundle_file(&[TEST_CA_1, TEST_CA_2]);
    let trust = build(RDS_GLOBAL_BUNDLE, vec![], Some(f.path()));
    let ca = source(&trust, TrustSource::CaBundle);
    assert_eq!(ca.path.as_deref(), Some(f.path()));
    assert_eq!((ca.loaded, ca.duplicates, ca.kept()), (2, 0, 2));
    // The RDS roots of the host's region, of every region, none (an IP address).
    for (host, rds) in [
        (RDS_HOST, 6),
        (GLOBAL_HOST, 108),
        ("localhost", 108),
        ("10.0.0.1", 0),
    ] {
        let pem = ders(&trust.pem_for_host(host));
        assert_eq!(pem.len(), rds + 2, "{host}");
        assert!(pem.contains(&der(TEST_CA_1).to_vec()), "{host}");
        assert!(pem.contains(&der(TEST_CA_2).to_vec()), "{host}");
    }

    // The real loader reads the same file the same way.
    let loaded = Trust::load(Some(f.path())).unwrap();
    assert_eq!(source(&loaded, TrustSource::CaBundle), ca);
}

#[test]
fn ca_bundle_duplicates_are_dropped() {
    // The RDS bundle itself (a common CA_BUNDLE_PATH), a Mozilla root, one CA twice.
    let f = bundle_file(&[RDS_GLOBAL_BUNDLE, MOZILLA_ROOT, TEST_CA_1, TEST_CA_1]);
    let trust = build(RDS_GLOBAL_BUNDLE, vec![], Some(f.path()));
    let ca = source(&trust, TrustSource::CaBundle);
    assert_eq!((ca.loaded, ca.duplicates, ca.kept()), (111, 110, 1));
    assert_eq!(ders(&trust.pem_for_host(GLOBAL_HOST)).len(), 109);
}

#[test]
fn pem_is_narrowed_for_aws_database_hosts() {
    // A test CA stands in for RDS's CAs; another one plays the system store.
    let trust = build(TEST_CA_1, vec![der(TEST_CA_2)], None);
    let rds_only = vec![der(TEST_CA_1).to_vec()];
    let everything = vec![der(TEST_CA_1).to_vec(), der(TEST_CA_2).to_vec()];
    for host in [
        RDS_HOST,
        "c.cluster-ro-c9akciq32.eu-west-1.rds.amazonaws.com",
        "p.proxy-c9akciq32.us-east-2.rds.amazonaws.com",
        "d.cluster-c9akciq32.us-east-1.docdb.amazonaws.com",
        "db.c9akciq32.rds.cn-north-1.amazonaws.com.cn",
    ] {
        assert_eq!(ders(&trust.pem_for_host(host)), rds_only, "{host}");
    }
    for host in [
        "localhost",
        "db.example.com",
        "wh.c9akciq32.us-east-1.redshift.amazonaws.com",
    ] {
        assert_eq!(ders(&trust.pem_for_host(host)), everything, "{host}");
    }
    // Prepared once: the same allocation every time.
    assert!(!Arc::ptr_eq(
        &trust.pem_for_host(RDS_HOST),
        &trust.pem_for_host("other.example")
    ));
    assert!(Arc::ptr_eq(
        &trust.pem_for_host(RDS_HOST),
        &trust.pem_for_host("x.abc.eu-west-3.rds.amazonaws.com")
    ));
}

#[test]
fn a_ca_file_is_narrowed_to_the_region_of_an_endpoint_and_keeps_the_system_store() {
    use std::os::unix::fs::PermissionsExt;
    // The embedded bundle, a CA_BUNDLE_PATH file and one system certificate.
    let ca = bundle_file(&[TEST_CA_1]);
    let trust = build(RDS_GLOBAL_BUNDLE, vec![der(TEST_CA_2)], Some(ca.path()));
    let docdb = "d.cluster-c9akciq32.us-east-1.docdb.amazonaws.com";
    let file = trust.pem_file_for_host(docdb).unwrap();
    // The region's RDS CAs and CA_BUNDLE_PATH, as the driver's PEM has them, then the system.
    let mut expected = ders(&trust.pem_for_host(docdb));
    assert_eq!(expected.len(), 6 + 1);
    expected.push(der(TEST_CA_2).to_vec());
    assert_eq!(ders(&std::fs::read(&file).unwrap()), expected);
    // Every other host: what pem_file holds.
    let complete = ders(&std::fs::read(trust.pem_file().unwrap()).unwrap());
    assert_eq!(complete.len(), 108 + 1 + 1);
    for host in ["localhost", "10.0.0.5", GLOBAL_HOST] {
        let other = trust.pem_file_for_host(host).unwrap();
        assert_eq!(ders(&std::fs::read(&other).unwrap()), complete, "{host}");
    }
    // Private, and gone when its path is dropped, while the store lives on.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    let path = file.to_path_buf();
    drop(file);
    assert!(!path.exists());
}

#[test]
fn system_certificates_already_trusted_are_dropped() {
    let system = vec![
        der(MOZILLA_ROOT), // a Mozilla root: the driver adds it anyway
        der(TEST_CA_2),    // kept
        der(TEST_CA_2),    // listed twice
        der(TEST_CA_1),    // already in the RDS bundle (stand-in)
        der(GARBAGE),      // rustls cannot use it: skipped, not fatal
        der(TEST_CA_2),    // once more
    ];
    let f = bundle_file(&[TEST_CA_1]);
    let trust = build(TEST_CA_1, system, Some(f.path()));
    let sys = source(&trust, TrustSource::System);
    assert_eq!(
        (sys.loaded, sys.duplicates, sys.unusable, sys.kept()),
        (6, 4, 1, 1)
    );
    // The CA bundle duplicates the RDS stand-in.
    let ca = source(&trust, TrustSource::CaBundle);
    assert_eq!((ca.loaded, ca.duplicates), (1, 1));
    assert_eq!(
        ders(&trust.pem_for_host("localhost")),
        vec![der(TEST_CA_1).to_vec(), der(TEST_CA_2).to_vec()]
    );
    // The full store: Mozilla roots plus the two kept certificates.
    let mozilla = source(&trust, TrustSource::Mozilla);
    assert_eq!(mozilla.loaded, webpki_roots::TLS_SERVER_ROOTS.len());
    assert_eq!(trust.root_store().len(), mozilla.loaded + 2);
}

#[test]
fn the_pem_parses_the_way_sqlx_parses_it() {
    let trust = build(RDS_GLOBAL_BUNDLE, vec![der(TEST_CA_2)], None);
    for host in [RDS_HOST, "localhost"] {
        let pem = trust.pem_for_host(host);
        let mut store = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in CertificateDer::pem_slice_iter(&pem) {
            store.add(cert.expect("valid PEM")).expect("usable anchor");
        }
        assert_eq!(
            store.len(),
            webpki_roots::TLS_SERVER_ROOTS.len() + ders(&pem).len()
        );
    }
}

#[test]
fn substituted_rds_bundle_must_hold_usable_certificates() {
    for (pem, want_empty) in [(&b""[..], true), (GARBAGE, false)] {
        let err = Trust::with_rds_bundle(pem, None).unwrap_err();
        match err {
            TrustError::RdsBundle {
                problem: PemProblem::NoCertificate,
            } => assert!(want_empty),
            TrustError::RdsBundle {
                problem: PemProblem::Unusable { index: 1, .. },
            } => assert!(!want_empty),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_machine_store_loads_and_never_fails() {
    let trust = Trust::load(None).unwrap();
    let sources = trust.sources();
    let order: Vec<_> = sources.iter().map(|s| s.source).collect();
    assert_eq!(
        order,
        [
            TrustSource::RdsBundle,
            TrustSource::System,
            TrustSource::CaBundle,
            TrustSource::Mozilla
        ]
    );
    assert_eq!(sources[0].kept(), 108);
    assert_eq!(sources[2].path, None);
    assert_eq!(ders(&trust.pem_for_host(GLOBAL_HOST)).len(), 108);
    assert_eq!(ders(&trust.pem_for_host(RDS_HOST)).len(), 6);
    assert_eq!(
        ders(&trust.pem_for_host("localhost")).len(),
        108 + sources[1].kept()
    );
    trust.log_sources();
    let _ = format!("{trust:?}");
}

#[test]
fn ca_bundle_path_from_the_environment() {
    assert_eq!(path_from_env(None), None);
    assert_eq!(path_from_env(Some("".into())), None);
    assert_eq!(path_from_env(Some("  \n".into())), None);
    assert_eq!(
        path_from_env(Some(" /etc/rds.pem ".into())),
        Some(PathBuf::from("/etc/rds.pem"))
    );
}

#[test]
fn global_is_set_once() {
    let trust = build(TEST_CA_1, vec![], None);
    let first = Trust::set_global(trust.clone()).expect("first set wins");
    assert_eq!(first.sources(), trust.sources());
    assert!(Trust::set_global(trust.clone()).is_err());
    let global = Trust::global().expect("set above");
    assert!(std::ptr::eq(global, first));
}

#[test]
fn a_ca_bundle_that_never_ends_or_blocks_is_refused_at_once() {
    let started = std::time::Instant::now();
    // A device that never ends.
    let err = Trust::load(Some(Path::new("/dev/zero"))).unwrap_err();
    assert!(
        err.to_string().contains("not a regular file"),
        "/dev/zero: {err}"
    );
    // A FIFO nobody writes to: opening it for reading would wait for a writer.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("bundle.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let err = Trust::load(Some(&fifo)).unwrap_err();
    assert!(
        err.to_string().contains("not a regular file"),
        "FIFO: {err}"
    );
    // A directory.
    let err = Trust::load(Some(dir.path())).unwrap_err();
    assert!(
        matches!(err, TrustError::CaBundleUnreadable { .. }),
        "{err}"
    );
    // A regular file larger than any CA bundle.
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; (MAX_CA_BUNDLE_BYTES + 1) as usize]).unwrap();
    let err = Trust::load(Some(&big)).unwrap_err();
    assert!(err.to_string().contains("MiB"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn the_system_store_reads_the_bundle_and_the_files_placed_by_hand_not_the_links() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca-certificates.crt");
    std::fs::write(&bundle, TEST_CA_1).unwrap();
    // A link to a certificate the bundle holds (not read again), and a file copied in by hand.
    let linked = dir.path().join("linked.pem");
    std::fs::write(&linked, MOZILLA_ROOT).unwrap();
    std::os::unix::fs::symlink(&linked, dir.path().join("abcd1234.0")).unwrap();
    std::fs::remove_file(&linked).unwrap();
    std::os::unix::fs::symlink(&bundle, &linked).unwrap();
    std::fs::write(dir.path().join("by-hand.pem"), TEST_CA_2).unwrap();
    let found = bundle_and_loose_files(&bundle, &[dir.path().to_path_buf()]).unwrap();
    let mut want = vec![der(TEST_CA_1), der(TEST_CA_2)];
    want.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    assert_eq!(found.certs, want);
    assert!(found.errors.is_empty());
    // A bundle without a certificate leaves the choice to rustls-native-certs.
    std::fs::write(&bundle, b"").unwrap();
    assert!(bundle_and_loose_files(&bundle, &[dir.path().to_path_buf()]).is_none());
}

#[test]
fn the_fast_pem_reader_reads_what_the_strict_one_reads() {
    let strict = |pem: &[u8]| -> Vec<Vec<u8>> { ders(pem) };
    let fast = |pem: &[u8]| -> Option<Vec<Vec<u8>>> {
        plain_certificates(pem).map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
    };
    let crlf = String::from_utf8(RDS_GLOBAL_BUNDLE.to_vec())
        .unwrap()
        .replace('\n', "\r\n");
    let mut system = Vec::new();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(bytes) = std::fs::read(path) {
            system = bytes;
            break;
        }
    }
    let commented = [
        b"# a comment before\n".as_slice(),
        TEST_CA_1,
        b"text between\n",
        TEST_CA_2,
        b"and after",
    ]
    .concat();
    for pem in [
        RDS_GLOBAL_BUNDLE,
        crlf.as_bytes(),
        &system,
        &commented,
        b"no certificate here",
    ] {
        assert_eq!(fast(pem), Some(strict(pem)));
    }
    // Anything else is left to the strict reader, for its errors.
    let key = b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n";
    assert_eq!(fast(&[TEST_CA_1, key.as_slice()].concat()), None);
    assert_eq!(
        fast(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        None
    );
    assert_eq!(fast(b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n"), None);
    assert_eq!(fast(&[0xff, 0xfe]), None);
    // A marker that does not start a line: an indented section, a byte order mark.
    let indented = String::from_utf8(TEST_CA_1.to_vec())
        .unwrap()
        .replace("-----", " -----");
    assert_eq!(fast(indented.as_bytes()), None);
    assert_eq!(
        fast(&[b"\xef\xbb\xbf".as_slice(), TEST_CA_1].concat()),
        None
    );
    assert_eq!(
        fast(b"x -----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
        None
    );
    assert_eq!(
        fast(&[TEST_CA_1.strip_suffix(b"\n").unwrap(), TEST_CA_2].concat()),
        None,
        "a section starting on the line of the previous one's end"
    );
}

#[test]
fn the_probe_trusts_the_rds_cas_the_driver_is_given() {
    let trust = build(RDS_GLOBAL_BUNDLE, vec![der(TEST_CA_2)], None);
    let rds = |host: &str| {
        trust
            .root_store_for_host(host, Trust::sources_for_host(host))
            .roots
            .len()
            - webpki_roots::TLS_SERVER_ROOTS.len()
    };
    // The region's roots; all of them without a region; none for an address (the system
    // store's one certificate aside).
    assert_eq!(rds(RDS_HOST), 6);
    assert_eq!(rds("db.c9akciq32.eu-west-1.rds.amazonaws.com"), 3);
    assert_eq!(rds(GLOBAL_HOST), 108);
    assert_eq!(rds("10.0.0.5"), 1);
    assert_eq!(rds("localhost"), 109);
    // Each as many as the driver's PEM holds, for the same host.
    for host in [RDS_HOST, GLOBAL_HOST, "10.0.0.5"] {
        let pem = ders(&trust.pem_for_host(host)).len();
        assert_eq!(rds(host), pem, "{host}");
    }
}

#[test]
fn a_ca_file_drivers_probe_trusts_exactly_what_its_file_holds() {
    // The system store repeats a Mozilla root and another region's RDS root, as images that
    // install the RDS bundle system-wide do, beside a certificate of its own.
    let bundle = ders(RDS_GLOBAL_BUNDLE);
    let eu_west_1 = bundle
        .iter()
        .find(|d| {
            let mut store = RootCertStore::empty();
            store.add(CertificateDer::from(d.as_slice())).unwrap();
            let subject = store.roots[0].subject.as_ref();
            subject.windows(9).any(|w| w == b"eu-west-1")
        })
        .expect("an eu-west-1 root");
    let system = vec![
        der(MOZILLA_ROOT),
        CertificateDer::from(eu_west_1.clone()),
        der(TEST_CA_2),
    ];
    let trust = build(RDS_GLOBAL_BUNDLE, system, None);
    let anchors = |store: RootCertStore| -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut keys: Vec<_> = store
            .roots
            .iter()
            .map(|a| {
                (
                    a.subject.as_ref().to_vec(),
                    a.subject_public_key_info.as_ref().to_vec(),
                )
            })
            .collect();
        // As a set: a file may hold a certificate twice (the system store repeats the bundle).
        keys.sort();
        keys.dedup();
        keys
    };
    for host in [
        "d.cluster-c9akciq32.us-east-1.docdb.amazonaws.com",
        GLOBAL_HOST,
        "localhost",
    ] {
        let file = trust.pem_file_for_host(host).unwrap();
        let mut held = RootCertStore::empty();
        for d in ders(&std::fs::read(&file).unwrap()) {
            held.add(CertificateDer::from(d)).unwrap();
        }
        let (probed, held) = (
            anchors(trust.root_store_for_host(host, Trust::PEM_FILE_SOURCES)),
            anchors(held),
        );
        assert!(
            probed == held,
            "{host}: the probe trusts {} anchors, the file holds {}",
            probed.len(),
            held.len()
        );
    }
    // Drivers that add the Mozilla roots themselves are unchanged: the repeat of a Mozilla
    // root is counted as Mozilla, and the RDS roots stay those of the host's region.
    let pem_driver = trust.root_store_for_host(RDS_HOST, Trust::sources_for_host(RDS_HOST));
    assert_eq!(
        pem_driver.roots.len(),
        webpki_roots::TLS_SERVER_ROOTS.len() + 6
    );
}
