//! `rotate` killed with SIGKILL at random points of a rotation, then `resume` or `abort`, for
//! every engine and both strategies over verified TLS: never a lockout
//! (`rotation_tests::kill`). A few runs each here; `scripts/sweep` runs many. Then two
//! `rotate run`s of one secret at once: one rotates, the other is refused.

use rotation_tests::engines::Engine;
use rotation_tests::kill::{KillSweep, Rng};

/// Runs per engine and strategy in CI.
const RUNS: u32 = 25;
/// Two `rotate run`s at once, per engine and strategy.
const RACES: u32 = 10;

async fn killed_rotations_never_lock_out(engine: Engine) {
    let rotate = std::path::Path::new(env!("CARGO_BIN_EXE_rotate"));
    let sweep = KillSweep::start(engine, rotate).await;
    let mut rng = Rng::new(
        std::env::var("KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    eprintln!("kill sweep seed {} (KILL_SEED reruns it)", rng.seed());
    for (strategy, tally) in sweep.run_both(RUNS, &mut rng).await {
        eprintln!("KILL {engine} {strategy}: {tally:?}");
        assert_eq!(tally.runs, RUNS);
        assert_eq!(tally.lockouts, 0, "{engine} {strategy}: {tally:?}");
        assert_eq!(tally.unsettled, 0, "{engine} {strategy}: {tally:?}");
        assert_eq!(tally.other_exits, 0, "{engine} {strategy}: {tally:?}");
    }
    for (strategy, race) in sweep.race_both(RACES).await {
        eprintln!("RACE {engine} {strategy}: {race:?}");
        assert!(race.wrong.is_empty(), "{engine} {strategy}: {race:?}");
        assert_eq!(race.lockouts, 0, "{engine} {strategy}: {race:?}");
        assert!(race.one_refused > 0, "no race was close: {race:?}");
        assert_eq!(
            race.one_refused + race.both_rotated + race.resume_first,
            race.runs,
            "{race:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    killed_rotations_never_lock_out(Engine::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift() {
    killed_rotations_never_lock_out(Engine::Redshift).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documentdb() {
    killed_rotations_never_lock_out(Engine::DocumentDb).await
}
