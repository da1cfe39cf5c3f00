//! Cold rotations: a fresh process of the engine's built Lambda binary (named for its
//! function, `rds-postgres`, `rds-mysql`, ...) per rotation, served the four step events one after another through [`RuntimeApi`], as Lambda would after
//! Secrets Manager's RotateSecret made the pending stub.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::sys::resource::{UsageWho, getrusage};
use rotation_core::Strategy;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::lab::{Connections, Db, Lab, Subject};
use rotation_testkit::runtime_api::{Invocation, Report, RuntimeApi};

/// The four steps, in Secrets Manager's order.
pub const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// The outcome each step must report in a fresh rotation.
const EXPECTED: [fn(&str) -> bool; 4] = [
    |o| o == "PendingCreated",
    |o| o.starts_with("PasswordSet"),
    |o| o == "Tested",
    |o| o == "Promoted",
];

const WAIT: Duration = Duration::from_secs(60);

/// One cold rotation.
#[derive(Debug, Clone)]
pub struct ColdSample {
    /// Process start to the first `next` request (ms).
    pub ready: f64,
    /// Process start to the last step's response (ms).
    pub result: f64,
    /// Each step, event handed over to response (ms).
    pub steps: [f64; 4],
    /// CPU user time of the process (ms).
    pub user: f64,
    /// CPU system time of the process (ms).
    pub sys: f64,
    /// `VmHWM` right after the last response (KiB).
    pub hwm_kib: u64,
    /// TCP connections during the rotation.
    pub connections: Connections,
    /// Each store call and engine operation, in order ([`Mode::Traced`] only).
    pub calls: Vec<Call>,
    /// Instructions the function ran, start to exit, and its top functions by instructions
    /// (self), as `callgrind_annotate` lists them ([`Mode::Callgrind`] only).
    pub instructions: Option<(u64, Vec<String>)>,
}

/// How a cold run is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Measured as deployed.
    Measured,
    /// With each call's timing logged ([`ColdSample::calls`]).
    Traced,
    /// Under `valgrind --tool=callgrind` ([`ColdSample::instructions`]); its times and memory
    /// are valgrind's.
    Callgrind,
}

/// The total instructions of a callgrind output file, and its top functions.
fn instructions_of(out: &Path) -> anyhow::Result<(u64, Vec<String>)> {
    let text = fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no totals in the callgrind output")?;
    let annotate = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg(out)
        .output()
        .context("callgrind_annotate")?;
    let listing = String::from_utf8_lossy(&annotate.stdout);
    let top = listing
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.chars().next().is_some_and(|c| c.is_ascii_digit())
                && l.contains('(')
                && !l.contains("PROGRAM TOTALS")
        })
        .take(12)
        .map(|l| l.trim().to_string())
        .collect();
    Ok((total, top))
}

