//! A cold rotation costs what its committed baseline says, within 10 %, so that work added at
//! start or per call shows up in the test run, not only in a benchmark: one rotation of MySQL
//! (single user, no TLS, on the testkit's own server) by the suites' function, counted by
//! valgrind's callgrind, whose counts do not move with the machine's load (five runs here
//! agreed within 0.1 %). The function is the test build's (debug, the hashing crates
//! optimised), so the figure is not BENCHMARKS.md's (the `lambda` profile). It is this
//! machine kind's: x86_64, Debian 12 (its glibc and CA bundle), the Rust and valgrind versions
//! the baseline's second line names.
//!
//! More than 10 % over `tests/baseline/cold-instructions` fails: find what was added
//! (`scripts/bench --callgrind` names the top functions). More than 10 % under it fails too,
//! so that a gain is written down. To write a new figure:
//! `ROTATION_WRITE_BASELINE=1 cargo nextest run -p rotation-tests -E 'test(cold_instructions)'`.

use std::path::Path;
use std::process::Command;

use rotation_core::Strategy;
use rotation_tests::engines::MYSQL;

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline/cold-instructions");

/// What the count depends on besides the code: the architecture, the compiler, valgrind.
fn measured_with() -> String {
    let version = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!("no {program}"))
    };
    format!(
        "{}, {}, {}",
        std::env::consts::ARCH,
        version("rustc", "-V"),
        version("valgrind", "--version")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_rotation_costs_within_ten_percent_of_its_baseline_instructions() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the baseline counts x86_64 instructions"
    );
    let function = Path::new(env!("CARGO_BIN_EXE_lambda_all"));
    // As the end-to-end suite drives its servers and moto: synchronously, on this thread.
    let measured = tokio::task::block_in_place(|| {
        rotation_tests::lambda::cold_rotation_instructions(MYSQL, Strategy::SingleUser, function)
    });
    let with = measured_with();
    let text = std::fs::read_to_string(BASELINE).unwrap_or_default();
    if std::env::var("ROTATION_WRITE_BASELINE").as_deref() == Ok("1") {
        std::fs::write(BASELINE, format!("{measured}\n# measured with: {with}\n"))
            .expect("write the baseline");
        eprintln!("cold rotation: {measured} instructions written (was: {text:?})");
        return;
    }
    let mut lines = text.lines();
    let baseline: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number on the baseline's first line");
    let then = lines.next().unwrap_or("# measured with: unknown");
    let change = (measured as f64 / baseline as f64 - 1.0) * 100.0;
    eprintln!("cold rotation: {measured} instructions, {change:+.1} % against {baseline}");
    assert!(
        change.abs() <= 10.0,
        "a cold rotation now takes {measured} instructions, {change:+.1} % against the baseline \
         {baseline} (tests/baseline/cold-instructions, {then}; now: {with}). Over: find what \
         was added (scripts/bench --callgrind names the top functions). Under, or meant: write \
         the new figure (ROTATION_WRITE_BASELINE=1, see this file's header)"
    );
}
