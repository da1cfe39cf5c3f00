//! The external-target switch: with a variable of `rotation_testkit::external::ALL` set
//! (`ROTATION_TEST_POSTGRES_URL`, `ROTATION_TEST_MONGODB_URI`, `ROTATION_TEST_REDIS_URL`,
//! `ROTATION_TEST_MYSQL_URL`, `ROTATION_TEST_SECRETS_MANAGER_ENDPOINT`, their TLS and md5
//! variants), the testkit hands out
//! the server it names (asserted here by its port and CA file), reset for each test, instead of
//! starting one. `ROTATION_TEST_REQUIRE_EXTERNAL=1` (set by `scripts/test-external`) makes
//! every variable required, so that step cannot pass on servers the tests started themselves.

use rotation_testkit::external::{
    External, MONGODB_TLS_URI_ENV, MONGODB_URI_ENV, MYSQL_TLS_URL_ENV, MYSQL_URL_ENV,
    POSTGRES_MD5_TLS_URL_ENV, POSTGRES_MD5_URL_ENV, POSTGRES_TLS_URL_ENV, POSTGRES_URL_ENV,
    REDIS_TLS_URL_ENV, REDIS_URL_ENV, SECRETS_MANAGER_ENDPOINT_ENV,
};
use rotation_testkit::mariadb::MariaDb;
use rotation_testkit::{Moto, PgAuth, PgCluster, PgOptions, RedisServer, Secantus};

fn expected(var: &'static str) -> Option<External> {
    let e = External::from_env(var).expect("a usable URL");
    if std::env::var("ROTATION_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
        assert!(e.is_some(), "{var} must be set for this run");
    }
    e
}

/// Each PostgreSQL variable serves the options it stands for.
fn postgres_switch(var: &'static str, options: PgOptions) {
    assert_eq!(PgCluster::external_var(&options), Some(var));
    let want = expected(var);
    {
        let pg = PgCluster::start(options.clone()).unwrap();
        assert_eq!(pg.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(
                (pg.host(), pg.port(), pg.superuser(), pg.ca_pem()),
                (
                    e.host.as_str(),
                    e.port,
                    e.user.as_str(),
                    e.ca_file.as_deref()
                )
            );
        }
        // TLS-only when it stands for TLS: psql without TLS is refused.
        if options.tls_names.is_some() {
            let plain =
                std::process::Command::new(rotation_testkit::pg_bin().unwrap().join("psql"))
                    .args([
                        "-h",
                        pg.host(),
                        "-p",
                        &pg.port().to_string(),
                        "-U",
                        pg.superuser(),
                    ])
                    .args(["-d", "postgres", "-X", "-w", "-c", "SELECT 1"])
                    .env("PGPASSWORD", pg.superuser_password())
                    .env("PGSSLMODE", "disable")
                    .output()
                    .unwrap();
            assert!(
                !plain.status.success(),
                "{var}: a plaintext login was accepted"
            );
        }
        if options.auth == PgAuth::Md5 {
            assert_eq!(pg.psql("SHOW password_encryption").unwrap(), "md5");
        }
        pg.psql("CREATE ROLE left_behind LOGIN PASSWORD 'Left-pw-1'")
            .unwrap();
        assert!(pg.logs_in("left_behind", "Left-pw-1"));
    }
    // The next test's handle finds nothing the last one made.
    let pg = PgCluster::start(options).unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'left_behind'")
            .unwrap(),
        "0"
    );
    // Password authentication: a wrong password is refused.
    assert!(!pg.logs_in(pg.superuser(), "Wrong-pw-1"));
}

#[test]
fn postgres_comes_from_the_variable_and_is_reset() {
    postgres_switch(POSTGRES_URL_ENV, PgOptions::default());
}

#[test]
fn tls_postgres_comes_from_its_variable_and_is_reset() {
    postgres_switch(POSTGRES_TLS_URL_ENV, PgOptions::tls());
}

#[test]
fn md5_postgres_comes_from_its_variable_and_is_reset() {
    postgres_switch(
        POSTGRES_MD5_URL_ENV,
        PgOptions {
            auth: PgAuth::Md5,
            ..PgOptions::default()
        },
    );
}

#[test]
fn md5_tls_postgres_comes_from_its_variable_and_is_reset() {
    postgres_switch(
        POSTGRES_MD5_TLS_URL_ENV,
        PgOptions {
            auth: PgAuth::Md5,
            ..PgOptions::tls()
        },
    );
}

#[test]
fn options_no_external_server_provides_start_a_cluster() {
    for options in [
        PgOptions {
            log_statements: true,
            ..PgOptions::default()
        },
        PgOptions {
            extra_conf: vec!["work_mem = '8MB'".into()],
            ..PgOptions::tls()
        },
        PgOptions {
            tls_names: Some(vec!["db.example.test".into()]),
            ..PgOptions::default()
        },
    ] {
        assert_eq!(PgCluster::external_var(&options), None);
    }
}

