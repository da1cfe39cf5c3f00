//! The testkit's own servers start, accept password logins on 127.0.0.1 only, and stop.

use rotation_testkit::{Moto, PgAuth, PgCluster, PgOptions};

#[test]
fn postgres_cluster_starts_with_password_auth_and_stops() {
    // The testkit's own, even when a variable names an external server.
    let pg = PgCluster::start(PgOptions {
        own: true,
        ..PgOptions::default()
    })
    .expect("start PostgreSQL");
    assert!(!pg.is_external());
    assert_eq!(pg.psql("SELECT 1").unwrap(), "1");
    assert_eq!(
        pg.psql("SHOW password_encryption").unwrap(),
        "scram-sha-256"
    );
    assert_eq!(pg.psql("SHOW listen_addresses").unwrap(), "127.0.0.1");
    let port = pg.port();
    drop(pg);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening after drop"
    );
}

#[test]
fn md5_and_tls_variants_start() {
    let md5 = PgCluster::start(PgOptions {
        auth: PgAuth::Md5,
        ..PgOptions::default()
    })
    .expect("start md5 cluster");
    assert_eq!(md5.psql("SHOW password_encryption").unwrap(), "md5");
    let tls = PgCluster::start(PgOptions::tls()).expect("start TLS cluster");
    assert_eq!(tls.psql("SHOW ssl").unwrap(), "on");
    assert!(tls.ca_pem().unwrap().exists());
}

#[test]
fn moto_serves_secrets_manager() {
    let moto = Moto::start().expect("start moto (run scripts/setup first)");
    let out = moto
        .python("sm.create_secret(Name='x', SecretString='{}'); print(len(sm.list_secrets()['SecretList']))")
        .unwrap();
    assert_eq!(out.trim(), "1");
}

/// Lambda's Invoke, as moto calls it, on `service`: the status line and the body.
fn invoke(service: &rotation_testkit::LambdaService) -> (String, String) {
    use std::io::{Read, Write};
    let addr = service.url().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = r#"{"Step":"createSecret"}"#;
    write!(
        s,
        "POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The service serves further requests on the connection until the client is done.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.lines().next().unwrap_or_default().to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[test]
fn a_lambda_function_that_exits_fails_its_invocation_at_once() {
    let mut service = rotation_testkit::LambdaService::new("f").expect("serve Invoke");
    // A "function" that exits without asking for an event (a shell with nothing to read).
    service
        .start(std::path::Path::new("/bin/sh"), &[])
        .expect("start");
    let started = std::time::Instant::now();
    let (status, body) = invoke(&service);
    assert!(status.contains("500"), "{status}");
    assert!(body.contains("the function exited"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn secantus_snippets_run_each_on_its_own_and_a_failure_does_not_end_the_next() {
    let db = rotation_testkit::Secantus::start_own(false).expect("start SecantusDB");
    assert_eq!(db.python("x = 1\nprint(x)").unwrap().trim(), "1");
    // A name one snippet made is not there for the next.
    let err = db.python("print(x)").unwrap_err().to_string();
    assert!(err.contains("NameError"), "{err}");
    // A failed snippet leaves the interpreter working, with the admin's client.
    let out = db.python("print(db.admin.command('ping')['ok'])").unwrap();
    assert_eq!(out.trim(), "1.0");
    // Each snippet's clients are closed after it: the next one holds only its own.
    for _ in 0..3 {
        db.python("db.admin.command('ping')").unwrap();
    }
    assert_eq!(db.python("print(len(_clients))").unwrap().trim(), "1");
}
