//! The kill -9 sweep (a long run, not a test; `scripts/sweep`): `rotate run` is killed with
//! SIGKILL at a random moment, then `resume` or `abort` (chosen at random, themselves killed
//! now and then) must leave a secret whose AWSCURRENT credentials log in. Any run that ends
//! otherwise is a lockout, and the sweep fails.
//!
//! Usage: kill_sweep ROTATE_BINARY [RUNS_PER_STRATEGY]
//! Against a throwaway PostgreSQL with verified TLS (the default users take), a local file
//! store, both strategies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rotation_core::{DatabaseSecret, LocalSecretStore, SecretStore, Stage, VersionSelector};
use rotation_postgres::{PgConfig, connect};
use rotation_testkit::{PgCluster, PgOptions};
use secrecy::SecretString;
use serde_json::json;

/// xorshift64*: enough randomness for kill times, no dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Sweep {
    rotate: PathBuf,
    store: PathBuf,
    ca: PathBuf,
    config: PgConfig,
}

#[derive(Debug, Default)]
struct Tally {
    runs: u32,
    finished_before_kill: u32,
    killed_nothing_in_flight: u32,
    resumed: u32,
    aborted: u32,
    abort_refused_then_resumed: u32,
    second_kills: u32,
    lockouts: u32,
}

impl Sweep {
    fn command(&self, args: &[&str], strategy: &str) -> Command {
        let mut c = Command::new(&self.rotate);
        c.arg("--store")
            .arg(format!("file:{}", self.store.display()))
            .args(args)
            .args(["--strategy", strategy])
            .env("CA_BUNDLE_PATH", &self.ca)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `args`, killing it with SIGKILL after `kill_after` if given. Returns the exit code
    /// (None when killed).
    fn run(&self, args: &[&str], strategy: &str, kill_after: Option<Duration>) -> Option<i32> {
        let mut child = self.command(args, strategy).spawn().expect("spawn rotate");
        if let Some(after) = kill_after {
            let started = Instant::now();
            while started.elapsed() < after {
                if let Some(status) = child.try_wait().expect("wait") {
                    return status.code();
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            return None;
        }
        child.wait().expect("wait").code()
    }

    async fn current_logs_in(&self, secret: &str) -> bool {
        let store = LocalSecretStore::new(&self.store);
        let Ok(v) = store
            .get_value(secret, VersionSelector::stage(Stage::Current))
            .await
        else {
            return false;
        };
        let s = DatabaseSecret::parse(&v.value).expect("current parses");
        connect::check(&s, &self.config).await.is_ok()
    }

    async fn in_flight(&self, secret: &str) -> bool {
        LocalSecretStore::new(&self.store)
            .describe(secret)
            .await
            .expect("describe")
            .rotation_in_flight()
            .is_some()
    }
}

async fn sweep_strategy(
    s: &Sweep,
    secret: &str,
    strategy: &str,
    runs: u32,
    rng: &mut Rng,
) -> Tally {
    // How long one rotation takes here: kill points are spread over it.
    let t = Instant::now();
    assert_eq!(s.run(&["run", secret], strategy, None), Some(0));
    let typical = t.elapsed();
    let mut tally = Tally::default();
    for _ in 0..runs {
        tally.runs += 1;
        let kill_at = Duration::from_micros(rng.below(typical.as_micros() as u64 * 11 / 10));
        if s.run(&["run", secret], strategy, Some(kill_at)).is_some() {
            tally.finished_before_kill += 1;
        } else if !s.in_flight(secret).await {
            tally.killed_nothing_in_flight += 1;
        }
        let mut attempts = 0;
        while s.in_flight(secret).await {
            attempts += 1;
            assert!(attempts < 10, "could not settle the rotation in flight");
            let verb = if rng.below(2) == 0 { "resume" } else { "abort" };
            // Now and then the recovery is killed too.
            let kill = (rng.below(4) == 0)
                .then(|| Duration::from_micros(rng.below(typical.as_micros() as u64)));
            match s.run(&[verb, secret], strategy, kill) {
                None => tally.second_kills += 1,
                Some(0) if verb == "resume" => tally.resumed += 1,
                Some(0) => tally.aborted += 1,
                Some(3) if verb == "abort" => {
                    // Refused as unsafe: resume must finish it.
                    if s.run(&["resume", secret], strategy, None) == Some(0) {
                        tally.abort_refused_then_resumed += 1;
                    }
                }
                Some(code) => {
                    let out = s.command(&["status", secret], strategy).output();
                    eprintln!("{verb} exited {code}; status: {out:?}");
                }
            }
        }
        if !s.current_logs_in(secret).await {
            tally.lockouts += 1;
            eprintln!("LOCKOUT after run {}", tally.runs);
        }
    }
    tally
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rotate = PathBuf::from(args.get(1).expect("usage: kill_sweep ROTATE_BINARY [RUNS]"));
    let runs: u32 = args.get(2).map(|r| r.parse().expect("RUNS")).unwrap_or(50);
    assert!(
        Path::new(&rotate).exists(),
        "{} not found",
        rotate.display()
    );
    let pg = PgCluster::start(PgOptions::tls()).expect("start PostgreSQL (scripts/setup)");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pg.ca_pem().expect("TLS cluster").to_path_buf();
    let sweep = Sweep {
        rotate,
        store: dir.path().join("secrets.json"),
        config: PgConfig::with_ca_bundle(&ca).expect("CA"),
        ca,
    };
    pg.psql(
        "CREATE ROLE single_app LOGIN PASSWORD 'Single-initial-1';
         CREATE ROLE alt_app LOGIN PASSWORD 'Alt-initial-1';",
    )
    .expect("roles");
    let store = LocalSecretStore::new(&sweep.store);
    let base = |user: &str, pw: &str| {
        json!({"engine": "postgres", "host": "localhost", "port": pg.port(), "username": user,
               "password": pw, "dbname": "postgres"})
    };
    let put = |name: &'static str, v: serde_json::Value| {
        let store = store.clone();
        async move {
            store
                .create_secret(name, &SecretString::from(v.to_string()))
                .await
                .expect("create secret")
        }
    };
    let master = put("master", base(pg.superuser(), pg.superuser_password())).await;
    put("single", base("single_app", "Single-initial-1")).await;
    let mut alt = base("alt_app", "Alt-initial-1");
    alt["masterarn"] = json!(master);
    put("alternating", alt).await;

    let mut rng = Rng::new();
    let mut lockouts = 0;
    for (secret, strategy) in [
        ("single", "single-user"),
        ("alternating", "alternating-users"),
    ] {
        let started = Instant::now();
        let tally = sweep_strategy(&sweep, secret, strategy, runs, &mut rng).await;
        println!(
            "{strategy}: {tally:?} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        lockouts += tally.lockouts;
    }
    let _ = store
        .describe("single")
        .await
        .map(|d| d.versions.len())
        .map(|n| println!("single: {n} labelled versions at the end"));
    if lockouts > 0 {
        eprintln!("{lockouts} lockouts");
        std::process::exit(1);
    }
    println!("0 lockouts");
}
