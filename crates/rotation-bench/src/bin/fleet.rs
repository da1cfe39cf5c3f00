//! Fleet rotation, measured: `rotate run --all --concurrency C` over many PostgreSQL users, each
//! with its own secret in the file store, on a throwaway TLS cluster (verify-full, the default
//! path). Prints a Markdown table (rotations per second, p95 per rotation, the `rotate`
//! process's peak RSS) and the file store's cost per write, and writes an SVG plot of
//! throughput against concurrency.
//!
//! usage: fleet [--users N] [--concurrency 1,8,32] [--rotate PATH] [--plot FILE]

#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rotation_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};

struct Args {
    users: usize,
    concurrency: Vec<usize>,
    rotate: PathBuf,
    plot: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    let mut args = Args {
        users: 1000,
        concurrency: vec![1, 8, 32],
        rotate: exe.with_file_name("rotate"),
        plot: PathBuf::from("docs/fleet-throughput.svg"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--users" => args.users = value()?.parse()?,
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--rotate" => args.rotate = value()?.into(),
            "--plot" => args.plot = value()?.into(),
            _ => bail!(
                "usage: fleet [--users N] [--concurrency 1,8,32] [--rotate PATH] [--plot FILE]"
            ),
        }
    }
    Ok(args)
}

fn initial(i: usize) -> String {
    format!("Initial-pw-{i}")
}

/// Sets every user's password back to its initial one (created on the first call).
fn reset_users(pg: &PgCluster, users: usize, create: bool) -> anyhow::Result<()> {
    let verb = if create {
        "CREATE ROLE %I LOGIN PASSWORD %L"
    } else {
        "ALTER ROLE %I PASSWORD %L"
    };
    pg.psql(&format!(
        "DO $$ BEGIN FOR i IN 0..{} LOOP EXECUTE format('{verb}', 'fleet' || i, 'Initial-pw-' || i); END LOOP; END $$;",
        users - 1
    ))?;
    Ok(())
}

/// A file store holding one secret per user, written in one go.
fn write_store(path: &Path, pg: &PgCluster, users: usize) -> anyhow::Result<()> {
    let mut secrets = serde_json::Map::new();
    for i in 0..users {
        let value = json!({"engine": "postgres", "host": "localhost", "port": pg.port(),
            "username": format!("fleet{i}"), "password": initial(i), "dbname": "postgres"});
        secrets.insert(
            format!("fleet/{i:04}"),
            json!({
                "arn": format!("arn:local:secretsmanager:local:000000000000:secret:fleet/{i:04}-abcdef"),
                "rotation_enabled": true,
                "versions": [{"id": uuid::Uuid::new_v4().to_string(), "stages": ["AWSCURRENT"],
                              "value": value.to_string(), "created": 0}],
            }),
        );
    }
    std::fs::write(path, json!({"secrets": secrets}).to_string())?;
    Ok(())
}

struct Run {
    concurrency: usize,
    rotated: usize,
    failed: usize,
    elapsed: Duration,
    p50_ms: u64,
    p95_ms: u64,
    peak_rss_kib: u64,
    /// CPU time of the `rotate` process (user + system).
    rotate_cpu: Duration,
    /// CPU time of the PostgreSQL server over the run (postmaster and backends).
    server_cpu: Duration,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn run_once(args: &Args, pg: &PgCluster, store: &Path, concurrency: usize) -> anyhow::Result<Run> {
    let ca = pg.ca_pem().context("a TLS cluster has a CA")?;
    let server_before = pg.cpu_time()?;
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib %M\ncpu-seconds %U %S"])
        .arg(&args.rotate)
        .arg("--store")
        .arg(format!("file:{}", store.display()))
        .args([
            "--json",
            "run",
            "--all",
            "--concurrency",
            &concurrency.to_string(),
        ])
        .env("CA_BUNDLE_PATH", ca)
        .env_remove("ROTATION_STRATEGY")
        .output()
        .context("run /usr/bin/time rotate")?;
    let elapsed = started.elapsed();
    // Backends are reaped (and counted) once they have exited: give the last ones a moment.
    std::thread::sleep(Duration::from_millis(300));
    let server_cpu = pg.cpu_time()?.saturating_sub(server_before);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rotate_cpu = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("cpu-seconds "))
        .context("no CPU time from /usr/bin/time")?
        .split_whitespace()
        .map(|f| f.parse::<f64>())
        .sum::<Result<f64, _>>()?;
    let rotate_cpu = Duration::from_secs_f64(rotate_cpu);
    let peak_rss_kib = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .context("no peak RSS from /usr/bin/time")?
        .trim()
        .parse()?;
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("rotate printed no JSON summary: {stderr}"))?;
    let mut durations: Vec<u64> = report["secrets"]
        .as_array()
        .context("secrets")?
        .iter()
        .filter(|r| r["result"] == json!("rotated"))
        .filter_map(|r| r["duration_ms"].as_u64())
        .collect();
    durations.sort_unstable();
    Ok(Run {
        concurrency,
        rotated: report["rotated"].as_u64().unwrap_or(0) as usize,
        failed: report["failed"].as_u64().unwrap_or(0) as usize,
        elapsed,
        p50_ms: percentile(&durations, 0.5),
        p95_ms: percentile(&durations, 0.95),
        peak_rss_kib,
        rotate_cpu,
        server_cpu,
    })
}

