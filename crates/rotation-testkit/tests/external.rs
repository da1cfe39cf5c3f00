//! The external-target switch: with `ROTATION_TEST_POSTGRES_URL`, `ROTATION_TEST_REDIS_URL` or
//! `ROTATION_TEST_SECRETS_MANAGER_ENDPOINT` set, the testkit hands out the server it names
//! (asserted here by its port and by the absence of a process of the testkit's own), reset for
//! each test, instead of starting one. `ROTATION_TEST_REQUIRE_EXTERNAL=1` (set by
//! `scripts/test-external`) makes every variable required, so that step cannot pass on servers
//! the tests started themselves.

use rotation_testkit::external::{
    External, POSTGRES_URL_ENV, REDIS_URL_ENV, SECRETS_MANAGER_ENDPOINT_ENV,
};
use rotation_testkit::{Moto, PgCluster, PgOptions, RedisServer};

fn expected(var: &'static str) -> Option<External> {
    let e = External::from_env(var).expect("a usable URL");
    if std::env::var("ROTATION_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
        assert!(e.is_some(), "{var} must be set for this run");
    }
    e
}

#[test]
fn postgres_comes_from_the_variable_and_is_reset() {
    let want = expected(POSTGRES_URL_ENV);
    {
        let pg = PgCluster::start(PgOptions::default()).unwrap();
        assert_eq!(pg.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(
                (pg.host(), pg.port(), pg.superuser()),
                (e.host.as_str(), e.port, e.user.as_str())
            );
        }
        pg.psql("CREATE ROLE left_behind LOGIN PASSWORD 'Left-pw-1'")
            .unwrap();
        assert!(pg.logs_in("left_behind", "Left-pw-1"));
    }
    // The next test's handle finds nothing the last one made.
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'left_behind'")
            .unwrap(),
        "0"
    );
    // Password authentication: a wrong password is refused.
    assert!(!pg.logs_in(pg.superuser(), "Wrong-pw-1"));
}

#[test]
fn redis_comes_from_the_variable_and_is_reset() {
    let want = expected(REDIS_URL_ENV);
    {
        let r = RedisServer::start(false).unwrap();
        assert_eq!(r.is_external(), want.is_some());
        if let Some(e) = &want {
            assert_eq!(
                (r.host(), r.port(), r.admin()),
                (e.host.as_str(), e.port, e.user.as_str())
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
    let r = RedisServer::start(false).unwrap();
    assert!(!r.cli(&["ACL", "USERS"]).unwrap().contains("left_behind"));
    assert!(!r.logs_in(r.admin(), "Wrong-pw-1").unwrap());
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
