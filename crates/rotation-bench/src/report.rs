//! Medians, percentiles and the Markdown tables, with the issue's targets beside the figures.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;

use rotation_core::Strategy;

use crate::Args;
use crate::cold::ColdSample;
use crate::counting::{Counts, api_calls};
use crate::floor::FloorSample;
use crate::lab::{Connections, Db, Lab};
use crate::warm::WarmSample;

/// Median, p95 (nearest rank), min, max.
#[derive(Debug, Clone, Copy)]
pub struct Dist {
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Dist {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return Dist {
                median: f64::NAN,
                p95: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Dist {
            median,
            p95: v[rank - 1],
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// One strategy on one transport of one engine.
#[derive(Debug)]
pub struct Scenario {
    pub engine: &'static str,
    pub strategy: Strategy,
    pub tls: bool,
    /// The floor's Secrets Manager calls.
    pub floor_calls: u64,
    pub floor: Vec<FloorSample>,
    /// The floor, each rotation a fresh process.
    pub floor_cold: Vec<FloorSample>,
    pub cold: Vec<ColdSample>,
    /// One more cold run, with each call's timing logged.
    pub traced: Option<ColdSample>,
    /// One more cold run under callgrind (`--callgrind`).
    pub callgrind: Option<ColdSample>,
    pub lambda: Vec<WarmSample>,
    pub driver: Vec<WarmSample>,
}

impl Scenario {
    pub fn new(db: &Db, strategy: Strategy) -> Scenario {
        Scenario {
            engine: db.engine.name(),
            strategy,
            tls: db.tls,
            floor_calls: crate::floor::store_calls(db, strategy),
            floor: vec![],
            floor_cold: vec![],
            cold: vec![],
            traced: None,
            callgrind: None,
            lambda: vec![],
            driver: vec![],
        }
    }
    pub fn name(&self) -> String {
        format!(
            "{} | {} | {}",
            short(self.strategy),
            transport(self.tls),
            self.engine
        )
    }
    fn floor_median(&self) -> f64 {
        Dist::of(self.floor.iter().map(|s| s.total)).median
    }
    fn cold_floor_median(&self) -> f64 {
        Dist::of(self.floor_cold.iter().map(|s| s.total)).median
    }
}

fn short(s: Strategy) -> &'static str {
    match s {
        Strategy::SingleUser => "single",
        Strategy::AlternatingUsers => "alternating",
    }
}

fn transport(tls: bool) -> &'static str {
    if tls { "TLS verify-full" } else { "plain" }
}

/// Everything measured.
#[derive(Debug)]
pub struct Results {
    facts: Vec<(String, String)>,
    /// Login times by engine and transport (TLS?): the process's first, then the rest.
    pub logins: Vec<(&'static str, bool, f64, Vec<f64>)>,
    /// TCP connections one login opens, by engine and transport.
    pub connections_per_login: Vec<(&'static str, bool, f64)>,
    /// DescribeSecret and GetSecretValue times.
    pub store_calls: (Vec<f64>, Vec<f64>),
    pub scenarios: Vec<Scenario>,
    args: Args,
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix(key).map(|v| {
            v.trim_start_matches([' ', '\t', ':', '='])
                .trim()
                .to_string()
        })
    })
}

impl Results {
    pub fn new(args: &Args, lab: &Lab) -> anyhow::Result<Results> {
        let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_kib: f64 = first_line_with("/proc/meminfo", "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(f64::NAN);
        let mut binaries = Vec::new();
        for engine in &args.engines {
            let size = fs::metadata(args.lambda_bin(*engine))?.len() as f64 / (1024.0 * 1024.0);
            binaries.push(format!("`{}` {size:.1} MiB", engine.engine().function_name));
        }
        let moto = lab
            .moto
            .python("import moto; print(moto.__version__)")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("? ({e})"));
        let mut facts = vec![
            ("nproc".into(), nproc.to_string()),
            (
                "CPU".into(),
                first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
            ),
            ("memory".into(), format!("{:.1} GiB", mem_kib / 1048576.0)),
            (
                "OS".into(),
                first_line_with("/etc/os-release", "PRETTY_NAME")
                    .map(|s| s.trim_matches('"').to_string())
                    .unwrap_or_else(|| "?".into()),
            ),
            (
                "kernel".into(),
                fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
            ),
            ("moto".into(), moto),
            (
                "Lambda binaries".into(),
                format!("{}, profile `{}`", binaries.join(", "), args.lambda_profile),
            ),
            (
                "runs".into(),
                format!(
                    "cold {} per case (medians), warm {} per case and path (after 1 warm-up), floor {}, logins {}",
                    args.cold_runs, args.warm, args.warm, args.logins
                ),
            ),
        ];
        for db in lab.dbs().iter().filter(|db| !db.tls) {
            let mut server = db.server.version();
            if let Some(note) = db.engine.stand_in() {
                server = format!("{server}: {note}");
            }
            facts.push((format!("{} server", db.engine), server));
        }
        facts.push((
            "network".into(),
            "every secret names a counting TCP proxy (the testkit's, on 127.0.0.1) in front of its server, which adds a little latency to every round trip, the floor's as much as the rotation's".into(),
        ));
        Ok(Results {
            facts,
            logins: vec![],
            connections_per_login: vec![],
            store_calls: (vec![], vec![]),
            scenarios: vec![],
            args: args.clone(),
        })
    }

    fn login_median(&self, engine: &str, tls: bool) -> f64 {
        self.logins
            .iter()
            .find(|(e, t, _, _)| *e == engine && *t == tls)
            .map_or(f64::NAN, |(_, _, _, v)| Dist::of(v.iter().copied()).median)
    }

    /// TCP connections one login of `engine` opens (1 unless the driver opens more).
    fn per_login(&self, engine: &str, tls: bool) -> f64 {
        self.connections_per_login
            .iter()
            .find(|(e, t, _)| *e == engine && *t == tls)
            .map_or(1.0, |(_, _, n)| n.max(1.0))
    }

    pub fn scenario(&self, engine: &str, strategy: Strategy, tls: bool) -> Option<&Scenario> {
        self.scenarios
            .iter()
            .find(|s| s.engine == engine && s.strategy == strategy && s.tls == tls)
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let w = &mut o;
        let _ = writeln!(w, "## Machine\n\n| what | value |\n|---|---|");
        for (k, v) in &self.facts {
            let _ = writeln!(w, "| {k} | {v} |");
        }

        let _ = writeln!(
            w,
            "\n## Login time (the engine's own login, testSecret's statement, close; {} logins after the process's first)\n\n| transport | engine | median ms | p95 ms | min ms | max ms | first login of the process ms | TCP connections per login |\n|---|---|---:|---:|---:|---:|---:|---:|",
            self.args.logins
        );
        for (engine, tls, first, times) in &self.logins {
            let d = Dist::of(times.iter().copied());
            let _ = writeln!(
                w,
                "| {} | {engine} | {:.1} | {:.1} | {:.1} | {:.1} | {first:.1} | {:.0} |",
                transport(*tls),
                d.median,
                d.p95,
                d.min,
                d.max,
                self.per_login(engine, *tls)
            );
        }

        let (describe, get) = (
            Dist::of(self.store_calls.0.iter().copied()),
            Dist::of(self.store_calls.1.iter().copied()),
        );
        let _ = writeln!(
            w,
            "\n## One Secrets Manager call to moto (through the store; {} of each after 1 warm-up)\n\n| operation | median ms | p95 ms | min ms | max ms |\n|---|---:|---:|---:|---:|",
            self.store_calls.0.len()
        );
        for (op, d) in [("DescribeSecret", describe), ("GetSecretValue", get)] {
            let _ = writeln!(
                w,
                "| {op} | {:.1} | {:.1} | {:.1} | {:.1} |",
                d.median, d.p95, d.min, d.max
            );
        }

        let _ = writeln!(
            w,
            "\n## Cold: a fresh process of the engine's function per rotation, four step events through the local Runtime API (median of {})\n\n\
             | strategy | transport | engine | start to ready ms | start to result ms | createSecret | setSecret | testSecret | finishSecret | CPU user+sys ms (user / sys) | peak RSS MiB | TCP connections | cold floor ms (CPU ms) | result / cold floor |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            self.args.cold_runs
        );
        for s in &self.scenarios {
            let m = |f: &dyn Fn(&ColdSample) -> f64| Dist::of(s.cold.iter().map(f)).median;
            let result = m(&|c| c.result);
            let _ = writeln!(
                w,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} ({:.1} / {:.1}) | {:.1} | {} | {:.1} ({:.1}) | {:.2}x |",
                s.name(),
                m(&|c| c.ready),
                result,
                m(&|c| c.steps[0]),
                m(&|c| c.steps[1]),
                m(&|c| c.steps[2]),
                m(&|c| c.steps[3]),
                m(&|c| c.user + c.sys),
                m(&|c| c.user),
                m(&|c| c.sys),
                m(&|c| c.hwm_kib as f64 / 1024.0),
                conn_text(s.cold.iter().map(|c| c.connections)),
                s.cold_floor_median(),
                Dist::of(s.floor_cold.iter().map(|f| f.cpu)).median,
                result / s.cold_floor_median(),
            );
        }

        let _ = writeln!(
            w,
            "\n## Warm, Lambda path: RotateSecret makes the stub (not timed), then `Rotation::handle` per step; {} rotations in one process\n\n\
             | strategy | transport | engine | rotation median ms | p95 ms | createSecret med / p95 | setSecret med / p95 | testSecret med / p95 | finishSecret med / p95 | Secrets Manager calls | TCP connections | floor median ms | over the floor |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            self.args.warm
        );
        for s in &self.scenarios {
            let d = Dist::of(s.lambda.iter().map(|x| x.total));
            let step = |k: usize| {
                let d = Dist::of(s.lambda.iter().filter_map(|x| x.steps.map(|st| st[k])));
                format!("{:.1} / {:.1}", d.median, d.p95)
            };
            let floor = s.floor_median();
            let _ = writeln!(
                w,
                "| {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {:.1} | {:+.0}% |",
                s.name(),
                d.median,
                d.p95,
                step(0),
                step(1),
                step(2),
                step(3),
                range_text(s.lambda.iter().map(|x| api_calls(&x.calls))),
                conn_text(s.lambda.iter().map(|x| x.connections)),
                floor,
                (d.median / floor - 1.0) * 100.0
            );
        }

        let _ = writeln!(
            w,
            "\n## Warm, driver: `Rotation::rotate` (the `rotate` command's path; it makes the pending version itself); {} rotations in one process\n\n\
             | strategy | transport | engine | rotation median ms | p95 ms | Secrets Manager calls | TCP connections | over the floor |\n\
             |---|---|---|---:|---:|---:|---:|---:|",
            self.args.warm
        );
        for s in &self.scenarios {
            let d = Dist::of(s.driver.iter().map(|x| x.total));
            let _ = writeln!(
                w,
                "| {} | {:.1} | {:.1} | {} | {} | {:+.0}% |",
                s.name(),
                d.median,
                d.p95,
                range_text(s.driver.iter().map(|x| api_calls(&x.calls))),
                conn_text(s.driver.iter().map(|x| x.connections)),
                (d.median / s.floor_median() - 1.0) * 100.0
            );
        }

        let _ = writeln!(
            w,
            "\n## Floor: the calls the four invocations require, in a plain loop ({} iterations)\n\n\
             The contract's calls (the store client and the engine's own operations, four invocations, each re-reading what it needs): createSecret: DescribeSecret, GetSecretValue (AWSCURRENT), GetRandomPassword, PutSecretValue; setSecret: DescribeSecret, GetSecretValue of the pending version and of AWSCURRENT (and of the master, where the master makes the change), one login and the change (`set_own_password` / `set_password_as_master`); testSecret: DescribeSecret, GetSecretValue of the pending version, a login with it and testSecret's statement (`test_session`); finishSecret: DescribeSecret, UpdateSecretVersionStage (and, for an engine whose single user keeps the old password until then, GetSecretValue of the master, a login as it and the drop). Warm here; the cold table's floor makes the same calls in a fresh process per rotation (the bench's own binary, with the function's environment and SDK configuration).\n\n\
             | strategy | transport | engine | median ms | p95 ms | Secrets Manager calls | TCP connections |\n|---|---|---|---:|---:|---:|---:|",
            self.args.warm
        );
        for s in &self.scenarios {
            let d = Dist::of(s.floor.iter().map(|x| x.total));
            let _ = writeln!(
                w,
                "| {} | {:.1} | {:.1} | {} | {} |",
                s.name(),
                d.median,
                d.p95,
                s.floor_calls,
                conn_text(s.floor.iter().map(|x| x.connections))
            );
        }

        self.render_overhead(w);
        self.render_connections(w);
        self.render_calls(w);
        self.render_timeline(w);
        self.render_instructions(w);
        self.render_targets(w);
        o
    }

    /// The warm Lambda path's time over the floor, against what its extra store calls and
    /// logins cost at the medians measured above.
    fn render_overhead(&self, w: &mut String) {
        let call = Dist::of(
            self.store_calls
                .0
                .iter()
                .chain(&self.store_calls.1)
                .copied(),
        )
        .median;
        let _ = writeln!(
            w,
            "\n## Where the warm Lambda path's time over the floor goes\n\n\
             Extra calls and logins (failed ones included) priced at the medians above (one store call {call:.1} ms; one login as in the login table, its connections as counted there).\n\n\
             | strategy | transport | engine | over the floor ms | extra store calls | extra logins | their price ms | rest ms |\n|---|---|---|---:|---:|---:|---:|---:|"
        );
        for s in &self.scenarios {
            let over = Dist::of(s.lambda.iter().map(|x| x.total)).median - s.floor_median();
            let floor_calls = s.floor_calls as f64;
            let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let calls = mean(
                s.lambda
                    .iter()
                    .map(|x| api_calls(&x.calls) as f64)
                    .collect(),
            ) - floor_calls;
            let logins = (mean(
                s.lambda
                    .iter()
                    .map(|x| x.connections.opened as f64)
                    .collect(),
            ) - mean(
                s.floor
                    .iter()
                    .map(|x| x.connections.opened as f64)
                    .collect(),
            )) / self.per_login(s.engine, s.tls);
            let price = calls * call + logins * self.login_median(s.engine, s.tls);
            let _ = writeln!(
                w,
                "| {} | {over:.1} | {calls:.0} | {logins:.0} | {price:.1} | {:.1} |",
                s.name(),
                over - price
            );
        }
    }

    /// TCP connections per rotation and the most held open at once, counted by the proxy in
    /// front of each server.
    fn render_connections(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "\n## TCP connections (counted by the proxy in front of each server)\n\n\
             Per rotation, on each path; peak: the most open at once during the rotation (the bench's own check afterwards is not counted). A login of a driver that also opens a monitoring connection counts two (see the login table).\n\n\
             | strategy | transport | engine | per rotation, cold | warm Lambda path | driver | floor | peak open at once (cold / warm) |\n|---|---|---|---:|---:|---:|---:|---:|"
        );
        for s in &self.scenarios {
            let opened = |v: &mut dyn Iterator<Item = Connections>| range_text(v.map(|c| c.opened));
            let peak = |v: &mut dyn Iterator<Item = Connections>| range_text(v.map(|c| c.peak));
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} / {} |",
                s.name(),
                opened(&mut s.cold.iter().map(|x| x.connections)),
                opened(&mut s.lambda.iter().map(|x| x.connections)),
                opened(&mut s.driver.iter().map(|x| x.connections)),
                opened(&mut s.floor.iter().map(|x| x.connections)),
                peak(&mut s.cold.iter().map(|x| x.connections)),
                peak(&mut s.lambda.iter().map(|x| x.connections)),
            );
        }
    }

    /// Where one cold rotation's time goes: each step's calls in order, each with its length
    /// and the time since the previous call ended (the step's own work between calls).
    fn render_timeline(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "\n## Where a cold rotation's time goes (one more cold run per case, each call timed by the function: `rotation::calls`)\n\nEach step: its time from the event handed over to its response, then each call as `name length (+gap before it)` in ms; a login includes its TCP connect and its handshakes (TLS, authentication); what is left is the step's own work and the response.\n\n| case | step | ms | calls |\n|---|---|---:|---|"
        );
        for s in &self.scenarios {
            let Some(t) = &s.traced else { continue };
            for (i, step) in crate::cold::STEPS.iter().enumerate() {
                let mut end = 0.0_f64;
                let calls: Vec<String> = t
                    .calls
                    .iter()
                    .filter(|c| c.step == i)
                    .map(|c| {
                        let gap = (c.start - end).max(0.0);
                        end = end.max(c.start + c.ms);
                        format!(
                            "{} {:.1} (+{gap:.1}){}",
                            c.name,
                            c.ms,
                            if c.ok { "" } else { " failed" }
                        )
                    })
                    .collect();
                let _ = writeln!(
                    w,
                    "| {} | {step} | {:.1} | {} (+{:.1} to the response) |",
                    s.name(),
                    t.steps[i],
                    calls.join(", "),
                    (t.steps[i] - end).max(0.0)
                );
            }
        }
    }

    /// Instructions per cold rotation (callgrind: the same for the same binary and inputs,
    /// whatever else the machine runs), beside the measured CPU time, and the top functions.
    fn render_instructions(&self, w: &mut String) {
        if self.scenarios.iter().all(|s| s.callgrind.is_none()) {
            return;
        }
        let _ = writeln!(
            w,
            "\n## Instructions per cold rotation (one more cold run per case under `valgrind --tool=callgrind`: start to exit, the runtime's wait for events included)\n\n| case | instructions (millions) | cold CPU median ms (user + sys) |\n|---|---:|---:|"
        );
        for s in &self.scenarios {
            let Some((total, _)) = s.callgrind.as_ref().and_then(|c| c.instructions.as_ref())
            else {
                continue;
            };
            let cpu = Dist::of(s.cold.iter().map(|c| c.user + c.sys)).median;
            let _ = writeln!(
                w,
                "| {} | {:.1} | {cpu:.1} |",
                s.name(),
                *total as f64 / 1e6
            );
        }
        for s in &self.scenarios {
            let Some((_, top)) = s.callgrind.as_ref().and_then(|c| c.instructions.as_ref()) else {
                continue;
            };
            let _ = writeln!(
                w,
                "\nTop functions by instructions (self), {}:\n\n```text",
                s.name()
            );
            for line in top {
                let _ = writeln!(w, "{line}");
            }
            let _ = writeln!(w, "```");
        }
    }

    fn render_calls(&self, w: &mut String) {
        let mut ops: BTreeSet<&'static str> = BTreeSet::new();
        for s in &self.scenarios {
            for x in s.lambda.iter().chain(&s.driver) {
                ops.extend(x.calls.keys().copied());
            }
        }
        let ops: Vec<&str> = ops.into_iter().collect();
        let _ = writeln!(
            w,
            "\n## Secrets Manager calls per rotation, by operation (counted by a wrapping `SecretStore`)\n\n| path | strategy | transport | engine | {} | total |\n|---|---|---|---|{}---:|",
            ops.join(" | "),
            "---:|".repeat(ops.len())
        );
        for (path, pick) in [
            ("Lambda (`handle` x 4)", true),
            ("driver (`rotate`)", false),
        ] {
            for s in &self.scenarios {
                let samples = if pick { &s.lambda } else { &s.driver };
                let cells: Vec<String> = ops
                    .iter()
                    .map(|op| range_text(samples.iter().map(|x| count(&x.calls, op))))
                    .collect();
                let _ = writeln!(
                    w,
                    "| {path} | {} | {} | {} |",
                    s.name(),
                    cells.join(" | "),
                    range_text(samples.iter().map(|x| api_calls(&x.calls)))
                );
            }
        }
        let _ = writeln!(
            w,
            "\nThe Lambda path leaves out RotateSecret (the service's call that makes the stub). The driver's per-secret claim makes no call on Secrets Manager and is not counted."
        );
    }

    fn render_targets(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "\n## Targets (from the issue)\n\n| target | figure | verdict |\n|---|---:|---|"
        );
        let mut row = |target: String, figure: String, ok: bool| {
            let _ = writeln!(
                w,
                "| {target} | {figure} | {} |",
                if ok { "ok" } else { "**MISS**" }
            );
        };
        for engine in self.args.engines.iter().map(|e| e.name()) {
            let (plain, tls) = (
                self.login_median(engine, false),
                self.login_median(engine, true),
            );
            row(
                format!("TLS login <= plain login + 5 ms, {engine}"),
                format!("{tls:.1} vs {plain:.1} + 5 ms"),
                tls <= plain + 5.0,
            );
        }
        for engine in self.args.engines.iter().map(|e| e.name()) {
            for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
                let (Some(p), Some(t)) = (
                    self.scenario(engine, strategy, false),
                    self.scenario(engine, strategy, true),
                ) else {
                    continue;
                };
                let warm = |s: &Scenario| Dist::of(s.lambda.iter().map(|x| x.total)).median;
                let cold = |s: &Scenario| Dist::of(s.cold.iter().map(|x| x.result)).median;
                for (path, r) in [("warm", warm(t) / warm(p)), ("cold", cold(t) / cold(p))] {
                    row(
                        format!(
                            "TLS rotation <= 1.25x plain, {}, {path}, {engine}",
                            short(strategy),
                        ),
                        format!("{r:.2}x"),
                        r <= 1.25,
                    );
                }
            }
        }
        for s in &self.scenarios {
            let r = Dist::of(s.cold.iter().map(|x| x.result)).median / s.cold_floor_median();
            row(
                format!(
                    "cold start to result <= 1.3x the contract's cold floor, {}",
                    s.name().replace(" | ", " ")
                ),
                format!("{r:.2}x"),
                r <= 1.3,
            );
        }
        for s in &self.scenarios {
            let result = Dist::of(s.cold.iter().map(|x| x.result)).median;
            let limit = if s.tls { 75.0 } else { 60.0 };
            row(
                format!(
                    "cold start to result <= {limit} ms, {}",
                    s.name().replace(" | ", " ")
                ),
                format!("{result:.1} ms"),
                result <= limit,
            );
        }
        for s in &self.scenarios {
            let cpu = Dist::of(s.cold.iter().map(|x| x.user + x.sys)).median;
            let limit = 20.0;
            row(
                format!("cold CPU <= {limit} ms, {}", s.name().replace(" | ", " ")),
                format!("{cpu:.1} ms"),
                cpu <= limit,
            );
        }
        for s in &self.scenarios {
            let rss = Dist::of(s.cold.iter().map(|x| x.hwm_kib as f64 / 1024.0)).median;
            row(
                format!("peak RSS <= 12 MiB, {}", s.name().replace(" | ", " ")),
                format!("{rss:.1} MiB"),
                rss <= 12.0,
            );
        }
        for s in &self.scenarios {
            let limit = match s.strategy {
                Strategy::SingleUser => 4.0,
                Strategy::AlternatingUsers => 5.0,
            };
            let worst = s
                .cold
                .iter()
                .map(|x| x.connections.opened)
                .chain(s.lambda.iter().map(|x| x.connections.opened))
                .max()
                .unwrap_or(0) as f64
                / self.per_login(s.engine, s.tls);
            row(
                format!(
                    "logins (TCP connections / connections per login) per rotation <= {limit}, {}, Lambda path (cold and warm, worst)",
                    s.name().replace(" | ", " ")
                ),
                format!("{worst:.1}"),
                worst <= limit,
            );
        }
        for s in &self.scenarios {
            let worst = s
                .lambda
                .iter()
                .map(|x| api_calls(&x.calls))
                .max()
                .unwrap_or(0);
            row(
                format!(
                    "Secrets Manager calls per rotation on the Lambda path <= 14, {}",
                    s.name().replace(" | ", " ")
                ),
                worst.to_string(),
                worst <= 14,
            );
        }
        for s in &self.scenarios {
            let warm = Dist::of(s.lambda.iter().map(|x| x.total)).median;
            let over = warm / s.floor_median() - 1.0;
            row(
                format!(
                    "warm overhead <= 10% over the floor, {}, Lambda path",
                    s.name().replace(" | ", " ")
                ),
                format!("{:+.0}%", over * 100.0),
                over <= 0.10,
            );
        }
    }
}

fn count(calls: &Counts, op: &str) -> u64 {
    calls.get(op).copied().unwrap_or(0)
}

/// `n`, or `min-max` when the samples differ.
fn range_text(values: impl Iterator<Item = u64>) -> String {
    let v: Vec<u64> = values.collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "-".into(),
    }
}

/// TCP connections opened, `n` or `min-max`.
fn conn_text(values: impl Iterator<Item = Connections>) -> String {
    range_text(values.map(|c| c.opened))
}
