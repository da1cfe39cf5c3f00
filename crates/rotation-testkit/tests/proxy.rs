//! `TcpProxy` forwards, stalls, resumes, refuses and resets connections, against a small echo
//! server and a real PostgreSQL cluster, all on 127.0.0.1.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rotation_testkit::{PgCluster, PgOptions, TcpProxy, Wire};

/// An echo server on 127.0.0.1 that also records every byte it received.
struct Echo {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        // Detached: blocks in accept until the test process exits.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                log.lock().unwrap().extend_from_slice(&buf[..n]);
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { addr, received }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

fn connect(proxy: &TcpProxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes within 5 s.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)
        .expect("bytes arrive through the proxy");
    buf
}

/// Asserts that nothing arrives for `wait`.
fn assert_silent(s: &mut TcpStream, wait: Duration) {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected no bytes, got {other:?}"),
    }
}

/// Asserts that the connection is closed (end of stream or reset) within 2 s.
fn assert_closed(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a closed connection, got {other:?}"),
    }
}

/// Asserts that the connection is reset (RST) within 2 s.
fn assert_reset(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a reset, got {other:?}"),
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

const QUIET: Duration = Duration::from_millis(300);

/// A PostgreSQL frontend message: type, length (including itself), payload.
fn pg_message(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// An SSLRequest followed by a protocol 3.0 startup message.
fn pg_login() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let payload = b"user\0postgres\0database\0postgres\0\0";
    m.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
    m.extend_from_slice(&196_608u32.to_be_bytes());
    m.extend_from_slice(payload);
    m.extend(pg_message(b'p', b"password\0"));
    m
}

#[test]
fn forwards_both_ways_and_counts() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    assert_eq!(proxy.addr().ip().to_string(), "127.0.0.1");
    assert_eq!(proxy.target(), echo.addr);
    let mut c = connect(&proxy);
    c.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut c, 4), b"ping");

    // More than any buffer, written while reading (the echo pushes back otherwise).
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut writer = c.try_clone().unwrap();
    let to_send = big.clone();
    let w = thread::spawn(move || writer.write_all(&to_send).unwrap());
    assert!(read_n(&mut c, big.len()) == big, "payload corrupted");
    w.join().unwrap();

    let total = 4 + big.len() as u64;
    wait_until("byte counters", || {
        proxy.bytes_client_to_target() == total && proxy.bytes_target_to_client() == total
    });
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.open_connections(), 1);

    // A client's end of stream reaches the server, and the server's close comes back.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut c);
    wait_until("connection gone", || proxy.open_connections() == 0);
}

#[test]
fn rejects_targets_off_loopback() {
    let err = TcpProxy::start("192.0.2.1:5432".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn stall_holds_bytes_and_resume_delivers_them() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut open = connect(&proxy);
    open.write_all(b"before").unwrap();
    assert_eq!(read_n(&mut open, 6), b"before");

    proxy.stall();
    assert!(proxy.is_stalled());
    open.write_all(b"held").unwrap();
    // Connections made while stalled are accepted but stall too.
    let mut new = connect(&proxy);
    new.write_all(b"new").unwrap();
    assert_silent(&mut open, QUIET);
    assert_silent(&mut new, Duration::from_millis(50));
    assert_eq!(
        echo.received(),
        b"before",
        "stalled bytes reached the server"
    );
    assert_eq!(proxy.open_connections(), 2);

    proxy.resume();
    assert_eq!(read_n(&mut open, 4), b"held");
    assert_eq!(read_n(&mut new, 3), b"new");
}

#[test]
fn stall_holds_the_server_direction_too() {
    // A server that answers 150 ms after the client's first byte.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        thread::sleep(Duration::from_millis(150));
        s.write_all(b"late").unwrap();
        thread::sleep(Duration::from_secs(5));
    });
    let proxy = TcpProxy::start(target).unwrap();
    let mut c = connect(&proxy);
    c.write_all(b"g").unwrap();
    wait_until("request forwarded", || proxy.bytes_client_to_target() == 1);
    proxy.stall();
    assert_silent(&mut c, Duration::from_millis(400));
    assert_eq!(proxy.bytes_target_to_client(), 0);
    proxy.resume();
    assert_eq!(read_n(&mut c, 4), b"late");
}

#[test]
fn stall_after_client_bytes_lets_the_first_bytes_through() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut c = connect(&proxy);
    c.write_all(b"early").unwrap();
    assert_eq!(read_n(&mut c, 5), b"early");

    // Counted from the call: the login goes through and is answered, the query is held.
    proxy.stall_after_client_bytes(5);
    c.write_all(b"login").unwrap();
    assert_eq!(read_n(&mut c, 5), b"login");
    assert_eq!(proxy.stalls_triggered(), 0);
    c.write_all(b"query").unwrap();
    wait_until("trigger", || proxy.stalls_triggered() == 1);
    assert_silent(&mut c, QUIET);
    assert_eq!(echo.received(), b"earlylogin");

    // Within one write: the first n bytes go, the rest is held.
    let mut other = connect(&proxy);
    other.write_all(b"12345678").unwrap();
    wait_until("second trigger", || proxy.stalls_triggered() == 2);
    thread::sleep(QUIET);
    assert_eq!(echo.received(), b"earlylogin12345");

    proxy.resume();
    assert_eq!(read_n(&mut c, 5), b"query");
    // `other` got its first 5 bytes echoed (possibly held at the stall) and then the rest.
    assert_eq!(read_n(&mut other, 8), b"12345678");
    // Resume disarmed the trigger.
    let mut later = connect(&proxy);
    later.write_all(b"0123456789").unwrap();
    assert_eq!(read_n(&mut later, 10), b"0123456789");
}

