//! A cold rotation costs no more instructions than its committed baseline, so that work added
//! at start or per call shows up in the test run, not only in a benchmark: one rotation of
//! MySQL (single user, no TLS) by the suites' function, counted by valgrind's callgrind, whose
//! counts do not depend on the machine's load. The function is the test build's (debug, the
//! hashing crates optimised), so the figure is not BENCHMARKS.md's (the `lambda` profile).
//!
//! More than 10 % over `tests/baseline/cold-instructions` fails. After a change that costs
//! more on purpose, or that saves (below 90 % the test says so), write the new figure:
//! `ROTATION_WRITE_BASELINE=1 cargo nextest run -p rotation-tests -E 'test(cold_instructions)'`.

use std::path::Path;

use rotation_core::Strategy;
use rotation_tests::engines::MYSQL;

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline/cold-instructions");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_rotation_costs_at_most_ten_percent_more_instructions_than_its_baseline() {
    let function = Path::new(env!("CARGO_BIN_EXE_lambda_all"));
    // As the end-to-end suite drives its servers and moto: synchronously, on this thread.
    let measured = tokio::task::block_in_place(|| {
        rotation_tests::lambda::cold_rotation_instructions(MYSQL, Strategy::SingleUser, function)
    });
    if std::env::var_os("ROTATION_WRITE_BASELINE").is_some() {
        std::fs::write(
            BASELINE,
            format!("{measured}\n# instructions of one cold rotation: tests/tests/suites/cold_instructions.rs\n"),
        )
        .expect("write the baseline");
        return;
    }
    let text = std::fs::read_to_string(BASELINE).expect("the committed baseline");
    let baseline: u64 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number on the baseline's first line");
    let ratio = measured as f64 / baseline as f64;
    eprintln!(
        "cold rotation: {measured} instructions, {:+.1} % against the baseline {baseline}",
        (ratio - 1.0) * 100.0
    );
    assert!(
        ratio <= 1.10,
        "a cold rotation now takes {measured} instructions, {:+.1} % over the baseline \
         {baseline} (tests/baseline/cold-instructions): find what was added (scripts/bench \
         --callgrind names the top functions), or, if it is meant, write the new figure \
         (ROTATION_WRITE_BASELINE=1, see this file's header)",
        (ratio - 1.0) * 100.0
    );
    assert!(
        ratio >= 0.90,
        "a cold rotation now takes {measured} instructions, {:+.1} % under the baseline \
         {baseline}: well done; write the new figure so that the gain is kept \
         (ROTATION_WRITE_BASELINE=1, see this file's header)",
        (ratio - 1.0) * 100.0
    );
}
