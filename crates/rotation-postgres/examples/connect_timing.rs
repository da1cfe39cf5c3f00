//! Prints how long a login takes through the engine's connection code: plaintext vs verified
//! TLS, on throwaway clusters. Run in release: `cargo run --release -p rotation-postgres
//! --example connect_timing`.

use std::time::Instant;

use rotation_core::DatabaseSecret;
use rotation_postgres::{PgConfig, connect};
use rotation_testkit::{PgCluster, PgOptions};
use secrecy::SecretString;
use serde_json::json;

#[tokio::main]
async fn main() {
    const N: usize = 20;
    for tls in [false, true] {
        let pg = PgCluster::start(if tls {
            PgOptions::tls()
        } else {
            PgOptions::default()
        })
        .expect("start PostgreSQL");
        pg.psql("CREATE ROLE app LOGIN PASSWORD 'Timing-pw-1'")
            .unwrap();
        let secret = DatabaseSecret::parse(&SecretString::from(
            json!({"host": "localhost", "port": pg.port(), "username": "app", "password": "Timing-pw-1", "ssl": tls})
                .to_string(),
        ))
        .unwrap();
        let config = PgConfig::with_ca_bundle(pg.ca_pem().expect("TLS cluster")).expect("CA");
        let mut times = vec![];
        for _ in 0..N {
            let t = Instant::now();
            connect::check(&secret, &config).await.expect("login");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<9} login + SELECT 1 + close: median {:.1} ms, min {:.1} ms, max {:.1} ms ({N} runs)",
            if tls { "TLS" } else { "plaintext" },
            times[N / 2],
            times[0],
            times[N - 1]
        );
        // The same login through libpq (psql), process start included, for comparison.
        let ca = pg
            .ca_pem()
            .map(|p| format!(" sslmode=verify-full sslrootcert={}", p.display()))
            .unwrap_or(" sslmode=disable".into());
        let mut times = vec![];
        for _ in 0..5 {
            let t = Instant::now();
            let ok = std::process::Command::new("psql")
                .arg(format!(
                    "host=localhost port={} user=app dbname=postgres{ca}",
                    pg.port()
                ))
                .args(["-X", "-t", "-c", "SELECT 1"])
                .env("PGPASSWORD", "Timing-pw-1")
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<9} psql (libpq) process, login and query: median {:.1} ms",
            if tls { "TLS" } else { "plaintext" },
            times[2]
        );
    }
}
