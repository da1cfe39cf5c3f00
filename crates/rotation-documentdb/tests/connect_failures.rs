//! A failed DocumentDB connect is typed and in time, and never a silent fallback to plaintext
//! (`connect::attempt`: the monitor's first failed heartbeat ends a direct login; a peer that
//! closes is a TLS failure; the plaintext fallback only when allowed).

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rotation_core::{Deadline, EngineError, ErrorKind, Rotator};
use rotation_documentdb::DocumentDbRotator;
use rotation_testkit::{TcpProxy, Wire, free_port};
use rotation_trust::ConnectSettings;
use serde_json::{Value, json};

mod common;
use common::{DocumentDbEnv, Env, parse};

const PW: &str = "Initial-Passw0rd-Zq7";
const LIMIT: Duration = Duration::from_secs(1);

fn text(e: &EngineError) -> String {
    format!("{e} | {e:?} | {}", rotation_core::error_chain(e))
}

fn no_leak(e: &EngineError) {
    let t = text(e);
    assert!(!t.contains(PW), "password in error: {t}");
    assert!(!t.contains("Wrong-Passw0rd-Zq7"), "password in error: {t}");
}

/// A server with user `app` (selfService) in admin.
fn env(tls: bool) -> Env {
    let env = common::start(tls);
    env.db().create_self_service_role().unwrap();
    env.create_user_in(
        "app",
        PW,
        "admin",
        "[{'role': 'selfService', 'db': 'admin'}]",
    );
    env
}

fn with(settings: &ConnectSettings, fallback: bool) -> ConnectSettings {
    let mut s = settings.clone();
    s.allow_plaintext_fallback = fallback;
    s.connect_timeout = LIMIT;
    s
}

fn secret_at(port: u16, ssl: Option<bool>) -> Value {
    let mut v = json!({
        "engine": "mongo", "host": "localhost", "port": port,
        "username": "app", "password": PW,
    });
    if let Some(b) = ssl {
        v["ssl"] = json!(b);
    }
    v
}

async fn login(settings: ConnectSettings, secret: &Value) -> (Result<(), EngineError>, Duration) {
    let r = DocumentDbRotator::single_user(settings);
    let started = Instant::now();
    let out = r
        .login(&parse(secret), Deadline::after(Duration::from_secs(10)))
        .await;
    let took = started.elapsed();
    match out {
        Ok(s) => {
            r.close(s).await;
            (Ok(()), took)
        }
        Err(e) => {
            no_leak(&e);
            eprintln!("took {took:?}: {}", text(&e));
            (Err(e), took)
        }
    }
}

/// A server that accepts TCP and never answers; counts connections.
fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            n2.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (port, n)
}

/// Calls `refuse_new` as soon as the proxy has accepted its first connection (the monitor's):
/// the monitor's heartbeat succeeds, the pool's connection is reset.
fn refuse_after_first(proxy: &Arc<TcpProxy>) -> std::thread::JoinHandle<()> {
    let p = proxy.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(5);
        while p.connections_accepted() < 1 && Instant::now() < end {
            std::hint::spin_loop();
        }
        p.refuse_new();
    })
}

/// Held: a server that accepts TCP and never answers fails by the connect timeout, Timeout,
/// plaintext and TLS; with ALLOW_PLAINTEXT_FALLBACK a TLS timeout never falls back.
#[tokio::test]
async fn silent_server_times_out_and_never_falls_back() {
    let (port, conns) = silent_server();
    let base = ConnectSettings::default();
    let (r, took) = login(with(&base, false), &secret_at(port, Some(false))).await;
    let e = r.expect_err("silent server");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{}", text(&e));
    assert!(took < LIMIT + Duration::from_millis(600), "{took:?}");

    let before = conns.load(Ordering::SeqCst);
    let (r, took) = login(with(&base, true), &secret_at(port, None)).await;
    let e = r.expect_err("silent TLS server");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{}", text(&e));
    assert!(
        took < LIMIT + Duration::from_millis(600),
        "fell back? {took:?}"
    );
    // One attempt: no plaintext attempt's note, and the connections of one attempt: the
    // monitor's (which may retry once inside the window on a loaded machine) and maybe the
    // pool's. A plaintext attempt would add its own and take another full window.
    assert!(!text(&e).contains("tried first"), "{}", text(&e));
    let used = conns.load(Ordering::SeqCst) - before;
    assert!(
        used <= 3,
        "{used} connections: a plaintext attempt followed"
    );
}