fn mongodb_switch(var: &'static str, tls: bool) {
    let want = expected(var);
    {
        let db = Secantus::start(tls).unwrap();
        assert_eq!(db.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(
                (db.host(), db.port(), db.admin(), db.ca_pem()),
                (
                    e.host.as_str(),
                    e.port,
                    e.user.as_str(),
                    e.ca_file.as_deref()
                )
            );
        }
        db.python(
            "db['leftdb'].command('createUser', 'left_behind', pwd='Left-pw-1-long', roles=[])\n\
             db['leftdb'].things.insert_one({'a': 1})\n\
             db.admin.command('createRole', 'left_role', privileges=[], roles=[])",
        )
        .unwrap();
        assert!(
            db.logs_in("left_behind", "Left-pw-1-long", "leftdb")
                .unwrap()
        );
    }
    let db = Secantus::start(tls).unwrap();
    let left = db
        .python(
            "print(len(list(db.admin['system.users'].find({'user': 'left_behind'}))), \
             len(db.admin.command('rolesInfo', 'left_role')['roles']), \
             'leftdb' in db.list_database_names())",
        )
        .unwrap();
    assert_eq!(left.trim(), "0 0 False");
    assert!(!db.logs_in(db.admin(), "Wrong-pw-1", "admin").unwrap());
}

#[test]
fn mongodb_comes_from_the_variable_and_is_reset() {
    mongodb_switch(MONGODB_URI_ENV, false);
}

#[test]
fn tls_mongodb_comes_from_its_variable_and_is_reset() {
    mongodb_switch(MONGODB_TLS_URI_ENV, true);
}

fn redis_switch(var: &'static str, tls: bool) {
    let want = expected(var);
    {
        let r = RedisServer::start(tls).unwrap();
        assert_eq!(r.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(
                (r.host(), r.port(), r.admin(), r.ca_pem()),
                (
                    e.host.as_str(),
                    e.port,
                    e.user.as_str(),
                    e.ca_file.as_deref()
                )
            );
        }
        r.cli(&[
            "ACL",
            "SETUSER",
            "left_behind",
            "on",
            ">Left-pw-1-long",
            "+ping",
        ])
        .unwrap();
        assert!(r.logs_in("left_behind", "Left-pw-1-long").unwrap());
    }
    let r = RedisServer::start(tls).unwrap();
    assert!(!r.cli(&["ACL", "USERS"]).unwrap().contains("left_behind"));
    assert!(!r.logs_in(r.admin(), "Wrong-pw-1").unwrap());
}

#[test]
fn redis_comes_from_the_variable_and_is_reset() {
    redis_switch(REDIS_URL_ENV, false);
}

#[test]
fn tls_redis_comes_from_its_variable_and_is_reset() {
    redis_switch(REDIS_TLS_URL_ENV, true);
}

fn mysql_switch(var: &'static str, tls: bool) {
    let want = expected(var);
    {
        let db = MariaDb::start(tls).unwrap();
        assert_eq!(db.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(
                (db.host(), db.port(), db.admin().0, db.ca_pem()),
                (
                    e.host.as_str(),
                    e.port,
                    e.user.as_str(),
                    e.ca_file.as_deref()
                )
            );
        }
        db.sql(
            "CREATE USER left_behind@'%' IDENTIFIED BY PASSWORD '*5F6B4C5ABA4F3B9F4B1E0B3F2FCC1D9E5A2B8F0A'; \
             CREATE ROLE left_role; CREATE DATABASE leftdb; CREATE TABLE app.left_table (a INT)",
        )
        .unwrap();
        // The general log is on, and shows this handle's statements.
        assert!(db.log().contains("left_table"), "{}", db.log());
    }
    let db = MariaDb::start(tls).unwrap();
    let left = db
        .sql(
            "SELECT COUNT(*) FROM mysql.user WHERE user IN ('left_behind', 'left_role'); \
             SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'leftdb'; \
             SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'app'",
        )
        .unwrap();
    assert_eq!(left.split_whitespace().collect::<Vec<_>>(), ["0", "0", "0"]);
    assert!(
        !db.log().contains("left_table"),
        "the last handle's log is still there"
    );
    // Password authentication: a wrong password is refused (and over TLS when TLS-only).
    assert!(!db.logs_in(db.admin().0, "Wrong-pw-1").unwrap());
    assert!(db.logs_in(db.admin().0, db.admin().1).unwrap());
}

#[test]
fn mysql_comes_from_the_variable_and_is_reset() {
    mysql_switch(MYSQL_URL_ENV, false);
}

#[test]
fn tls_mysql_comes_from_its_variable_and_is_reset() {
    mysql_switch(MYSQL_TLS_URL_ENV, true);
}

#[test]
fn secrets_manager_comes_from_the_variable_and_is_reset() {
    let want = expected(SECRETS_MANAGER_ENDPOINT_ENV);
    {
        let m = Moto::start().unwrap();
        assert_eq!(m.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(m.port(), e.port);
        }
        m.python("sm.create_secret(Name='left-behind', SecretString='{}')")
            .unwrap();
    }
    let m = Moto::start().unwrap();
    let listed = m
        .python("print(len(sm.list_secrets()['SecretList']))")
        .unwrap();
    assert_eq!(listed.trim(), "0");
}
