//! A minimal Lambda Runtime API on 127.0.0.1 (plain HTTP/1.1 over `std::net`), enough for
//! `lambda_runtime` 1.5: `GET /2018-06-01/runtime/invocation/next` is held until the caller (the
//! bench, or [`LambdaService`](crate::LambdaService)) hands over an invocation, then answered
//! with the event and the `Lambda-Runtime-*` headers; `POST
//! /2018-06-01/runtime/invocation/{id}/response` and `.../error` are reported back with the
//! instant they arrived. Every connection is served by its own thread, keep-alive included.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const PREFIX: &str = "/2018-06-01/runtime/";

/// One event for the function.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// The event JSON.
    pub body: String,
    /// `Lambda-Runtime-Deadline-Ms`: milliseconds since the Unix epoch.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: String,
}

/// What the function did, with the instant the bench saw it.
#[derive(Debug)]
pub enum Report {
    /// It asked for the next event.
    Next(Instant),
    /// It answered an invocation.
    Response {
        request_id: String,
        body: String,
        at: Instant,
    },
    /// It reported an invocation's failure.
    Error { request_id: String, body: String },
    /// It reported an initialisation error (or asked for something we do not serve).
    Other { path: String, body: String },
}

/// The server; stops accepting on drop (connections end when the function exits).
pub struct RuntimeApi {
    addr: SocketAddr,
    invocations: Option<mpsc::Sender<Invocation>>,
    reports: mpsc::Receiver<Report>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RuntimeApi {
    /// Listens on a free 127.0.0.1 port.
    pub fn start() -> io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (inv_tx, inv_rx) = mpsc::channel::<Invocation>();
        let inv_rx = Arc::new(Mutex::new(inv_rx));
        let (rep_tx, rep_rx) = mpsc::channel::<Report>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        thread::Builder::new()
            .name("runtime-api".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (inv_rx, rep_tx) = (inv_rx.clone(), rep_tx.clone());
                    let _ = thread::Builder::new()
                        .name("runtime-api-conn".into())
                        .spawn(move || {
                            let _ = serve(stream, &inv_rx, &rep_tx);
                        });
                }
            })?;
        Ok(RuntimeApi {
            addr,
            invocations: Some(inv_tx),
            reports: rep_rx,
            stop,
        })
    }

    /// `127.0.0.1:PORT`, for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an invocation for the next `next` request.
    pub fn invoke(&self, invocation: Invocation) -> io::Result<()> {
        self.invocations
            .as_ref()
            .expect("sender kept until drop")
            .send(invocation)
            .map_err(|_| io::Error::other("runtime API connection threads are gone"))
    }

    /// The next report, waiting at most `timeout`.
    pub fn report(&self, timeout: Duration) -> io::Result<Report> {
        self.reports.recv_timeout(timeout).map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no word from the function within {timeout:?}"),
            )
        })
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Held `next` requests end: their threads see the channel closed.
        self.invocations.take();
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// An HTTP request.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one HTTP/1.1 request (`None`: the connection closed).
pub(crate) fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(bad("connection closed inside the headers".into()));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                content_length = value
                    .parse()
                    .map_err(|_| bad(format!("content-length {value:?}")))?;
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| bad(format!("chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else {
        body.resize(content_length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, path, body }))
}

/// Writes one response.
pub(crate) fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &str) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    // One write: no Nagle interplay with the client's delayed ACKs.
    let _ = stream.write_all(out.as_bytes());
}

fn serve(
    stream: TcpStream,
    invocations: &Mutex<mpsc::Receiver<Invocation>>,
    reports: &mpsc::Sender<Report>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        let at = Instant::now();
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let rest = req.path.strip_prefix(PREFIX).unwrap_or(&req.path);
        let accepted = |w: &mut TcpStream| respond(w, "202 Accepted", &[], r#"{"status":"OK"}"#);
        match (req.method.as_str(), rest) {
            ("GET", "invocation/next") => {
                let _ = reports.send(Report::Next(at));
                let next = invocations.lock().expect("not poisoned").recv();
                let Ok(inv) = next else {
                    // The bench is done with this function.
                    return Ok(());
                };
                let deadline = inv.deadline_ms.to_string();
                respond(
                    &mut writer,
                    "200 OK",
                    &[
                        ("Lambda-Runtime-Aws-Request-Id", &inv.request_id),
                        ("Lambda-Runtime-Deadline-Ms", &deadline),
                        ("Lambda-Runtime-Invoked-Function-Arn", &inv.function_arn),
                        (
                            "Lambda-Runtime-Trace-Id",
                            "Root=1-00000000-000000000000000000000000;Sampled=0",
                        ),
                    ],
                    &inv.body,
                );
            }
            ("POST", path) if path.starts_with("invocation/") => {
                let tail = &path["invocation/".len()..];
                let (id, kind) = tail.split_once('/').unwrap_or((tail, ""));
                let report = match kind {
                    "response" => Report::Response {
                        request_id: id.to_string(),
                        body,
                        at,
                    },
                    _ => Report::Error {
                        request_id: id.to_string(),
                        body,
                    },
                };
                accepted(&mut writer);
                let _ = reports.send(report);
            }
            _ => {
                accepted(&mut writer);
                let _ = reports.send(Report::Other {
                    path: req.path.clone(),
                    body,
                });
            }
        }
    }
    Ok(())
}
