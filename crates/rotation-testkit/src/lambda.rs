//! A Lambda function on 127.0.0.1, as moto invokes it: [`LambdaService`] runs a function binary
//! against a [`RuntimeApi`] of its own and serves Lambda's Invoke call
//! (`POST /2015-03-31/functions/<name>/invocations`, where `scripts/moto_server.py` forwards
//! moto's invocations), handing each event to the function and its answer back: `200` with the
//! function's response, `500` with its error. One invocation at a time, as RotateSecret makes
//! them. The binary is one the tests already built: nothing is compiled at test time. A
//! function that exits, or does not answer within two minutes, fails the invocation at once
//! with its exit status and the end of its output.

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::runtime_api::{Invocation, Report, RuntimeApi, read_request, respond};

/// How long one invocation may run here (a rotation step of the tests takes seconds; Lambda's
/// own limit is 900 s).
const INVOCATION_LIMIT: Duration = Duration::from_secs(120);

/// A function binary behind Lambda's Invoke call; killed on drop.
#[derive(Debug)]
pub struct LambdaService {
    name: String,
    addr: SocketAddr,
    runtime_api: String,
    api: Arc<Mutex<RuntimeApi>>,
    arn: String,
    ids: Arc<AtomicU64>,
    function: Arc<Function>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

/// The function's process and where its output goes.
#[derive(Debug)]
struct Function {
    child: Mutex<Option<Child>>,
    output: PathBuf,
}

impl Function {
    /// The process, now the caller's to end.
    fn take(&self) -> Option<Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Why the function can no longer answer, if it exited: its status and the end of its
    /// output.
    fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let status = child.as_mut()?.try_wait().ok()??;
        let output = std::fs::read_to_string(&self.output).unwrap_or_default();
        let tail: String = output
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        Some(format!(
            "the function exited ({status}); its output ends:\n{tail}"
        ))
    }
}

