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
}

/// Kills the function if the bench bails out early.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn children_cpu() -> anyhow::Result<(f64, f64)> {
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
fn environment(lab: &Lab, db: &Db, strategy: Strategy, api: &str) -> Vec<(String, String)> {
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
        ("AWS_LAMBDA_LOG_LEVEL", "warn"),
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

/// One cold rotation of `subject` by `bin` (the function of `db`'s engine), verified afterwards.
pub fn run(
    rt: &Runtime,
    lab: &Lab,
    db: &Db,
    subject: &Subject,
    bin: &Path,
) -> anyhow::Result<ColdSample> {
    let token = uuid::Uuid::new_v4().to_string();
    let before = rt.block_on(lab.current(&subject.arn))?;
    rt.block_on(lab.start_rotation(db, &subject.arn, &token))?;

    let api = RuntimeApi::start()?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("function.log");
    let out = fs::File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(environment(lab, db, subject.strategy, &api.address()))
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
    let mut last = ready;
    for (i, step) in STEPS.iter().enumerate() {
        if i > 0 {
            wait_next(&api, &mut f, &log)?;
        }
        let request_id = format!("{}-{i}", &token[..8]);
        let body = json!({"Step": step, "SecretId": subject.arn, "ClientRequestToken": token});
        let sent = Instant::now();
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
    })
}
