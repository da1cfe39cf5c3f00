//! A TCP proxy on 127.0.0.1 for fault injection: stall, refuse or reset connections to a
//! server under test, so tests can show that code with a stalled connection times out
//! instead of hanging. It follows the message framing of the PostgreSQL or the MongoDB wire
//! protocol ([`Wire`]) to hold a connection at a given statement or command.
//!
//! Plain `std::net` and threads: it works the same from a synchronous test or from inside a
//! tokio runtime. Every blocking socket call has a ~20 ms timeout, so the threads notice
//! control changes promptly and stop soon after the proxy is dropped.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;

/// How often the forwarding threads look at the controls (socket read/write timeout).
const POLL: Duration = Duration::from_millis(20);
/// Bytes read from a socket at a time.
const CHUNK: usize = 16 * 1024;
/// Largest PostgreSQL query message (or MongoDB message) held back whole for
/// [`TcpProxy::stall_on_query`]; longer ones are forwarded as they come and never match.
const QUERY_CAP: usize = 1024 * 1024;
/// Largest plausible untyped (startup) PostgreSQL message.
const STARTUP_CAP: usize = 10_000;
/// Connecting to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long dropping the proxy waits for its connection threads before detaching them.
const DROP_WAIT: Duration = Duration::from_secs(2);

/// A TCP proxy listening on `127.0.0.1` (random port) that forwards each accepted connection
/// to a target on `127.0.0.1`, byte for byte in both directions, with controls for fault
/// injection.
///
/// All controls take `&self`, are thread-safe and act on open connections within ~20 ms:
///
/// - [`stall`](Self::stall) / [`resume`](Self::resume): hold every byte in both directions
///   (nothing is dropped, connections stay open), then forward again;
/// - [`stall_after_client_bytes`](Self::stall_after_client_bytes) and
///   [`stall_on_query`](Self::stall_on_query): per-connection triggers, e.g. let a login
///   through and stall at the first query, or at `ALTER ROLE`;
/// - [`refuse_new`](Self::refuse_new) / [`accept_new`](Self::accept_new): reset new
///   connections as soon as they are accepted;
/// - [`drop_all`](Self::drop_all): reset every open connection.
///
/// If the target does not answer, the client's connection is reset.
///
/// It runs on plain `std::net` threads (one accepting, two per connection), so it works the
/// same from a synchronous test or from inside a tokio runtime. Every blocking socket call
/// times out after ~20 ms, buffers are bounded, and dropping the proxy closes the listener
/// and resets every connection, waiting at most ~2 s for its threads (then detaching them).
///
/// ```no_run
/// # use rotation_testkit::TcpProxy;
/// # let db_port = 5432;
/// let proxy = TcpProxy::to_port(db_port).unwrap();
/// proxy.stall_on_query("ALTER ROLE");
/// // Point the code under test at 127.0.0.1:proxy.port(): its login goes through, its
/// // ALTER ROLE never reaches the server, and it must give up on its own timeout.
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    wire: Wire,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

/// The wire protocol whose client messages [`TcpProxy::stall_on_query`] looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    /// PostgreSQL frontend messages: simple query (`Q`) and parse (`P`) messages are matched
    /// on their SQL text.
    #[default]
    Postgres,
    /// MongoDB wire protocol messages (`OP_MSG`, `OP_QUERY`, ...: a little-endian length, then
    /// request id, response to and op code): every message is matched on its bytes, so a
    /// command name such as `updateUser` (a BSON key) matches the message carrying it.
    Mongo,
    /// Redis's RESP: each command (an array of bulk strings) is matched on its bytes, so
    /// `SETUSER` matches every `ACL SETUSER`, and `\r\n!` one that removes a password.
    Resp,
    /// MySQL / MariaDB client packets (a 3-byte little-endian length, a sequence number):
    /// every packet after the first is matched on its bytes, so a statement's text matches
    /// the `COM_QUERY` or `COM_STMT_PREPARE` carrying it. After an `SSLRequest` (a first packet
    /// of 32 bytes) the stream is TLS and forwarded without looking.
    Mysql,
}

#[derive(Debug)]
enum Trigger {
    AfterClientBytes(u64),
    OnQuery(Vec<u8>),
}

/// The armed trigger; `generation` changes whenever it is armed or disarmed.
#[derive(Debug, Default)]
struct Armed {
    generation: u64,
    trigger: Option<Arc<Trigger>>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    wire: Wire,
    stopping: AtomicBool,
    stalled: AtomicBool,
    refusing: AtomicBool,
    armed: Mutex<Armed>,
    conns: Mutex<Vec<Arc<Conn>>>,
    accepted: AtomicU64,
    /// Most connections open at once since the start or the last [`TcpProxy::reset_peak`].
    peak: AtomicUsize,
    refused: AtomicU64,
    triggered: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    /// Connection threads still running.
    threads: AtomicUsize,
}

