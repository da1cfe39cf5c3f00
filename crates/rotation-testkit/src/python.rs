//! One Python interpreter per server handle for its setup and check snippets (pymongo for
//! SecantusDB), started on the first snippet and kept until the handle drops.
//!
//! Starting the `.venv`'s Python and importing pymongo or boto3 costs about 0.35 s of CPU a
//! time, and the suites run thousands of snippets: each is sent to the running interpreter
//! instead, and runs in a fresh namespace made from what the handle's setup code defined, so a
//! snippet sees nothing an earlier one left behind. The setup code may define `_after`, called
//! after every snippet (the SecantusDB helper closes the clients a snippet opened there).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use crate::{TestkitError, venv_dir};

/// The loop the interpreter runs: one JSON request a line (`code`, `env`), one JSON answer a
/// line (`ok`, `out`: the snippet's standard output, or its traceback).
const LOOP: &str = r#"
import contextlib, io, json, os, sys, traceback
_out = sys.stdout
_base = {"__name__": "__snippet__"}
exec(compile(sys.argv[1], "<setup>", "exec"), _base)
for _line in sys.stdin:
    _req = json.loads(_line)
    _saved = dict(os.environ)
    os.environ.update(_req["env"])
    _buf = io.StringIO()
    _ok = True
    try:
        with contextlib.redirect_stdout(_buf):
            exec(compile(_req["code"], "<snippet>", "exec"), dict(_base))
    except BaseException:
        _ok = False
        _buf.write(traceback.format_exc())
    finally:
        if "_after" in _base:
            _base["_after"]()
        os.environ.clear()
        os.environ.update(_saved)
    _out.write(json.dumps({"ok": _ok, "out": _buf.getvalue()}) + "\n")
    _out.flush()
"#;

/// A Python interpreter that runs snippets after `setup` (started on first use).
#[derive(Debug)]
pub(crate) struct PythonRepl {
    what: &'static str,
    setup: String,
    stderr: PathBuf,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PythonRepl {
    /// `what` names it in errors; the interpreter's standard error goes to `stderr`.
    pub(crate) fn new(what: &'static str, setup: String, stderr: PathBuf) -> PythonRepl {
        PythonRepl {
            what,
            setup,
            stderr,
            running: Mutex::new(None),
        }
    }

    /// Runs `code` with `env` added to the environment; its standard output, or an error with
    /// its traceback. While another thread's snippet runs, this one runs in an interpreter of
    /// its own (snippets of one handle never wait for each other, as separate processes did
    /// not).
    pub(crate) fn run(&self, code: &str, env: &[(&str, &str)]) -> Result<String, TestkitError> {
        let mut running = match self.running.try_lock() {
            Ok(running) => running,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let one_off = PythonRepl::new(self.what, self.setup.clone(), self.stderr.clone());
                return one_off.run(code, env);
            }
        };
        if running.is_none() {
            *running = Some(self.start()?);
        }
        let r = running.as_mut().expect("started above");
        let env: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let request = serde_json::json!({"code": code, "env": env}).to_string();
        let mut answer = String::new();
        let exchanged = writeln!(r.stdin, "{request}")
            .and_then(|()| r.stdin.flush())
            .and_then(|()| r.stdout.read_line(&mut answer));
        let failed = |detail: String| TestkitError::Command {
            command: format!("{} (Python)", self.what),
            detail,
        };
        let answer = match exchanged {
            Ok(n) if n > 0 => serde_json::from_str::<serde_json::Value>(&answer).ok(),
            _ => None,
        };
        let answer = match answer {
            Some(answer) => answer,
            None => {
                // Gone (killed, crashed): the next snippet starts a new one.
                let mut dead = running.take().expect("running");
                let _ = dead.child.kill();
                let _ = dead.child.wait();
                let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                // Also when its answer was unreadable (something wrote around the framing):
                // the next answer could be this one's.
                return Err(failed(format!(
                    "no answer from the interpreter ({exchanged:?}): {log}"
                )));
            }
        };
        let out = answer["out"].as_str().unwrap_or_default().to_string();
        if answer["ok"] == serde_json::Value::Bool(true) {
            Ok(out)
        } else {
            Err(failed(out))
        }
    }

    fn start(&self) -> Result<Running, TestkitError> {
        let python = venv_dir().join("bin/python");
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(LOOP)
            .arg(&self.setup)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&self.stderr)?,
            )
            .spawn()
            .map_err(|e| TestkitError::Command {
                command: format!("{} ({})", self.what, python.display()),
                detail: format!("{e} (scripts/setup creates .venv)"),
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Running {
            child,
            stdin,
            stdout,
        })
    }
}

impl Drop for PythonRepl {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut r) = running.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}
