//! The kill -9 sweep of issue "Proof of no lockout", for every engine: `rotate run` is killed
//! with SIGKILL at a random moment of a rotation, then `resume` or `abort` (chosen at random,
//! themselves killed now and then) must settle the secret with its `AWSCURRENT` credentials
//! logging in. Any run that ends otherwise is a lockout.
//!
//! Against a throwaway server of the engine with verified TLS (what users run by default), the
//! local file store, both strategies. `tests/tests/suites/kill.rs` runs a few per engine in CI;
//! `scripts/sweep` runs many.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rotation_core::{SecretStore, Stage, VersionSelector};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::engines::{Engine, Env};

/// xorshift64*: enough randomness for kill times, no dependency.
#[derive(Debug)]
pub struct Rng {
    state: u64,
    seed: u64,
}

impl Rng {
    /// Seeded from `seed`, or the clock when 0.
    pub fn new(seed: u64) -> Rng {
        let seed = if seed == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        } else {
            seed
        };
        Rng {
            state: seed | 1,
            seed,
        }
    }
    /// The seed (`KILL_SEED` reruns the same kill times).
    pub fn seed(&self) -> u64 {
        self.seed
    }
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the runs of one engine and strategy came to.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// `rotate run`s started (each killed at a random moment unless it finished first).
    pub runs: u32,
    /// Runs that finished before their kill time.
    pub finished_before_kill: u32,
    /// Runs killed before any rotation was in flight.
    pub killed_nothing_in_flight: u32,
    /// Rotations in flight finished by `resume`.
    pub resumed: u32,
    /// Rotations in flight abandoned by `abort`.
    pub aborted: u32,
    /// `abort`s refused as unsafe, then finished by `resume`.
    pub abort_refused_then_resumed: u32,
    /// `resume` or `abort` killed too.
    pub second_kills: u32,
    /// Other exits of `resume` or `abort` (each logged).
    pub other_exits: u32,
    /// Rotations still in flight after ten `resume`s or `abort`s.
    pub unsettled: u32,
    /// Runs after which `AWSCURRENT` did not log in.
    pub lockouts: u32,
    /// How long the runs took.
    pub elapsed: Duration,
}

/// What the races of one engine and strategy came to.
#[derive(Debug, Default, Clone)]
pub struct Race {
    /// Races run.
    pub runs: u32,
    /// One rotated, the other was refused (exit 3).
    pub one_refused: u32,
    /// Both rotated, one after the other.
    pub both_rotated: u32,
    /// Both refused with `RotationBusy`: the racing resume held the secret while they started.
    pub resume_first: u32,
    /// Any other outcome, with both processes' errors.
    pub wrong: Vec<String>,
    /// Races after which `AWSCURRENT` did not log in.
    pub lockouts: u32,
}

/// One engine's server, store and secrets, and the `rotate` binary.
#[derive(Debug)]
pub struct KillSweep {
    env: Env,
    rotate: PathBuf,
}

const SINGLE: &str = "single";
const ALTERNATING: &str = "alternating";

