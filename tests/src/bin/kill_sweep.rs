//! The kill -9 sweep as a long run (`scripts/sweep`): `rotate run` killed with SIGKILL at random
//! points, then `resume` or `abort`, for every engine and strategy (`rotation_tests::kill`).
//!
//! Usage: `kill_sweep ROTATE_BINARY [RUNS_PER_STRATEGY] [ENGINE...]`
//! (default 50 runs; the registered engines by name, default all; ROTATE_BINARY serves them all:
//! `rotate_all`). Exits 1 on any lockout.

use std::path::PathBuf;

use rotation_tests::engines::{self, Engine};
use rotation_tests::kill::{KillSweep, Rng};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rotate = PathBuf::from(
        args.get(1)
            .expect("usage: kill_sweep ROTATE_BINARY [RUNS] [ENGINE...]"),
    );
    let runs: u32 = args.get(2).map(|r| r.parse().expect("RUNS")).unwrap_or(50);
    let engines: Vec<Engine> = if args.len() > 3 {
        args[3..]
            .iter()
            .map(|e| engines::by_name(e).unwrap_or_else(|| panic!("unknown engine {e}")))
            .collect()
    } else {
        engines::ALL.to_vec()
    };
    let mut rng = Rng::new(
        std::env::var("KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    eprintln!("kill sweep seed {} (KILL_SEED reruns it)", rng.seed());
    let mut lockouts = 0;
    let mut total = 0;
    println!(
        "| engine | strategy | runs | finished before kill | killed, nothing in flight | resumed | aborted | abort refused, resumed | recoveries killed | other exits | unsettled | lockouts | seconds |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for engine in engines {
        let sweep = KillSweep::start(engine, &rotate).await;
        for (strategy, t) in sweep.run_both(runs, &mut rng).await {
            println!(
                "| {engine} | {strategy} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                t.runs,
                t.finished_before_kill,
                t.killed_nothing_in_flight,
                t.resumed,
                t.aborted,
                t.abort_refused_then_resumed,
                t.second_kills,
                t.other_exits,
                t.unsettled,
                t.lockouts,
                t.elapsed.as_secs_f64()
            );
            lockouts += t.lockouts + t.unsettled;
            total += t.runs;
        }
    }
    println!("{total} killed runs, {lockouts} lockouts or unsettled rotations");
    if lockouts > 0 {
        std::process::exit(1);
    }
}
