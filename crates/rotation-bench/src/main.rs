//! `rotation-bench`: how fast, how heavy and how chatty a rotation is, for every engine the
//! promise suites register (`rotation_tests::engines::ALL`), against the testkit's servers on
//! 127.0.0.1 (moto for Secrets Manager, per engine a plaintext and a TLS verify-full server,
//! each started by the engine's `TestEngine`). Prints Markdown tables with the targets
//! beside the figures (MISS where one is missed). Run through `scripts/bench`.
//!
//! Every measurement is made for each engine chosen (`--engine`), by the same code: nothing
//! here is about one engine.
//!
//! - cold: a fresh process of the engine's built Lambda binary (named for its function:
//!   `rds-postgres`, `rds-mysql`, ...) per rotation, behind a minimal local Lambda Runtime API,
//!   fed the four step events;
//! - warm: many rotations in one process through the library (the Lambda contract,
//!   `Rotation::handle`, and the driver, `Rotation::rotate`), with Secrets Manager calls and
//!   TCP connections counted;
//! - where a cold rotation's time goes: one more cold run per case with each call timed by the
//!   function itself (`rotation_core::calls`), and with `--callgrind` one under callgrind
//!   (instructions, top functions);
//! - login time, plaintext and TLS;
//! - the floor: the calls the four invocations require, issued by a plain loop, warm and cold.
//!
//! Every rotation is verified afterwards (the new `AWSCURRENT` logs in; single user: the old
//! password is refused; alternating users: the user changed).

#![allow(clippy::print_stderr)]

mod cold;
mod counting;
mod document;
mod floor;
mod lab;
mod report;
mod warm;

use std::path::PathBuf;

use anyhow::{Context, bail};
use rotation_core::Strategy;
use rotation_tests::engines::{ALL, Engine};

use crate::lab::Lab;
use crate::report::{Results, Scenario};

const USAGE_TEMPLATE: &str = "usage: rotation-bench [--engine NAME]... [--quick] [--cold-runs N] [--warm N] [--logins N] [--lambda-dir DIR] [--lambda-profile NAME] [--callgrind] [--markdown PATH] [--list-functions]

  --engine NAME      a registered engine, by its name or its function's ({engines}), or
                     all (the default); repeat it for several
  --quick            smoke run: 1 cold run, 3 warm rotations, 5 logins per case
  --cold-runs N      fresh-process rotations per case (default 5)
  --warm N           in-process rotations per case and path, and floor iterations (default 30)
  --logins N         logins per engine and transport for the login time (default 30)
  --lambda-dir DIR   where the built Lambda binaries are, each named for its function
                     (default: the directory of this binary)
  --lambda-profile NAME  the cargo profile they were built with, for the report (default release)
  --callgrind        one more cold run per case under valgrind's callgrind: instructions per
                     rotation (stable on a busy machine) and the top functions
  --markdown PATH    also write the run as PATH (BENCHMARKS.md), replacing it; its fleet
                     section (scripts/bench-fleet) is kept
  --list-functions   print the chosen engines' function names (their binaries' names) and stop";

/// The usage text, naming the registered engines.
fn usage() -> String {
    let names: Vec<&str> = ALL.iter().map(|e| e.name()).collect();
    USAGE_TEMPLATE.replace("{engines}", &names.join(", "))
}

/// Command-line settings.
#[derive(Debug, Clone)]
pub struct Args {
    /// The engines measured, in the report's order.
    pub engines: Vec<Engine>,
    /// Cold runs per case.
    pub cold_runs: usize,
    /// Warm rotations per case and path.
    pub warm: usize,
    /// Logins per engine and transport.
    pub logins: usize,
    /// Where the Lambda binaries are.
    pub lambda_dir: PathBuf,
    /// Their build profile.
    pub lambda_profile: String,
    /// Print the chosen engines' function names, one per line, and stop (for the script that
    /// builds them).
    pub list_functions: bool,
    /// One more cold run per case under callgrind: instructions and the top functions.
    pub callgrind: bool,
    /// Write BENCHMARKS.md here too.
    pub markdown: Option<PathBuf>,
}

