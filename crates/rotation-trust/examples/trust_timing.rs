//! Prints what the trust store costs: loading it (wall and CPU time), and the per-connection
//! work sqlx does with the PEM it is given (clone it, start a `RootCertStore` from the Mozilla
//! roots, add every certificate of the PEM). Run in release:
//! `cargo run --release -p rotation-trust --example trust_timing`.

use std::time::{Duration, Instant};

use rotation_trust::{RDS_GLOBAL_BUNDLE, Trust};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (Linux). The kernel
/// updates it at scheduler ticks (4 ms at HZ=250), so it is only meaningful over long batches.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// CPU time per run of `f`, over enough runs to fill `batch` of wall time.
fn cpu_per_run(batch: Duration, mut f: impl FnMut()) -> String {
    let (cpu0, t) = (thread_cpu(), Instant::now());
    let mut runs = 0u32;
    while t.elapsed() < batch {
        f();
        runs += 1;
    }
    let (wall, cpu1) = (t.elapsed(), thread_cpu());
    match cpu0.zip(cpu1) {
        Some((a, b)) => format!(
            "{} CPU per run ({:.0}% of wall, {runs} runs)",
            us((b - a) / runs),
            (b - a).as_secs_f64() / wall.as_secs_f64() * 100.0
        ),
        None => "CPU n/a".into(),
    }
}

/// Median and mean of `n` runs of `f`.
fn time_n(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    let mean = v.iter().sum::<Duration>() / n as u32;
    (v[n / 2], mean)
}

/// What sqlx 0.8.6 / 0.9.0 do per connection with `ssl_root_cert_from_pem`.
fn sqlx_style(pem: &[u8]) -> usize {
    let data = pem.to_vec();
    let mut store = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in CertificateDer::pem_slice_iter(&data) {
        store.add(cert.expect("valid PEM")).expect("usable anchor");
    }
    store.len()
}

fn main() {
    // 1. Loading, first time in this process.
    let (cpu0, t) = (thread_cpu(), Instant::now());
    let trust = Trust::load(None).expect("load");
    let (wall, cpu1) = (t.elapsed(), thread_cpu());
    println!(
        "Trust::load(None), first call: {} wall, {} CPU (tick-granular)",
        ms(wall),
        cpu0.zip(cpu1)
            .map_or_else(|| "n/a".into(), |(a, b)| ms(b - a))
    );
    for s in trust.sources() {
        println!(
            "  {:<10} loaded {:>3}  duplicates {:>3}  unusable {}  kept {:>3}",
            s.source.name(),
            s.loaded,
            s.duplicates,
            s.unusable,
            s.kept()
        );
    }

    // 2. Loading again, and its parts.
    let (median, mean) = time_n(50, || {
        Trust::load(None).expect("load");
    });
    println!(
        "Trust::load(None), later calls (the system store as read by the first): median {}, mean {}; {}",
        ms(median),
        ms(mean),
        cpu_per_run(Duration::from_millis(500), || {
            Trust::load(None).expect("load");
        })
    );
    let (median, _) = time_n(50, || {
        rustls_native_certs::load_native_certs();
    });
    println!(
        "  of which rustls_native_certs::load_native_certs: median {}",
        ms(median)
    );
    let dir = std::env::temp_dir().join(format!("trust-timing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("rds.pem");
    std::fs::write(&bundle, RDS_GLOBAL_BUNDLE).unwrap();
    let (median, _) = time_n(50, || {
        Trust::load(Some(&bundle)).expect("load");
    });
    println!(
        "Trust::load(CA_BUNDLE_PATH = the RDS bundle again): median {} (all 108 dropped as duplicates)",
        ms(median)
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // 3. Per connection, as sqlx does it.
    const N: usize = 200;
    let rds_pem = trust.pem_for_host("mydb.abc123.us-east-1.rds.amazonaws.com");
    let global_pem = trust.pem_for_host("gdb.global-abc123.global.rds.amazonaws.com");
    let ip_pem = trust.pem_for_host("10.0.0.5");
    let other_pem = trust.pem_for_host("db.example.com");
    let count = |pem: &[u8]| CertificateDer::pem_slice_iter(pem).count();
    println!("Per connection (sqlx-style), {N} iterations:");
    let cases: [(&str, &[u8]); 6] = [
        ("no PEM (Mozilla roots only)", b""),
        ("RDS endpoint PEM (us-east-1)", &rds_pem),
        ("global endpoint PEM", &global_pem),
        ("IP address PEM", &ip_pem),
        ("other-host PEM", &other_pem),
        ("unmodified bundle file", RDS_GLOBAL_BUNDLE),
    ];
    for (name, pem) in cases {
        sqlx_style(pem); // warm up
        let (median, mean) = time_n(N, || {
            std::hint::black_box(sqlx_style(std::hint::black_box(pem)));
        });
        let cpu = cpu_per_run(Duration::from_millis(300), || {
            std::hint::black_box(sqlx_style(std::hint::black_box(pem)));
        });
        println!(
            "  {name:<30} {:>3} certs {:>6} bytes: median {}, mean {}; {cpu}",
            count(pem),
            pem.len(),
            us(median),
            us(mean),
        );
    }
}