/// One Secrets Manager call or engine operation of a traced cold rotation, as the function
/// logged it (`rotation_core::calls`).
#[derive(Debug, Clone)]
pub struct Call {
    /// The step (index into [`STEPS`]).
    pub step: usize,
    /// Its name: the API operation, or the rotator's (`login`, `set_password_as_master`, ...).
    pub name: String,
    /// Its start, from the step's event being handed over (ms).
    pub start: f64,
    /// Its length (ms).
    pub ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The calls the function logged in `log`, placed in the steps that began at `step_starts`
/// (microseconds since the Unix epoch).
fn calls_of(log: &Path, step_starts: &[u64; 4]) -> Vec<Call> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut calls: Vec<Call> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            // The function's JSON lines carry no target: a call is its message and fields.
            let f = if v["fields"].is_object() {
                &v["fields"]
            } else {
                &v
            };
            if f["message"] != rotation_core::calls::MESSAGE {
                return None;
            }
            let at = f["at_us"].as_u64()?;
            let step = step_starts.iter().rposition(|s| *s <= at)?;
            Some(Call {
                step,
                name: f["call"].as_str()?.to_string(),
                start: (at - step_starts[step]) as f64 / 1000.0,
                ms: f["us"].as_u64()? as f64 / 1000.0,
                ok: f["ok"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    calls.sort_by(|a, b| (a.step, a.start).partial_cmp(&(b.step, b.start)).unwrap());
    calls
}

/// Kills the function if the bench bails out early.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn children_cpu() -> anyhow::Result<(f64, f64)> {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1000.0 + t.tv_usec() as f64 / 1000.0;
    Ok((ms(u.user_time()), ms(u.system_time())))
}

fn vm_hwm_kib(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn output_of(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits for the function's next `next` request.
fn wait_next(api: &RuntimeApi, f: &mut Function, log: &Path) -> anyhow::Result<Instant> {
    let give_up = Instant::now() + WAIT;
    loop {
        if let Some(status) = f.0.try_wait()? {
            bail!(
                "the function exited ({status}) before asking for an event:\n{}",
                output_of(log)
            );
        }
        match api.report(Duration::from_millis(50)) {
            Ok(Report::Next(at)) => return Ok(at),
            Ok(Report::Other { path, body }) => {
                bail!("the function called {path}: {body}\n{}", output_of(log))
            }
            Ok(other) => bail!("unexpected report while waiting for `next`: {other:?}"),
            Err(_) if Instant::now() < give_up => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The environment the function gets (and nothing else from the bench's own).
pub(crate) fn environment(
    lab: &Lab,
    db: &Db,
    strategy: Strategy,
    api: &str,
    trace: bool,
) -> Vec<(String, String)> {
    let strategy = match strategy {
        Strategy::SingleUser => "single-user",
        Strategy::AlternatingUsers => "alternating-users",
    };
    let function = db.engine.engine().function_name;
    let log_group = format!("/aws/lambda/{function}");
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", api),
        ("ROTATION_STRATEGY", strategy),
        // As the deployment templates set it.
        ("ROTATION_ENGINE", function),
        ("SECRETS_MANAGER_ENDPOINT", &lab.moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", &log_group),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        (
            "AWS_LAMBDA_LOG_LEVEL",
            if trace {
                "warn,rotation::calls=debug"
            } else {
                "warn"
            },
        ),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("TZ", ":UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(ca) = db.ca_pem() {
        env.push(("CA_BUNDLE_PATH".into(), ca.display().to_string()));
    }
    env
}

/// One cold rotation of `subject` by `bin` (the function of `db`'s engine), verified
/// afterwards, made as `mode` says.
pub fn run(
    rt: &Runtime,
    lab: &Lab,
    db: &Db,
    subject: &Subject,
    bin: &Path,
    mode: Mode,
) -> anyhow::Result<ColdSample> {
    let token = uuid::Uuid::new_v4().to_string();
    let before = rt.block_on(lab.current(&subject.arn))?;
    rt.block_on(lab.start_rotation(db, &subject.arn, &token))?;

    let api = RuntimeApi::start()?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("function.log");
    let out = fs::File::create(&log)?;
    let trace = mode == Mode::Traced;
    let callgrind_out = dir.path().join("callgrind.out");
    let mut cmd = if mode == Mode::Callgrind {
        let mut c = Command::new("valgrind");
        c.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", callgrind_out.display()))
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.env_clear()
        .envs(environment(
            lab,
            db,
            subject.strategy,
            &api.address(),
            trace,
        ))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);

    let opened_before = db.connections();
    let cpu_before = children_cpu()?;
    let start = Instant::now();
    let mut f = Function(
        cmd.spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let ready = wait_next(&api, &mut f, &log)?;
    let mut steps = [0.0; 4];
    let mut step_starts = [0u64; 4];
    let mut last = ready;
    for (i, step) in STEPS.iter().enumerate() {
        if i > 0 {
            wait_next(&api, &mut f, &log)?;
        }
        let request_id = format!("{}-{i}", &token[..8]);
        let body = json!({"Step": step, "SecretId": subject.arn, "ClientRequestToken": token});
        let sent = Instant::now();
        step_starts[i] = epoch_us();
        api.invoke(Invocation {
            request_id: request_id.clone(),
            body: body.to_string(),
            deadline_ms: epoch_ms() + 60_000,
            function_arn: db.function_arn.clone(),
        })?;
        loop {
            match api.report(WAIT)? {
                Report::Response {
                    request_id: id,
                    body,
                    at,
                } if id == request_id => {
                    steps[i] = ms(at - sent);
                    last = at;
                    let outcome = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["outcome"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    if !EXPECTED[i](&outcome) {
                        bail!("{step} answered {body}: not a fresh rotation");
                    }
                    break;
                }
                Report::Error { request_id, body } => {
                    bail!("{step} ({request_id}) failed: {body}\n{}", output_of(&log))
                }
                Report::Other { path, body } => bail!("the function called {path}: {body}"),
                Report::Next(_) | Report::Response { .. } => {}
            }
        }
    }
    let hwm_kib = vm_hwm_kib(f.0.id())?;
    if mode == Mode::Callgrind {
        // A fatal signal, not a kill: valgrind writes the profile as the function ends.
        Command::new("kill")
            .arg("-TERM")
            .arg(f.0.id().to_string())
            .status()
            .context("kill -TERM")?;
        f.0.wait()?;
    }
    drop(f);
    let cpu_after = children_cpu()?;
    let connections = db.connections_since(opened_before);
    drop(api);
    rt.block_on(lab.verify(db, subject, &token, &before))?;
    Ok(ColdSample {
        ready: ms(ready - start),
        result: ms(last - start),
        steps,
        user: cpu_after.0 - cpu_before.0,
        sys: cpu_after.1 - cpu_before.1,
        hwm_kib,
        connections,
        calls: if trace {
            let calls = calls_of(&log, &step_starts);
            if calls.is_empty() {
                bail!(
                    "the traced run logged no call (rotation::calls at DEBUG):\n{}",
                    output_of(&log)
                );
            }
            calls
        } else {
            Vec::new()
        },
        instructions: if mode == Mode::Callgrind {
            keep_profile(&callgrind_out, &subject.arn, bin)?;
            Some(instructions_of(&callgrind_out)?)
        } else {
            None
        },
    })
}

/// `ROTATION_BENCH_PROFILES`: a directory where each callgrind profile is kept (named by the
/// function and the secret), for `callgrind_annotate --inclusive=yes` or a call tree.
pub const PROFILES_ENV: &str = "ROTATION_BENCH_PROFILES";

fn keep_profile(profile: &Path, secret: &str, bin: &Path) -> anyhow::Result<()> {
    let Some(dir) = std::env::var_os(PROFILES_ENV).filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let dir = Path::new(&dir);
    fs::create_dir_all(dir)?;
    let function = bin
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("function");
    let secret: String = secret
        .rsplit(':')
        .next()
        .unwrap_or(secret)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let kept = dir.join(format!("callgrind.{function}.{secret}"));
    fs::copy(profile, &kept).with_context(|| format!("keep the profile as {}", kept.display()))?;
    Ok(())
}
