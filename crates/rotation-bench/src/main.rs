//! `rotation-bench`: how fast, how heavy and how chatty a PostgreSQL rotation is, against the
//! testkit's servers on 127.0.0.1 (moto for Secrets Manager, PostgreSQL 15 plaintext and TLS
//! verify-full). Prints Markdown tables with the targets beside the figures (MISS where
//! one is missed). Run through `scripts/bench`.
//!
//! - cold: a fresh process of the built `rds-postgres` Lambda binary per rotation, behind a
//!   minimal local Lambda Runtime API, fed the four step events;
//! - warm: many rotations in one process through the library (the Lambda contract,
//!   `Rotation::handle`, and the driver, `Rotation::rotate`), with Secrets Manager calls and
//!   logins counted;
//! - login time, plaintext and TLS;
//! - the floor: the calls a rotation cannot avoid, issued by a plain loop.
//!
//! Every rotation is verified afterwards (the new `AWSCURRENT` logs in; single user: the old
//! password is refused; alternating users: the user changed).

#![allow(clippy::print_stderr)]

mod cold;
mod counting;
mod floor;
mod lab;
mod report;
mod runtime_api;
mod warm;

use std::path::PathBuf;

use anyhow::{Context, bail};
use rotation_core::Strategy;

use crate::lab::Lab;
use crate::report::{Results, Scenario};

const USAGE: &str = "usage: rotation-bench [--quick] [--cold-runs N] [--warm N] [--logins N] [--lambda-bin PATH] [--lambda-profile NAME]

  --quick            smoke run: 1 cold run, 3 warm rotations, 5 logins per case
  --cold-runs N      fresh-process rotations per case (default 5)
  --warm N           in-process rotations per case and path, and floor iterations (default 30)
  --logins N         logins per transport for the login time (default 30)
  --lambda-bin PATH  the built rds-postgres binary (default: rds-postgres beside this binary)
  --lambda-profile NAME  the cargo profile it was built with, for the report (default release)";

/// Command-line settings.
#[derive(Debug, Clone)]
pub struct Args {
    /// Cold runs per case.
    pub cold_runs: usize,
    /// Warm rotations per case and path.
    pub warm: usize,
    /// Logins per transport.
    pub logins: usize,
    /// The Lambda binary.
    pub lambda_bin: PathBuf,
    /// Its build profile.
    pub lambda_profile: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        cold_runs: 5,
        warm: 30,
        logins: 30,
        lambda_bin: std::env::current_exe()?
            .parent()
            .context("the bench binary has a directory")?
            .join("rds-postgres"),
        lambda_profile: "release".into(),
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> anyhow::Result<usize> {
        v.and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .with_context(|| format!("{flag} takes a positive number\n{USAGE}"))
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
            "--lambda-bin" => {
                args.lambda_bin = it.next().context("--lambda-bin takes a path")?.into();
            }
            "--lambda-profile" => {
                args.lambda_profile = it.next().context("--lambda-profile takes a name")?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !args.lambda_bin.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p rotation-lambda --bin rds-postgres) or pass --lambda-bin",
            args.lambda_bin.display()
        );
    }
    Ok(args)
}

fn progress(what: &str) {
    eprintln!("rotation-bench: {what}");
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    progress("starting moto and two PostgreSQL clusters (plaintext, TLS)");
    let lab = rt.block_on(Lab::start())?;
    let mut results = Results::new(&args, &lab)?;

    for db in lab.dbs() {
        progress(&format!("{} logins x {}", db.label(), args.logins));
        let (first, times) = rt.block_on(floor::logins(&lab, db, args.logins))?;
        results.logins.push((db.tls, first, times));
    }

    progress(&format!("Secrets Manager calls x {}", args.logins));
    results.store_calls = rt.block_on(floor::store_calls(&lab, args.logins))?;

    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        for db in lab.dbs() {
            let case = format!("{strategy} {}", db.label());
            let short = match strategy {
                Strategy::SingleUser => "single",
                Strategy::AlternatingUsers => "alt",
            };
            let tag = format!("{short}_{}", db.label().to_ascii_lowercase());
            let mut scenario = Scenario::new(strategy, db.tls);

            progress(&format!("{case}: floor x {}", args.warm));
            scenario.floor = rt.block_on(floor::run(&lab, db, strategy, args.warm))?;

            let subject = rt.block_on(lab.subject(db, &format!("cold_{tag}"), strategy))?;
            for i in 1..=args.cold_runs {
                progress(&format!("{case}: cold run {i}/{}", args.cold_runs));
                let sample = cold::run(&rt, &lab, db, &subject, &args.lambda_bin)
                    .with_context(|| format!("cold run of {case}"))?;
                scenario.cold.push(sample);
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
    Ok(())
}