/// Held: nothing listening is Unreachable at once, and never a plaintext attempt.
#[tokio::test]
async fn nothing_listening_is_unreachable_and_never_falls_back() {
    let port = free_port();
    for fallback in [false, true] {
        let (r, took) = login(
            with(&ConnectSettings::default(), fallback),
            &secret_at(port, None),
        )
        .await;
        let e = r.expect_err("nothing listening");
        assert_eq!(e.kind(), ErrorKind::Unreachable, "{}", text(&e));
        assert!(took < Duration::from_millis(500), "{took:?}");
        // What failed, in words: not the driver's dump of its state and retry labels.
        let said = rotation_core::error_chain(&e);
        for dump in [
            "Kind:",
            "labels",
            "SystemOverloadedError",
            "server response",
        ] {
            assert!(!said.contains(dump), "{dump:?} in {said}");
        }
        assert!(said.contains("refused"), "{said}");
    }
}

/// Held: a wrong password with a healthy monitor is AuthFailed (plaintext, TLS, TLS with
/// fallback: never a fallback on an auth failure), and never leaks.
#[tokio::test]
async fn wrong_password_with_healthy_monitor_is_auth_failed() {
    for tls in [false, true] {
        let env = env(tls);
        for fallback in [false, true] {
            let mut s = secret_at(env.db().port(), if tls { None } else { Some(false) });
            s["password"] = json!("Wrong-Passw0rd-Zq7");
            let (r, took) = login(with(&env.connect_settings(), fallback), &s).await;
            let e = r.expect_err("wrong password");
            assert_eq!(e.kind(), ErrorKind::AuthFailed, "tls {tls}: {}", text(&e));
            assert!(took < LIMIT, "{took:?}");
        }
        // Sanity: the right password logs in.
        let s = secret_at(env.db().port(), if tls { None } else { Some(false) });
        login(with(&env.connect_settings(), false), &s)
            .await
            .0
            .expect("login");
    }
}

/// Plaintext secret (`"ssl": false`): the monitor's hello succeeds over plaintext on this very
/// server, then the pool's connection is reset (a network blip, a connection limit). Plaintext
/// was just proven to work, so this is Unreachable (a network failure), not "may require TLS"
/// (a hostile review found it was).
#[tokio::test]
async fn pool_reset_after_plaintext_monitor_succeeded_is_not_tls() {
    let env = env(false);
    let proxy = Arc::new(TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap());
    let t = refuse_after_first(&proxy);
    let (r, _) = login(
        with(&env.connect_settings(), false),
        &secret_at(proxy.port(), Some(false)),
    )
    .await;
    t.join().unwrap();
    let e = r.expect_err("pool connection reset");
    assert!(
        proxy.connections_refused() >= 1,
        "the pool's connection was not refused"
    );
    assert_ne!(e.kind(), ErrorKind::Tls, "{}", text(&e));
}

/// TLS secret without `ssl`, ALLOW_PLAINTEXT_FALLBACK: the monitor's heartbeat completes a
/// verified TLS handshake (the server speaks TLS with a trusted certificate), then the pool's
/// connection is reset. Never a fallback to plaintext against a server just proven to speak
/// TLS (a hostile review found one reset was enough to send the login, and the rotation's
/// updateUser with the new password, in plaintext).
#[tokio::test]
async fn pool_reset_after_verified_tls_heartbeat_never_falls_back() {
    let env = env(true);
    let proxy = Arc::new(TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap());
    let t = refuse_after_first(&proxy);
    let (r, _) = login(
        with(&env.connect_settings(), true),
        &secret_at(proxy.port(), None),
    )
    .await;
    t.join().unwrap();
    let e = r.expect_err("pool connection reset");
    let refused = proxy.connections_refused();
    eprintln!(
        "accepted {} refused {refused}",
        proxy.connections_accepted()
    );
    // One refused connection (the pool's); more means a plaintext attempt followed.
    assert_eq!(refused, 1, "a plaintext attempt followed: {}", text(&e));
    assert_ne!(e.kind(), ErrorKind::Tls, "{}", text(&e));
}

