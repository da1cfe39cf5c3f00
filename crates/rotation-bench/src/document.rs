//! BENCHMARKS.md, written whole from one run (`--markdown PATH`): a header naming the commit
//! and the date, what is measured, the run's tables, and AWS's Python functions beside them.
//! Nothing in it is typed by hand but the fixed text here and AWS's figures, which were
//! measured outside this repository and are quoted once with their source. The fleet section,
//! which `scripts/bench-fleet` measures, is carried over from the file being replaced.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use rotation_core::Strategy;

use crate::report::{Dist, Results};

/// AWS's Python functions, from `shared/spec/reference-figures.md` (measured 2026-11 on another
/// 2-core machine of this kind, against moto 5.2.5 and the same kinds of servers): engine,
/// strategy, cold start to result ms (plain), cold CPU ms, cold peak RSS MiB, cold start to
/// result ms with TLS verified (where measured).
type AwsFigures = (&'static str, Strategy, f64, f64, f64, Option<f64>);

const AWS: &[AwsFigures] = &[
    (
        "postgres",
        Strategy::SingleUser,
        313.0,
        307.0,
        48.5,
        Some(318.0),
    ),
    (
        "postgres",
        Strategy::AlternatingUsers,
        322.0,
        332.0,
        48.7,
        Some(342.0),
    ),
    (
        "documentdb",
        Strategy::SingleUser,
        324.0,
        345.0,
        47.7,
        Some(361.0),
    ),
    (
        "documentdb",
        Strategy::AlternatingUsers,
        337.0,
        348.0,
        47.8,
        Some(392.0),
    ),
    ("redshift", Strategy::SingleUser, 280.0, 320.0, 48.6, None),
    (
        "redshift",
        Strategy::AlternatingUsers,
        299.0,
        311.0,
        48.7,
        None,
    ),
];

const WHAT: &str = "\
Every registered engine, both strategies, plaintext (`\"ssl\": false`) and TLS verify-full \
(the testkit's CA through `CA_BUNDLE_PATH`; the servers are named `localhost`, which gets the \
widest trust set, the RDS bundle and the system store included, where an RDS endpoint gets its \
region's RDS CAs: see `rotation-trust`'s docs), against the testkit's servers on 127.0.0.1: moto \
for Secrets Manager; PostgreSQL 15; Redshift on its stand-in (PostgreSQL with md5 passwords, not \
a real Redshift); DocumentDB on SecantusDB (the MongoDB wire protocol in Python, whose latency is \
not DocumentDB's); MySQL/MariaDB on MariaDB; the Redis example on redis-server. Every rotation \
timed is verified afterwards (the new AWSCURRENT logs in; single user: the old password is \
refused; alternating users: the user changed).

- **Cold**: a fresh process of the engine's function (the `lambda` profile, as deployed, with \
its symbol table kept so that callgrind names functions: `scripts/package` strips the zip's) per \
rotation, fed the four step events by a local Lambda Runtime API after moto's RotateSecret made \
the pending stub. CPU is the process's user + system time; RSS its peak.
- **Floor**: the calls the four invocations require (listed in its section), issued by a plain \
loop through the same store client and the engine's own operations: warm, and cold (a fresh \
process per rotation with the function's environment). Cold results are given as a ratio to \
the cold floor.
- **Where a cold rotation's time goes**: one more cold run per case, each call timed by the \
function itself (`rotation::calls` at DEBUG).
- **Instructions** (with `--callgrind`): one more cold run per case under callgrind, stable on a \
busy machine. Under valgrind SHA-256 runs its portable code, not SHA-NI.
- **Warm**: rotations in one process, through the Lambda path (`Rotation::handle`) and the \
driver (`Rotation::rotate`).";

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// BENCHMARKS.md for `results`, the fleet section carried over from `previous`.
pub fn render(results: &Results, command: &str, previous: &str) -> String {
    let mut o = String::new();
    let w = &mut o;
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " with uncommitted changes"
    };
    let _ = writeln!(
        w,
        "# Benchmarks\n\nWritten by `{command}` from one run, at commit {}{dirty}, {}. Do not \
         edit: run it again (`scripts/bench --help` lists the options; `scripts/bench-fleet` \
         measures the fleet section).\n\n## What is measured\n\n{WHAT}\n",
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["log", "-1", "--format=%cd", "--date=format:%Y-%m-%d"]),
    );
    let _ = write!(w, "{}", results.render());
    beside_aws(results, w);
    if let Some(at) = previous.find("\n## Fleet rotation") {
        let _ = write!(w, "{}", &previous[at..]);
    }
    o
}

fn beside_aws(results: &Results, w: &mut String) {
    let _ = writeln!(
        w,
        "\n## Beside AWS's Python functions\n\nAWS's figures: `shared/spec/reference-figures.md` \
         (aws-samples/aws-secrets-manager-rotation-lambdas at `b4b8eca`, CPython 3.11.7, measured \
         2026-11 on another 2-core machine of this kind against moto 5.2.5 and the same kinds of \
         servers; its notes say the same harness measured every Python time about 2x higher on \
         a third machine). Not measured beside ours: the ratios are indicative. DocumentDB's \
         are theirs for MongoDB.\n\n\
         | engine | strategy | cold start to result, plain: AWS / ours ms | ratio | TLS: AWS / ours ms | ratio | cold CPU: AWS / ours ms | ratio | peak RSS: AWS / ours MiB |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (engine, strategy, cold, cpu, rss, tls) in AWS {
        let Some(plain) = results.scenario(engine, *strategy, false) else {
            continue;
        };
        let m = |s: &crate::report::Scenario, f: &dyn Fn(&crate::cold::ColdSample) -> f64| {
            Dist::of(s.cold.iter().map(f)).median
        };
        let ours = m(plain, &|c| c.result);
        let ours_cpu = m(plain, &|c| c.user + c.sys);
        let ours_rss = m(plain, &|c| c.hwm_kib as f64 / 1024.0);
        let tls_text = match (tls, results.scenario(engine, *strategy, true)) {
            (Some(t), Some(s)) => {
                let ours_tls = m(s, &|c| c.result);
                format!("{t:.0} / {ours_tls:.1} | {:.1}x", t / ours_tls)
            }
            _ => "| ".into(),
        };
        let _ = writeln!(
            w,
            "| {engine} | {} | {cold:.0} / {ours:.1} | {:.1}x | {tls_text} | {cpu:.0} / {ours_cpu:.1} | {:.1}x | {rss:.1} / {ours_rss:.1} |",
            match strategy {
                Strategy::SingleUser => "single",
                Strategy::AlternatingUsers => "alternating",
            },
            cold / ours,
            cpu / ours_cpu,
        );
    }
}

/// Writes `path` from `results`.
pub fn write(results: &Results, path: &Path) -> anyhow::Result<()> {
    let previous = fs::read_to_string(path).unwrap_or_default();
    let callgrind = if results.scenarios.iter().any(|s| s.callgrind.is_some()) {
        "--callgrind "
    } else {
        ""
    };
    let command = format!("scripts/bench {callgrind}--markdown {}", path.display());
    fs::write(path, render(results, &command, &previous))?;
    Ok(())
}