#[test]
fn stall_on_query_holds_the_matching_message() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    proxy.stall_on_query("ALTER ROLE");
    let mut c = connect(&proxy);
    let mut sent = pg_login();
    sent.extend(pg_message(b'Q', b"SELECT 1\0"));
    c.write_all(&sent).unwrap();
    assert_eq!(read_n(&mut c, sent.len()), sent);

    // The matching message, in two writes with a pause: not one byte of it goes.
    let alter = pg_message(b'Q', b"ALTER ROLE app PASSWORD 'secret'\0");
    c.write_all(&alter[..7]).unwrap();
    thread::sleep(Duration::from_millis(60));
    c.write_all(&alter[7..]).unwrap();
    wait_until("trigger", || proxy.stalls_triggered() == 1);
    c.write_all(&pg_message(b'Q', b"SELECT 2\0")).unwrap();
    assert_silent(&mut c, QUIET);
    assert_eq!(echo.received(), sent);

    proxy.resume();
    assert_eq!(read_n(&mut c, alter.len()), alter);
}

#[test]
fn stall_on_query_matches_parse_messages() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut c = connect(&proxy);
    let login = pg_login();
    c.write_all(&login).unwrap();
    assert_eq!(read_n(&mut c, login.len()), login);

    // Armed on an open connection, between messages.
    proxy.stall_on_query("ALTER ROLE");
    let parse = pg_message(b'P', b"stmt1\0ALTER ROLE app VALID UNTIL 'infinity'\0\0\0");
    c.write_all(&parse).unwrap();
    wait_until("trigger", || proxy.stalls_triggered() == 1);
    assert_silent(&mut c, QUIET);
    assert_eq!(echo.received(), login);
    proxy.resume();
    assert_eq!(read_n(&mut c, parse.len()), parse);
}

#[test]
fn stall_on_query_ignores_non_postgres_and_tls_streams() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    proxy.stall_on_query("ALTER ROLE");
    // Short non-PostgreSQL traffic is not held waiting for a header.
    let mut plain = connect(&proxy);
    plain.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut plain, 2), b"hi");

    // SSLRequest then a TLS record: opaque from there on.
    let mut tls = connect(&proxy);
    let mut sent = vec![
        0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0x16, 0x03, 0x01, 0x00, 0x10,
    ];
    sent.extend(pg_message(b'Q', b"ALTER ROLE x\0"));
    tls.write_all(&sent).unwrap();
    assert_eq!(read_n(&mut tls, sent.len()), sent);
    assert_eq!(proxy.stalls_triggered(), 0);
}

/// A MongoDB wire message: length, request id, response to, op code (little-endian), body.
fn mongo_message(op: u32, body: &[u8]) -> Vec<u8> {
    let mut m = ((body.len() + 16) as u32).to_le_bytes().to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&op.to_le_bytes());
    m.extend_from_slice(body);
    m
}

#[test]
fn stall_on_query_holds_the_mongo_message_with_the_command() {
    let echo = Echo::start();
    let proxy = TcpProxy::start_with(echo.addr, Wire::Mongo).unwrap();
    assert_eq!(proxy.wire(), Wire::Mongo);
    proxy.stall_on_query("updateUser");
    let mut c = connect(&proxy);
    let mut sent = mongo_message(2004, b"\0\0\0\0admin.$cmd\0hello");
    sent.extend(mongo_message(2013, b"\0\x10ping\0"));
    c.write_all(&sent).unwrap();
    assert_eq!(read_n(&mut c, sent.len()), sent);

    // The matching message, in two writes with a pause: not one byte of it goes.
    let update = mongo_message(2013, b"\0\x02updateUser\0app\0pwd");
    c.write_all(&update[..9]).unwrap();
    thread::sleep(Duration::from_millis(60));
    c.write_all(&update[9..]).unwrap();
    wait_until("trigger", || proxy.stalls_triggered() == 1);
    assert_silent(&mut c, QUIET);
    assert_eq!(echo.received(), sent);
    proxy.resume();
    assert_eq!(read_n(&mut c, update.len()), update);

    // The PostgreSQL framing does not see MongoDB commands.
    let pg = TcpProxy::start(echo.addr).unwrap();
    pg.stall_on_query("updateUser");
    let mut c = connect(&pg);
    c.write_all(&update).unwrap();
    assert_eq!(read_n(&mut c, update.len()), update);
    assert_eq!(pg.stalls_triggered(), 0);
}