impl KillSweep {
    /// A TLS server for `engine` with a single-user secret and an alternating-users one.
    pub async fn start(engine: Engine, rotate: &Path) -> KillSweep {
        assert!(
            rotate.exists(),
            "{} not found (cargo build -p rotation-cli)",
            rotate.display()
        );
        let env = Env::tls(engine);
        env.create_user("single_app", "Single-initial-1");
        env.create_user("alt_app", "Alt-initial-1-long");
        let master = env.put("master", &env.master_secret(None)).await;
        env.put(SINGLE, &env.secret("single_app", "Single-initial-1", None))
            .await;
        let mut alt = env.secret("alt_app", "Alt-initial-1-long", None);
        alt["masterarn"] = json!(master);
        env.put(ALTERNATING, &alt).await;
        KillSweep {
            env,
            rotate: rotate.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str], strategy: &str) -> Command {
        let mut c = Command::new(&self.rotate);
        c.arg("--store")
            .arg(format!("file:{}", self.env.store.path().display()))
            .args(args)
            .args(["--strategy", strategy])
            .env_remove("ROTATE_STORE")
            .env_remove("ROTATION_STRATEGY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match self.env.ca_pem() {
            Some(ca) => c.env("CA_BUNDLE_PATH", ca),
            None => c.env_remove("CA_BUNDLE_PATH"),
        };
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

    async fn current(&self, secret: &str) -> Option<Value> {
        let v = self
            .env
            .store
            .get_value(secret, VersionSelector::stage(Stage::Current))
            .await
            .ok()?;
        serde_json::from_str(v.value.expose_secret()).ok()
    }

    async fn current_logs_in(&self, secret: &str) -> bool {
        match self.current(secret).await {
            Some(v) => self.env.logs_in(&v).await,
            None => false,
        }
    }

    async fn in_flight(&self, secret: &str) -> bool {
        self.env
            .store
            .describe(secret)
            .await
            .expect("describe")
            .rotation_in_flight()
            .is_some()
    }

    /// Two `rotate run`s of one secret and a `resume` started together, `runs` times per
    /// strategy: on the local store one run rotates and the other is refused with exit 3 and a
    /// message naming why (`RotationBusy`: another process holds the secret; `RotationInFlight`),
    /// unless the first finished before the second began (both rotate, one after the other,
    /// counted) or the resume held the secret while both started (both refused with
    /// `RotationBusy`, counted); the resume is refused or finishes; a `resume` after it all is refused with
    /// `NoRotationInFlight` and changes nothing. `AWSCURRENT` must log in after every race.
    pub async fn race_both(&self, runs: u32) -> Vec<(&'static str, Race)> {
        let mut out = vec![];
        for (secret, strategy) in [(SINGLE, "single-user"), (ALTERNATING, "alternating-users")] {
            let mut race = Race::default();
            for _ in 0..runs {
                race.runs += 1;
                // Two runs and a resume at once: the resume races whichever run holds the secret.
                let spawn = |verb: &str| {
                    self.command(&[verb, secret], strategy)
                        .spawn()
                        .expect("spawn")
                };
                let (a, b, c) = (spawn("run"), spawn("run"), spawn("resume"));
                let (a, b, c) = (
                    a.wait_with_output().expect("wait"),
                    b.wait_with_output().expect("wait"),
                    c.wait_with_output().expect("wait"),
                );
                let refused = |o: &std::process::Output| {
                    let err = String::from_utf8_lossy(&o.stderr);
                    o.status.code() == Some(3)
                        && [
                            "[RotationBusy]",
                            "[RotationInFlight]",
                            "[NoRotationInFlight]",
                        ]
                        .iter()
                        .any(|k| err.contains(k))
                };
                let ok = |o: &std::process::Output| o.status.code() == Some(0);
                match (ok(&a), ok(&b)) {
                    (true, false) if refused(&b) => race.one_refused += 1,
                    (false, true) if refused(&a) => race.one_refused += 1,
                    (true, true) => race.both_rotated += 1,
                    (false, false)
                        if [&a, &b].iter().all(|o| {
                            o.status.code() == Some(3)
                                && String::from_utf8_lossy(&o.stderr).contains("[RotationBusy]")
                        }) =>
                    {
                        race.resume_first += 1
                    }
                    _ => race.wrong.push(format!(
                        "runs {:?} / {:?}: {} / {}",
                        a.status.code(),
                        b.status.code(),
                        String::from_utf8_lossy(&a.stderr),
                        String::from_utf8_lossy(&b.stderr)
                    )),
                }
                // The racing resume found nothing to do or the secret held (a refusal that
                // names why), or finished what a run left.
                if !(refused(&c) || ok(&c)) {
                    race.wrong.push(format!(
                        "the racing resume: {:?}: {}",
                        c.status.code(),
                        String::from_utf8_lossy(&c.stderr)
                    ));
                }
                // A resume after the finished rotation is refused and changes nothing.
                let before = self.current(secret).await;
                let late = self
                    .command(&["resume", secret], strategy)
                    .output()
                    .expect("run");
                if !refused(&late) || self.current(secret).await != before {
                    race.wrong
                        .push("a resume after the race was not a harmless refusal".into());
                }
                if !self.current_logs_in(secret).await {
                    race.lockouts += 1;
                }
            }
            out.push((strategy, race));
        }
        out
    }

    /// `runs` killed rotations of each strategy.
    pub async fn run_both(&self, runs: u32, rng: &mut Rng) -> Vec<(&'static str, Tally)> {
        let mut out = vec![];
        for (secret, strategy) in [(SINGLE, "single-user"), (ALTERNATING, "alternating-users")] {
            out.push((strategy, self.sweep(secret, strategy, runs, rng).await));
        }
        out
    }

    async fn sweep(&self, secret: &str, strategy: &str, runs: u32, rng: &mut Rng) -> Tally {
        let started = Instant::now();
        // How long one rotation takes here: kill points are spread over it.
        let t = Instant::now();
        let first = self.run(&["run", secret], strategy, None);
        assert_eq!(
            first,
            Some(0),
            "{} {strategy}: a clean `rotate run` fails",
            self.env.engine
        );
        let typical = t.elapsed().as_micros() as u64;
        let mut tally = Tally::default();
        for _ in 0..runs {
            tally.runs += 1;
            let kill_at = Duration::from_micros(rng.below(typical * 11 / 10));
            if self
                .run(&["run", secret], strategy, Some(kill_at))
                .is_some()
            {
                tally.finished_before_kill += 1;
            } else if !self.in_flight(secret).await {
                tally.killed_nothing_in_flight += 1;
            }
            let mut attempts = 0;
            while self.in_flight(secret).await {
                attempts += 1;
                if attempts > 10 {
                    tally.unsettled += 1;
                    eprintln!("{secret}: could not settle the rotation in flight");
                    break;
                }
                let verb = if rng.below(2) == 0 { "resume" } else { "abort" };
                // Now and then the recovery is killed too.
                let kill = (rng.below(4) == 0).then(|| Duration::from_micros(rng.below(typical)));
                match self.run(&[verb, secret], strategy, kill) {
                    None => tally.second_kills += 1,
                    Some(0) if verb == "resume" => tally.resumed += 1,
                    Some(0) => tally.aborted += 1,
                    Some(3) if verb == "abort" => {
                        // Refused as unsafe: resume must finish it.
                        if self.run(&["resume", secret], strategy, None) == Some(0) {
                            tally.abort_refused_then_resumed += 1;
                        }
                    }
                    Some(code) => {
                        tally.other_exits += 1;
                        let out = self.command(&["status", secret], strategy).output();
                        eprintln!("{verb} exited {code}; status: {out:?}");
                    }
                }
            }
            if !self.current_logs_in(secret).await {
                tally.lockouts += 1;
                eprintln!(
                    "LOCKOUT {} {strategy} after run {}",
                    self.env.engine, tally.runs
                );
            }
        }
        tally.elapsed = started.elapsed();
        tally
    }
}

/// Runs per engine and strategy in CI.
pub const CI_RUNS: u32 = 25;
/// Two `rotate run`s at once, per engine and strategy, in CI.
pub const CI_RACES: u32 = 10;

/// The kill sweep's promise for `engine` through its `rotate` binary, CI-sized: [`CI_RUNS`]
/// killed runs per strategy (`KILL_SEED` reruns the same kill times), none ending in a
/// lockout, an unsettled rotation or another exit; then [`CI_RACES`] races of two runs, where
/// one rotates and the other is refused or finds nothing to do, never a lockout.
pub async fn never_locks_out(engine: Engine, rotate: &Path) {
    let sweep = KillSweep::start(engine, rotate).await;
    let mut rng = Rng::new(
        std::env::var("KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    eprintln!("kill sweep seed {} (KILL_SEED reruns it)", rng.seed());
    for (strategy, tally) in sweep.run_both(CI_RUNS, &mut rng).await {
        eprintln!("KILL {engine} {strategy}: {tally:?}");
        assert_eq!(tally.runs, CI_RUNS);
        assert_eq!(tally.lockouts, 0, "{engine} {strategy}: {tally:?}");
        assert_eq!(tally.unsettled, 0, "{engine} {strategy}: {tally:?}");
        assert_eq!(tally.other_exits, 0, "{engine} {strategy}: {tally:?}");
        // Kills that land inside a rotation, or the sweep proves nothing.
        assert!(
            tally.resumed + tally.aborted + tally.abort_refused_then_resumed > 0,
            "{engine} {strategy}: no kill left a rotation in flight: {tally:?}"
        );
    }
    for (strategy, race) in sweep.race_both(CI_RACES).await {
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