/// The file store's cost per read and per write with `users` secrets: every call reads and
/// parses the whole file; `tag` rewrites it, as every write does (temporary file, fsync,
/// rename, directory fsync). Returns (per read, per write, file size).
async fn store_cost(store: &Path, n: usize) -> anyhow::Result<(Duration, Duration, u64)> {
    use rotation_core::SecretStore;
    let s = rotation_core::LocalSecretStore::new(store);
    let started = Instant::now();
    for _ in 0..n {
        s.describe("fleet/0000").await?;
    }
    let per_read = started.elapsed() / n as u32;
    let started = Instant::now();
    for i in 0..n {
        s.tag("fleet/0000", "bench", &i.to_string()).await?;
    }
    let per_write = started.elapsed() / n as u32;
    Ok((per_read, per_write, std::fs::metadata(store)?.len()))
}

fn svg(runs: &[Run], users: usize) -> String {
    let (w, h, left, bottom, top, right) = (560.0, 340.0, 60.0, 50.0, 40.0, 20.0);
    let max_c = runs.iter().map(|r| r.concurrency).max().unwrap_or(1) as f64;
    let rate = |r: &Run| r.rotated as f64 / r.elapsed.as_secs_f64();
    let max_rate = runs.iter().map(rate).fold(1.0_f64, f64::max) * 1.15;
    let x = |c: f64| left + (c.log2() / max_c.log2().max(1.0)) * (w - left - right);
    let y = |v: f64| h - bottom - v / max_rate * (h - bottom - top);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">rotate run --all: {users} PostgreSQL users, file store, verified TLS</text>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">concurrency (log scale)</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">rotations per second</text>\n",
        w / 2.0,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (left + w - right) / 2.0,
        h - 12.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
    );
    for i in 0..=4 {
        let v = max_rate * f64::from(i) / 4.0;
        s += &format!(
            "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{left}\" y2=\"{y:.1}\" stroke=\"black\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            left - 4.0,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    let points: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.1},{:.1}", x(r.concurrency as f64), y(rate(r))))
        .collect();
    s += &format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n",
        points.join(" ")
    );
    for r in runs {
        let (px, py) = (x(r.concurrency as f64), y(rate(r)));
        s += &format!(
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"#1f77b4\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}/s</text>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            py - 10.0,
            rate(r),
            h - bottom + 18.0,
            r.concurrency
        );
    }
    s + "</svg>\n"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if !args.rotate.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p rotation-cli) or pass --rotate",
            args.rotate.display()
        );
    }
    let pg = PgCluster::start(PgOptions::tls())?;
    reset_users(&pg, args.users, true)?;
    let dir = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for &c in &args.concurrency {
        reset_users(&pg, args.users, false)?;
        let store = dir.path().join(format!("store-{c}.json"));
        write_store(&store, &pg, args.users)?;
        let run = run_once(&args, &pg, &store, c)?;
        eprintln!(
            "concurrency {c}: {} rotated, {} failed in {:.1} s",
            run.rotated,
            run.failed,
            run.elapsed.as_secs_f64()
        );
        runs.push(run);
    }
    let last_store = dir.path().join(format!(
        "store-{}.json",
        args.concurrency.last().unwrap_or(&1)
    ));
    let (per_read, per_write, size) = store_cost(&last_store, 100).await?;

    println!(
        "| concurrency | rotated | failed | wall time | rotations/s | p50 per rotation | p95 per rotation | peak RSS of `rotate` | CPU per rotation: `rotate` + PostgreSQL |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let base = runs
        .first()
        .map(|r| r.rotated as f64 / r.elapsed.as_secs_f64())
        .unwrap_or(1.0);
    for r in &runs {
        let rate = r.rotated as f64 / r.elapsed.as_secs_f64();
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / r.rotated.max(1) as f64;
        println!(
            "| {} | {} | {} | {:.1} s | {rate:.1} ({:.2}x) | {} ms | {} ms | {:.1} MiB | {:.1} + {:.1} ms |",
            r.concurrency,
            r.rotated,
            r.failed,
            r.elapsed.as_secs_f64(),
            rate / base,
            r.p50_ms,
            r.p95_ms,
            r.peak_rss_kib as f64 / 1024.0,
            per(r.rotate_cpu),
            per(r.server_cpu),
        );
    }
    println!();
    if let Some(first) = runs.first() {
        // What two cores allow: every rotation needs this much CPU, wherever it runs.
        let cpu = (first.rotate_cpu + first.server_cpu).as_secs_f64() / first.rotated.max(1) as f64;
        let wall = first.elapsed.as_secs_f64() / first.rotated.max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!(
            "At concurrency {}, a rotation takes {:.1} ms of wall time and {:.1} ms of CPU (the `rotate` process and the server together): with {cores} cores no concurrency can exceed {:.0} rotations/s, {:.2}x concurrency {}'s throughput.",
            first.concurrency,
            wall * 1000.0,
            cpu * 1000.0,
            cores / cpu,
            cores * wall / cpu,
            first.concurrency
        );
        println!();
    }
    // A rotation's store calls (BENCHMARKS.md, calls per rotation): 2 writes (PutSecretValue,
    // UpdateSecretVersionStage) and 12 reads (DescribeSecret, GetSecretValue,
    // GetRandomPassword is local). Writes are serialised by the file lock; reads are not.
    let per_rotation = per_write * 2 + per_read * 12;
    println!(
        "File store after the run: {:.2} MiB. One read of an unchanged file (the cached parse) takes {:.2} ms, one write (parse, whole-file rewrite, fsync, rename) {:.2} ms; a rotation's 2 writes and 12 reads cost {:.1} ms, and its writes alone, which cannot overlap, cap a run at about {:.0} rotations/s.",
        size as f64 / 1_048_576.0,
        per_read.as_secs_f64() * 1000.0,
        per_write.as_secs_f64() * 1000.0,
        per_rotation.as_secs_f64() * 1000.0,
        1.0 / (2.0 * per_write.as_secs_f64())
    );
    std::fs::write(&args.plot, svg(&runs, args.users))?;
    eprintln!("plot: {}", args.plot.display());
    Ok(())
}