/// Plaintext, the proxy drops every connection while the pool's connection is in SCRAM
/// (held at saslStart): the monitor's hello went through in plaintext on this server. The
/// drop mid-login is a network failure (Unreachable), not "may require TLS".
#[tokio::test]
async fn drop_all_mid_login_is_not_tls() {
    let env = env(false);
    let proxy = Arc::new(TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap());
    proxy.stall_on_query("saslStart");
    let p = proxy.clone();
    let t = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(5);
        while p.stalls_triggered() < 1 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        p.drop_all();
    });
    let (r, took) = login(
        with(&env.connect_settings(), false),
        &secret_at(proxy.port(), Some(false)),
    )
    .await;
    t.join().unwrap();
    assert!(proxy.stalls_triggered() >= 1, "saslStart never held");
    let e = r.expect_err("dropped mid-login");
    assert!(took < LIMIT + Duration::from_millis(600), "{took:?}");
    assert_ne!(e.kind(), ErrorKind::Tls, "{}", text(&e));
}

/// Held: a stall mid-login (saslStart held) fails by the connect timeout, Timeout.
#[tokio::test]
async fn stall_mid_login_times_out() {
    let env = env(false);
    let proxy = TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap();
    proxy.stall_on_query("saslStart");
    let (r, took) = login(
        with(&env.connect_settings(), false),
        &secret_at(proxy.port(), Some(false)),
    )
    .await;
    let e = r.expect_err("stalled login");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{}", text(&e));
    assert!(took < LIMIT + Duration::from_millis(600), "{took:?}");
    proxy.resume();
}

/// A server that is down behind a TCP forwarder (NLB, SSH tunnel, sidecar): the forwarder
/// accepts and then closes. The known limit (the crate docs): this is indistinguishable at the TCP
/// level from a server dropping a handshake of the other kind, so it is classified `Tls`, and
/// with TLS and `ALLOW_PLAINTEXT_FALLBACK` a plaintext attempt follows (which fails too, so
/// nothing is sent in plaintext to a server). Asserted as it is, so that a change of it fails
/// here.
#[tokio::test]
async fn dead_backend_behind_a_forwarder_reads_as_tls_as_documented() {
    let proxy = TcpProxy::to_port_with(free_port(), Wire::Mongo).unwrap();
    let (r, _) = login(
        with(&ConnectSettings::default(), false),
        &secret_at(proxy.port(), Some(false)),
    )
    .await;
    let e = r.expect_err("dead backend");
    assert_eq!(e.kind(), ErrorKind::Tls, "{}", text(&e));
    let before = proxy.connections_accepted();
    let (r, _) = login(
        with(&ConnectSettings::default(), true),
        &secret_at(proxy.port(), None),
    )
    .await;
    let e = r.expect_err("dead backend");
    let used = proxy.connections_accepted() - before;
    assert!(
        used >= 2,
        "{used} connections: no plaintext attempt followed"
    );
    assert_eq!(e.kind(), ErrorKind::Tls, "{}", text(&e));
}

/// An untrusted certificate (TLS server, trust without its CA) under ALLOW_PLAINTEXT_FALLBACK:
/// the code falls back to plaintext (same rule as PostgreSQL: invalid data is Tls, and any
/// Tls error falls back). The plaintext attempt is dropped by the TLS-only server, so the
/// error returned is the certificate's, not the plaintext attempt's advice to remove an
/// `"ssl": false` the secret does not have (a hostile review found the cause was lost).
#[tokio::test]
async fn untrusted_certificate_under_fallback_keeps_its_cause() {
    let env = env(true);
    let proxy = TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap();
    // Without fallback: Tls, promptly (the monitor's heartbeat reports the certificate).
    let (r, took) = login(
        with(&ConnectSettings::default(), false),
        &secret_at(proxy.port(), None),
    )
    .await;
    let e = r.expect_err("untrusted");
    assert_eq!(e.kind(), ErrorKind::Tls, "{}", text(&e));
    assert!(took < Duration::from_millis(800), "{took:?}");
    let before = proxy.connections_accepted();
    let (r, _) = login(
        with(&ConnectSettings::default(), true),
        &secret_at(proxy.port(), None),
    )
    .await;
    let e = r.expect_err("untrusted, then plaintext to a TLS-only server");
    let used = proxy.connections_accepted() - before;
    eprintln!("connections with fallback: {used}");
    let t = text(&e).to_lowercase();
    assert!(
        t.contains("certificate") || t.contains("untrusted") || t.contains("invalid"),
        "the certificate cause is lost: {t}"
    );
    assert!(
        !t.contains("remove \\\"ssl\\\": false") && !t.contains("remove \"ssl\": false"),
        "{t}"
    );
}

