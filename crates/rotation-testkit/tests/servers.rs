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