/// One proxied connection; the pumps hold their own clones of the two sockets.
#[derive(Debug)]
struct Conn {
    client: TcpStream,
    server: TcpStream,
    closed: AtomicBool,
    /// Held by a trigger until [`TcpProxy::resume`].
    stalled: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the eventual close of `s` send a reset (RST) instead of an orderly FIN.
fn reset_on_close(s: &TcpStream) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

impl Conn {
    /// Orderly close after an error on either side.
    fn close(&self) {
        self.closed.store(true, SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Abrupt close: the pumps stop within one poll and the last close of each socket resets.
    fn abort(&self) {
        reset_on_close(&self.client);
        reset_on_close(&self.server);
        self.closed.store(true, SeqCst);
    }
}

impl TcpProxy {
    /// Starts a proxy to `target`, which must be on `127.0.0.1`, following the PostgreSQL wire
    /// protocol.
    pub fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        TcpProxy::start_with(target, Wire::Postgres)
    }

    /// Starts a proxy to `target`, which must be on `127.0.0.1`, following `wire`.
    pub fn start_with(target: SocketAddr, wire: Wire) -> io::Result<TcpProxy> {
        if target.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("TcpProxy forwards to 127.0.0.1 only, not {target}"),
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            wire,
            stopping: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            armed: Mutex::default(),
            conns: Mutex::default(),
            accepted: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            triggered: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            threads: AtomicUsize::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("tcp-proxy-accept".into())
            .spawn(move || accept_loop(&listener, &for_thread))?;
        Ok(TcpProxy {
            addr,
            wire,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// Starts a proxy to `127.0.0.1:port` (PostgreSQL wire protocol).
    pub fn to_port(port: u16) -> io::Result<TcpProxy> {
        TcpProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Starts a proxy to `127.0.0.1:port` following `wire`.
    pub fn to_port_with(port: u16, wire: Wire) -> io::Result<TcpProxy> {
        TcpProxy::start_with(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), wire)
    }

    /// The wire protocol the proxy follows.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The port the proxy listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the proxy listens on: `127.0.0.1:`[`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Stops forwarding in both directions on every connection, open or new. Bytes are held
    /// (in the proxy or the kernel's socket buffers), not dropped, and connections stay open;
    /// new connections are still accepted and connected to the target.
    pub fn stall(&self) {
        self.shared.stalled.store(true, SeqCst);
    }

    /// Forwards again everything held: lifts [`stall`](Self::stall), releases connections
    /// held by a trigger and disarms the trigger.
    pub fn resume(&self) {
        let mut armed = lock(&self.shared.armed);
        armed.trigger = None;
        armed.generation += 1;
        // Under the trigger lock, so a pump cannot stall on the old trigger after this.
        for c in lock(&self.shared.conns).iter() {
            c.stalled.store(false, SeqCst);
        }
        drop(armed);
        self.shared.stalled.store(false, SeqCst);
    }

    /// Whether [`stall`](Self::stall) is in force.
    pub fn is_stalled(&self) -> bool {
        self.shared.stalled.load(SeqCst)
    }

    /// Arms a trigger: each connection (open now or accepted later) forwards the first `n`
    /// bytes its client sends after this call, then, when the client sends more, holds
    /// those further bytes and stalls in both directions, until [`resume`](Self::resume).
    ///
    /// Stalling only once the client goes past `n` lets the server's answers to those `n`
    /// bytes through: with `n` the size of a login, the login completes and the first query
    /// stalls. Replaces any trigger armed before (connections it already stalled stay so).
    pub fn stall_after_client_bytes(&self, n: u64) {
        self.arm(Trigger::AfterClientBytes(n));
    }

    /// Arms a trigger: a connection whose client sends a PostgreSQL simple query (`Q`) or
    /// parse (`P`) message whose SQL text contains `needle` ([`Wire::Mongo`]: a MongoDB
    /// message whose bytes contain it, e.g. the command name `updateUser`) stalls in both
    /// directions before any byte of that message is forwarded, until
    /// [`resume`](Self::resume). Messages before it (the login, earlier queries) go through.
    ///
    /// Works on plaintext connections only: after the client's `SSLRequest`, a TLS handshake
    /// makes the rest of the stream opaque and it never matches (nor does GSS encryption; on
    /// MongoDB, a stream that does not start with a message header, such as a TLS handshake).
    /// Replaces any trigger armed before (connections it already stalled stay so).
    pub fn stall_on_query(&self, needle: &str) {
        self.arm(Trigger::OnQuery(needle.as_bytes().to_vec()));
    }

    fn arm(&self, trigger: Trigger) {
        let mut armed = lock(&self.shared.armed);
        armed.trigger = Some(Arc::new(trigger));
        armed.generation += 1;
    }

    /// Resets every new connection as soon as it is accepted (the client's connect succeeds,
    /// then its first read fails), until [`accept_new`](Self::accept_new).
    pub fn refuse_new(&self) {
        self.shared.refusing.store(true, SeqCst);
    }

    /// Forwards new connections again after [`refuse_new`](Self::refuse_new).
    pub fn accept_new(&self) {
        self.shared.refusing.store(false, SeqCst);
    }

    /// Closes every open connection abruptly: both the client's and the target's side are
    /// reset (RST) within ~20 ms, and bytes held for them are discarded. New connections are
    /// still accepted.
    pub fn drop_all(&self) {
        for c in lock(&self.shared.conns).drain(..) {
            c.abort();
        }
    }

    /// Connections accepted for forwarding (not counting refused ones).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(SeqCst)
    }

    /// Connections reset on accept by [`refuse_new`](Self::refuse_new).
    pub fn connections_refused(&self) -> u64 {
        self.shared.refused.load(SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// The most connections that were open at once since the proxy started or since the last
    /// [`reset_peak`](Self::reset_peak): what a client keeps open (a pool, monitors).
    pub fn peak_connections(&self) -> usize {
        self.shared.peak.load(SeqCst)
    }

    /// Starts a new [`peak_connections`](Self::peak_connections) window from the connections
    /// open now.
    pub fn reset_peak(&self) {
        let conns = lock(&self.shared.conns);
        self.shared.peak.store(conns.len(), SeqCst);
    }

    /// Connections stalled by a trigger ([`stall_after_client_bytes`](Self::stall_after_client_bytes)
    /// or [`stall_on_query`](Self::stall_on_query)) so far.
    pub fn stalls_triggered(&self) -> u64 {
        self.shared.triggered.load(SeqCst)
    }

    /// Bytes forwarded from clients to the target, over all connections.
    pub fn bytes_client_to_target(&self) -> u64 {
        self.shared.up.load(SeqCst)
    }

    /// Bytes forwarded from the target to clients, over all connections.
    pub fn bytes_target_to_client(&self) -> u64 {
        self.shared.down.load(SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, SeqCst);
        self.drop_all();
        if let Some(accept_thread) = self.accept_thread.take() {
            // Wake the blocking accept so the thread sees `stopping`; if that fails, detach it.
            if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                let _ = accept_thread.join();
            }
        }
        let deadline = Instant::now() + DROP_WAIT;
        while self.shared.threads.load(SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Decrements the running-thread count when a connection thread ends, even by panic.
struct ThreadCount(Arc<Shared>);

impl Drop for ThreadCount {
    fn drop(&mut self) {
        self.0.threads.fetch_sub(1, SeqCst);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stopping.load(SeqCst) {
            return;
        }
        let client = match incoming {
            Ok(c) => c,
            Err(_) => {
                // E.g. out of file descriptors: back off instead of spinning.
                thread::sleep(POLL);
                continue;
            }
        };
        if shared.refusing.load(SeqCst) {
            reset_on_close(&client);
            shared.refused.fetch_add(1, SeqCst);
            continue;
        }
        shared.accepted.fetch_add(1, SeqCst);
        shared.threads.fetch_add(1, SeqCst);
        let count = ThreadCount(Arc::clone(shared));
        // If the spawn fails the closure is dropped: the client is closed, the count undone.
        let _ = thread::Builder::new()
            .name("tcp-proxy-conn".into())
            .spawn(move || {
                let count = count;
                serve(&count.0, client);
            });
    }
}

fn configure(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(POLL))?;
    s.set_write_timeout(Some(POLL))
}

/// Connects `client` to the target and forwards until both directions end.
fn serve(shared: &Arc<Shared>, client: TcpStream) {
    let Ok(server) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        reset_on_close(&client);
        return;
    };
    let streams = (|| {
        configure(&client)?;
        configure(&server)?;
        let conn = Conn {
            client: client.try_clone()?,
            server: server.try_clone()?,
            closed: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
        };
        Ok::<_, io::Error>((conn, client.try_clone()?, server.try_clone()?))
    })();
    let Ok((conn, down_dst, down_src)) = streams else {
        return;
    };
    let conn = Arc::new(conn);
    {
        let mut conns = lock(&shared.conns);
        conns.push(Arc::clone(&conn));
        shared.peak.fetch_max(conns.len(), SeqCst);
    }
    let down = {
        let (shared, conn) = (Arc::clone(shared), Arc::clone(&conn));
        thread::Builder::new()
            .name("tcp-proxy-down".into())
            .spawn(move || pump(&shared, &conn, down_src, down_dst, None))
    };
    match down {
        Ok(down) => {
            let inspector = Inspector::new(shared.wire);
            pump(shared, &conn, client, server, Some(inspector));
            let _ = down.join();
        }
        Err(_) => conn.close(),
    }
    lock(&shared.conns).retain(|c| !Arc::ptr_eq(c, &conn));
}

/// Forwards `src` to `dst` until end of stream, error, or close. `inspector` is set for the
/// client-to-target direction, where the triggers apply.
fn pump(
    shared: &Shared,
    conn: &Conn,
    mut src: TcpStream,
    mut dst: TcpStream,
    mut inspector: Option<Inspector>,
) {
    let upstream = inspector.is_some();
    let counter = if upstream { &shared.up } else { &shared.down };
    let mut buf = vec![0u8; CHUNK];
    // Bytes read and not yet written; the first `cleared` of them may be written.
    let mut pending: Vec<u8> = Vec::new();
    let mut cleared = 0usize;
    let mut eof = false;
    loop {
        if conn.closed.load(SeqCst) || shared.stopping.load(SeqCst) {
            return;
        }
        // Upstream, the bytes cleared before a trigger fired still go out.
        let held = shared.stalled.load(SeqCst) || (!upstream && conn.stalled.load(SeqCst));
        if held {
            thread::sleep(POLL);
            continue;
        }
        if cleared > 0 {
            match dst.write(&pending[..cleared]) {
                Ok(0) => {
                    conn.close();
                    return;
                }
                Ok(n) => {
                    pending.drain(..n);
                    cleared -= n;
                    counter.fetch_add(n as u64, SeqCst);
                }
                Err(e) if retryable(&e) => {}
                Err(_) => {
                    conn.close();
                    return;
                }
            }
            continue;
        }
        if conn.stalled.load(SeqCst) {
            thread::sleep(POLL);
            continue;
        }
        match inspector.as_mut() {
            Some(inspector) => {
                let (n, stall) = inspector.clear(shared, &pending);
                cleared = n;
                if stall {
                    let armed = lock(&shared.armed);
                    // Only if the trigger is still the one inspected (not resumed since).
                    if armed.generation == inspector.generation {
                        conn.stalled.store(true, SeqCst);
                        shared.triggered.fetch_add(1, SeqCst);
                    }
                    continue;
                }
            }
            None => cleared = pending.len(),
        }
        if cleared > 0 {
            continue;
        }
        if eof {
            if pending.is_empty() {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            // A partial message held for inspection at end of stream: let it go.
            cleared = pending.len();
            continue;
        }
        match src.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if retryable(&e) => {}
            Err(_) => {
                conn.close();
                return;
            }
        }
    }
}

/// Applies the armed trigger to one connection's client bytes.
#[derive(Debug)]
struct Inspector {
    /// The trigger generation `counted` refers to.
    generation: u64,
    /// Client bytes cleared since that trigger was armed.
    counted: u64,
    parser: Parser,
}

/// The framing of one connection's client bytes.
#[derive(Debug)]
enum Parser {
    Pg(PgParser),
    Mongo(MongoParser),
    Mysql(MysqlParser),
    Resp(RespParser),
}

impl Parser {
    fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
        match self {
            Parser::Pg(p) => p.step(data, needle),
            Parser::Mongo(p) => p.step(data, needle),
            Parser::Resp(p) => p.step(data, needle),
            Parser::Mysql(p) => p.step(data, needle),
        }
    }
}

impl Inspector {
    fn new(wire: Wire) -> Inspector {
        Inspector {
            generation: 0,
            counted: 0,
            parser: match wire {
                Wire::Postgres => Parser::Pg(PgParser::default()),
                Wire::Mongo => Parser::Mongo(MongoParser::default()),
                Wire::Resp => Parser::Resp(RespParser::default()),
                Wire::Mysql => Parser::Mysql(MysqlParser::default()),
            },
        }
    }

    /// How many leading bytes of `data` (none of which were seen before) may be forwarded,
    /// and whether the connection stalls after them.
    fn clear(&mut self, shared: &Shared, data: &[u8]) -> (usize, bool) {
        let (generation, trigger) = {
            let armed = lock(&shared.armed);
            (armed.generation, armed.trigger.clone())
        };
        if generation != self.generation {
            self.generation = generation;
            self.counted = 0;
        }
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            let (rest, needle) = match trigger.as_deref() {
                Some(Trigger::AfterClientBytes(n)) => {
                    let left = n.saturating_sub(self.counted);
                    if left == 0 {
                        return (done, true);
                    }
                    let left = usize::try_from(left).unwrap_or(usize::MAX);
                    (&rest[..rest.len().min(left)], None)
                }
                Some(Trigger::OnQuery(needle)) => (rest, Some(needle.as_slice())),
                None => (rest, None),
            };
            match self.parser.step(rest, needle) {
                Step::Advance(n) => {
                    done += n;
                    self.counted += n as u64;
                }
                Step::Hold => return (done, false),
                Step::Match => return (done, true),
            }
        }
        (done, false)
    }
}

/// Follows the PostgreSQL frontend message framing of a client's byte stream.
#[derive(Debug)]
enum PgParser {
    /// An untyped message (startup, SSLRequest, GSSENCRequest, CancelRequest): its first
    /// `have` of 8 header bytes (length, code).
    Untyped {
        head: [u8; 8],
        have: usize,
        after_encryption_request: bool,
    },
    /// `have` of the 5 header bytes (type, length) of a typed message.
    Typed { head: [u8; 5], have: usize },
    /// Inside a message body: bytes left.
    Body(usize),
    /// Not (or no longer) plaintext PostgreSQL: forwarded without looking.
    Opaque,
}

impl Default for PgParser {
    fn default() -> Self {
        PgParser::Untyped {
            head: [0; 8],
            have: 0,
            after_encryption_request: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// This many bytes (at least one) are consumed and may be forwarded.
    Advance(usize),
    /// A query message is incomplete: wait for more bytes.
    Hold,
    /// The next message matches the trigger.
    Match,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn typed_start() -> PgParser {
    PgParser::Typed {
        head: [0; 5],
        have: 0,
    }
}

/// The state after a header announcing `body` more bytes.
fn body(body: usize) -> PgParser {
    if body == 0 {
        typed_start()
    } else {
        PgParser::Body(body)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The SQL of a complete `Q` or `P` message (`kind`, then length, then `payload`).
fn query_text(kind: u8, payload: &[u8]) -> &[u8] {
    match kind {
        // Parse: statement name, NUL, query, NUL, parameter types.
        b'P' => match payload.iter().position(|&b| b == 0) {
            Some(i) => &payload[i + 1..],
            None => payload,
        },
        _ => payload,
    }
}

impl PgParser {
    /// Consumes the start of `data` (not empty). With `needle`, a `Q`/`P` message is only
    /// consumed once complete and not matching.
    fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
        match self {
            PgParser::Opaque => Step::Advance(data.len()),
            PgParser::Body(left) => {
                let n = (*left).min(data.len());
                *left -= n;
                if *left == 0 {
                    *self = typed_start();
                }
                Step::Advance(n)
            }
            PgParser::Untyped {
                head,
                have,
                after_encryption_request,
            } => {
                if *have == 0 && *after_encryption_request && data[0] == TLS_HANDSHAKE {
                    *self = PgParser::Opaque;
                    return Step::Advance(data.len());
                }
                let n = (8 - *have).min(data.len());
                head[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have == 8 {
                    let len = be32(&head[..4]);
                    let code = be32(&head[4..]) as u32;
                    *self = if len == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
                        PgParser::Untyped {
                            head: [0; 8],
                            have: 0,
                            after_encryption_request: true,
                        }
                    } else if (8..=STARTUP_CAP).contains(&len) {
                        body(len - 8)
                    } else {
                        PgParser::Opaque
                    };
                }
                Step::Advance(n)
            }
            PgParser::Typed { head, have } => {
                if let (0, Some(needle), b'Q' | b'P') = (*have, needle, data[0]) {
                    if data.len() < 5 {
                        return Step::Hold;
                    }
                    let len = be32(&data[1..5]);
                    let total = len.saturating_add(1);
                    if len >= 4 && total <= QUERY_CAP {
                        if data.len() < total {
                            return Step::Hold;
                        }
                        if contains(query_text(data[0], &data[5..total]), needle) {
                            return Step::Match;
                        }
                        return Step::Advance(total);
                    }
                }
                let n = (5 - *have).min(data.len());
                head[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have == 5 {
                    let len = be32(&head[1..]);
                    *self = if len < 4 {
                        PgParser::Opaque
                    } else {
                        body(len - 4)
                    };
                }
                Step::Advance(n)
            }
        }
    }
}

/// Follows RESP framing of a client's byte stream: commands as arrays of bulk strings, each
/// held back until complete (at most [`QUERY_CAP`] bytes) while a query trigger is armed;
/// anything else (an inline command, a TLS handshake, a command cut by a byte trigger) makes
/// the rest of the stream opaque.
#[derive(Debug, Default)]
struct RespParser {
    opaque: bool,
}

/// The length of the complete RESP command at the start of `data`: `Ok(None)` when more bytes
/// are needed, `Err` when it is not an array of bulk strings.
fn resp_command_len(data: &[u8]) -> Result<Option<usize>, ()> {
    // A `<prefix><decimal>\r\n` line at `at`: the number and where the next line starts.
    let line = |at: usize, prefix: u8| -> Result<Option<(usize, usize)>, ()> {
        if at >= data.len() {
            return Ok(None);
        }
        if data[at] != prefix {
            return Err(());
        }
        let Some(end) = data[at..].windows(2).position(|w| w == b"\r\n") else {
            return if data.len() - at > 24 {
                Err(())
            } else {
                Ok(None)
            };
        };
        let digits = std::str::from_utf8(&data[at + 1..at + end]).map_err(drop)?;
        let n: usize = digits.parse().map_err(drop)?;
        Ok(Some((n, at + end + 2)))
    };
    let Some((count, mut at)) = line(0, b'*')? else {
        return Ok(None);
    };
    for _ in 0..count {
        let Some((len, start)) = line(at, b'$')? else {
            return Ok(None);
        };
        at = start
            .checked_add(len)
            .and_then(|e| e.checked_add(2))
            .ok_or(())?;
        if at > QUERY_CAP {
            return Err(());
        }
        if at > data.len() {
            return Ok(None);
        }
    }
    Ok(Some(at))
}

impl RespParser {
    fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
        if self.opaque {
            return Step::Advance(data.len());
        }
        match resp_command_len(data) {
            Ok(Some(len)) if needle.is_some_and(|n| contains(&data[..len], n)) => Step::Match,
            Ok(Some(len)) => Step::Advance(len),
            Ok(None) if needle.is_some() => Step::Hold,
            // Forwarded unframed (a byte trigger cut the command): the framing is lost.
            Ok(None) | Err(()) => {
                self.opaque = true;
                Step::Advance(data.len())
            }
        }
    }
}

/// The size of a MongoDB message header: length, request id, response to, op code.
const MONGO_HEADER: usize = 16;
/// MongoDB op codes a client sends: OP_QUERY (legacy hello), OP_COMPRESSED, OP_MSG.
const MONGO_OP_CODES: [u32; 3] = [2004, 2012, 2013];

fn le32(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Follows the MongoDB wire protocol framing of a client's byte stream.
#[derive(Debug)]
enum MongoParser {
    /// `have` of the 16 header bytes of the next message.
    Head {
        head: [u8; MONGO_HEADER],
        have: usize,
    },
    /// Inside a message body: bytes left.
    Body(usize),
    /// Not (or no longer) plaintext MongoDB: forwarded without looking.
    Opaque,
}

impl Default for MongoParser {
    fn default() -> Self {
        MongoParser::Head {
            head: [0; MONGO_HEADER],
            have: 0,
        }
    }
}

/// Whether `head` is a plausible client message header; its total length if so.
fn mongo_length(head: &[u8]) -> Option<usize> {
    let len = le32(&head[..4]);
    let op = le32(&head[12..16]) as u32;
    (len >= MONGO_HEADER && MONGO_OP_CODES.contains(&op)).then_some(len)
}

impl MongoParser {
    /// Consumes the start of `data` (not empty). With `needle`, a message is only consumed
    /// once complete and not matching.
    fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
        match self {
            MongoParser::Opaque => Step::Advance(data.len()),
            MongoParser::Body(left) => {
                let n = (*left).min(data.len());
                *left -= n;
                if *left == 0 {
                    *self = MongoParser::default();
                }
                Step::Advance(n)
            }
            MongoParser::Head { head, have } => {
                if let (0, Some(needle)) = (*have, needle) {
                    if data.len() < MONGO_HEADER {
                        return Step::Hold;
                    }
                    match mongo_length(&data[..MONGO_HEADER]) {
                        Some(total) if total <= QUERY_CAP => {
                            if data.len() < total {
                                return Step::Hold;
                            }
                            if contains(&data[MONGO_HEADER..total], needle) {
                                return Step::Match;
                            }
                            return Step::Advance(total);
                        }
                        Some(_) => {}
                        None => {
                            *self = MongoParser::Opaque;
                            return Step::Advance(data.len());
                        }
                    }
                }
                let n = (MONGO_HEADER - *have).min(data.len());
                head[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have == MONGO_HEADER {
                    *self = match mongo_length(&head[..]) {
                        Some(MONGO_HEADER) => MongoParser::default(),
                        Some(total) => MongoParser::Body(total - MONGO_HEADER),
                        None => MongoParser::Opaque,
                    };
                }
                Step::Advance(n)
            }
        }
    }
}

/// A MySQL packet header: 3 bytes of payload length (little-endian), a sequence number.
const MYSQL_HEADER: usize = 4;
/// The payload length of an `SSLRequest`: capabilities, max packet, charset, 23 zero bytes.
const MYSQL_SSL_REQUEST: usize = 32;

/// Follows the MySQL client packet framing of a client's byte stream.
#[derive(Debug)]
enum MysqlParser {
    /// `have` of the 4 header bytes of the next packet; `first`: the connection's first packet
    /// (the handshake response, or an `SSLRequest`).
    Head {
        head: [u8; MYSQL_HEADER],
        have: usize,
        first: bool,
    },
    /// Inside a packet's payload: bytes left; then TLS when `tls_next`.
    Body { left: usize, tls_next: bool },
    /// TLS (or not MySQL): forwarded without looking.
    Opaque,
}

impl Default for MysqlParser {
    fn default() -> Self {
        MysqlParser::Head {
            head: [0; MYSQL_HEADER],
            have: 0,
            first: true,
        }
    }
}

fn le24(b: &[u8]) -> usize {
    usize::from(b[0]) | (usize::from(b[1]) << 8) | (usize::from(b[2]) << 16)
}

impl MysqlParser {
    fn next_head() -> MysqlParser {
        MysqlParser::Head {
            head: [0; MYSQL_HEADER],
            have: 0,
            first: false,
        }
    }

    /// The state after a header announcing `len` payload bytes.
    fn after_header(len: usize, first: bool) -> MysqlParser {
        let tls_next = first && len == MYSQL_SSL_REQUEST;
        match (len, tls_next) {
            (0, _) => MysqlParser::next_head(),
            (left, tls_next) => MysqlParser::Body { left, tls_next },
        }
    }

    /// Consumes the start of `data` (not empty). With `needle`, a packet after the first is
    /// only consumed once complete and not matching.
    fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
        match self {
            MysqlParser::Opaque => Step::Advance(data.len()),
            MysqlParser::Body { left, tls_next } => {
                let n = (*left).min(data.len());
                *left -= n;
                if *left == 0 {
                    *self = if *tls_next {
                        MysqlParser::Opaque
                    } else {
                        MysqlParser::next_head()
                    };
                }
                Step::Advance(n)
            }
            MysqlParser::Head { head, have, first } => {
                if let (0, Some(needle), false) = (*have, needle, *first) {
                    if data.len() < MYSQL_HEADER {
                        return Step::Hold;
                    }
                    let total = MYSQL_HEADER + le24(data);
                    if total <= QUERY_CAP {
                        if data.len() < total {
                            return Step::Hold;
                        }
                        if contains(&data[MYSQL_HEADER..total], needle) {
                            return Step::Match;
                        }
                        return Step::Advance(total);
                    }
                }
                let n = (MYSQL_HEADER - *have).min(data.len());
                head[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have == MYSQL_HEADER {
                    *self = MysqlParser::after_header(le24(&head[..]), *first);
                }
                Step::Advance(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    fn startup() -> Vec<u8> {
        let payload = b"user\0postgres\0\0";
        let mut m = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&196_608u32.to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// Either protocol's parser, for [`run`].
    trait Parser {
        fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step;
    }

    impl Parser for PgParser {
        fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
            PgParser::step(self, data, needle)
        }
    }

    impl Parser for MongoParser {
        fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
            MongoParser::step(self, data, needle)
        }
    }

    impl Parser for MysqlParser {
        fn step(&mut self, data: &[u8], needle: Option<&[u8]>) -> Step {
            MysqlParser::step(self, data, needle)
        }
    }

    fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut m = len.to_le_bytes()[..3].to_vec();
        m.push(seq);
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn a_mysql_statement_is_held_at_its_packet_and_tls_is_not_looked_into() {
        // The handshake response names the statement's word: the first packet is never held.
        let login = mysql_packet(1, b"\x0d\xa2\0\0user SET PASSWORD");
        let query = |sql: &str| {
            let mut p = vec![0x03];
            p.extend_from_slice(sql.as_bytes());
            mysql_packet(0, &p)
        };
        let mut stream = login.clone();
        stream.extend(query("SELECT 1"));
        let held_at = stream.len();
        stream.extend(query("SET PASSWORD = '*ABC'"));
        for chunk in [1, 3, 7, 1000] {
            let mut p = MysqlParser::default();
            assert_eq!(
                run(&mut p, &stream, b"SET PASSWORD", chunk),
                (held_at, true)
            );
        }
        // After an SSLRequest (32 bytes), TLS records pass unseen.
        let mut tls = mysql_packet(1, &[0u8; 32]);
        tls.extend([0x16, 0x03, 0x01, 0x00, 0x05]);
        tls.extend(b"SET PASSWORD");
        let mut p = MysqlParser::default();
        assert_eq!(run(&mut p, &tls, b"SET PASSWORD", 4), (tls.len(), false));
    }

    /// Feeds `data` in chunks of `chunk`, like the pump: returns bytes consumed and whether
    /// it matched.
    fn run(p: &mut impl Parser, data: &[u8], needle: &[u8], chunk: usize) -> (usize, bool) {
        let mut done = 0;
        let mut avail = chunk.min(data.len());
        loop {
            if done == avail {
                if avail == data.len() {
                    return (done, false);
                }
                avail = (avail + chunk).min(data.len());
            }
            match p.step(&data[done..avail], Some(needle)) {
                Step::Advance(n) => {
                    assert!(n > 0);
                    done += n;
                }
                Step::Hold if avail < data.len() => avail = (avail + chunk).min(data.len()),
                Step::Hold => return (done, false),
                Step::Match => return (done, true),
            }
        }
    }

    #[test]
    fn resp_matches_a_command_in_any_chunking() {
        let cmd = |args: &[&str]| {
            let mut m = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                m.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
            }
            m
        };
        let mut stream = cmd(&["AUTH", "admin", "pw"]);
        stream.extend(cmd(&["ACL", "GETUSER", "app"]));
        let before = stream.len();
        stream.extend(cmd(&["ACL", "SETUSER", "app", "!abc"]));
        for chunk in [1, 2, 5, 64, 4096] {
            let mut p = RespParser::default();
            let (mut done, mut at, mut matched) = (0, 0, false);
            while at < stream.len() && !matched {
                at = (at + chunk).min(stream.len());
                loop {
                    if done == at {
                        break;
                    }
                    match p.step(&stream[done..at], Some(b"\r\n!")) {
                        Step::Advance(n) => done += n,
                        Step::Hold => break,
                        Step::Match => {
                            matched = true;
                            break;
                        }
                    }
                }
            }
            assert_eq!((done, matched), (before, true), "chunk {chunk}");
        }
        // An inline command is not framed: opaque from there on.
        let mut p = RespParser::default();
        assert_eq!(p.step(b"PING\r\n", Some(b"PING")), Step::Advance(6));
        assert!(p.opaque);
    }

    #[test]
    fn matches_query_after_login_in_any_chunking() {
        let mut stream = SSL_REQUEST_BYTES.to_vec();
        stream.extend(startup());
        stream.extend(message(b'p', b"SCRAM stuff"));
        stream.extend(message(b'Q', b"SELECT 1\0"));
        let before = stream.len();
        stream.extend(message(b'Q', b"ALTER ROLE x PASSWORD 'y'\0"));
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let mut p = PgParser::default();
            assert_eq!(run(&mut p, &stream, b"ALTER ROLE", chunk), (before, true));
        }
    }

    #[test]
    fn matches_parse_message_sql_not_statement_name() {
        let mut stream = startup();
        let before = stream.len();
        stream.extend(message(b'P', b"ALTER ROLE\0ALTER ROLE x\0\0\0"));
        let mut p = PgParser::default();
        assert_eq!(run(&mut p, &stream, b"ALTER ROLE", 5), (before, true));
        let mut stream = startup();
        stream.extend(message(b'P', b"ALTER ROLE\0SELECT 1\0\0\0"));
        let mut p = PgParser::default();
        assert_eq!(
            run(&mut p, &stream, b"ALTER ROLE", 5),
            (stream.len(), false)
        );
    }

    #[test]
    fn tls_after_ssl_request_is_opaque() {
        let mut stream = SSL_REQUEST_BYTES.to_vec();
        stream.extend([TLS_HANDSHAKE, 3, 1, 0, 20]);
        stream.extend(message(b'Q', b"ALTER ROLE\0"));
        let mut p = PgParser::default();
        assert_eq!(
            run(&mut p, &stream, b"ALTER ROLE", 3),
            (stream.len(), false)
        );
    }

    const SSL_REQUEST_BYTES: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

    fn mongo_message(op: u32, body: &[u8]) -> Vec<u8> {
        let mut m = ((body.len() + MONGO_HEADER) as u32).to_le_bytes().to_vec();
        m.extend_from_slice(&7u32.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(&op.to_le_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn mongo_matches_the_message_with_the_command_in_any_chunking() {
        let mut stream = mongo_message(2004, b"\0\0\0\0admin.$cmd\0hello stuff");
        stream.extend(mongo_message(2013, b"\0saslStart..."));
        stream.extend(mongo_message(2013, b"\0ping\0"));
        let before = stream.len();
        stream.extend(mongo_message(2013, b"\0\x02updateUser\0app\0"));
        stream.extend(mongo_message(2013, b"\0ping\0"));
        for chunk in [1, 2, 3, 7, 16, 17, 64, 4096] {
            let mut p = MongoParser::default();
            assert_eq!(run(&mut p, &stream, b"updateUser", chunk), (before, true));
        }
        // Without a needle, framing only.
        let mut p = MongoParser::default();
        let mut done = 0;
        while done < stream.len() {
            match p.step(&stream[done..], None) {
                Step::Advance(n) => done += n,
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(p, MongoParser::Head { have: 0, .. }));
    }

    #[test]
    fn mongo_tls_and_garbage_are_opaque() {
        let mut stream = vec![
            0x16, 0x03, 0x01, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
        ];
        stream.extend(mongo_message(2013, b"\0updateUser\0"));
        let mut p = MongoParser::default();
        assert_eq!(
            run(&mut p, &stream, b"updateUser", 5),
            (stream.len(), false)
        );
    }
}