/// Documents the downgrade: a TLS-only port that presents an untrusted certificate leads,
/// under ALLOW_PLAINTEXT_FALLBACK, to a plaintext login attempt on the same port (a second
/// batch of connections). Held as a record of behaviour matching PostgreSQL's rule.
#[tokio::test]
async fn untrusted_certificate_under_fallback_attempts_plaintext() {
    let env = env(true);
    let proxy = TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap();
    let (r, _) = login(
        with(&ConnectSettings::default(), true),
        &secret_at(proxy.port(), None),
    )
    .await;
    r.expect_err("TLS-only server refuses the plaintext attempt");
    assert!(
        proxy.connections_accepted() >= 2,
        "accepted {}",
        proxy.connections_accepted()
    );
}

/// Held: a `replicaSet` secret (discovery, no heartbeat short cut) against a refused port or a
/// silent server still fails within the connect timeout.
#[tokio::test]
async fn replica_set_secret_fails_within_connect_timeout() {
    let (silent, _) = silent_server();
    for port in [free_port(), silent] {
        for fallback in [false, true] {
            let mut s = secret_at(port, None);
            s["replicaSet"] = json!("rs0");
            let (r, took) = login(with(&ConnectSettings::default(), fallback), &s).await;
            let e = r.expect_err("nothing there");
            assert!(
                matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unreachable),
                "{}",
                text(&e)
            );
            assert!(
                took < LIMIT + Duration::from_millis(600),
                "port {port}: {took:?}"
            );
        }
    }
}

/// Held: a replica-set secret against a server that drops TLS (plaintext server): no
/// heartbeat short cut, so it is ServerSelection → Timeout, and never falls back (timeout).
#[tokio::test]
async fn replica_set_secret_against_plaintext_server_with_fallback() {
    let env = env(false);
    let mut s = secret_at(env.db().port(), None);
    s["replicaSet"] = json!("rs0");
    let (r, took) = login(with(&env.connect_settings(), true), &s).await;
    match r {
        Ok(()) => panic!("logged in (fell back?) after {took:?}"),
        Err(e) => {
            assert!(took < LIMIT + Duration::from_millis(600), "{took:?}");
            eprintln!("kind {:?}", e.kind());
        }
    }
}

/// Held: drop_all after a successful login, then a command: fails (no hang), no leak.
#[tokio::test]
async fn drop_all_after_login_then_command_fails_cleanly() {
    let env = env(false);
    let proxy = TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap();
    let r = DocumentDbRotator::single_user(with(&env.connect_settings(), false));
    let s = secret_at(proxy.port(), Some(false));
    let mut sess = r
        .login(&parse(&s), Deadline::after(Duration::from_secs(5)))
        .await
        .expect("login");
    proxy.drop_all();
    proxy.refuse_new();
    let started = Instant::now();
    let res = r.test_session(&mut sess, &parse(&s), None).await;
    r.close(sess).await;
    let e = res.expect_err("dropped");
    no_leak(&e);
    eprintln!("{:?}: {}", started.elapsed(), text(&e));
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// Raw socket check used by the silent server: the client sends something (a hello or a TLS
/// ClientHello) before giving up, i.e. the silent server was really reached.
#[test]
fn silent_server_is_reached() {
    let (port, n) = silent_server();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(c.read(&mut b).is_err());
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

/// Held: the heartbeat handler never ends a healthy login (the pool connects only after the
/// monitor's first heartbeat succeeded, and the next is 60 s away): 15 logins in a row through
/// a proxy, plaintext and TLS, all succeed.
#[tokio::test]
async fn healthy_logins_never_end_on_a_spurious_heartbeat_failure() {
    for tls in [false, true] {
        let env = env(tls);
        let proxy = TcpProxy::to_port_with(env.db().port(), Wire::Mongo).unwrap();
        let s = secret_at(proxy.port(), if tls { None } else { Some(false) });
        for i in 0..15 {
            let (r, _) = login(with(&env.connect_settings(), false), &s).await;
            r.unwrap_or_else(|e| panic!("tls {tls} login {i}: {}", text(&e)));
        }
    }
}