impl Args {
    /// The Lambda binary of `engine`.
    pub fn lambda_bin(&self, engine: Engine) -> PathBuf {
        self.lambda_dir.join(engine.engine().function_name)
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        engines: Vec::new(),
        cold_runs: 5,
        warm: 30,
        logins: 30,
        lambda_dir: std::env::current_exe()?
            .parent()
            .context("the bench binary has a directory")?
            .to_path_buf(),
        lambda_profile: "release".into(),
        list_functions: false,
        callgrind: false,
        markdown: None,
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> anyhow::Result<usize> {
        v.and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .with_context(|| format!("{flag} takes a positive number\n{}", usage()))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                args.cold_runs = 1;
                args.warm = 3;
                args.logins = 5;
            }
            "--cold-runs" => args.cold_runs = number(it.next(), "--cold-runs")?,
            "--warm" => args.warm = number(it.next(), "--warm")?,
            "--logins" => args.logins = number(it.next(), "--logins")?,
            "--engine" => match it.next().as_deref() {
                Some("all") => args.engines.extend(ALL),
                Some(name) if ALL.iter().any(|e| e.engine().is_named(name)) => {
                    args.engines
                        .extend(ALL.iter().filter(|e| e.engine().is_named(name)));
                }
                other => {
                    let names: Vec<&str> = ALL.iter().map(|e| e.name()).collect();
                    bail!(
                        "--engine takes {} or all, not {other:?}\n{}",
                        names.join(", "),
                        usage()
                    )
                }
            },
            "--lambda-dir" => {
                args.lambda_dir = it.next().context("--lambda-dir takes a path")?.into();
            }
            "--lambda-profile" => {
                args.lambda_profile = it.next().context("--lambda-profile takes a name")?;
            }
            "--list-functions" => args.list_functions = true,
            "--callgrind" => args.callgrind = true,
            "--markdown" => {
                args.markdown = Some(it.next().context("--markdown takes a path")?.into());
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    if args.engines.is_empty() {
        args.engines = ALL.to_vec();
    }
    let mut seen = Vec::new();
    args.engines.retain(|e| {
        let new = !seen.contains(&e.name());
        seen.push(e.name());
        new
    });
    for engine in args.engines.iter().filter(|_| !args.list_functions) {
        let bin = args.lambda_bin(*engine);
        if !bin.is_file() {
            bail!(
                "{} not found: build the engine's Lambda binary first (scripts/bench does) or pass --lambda-dir",
                bin.display(),
            );
        }
    }
    Ok(args)
}

fn progress(what: &str) {
    eprintln!("rotation-bench: {what}");
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(floor::CHILD_ENV) {
        return floor::child(&spec);
    }
    let args = parse_args()?;
    if args.list_functions {
        for engine in &args.engines {
            println!("{}", engine.engine().function_name);
        }
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let engines: Vec<&str> = args.engines.iter().map(|e| e.name()).collect();
    progress(&format!(
        "starting moto and two servers (plaintext, TLS) for each of {}",
        engines.join(", ")
    ));
    let lab = rt.block_on(Lab::start(&args.engines))?;
    let mut results = Results::new(&args, &lab)?;

    for db in lab.dbs() {
        progress(&format!("{} logins x {}", db.name(), args.logins));
        let times = rt.block_on(floor::logins(&lab, db, args.logins))?;
        let engine = db.engine.name();
        results
            .connections_per_login
            .push((engine, db.tls, times.connections));
        results
            .logins
            .push((engine, db.tls, times.first, times.rest));
    }

    progress(&format!("Secrets Manager calls x {}", args.logins));
    results.store_calls = rt.block_on(floor::store_times(&lab, args.logins))?;

    // Strategy, then transport, then engine: the engines' rows of a case side by side, and
    // measured close together in time on a machine whose speed drifts.
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for db in lab.dbs() {
            let case = format!("{strategy} {}", db.name());
            let short = match strategy {
                Strategy::SingleUser => "single",
                Strategy::AlternatingUsers => "alt",
            };
            let tag = format!("{short}_{}", db.label().to_ascii_lowercase());
            let bin = args.lambda_bin(db.engine);
            let mut scenario = Scenario::new(db, strategy);

            progress(&format!("{case}: floor x {}", args.warm));
            scenario.floor = rt.block_on(floor::run(&lab, db, strategy, args.warm))?;
            progress(&format!("{case}: cold floor x {}", args.cold_runs));
            scenario.floor_cold = floor::cold(&rt, &lab, db, strategy, args.cold_runs)
                .with_context(|| format!("cold floor of {case}"))?;

            let subject = rt.block_on(lab.subject(db, &format!("cold_{tag}"), strategy))?;
            for i in 1..=args.cold_runs {
                progress(&format!("{case}: cold run {i}/{}", args.cold_runs));
                let sample = cold::run(&rt, &lab, db, &subject, &bin, cold::Mode::Measured)
                    .with_context(|| format!("cold run of {case}"))?;
                scenario.cold.push(sample);
            }
            progress(&format!("{case}: one cold run with each call timed"));
            scenario.traced = Some(
                cold::run(&rt, &lab, db, &subject, &bin, cold::Mode::Traced)
                    .with_context(|| format!("traced cold run of {case}"))?,
            );
            if args.callgrind {
                progress(&format!("{case}: one cold run under callgrind"));
                scenario.callgrind = Some(
                    cold::run(&rt, &lab, db, &subject, &bin, cold::Mode::Callgrind)
                        .with_context(|| format!("cold run of {case} under callgrind"))?,
                );
            }

            progress(&format!("{case}: warm Lambda path x {}", args.warm));
            let subject = rt.block_on(lab.subject(db, &format!("lambda_{tag}"), strategy))?;
            scenario.lambda = rt
                .block_on(warm::lambda_path(&lab, db, &subject, args.warm))
                .with_context(|| format!("warm Lambda-path rotations of {case}"))?;

            progress(&format!("{case}: warm driver x {}", args.warm));
            let subject = rt.block_on(lab.subject(db, &format!("driver_{tag}"), strategy))?;
            scenario.driver = rt
                .block_on(warm::driver_path(&lab, db, &subject, args.warm))
                .with_context(|| format!("warm driver rotations of {case}"))?;

            results.scenarios.push(scenario);
        }
    }
    print!("{}", results.render());
    if let Some(path) = &args.markdown {
        document::write(&results, path).with_context(|| format!("writing {}", path.display()))?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}