#[test]
fn refuse_new_closes_new_connections_only() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut open = connect(&proxy);
    open.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut open, 1), b"a");

    proxy.refuse_new();
    let mut refused = connect(&proxy);
    assert_reset(&mut refused);
    wait_until("refusal counted", || proxy.connections_refused() == 1);
    open.write_all(b"b").unwrap();
    assert_eq!(read_n(&mut open, 1), b"b");

    proxy.accept_new();
    let mut again = connect(&proxy);
    again.write_all(b"c").unwrap();
    assert_eq!(read_n(&mut again, 1), b"c");
    assert_eq!(proxy.connections_accepted(), 2);
    assert_eq!(echo.received(), b"abc");
}

#[test]
fn drop_all_resets_open_connections() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut one = connect(&proxy);
    let mut two = connect(&proxy);
    for c in [&mut one, &mut two] {
        c.write_all(b"x").unwrap();
        assert_eq!(read_n(c, 1), b"x");
    }
    // Even a stalled connection with bytes held.
    proxy.stall();
    two.write_all(b"held").unwrap();
    thread::sleep(Duration::from_millis(50));
    proxy.drop_all();
    proxy.resume();
    assert_reset(&mut one);
    assert_reset(&mut two);
    assert_eq!(proxy.open_connections(), 0);

    let mut three = connect(&proxy);
    three.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut three, 1), b"y");
}

#[test]
fn peak_counts_connections_open_at_once() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    assert_eq!(proxy.peak_connections(), 0);
    let mut conns: Vec<TcpStream> = (0..3).map(|_| connect(&proxy)).collect();
    for c in &mut conns {
        c.write_all(b"x").unwrap();
        assert_eq!(read_n(c, 1), b"x");
    }
    assert_eq!(proxy.peak_connections(), 3);
    proxy.drop_all();
    wait_until("connections gone", || proxy.open_connections() == 0);
    // The peak stays until reset; a new window starts from what is open now.
    assert_eq!(proxy.peak_connections(), 3);
    proxy.reset_peak();
    assert_eq!(proxy.peak_connections(), 0);
    let mut one = connect(&proxy);
    one.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut one, 1), b"y");
    assert_eq!(proxy.peak_connections(), 1);
    assert_eq!(proxy.connections_accepted(), 4);
}

#[test]
fn dropping_the_proxy_closes_everything() {
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut c = connect(&proxy);
    c.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut c, 1), b"x");
    proxy.stall();
    let addr = proxy.addr();
    let started = Instant::now();
    drop(proxy);
    assert!(started.elapsed() < Duration::from_secs(1), "drop hung");
    assert_closed(&mut c);
    assert!(TcpStream::connect(addr).is_err(), "still listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_makes_async_reads_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = Echo::start();
    let proxy = TcpProxy::start(echo.addr).unwrap();
    let mut c = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.stall();
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    let timed_out = tokio::time::timeout(QUIET, c.read_exact(&mut buf)).await;
    assert!(timed_out.is_err(), "read completed through a stalled proxy");
    proxy.resume();
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .expect("bytes after resume")
        .unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_query_stalls_at_alter_role_and_times_out() {
    use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
    use sqlx::{Connection, Executor};

    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL");
    let proxy = TcpProxy::to_port(pg.port()).unwrap();
    // `Prefer`: the SSLRequest is refused by the plaintext server, then the login is plain.
    let options = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(proxy.port())
        .username(pg.superuser())
        .password(pg.superuser_password())
        .database("postgres")
        .ssl_mode(PgSslMode::Prefer);

    proxy.stall_on_query("ALTER ROLE");
    let mut conn = PgConnection::connect_with(&options)
        .await
        .expect("login through the proxy");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);

    // Simple query protocol ('Q').
    let stalled = tokio::time::timeout(
        Duration::from_millis(500),
        conn.execute("ALTER ROLE postgres CONNECTION LIMIT 7"),
    )
    .await;
    assert!(stalled.is_err(), "ALTER ROLE completed: {stalled:?}");
    assert_eq!(proxy.stalls_triggered(), 1);
    drop(conn);
    // Extended protocol ('P') on a new connection.
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    let stalled = tokio::time::timeout(
        Duration::from_millis(500),
        sqlx::query("ALTER ROLE postgres CONNECTION LIMIT 7").execute(&mut conn),
    )
    .await;
    assert!(stalled.is_err(), "ALTER ROLE completed: {stalled:?}");
    assert_eq!(proxy.stalls_triggered(), 2);
    assert_eq!(
        pg.psql("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'postgres'")
            .unwrap(),
        "-1",
        "the held statement reached the server"
    );
    drop(conn);

    // A fully stalled proxy makes the login itself time out.
    proxy.resume();
    proxy.stall();
    let login = tokio::time::timeout(
        Duration::from_millis(500),
        PgConnection::connect_with(&options),
    )
    .await;
    assert!(login.is_err(), "login completed through a stalled proxy");
    proxy.resume();
    drop(proxy);
}