impl LambdaService {
    /// Serves Invoke for function `name` on a free 127.0.0.1 port; invocations wait for the
    /// function ([`LambdaService::start`]).
    pub fn new(name: &str) -> io::Result<LambdaService> {
        let api = RuntimeApi::start()?;
        let runtime_api = api.address();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let api = Arc::new(Mutex::new(api));
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
        let stop_flag = stop.clone();
        let ids = Arc::new(AtomicU64::new(0));
        let dir = tempfile::Builder::new()
            .prefix("rotation-lambda-")
            .tempdir()?;
        let function = Arc::new(Function {
            child: Mutex::new(None),
            output: dir.path().join("output.log"),
        });
        let served = function.clone();
        let (own_api, own_arn, own_ids) = (api.clone(), arn.clone(), ids.clone());
        thread::Builder::new()
            .name("lambda-invoke".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (api, arn, ids, function) =
                        (api.clone(), arn.clone(), ids.clone(), served.clone());
                    let _ = thread::Builder::new()
                        .name("lambda-invoke-conn".into())
                        .spawn(move || {
                            let _ = serve(stream, &api, &arn, &ids, &function);
                        });
                }
            })?;
        Ok(LambdaService {
            name: name.to_string(),
            addr,
            runtime_api,
            api: own_api,
            arn: own_arn,
            ids: own_ids,
            function,
            stop,
            _dir: dir,
        })
    }

    /// Starts `binary` as the function, with `env` (its configuration) and nothing else of
    /// this process's environment but `PATH`; its output (stdout and stderr) goes to a file
    /// whose end a failed invocation reports.
    pub fn start(&mut self, binary: &Path, env: &[(String, String)]) -> io::Result<()> {
        self.start_under(&[], binary, env)
    }

    /// [`LambdaService::start`] with `binary` run by `wrapper` (a program and its arguments,
    /// `valgrind --tool=callgrind ...`, say); an empty wrapper runs it directly.
    pub fn start_under(
        &mut self,
        wrapper: &[&str],
        binary: &Path,
        env: &[(String, String)],
    ) -> io::Result<()> {
        let output = std::fs::File::create(&self.function.output)?;
        let mut cmd = match wrapper {
            [] => Command::new(binary),
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &self.runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        let program = wrapper.first().map_or(binary, Path::new);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("starting {}: {e}", program.display()))
        })?;
        *self
            .function
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// Ends the function with SIGTERM (a wrapper such as valgrind then writes what it
    /// collected) and waits for it; its exit status. An error when it had already exited (with
    /// that status) or was not started; killed outright when the signal cannot be sent.
    pub fn stop(&self) -> io::Result<std::process::ExitStatus> {
        let Some(mut child) = self.function.take() else {
            return Err(io::Error::other("the function was not started"));
        };
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "the function had already exited ({status})"
            )));
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!("SIGTERM to the function: {e}")));
        }
        child.wait()
    }

    /// Hands `event` to the function directly, as Lambda would with an invocation of at most
    /// `limit` (its `Lambda-Runtime-Deadline-Ms`); its answer: `Ok` with the response, `Err`
    /// with the error it reported (or why there was none).
    pub fn invoke(&self, event: &str, limit: Duration) -> Result<String, String> {
        match invoke(
            &self.api,
            &self.arn,
            &self.ids,
            &self.function,
            event.to_string(),
            limit,
        ) {
            ("200 OK", body) => Ok(body),
            (_, body) => Err(body),
        }
    }

    /// What the function wrote so far (its log lines, stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.function.output).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`: where moto forwards invocations (`LAMBDA_FORWARD_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LambdaService {
    fn drop(&mut self) {
        if let Some(mut child) = self.function.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Serves Invoke calls on one connection.
fn serve(
    stream: TcpStream,
    api: &Mutex<RuntimeApi>,
    arn: &str,
    ids: &AtomicU64,
    function: &Function,
) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let is_invoke = req.method == "POST"
            && req.path.starts_with("/2015-03-31/functions/")
            && req.path.ends_with("/invocations");
        if !is_invoke {
            respond(
                &mut writer,
                "404 Not Found",
                &[],
                r#"{"message":"not Invoke"}"#,
            );
            continue;
        }
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let (status, answer) = invoke(api, arn, ids, function, body, INVOCATION_LIMIT);
        respond(&mut writer, status, &[], &answer);
    }
    Ok(())
}

/// Hands `event` to the function; its answer as an HTTP status and body.
fn invoke(
    api: &Mutex<RuntimeApi>,
    arn: &str,
    ids: &AtomicU64,
    function: &Function,
    event: String,
    limit: Duration,
) -> (&'static str, String) {
    let api = api.lock().unwrap_or_else(|e| e.into_inner());
    let request_id = format!(
        "00000000-0000-4000-8000-{:012x}",
        ids.fetch_add(1, Ordering::SeqCst)
    );
    let deadline = SystemTime::now() + limit;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    if let Err(e) = api.invoke(Invocation {
        request_id: request_id.clone(),
        body: event,
        deadline_ms,
        function_arn: arn.to_string(),
    }) {
        return ("500 Internal Server Error", error_body(&e.to_string()));
    }
    let started = std::time::Instant::now();
    loop {
        match api.report(Duration::from_millis(500)) {
            Ok(Report::Next(_)) => {}
            Ok(Report::Response {
                request_id: id,
                body,
                ..
            }) if id == request_id => return ("200 OK", body),
            Ok(Report::Error {
                request_id: id,
                body,
            }) if id == request_id => return ("500 Internal Server Error", body),
            Ok(Report::Other { path, body }) => {
                return (
                    "500 Internal Server Error",
                    error_body(&format!("the function called {path}: {body}")),
                );
            }
            Ok(_) => {}
            Err(_) => {
                if let Some(why) = function.exited() {
                    return ("500 Internal Server Error", error_body(&why));
                }
                if started.elapsed() > limit {
                    return (
                        "500 Internal Server Error",
                        error_body(&format!("no answer within {limit:?}")),
                    );
                }
            }
        }
    }
}

fn error_body(message: &str) -> String {
    serde_json::json!({"errorType": "TestkitLambda", "errorMessage": message}).to_string()
}
