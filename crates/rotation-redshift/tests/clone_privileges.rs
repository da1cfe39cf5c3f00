//! The clone's privileges follow the original's exactly, whatever the names, the number of
//! objects or a stall in the middle, and nothing else changes: the Redshift engine against the
//! PostgreSQL stand-in (md5 auth, `dev` database), with the master checks, the md5 form and the
//! CLI's Redshift rules. Each test states the promise it checks. (kill -9 of `rotate` and two
//! runs at once: the workspace suites' `kill`, every engine.)

use std::time::{Duration, Instant};

use rotation_core::{Deadline, LocalSecretStore, Options, Rotation, RotationError, Rotator, Stage};
use rotation_redshift::{PROFILE, RedshiftRotator, sql};
use rotation_testkit::TcpProxy;
use serde_json::json;

mod common;
#[allow(unused_imports)]
use common::Env;
use common::{Standin, parse};

fn chain<T>(r: &Result<T, RotationError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{} [{}]", rotation_core::error_chain(e), e.kind()),
    }
}

fn with_timeout<R: Rotator>(
    r: Rotation<LocalSecretStore, R>,
    secs: u64,
) -> Rotation<LocalSecretStore, R> {
    r.with_options(Options {
        step_timeout: Duration::from_secs(secs),
        ..Options::default()
    })
}

const APP_GRANTS: &str = "
CREATE SCHEMA s1; CREATE TABLE s1.t1 (x int); CREATE TABLE s1.t2 (x int);
CREATE GROUP readers;
GRANT USAGE ON SCHEMA s1 TO etl_clone; GRANT SELECT, INSERT ON s1.t1 TO etl_clone;
GRANT TEMP ON DATABASE dev TO etl_clone; ALTER GROUP readers ADD USER etl_clone;
GRANT SELECT ON s1.t2 TO GROUP readers;
";

/// FINDING 1. A user whose name happens to end in `_clone` (here `etl_clone`, created by hand
/// long before any rotation) is the secret's user. The first alternating rotation creates
/// `etl` (the "original") and then "brings the clone in line with the original": it REVOKEs
/// every privilege and group membership of `etl_clone`, the user AWSCURRENT names and the
/// application is using, inside setSecret, before anything is promoted. AWS's function copies
/// the current user's privileges to the new user; this engine strips the current user.
///
/// Same mechanism, other entries: the original `app` dropped by hand while `app_clone` is
/// current (it is re-created empty and `app_clone` is stripped); any grant made to `app_clone`
/// while it is current is revoked from it at the next setSecret (long before applications
/// that cache the secret stop using it).
#[tokio::test]
async fn a_current_user_named_like_a_clone_keeps_its_privileges() {
    let env = common::start();
    env.create_user("etl_clone", "Initial-Passw0rd");
    env.pg().psql_db("dev", APP_GRANTS).unwrap();
    let before = env.privileges("etl_clone");
    assert!(before.contains("table s1.t1 INSERT"), "{before:?}");
    assert!(before.contains("group readers"), "{before:?}");
    env.put("master", &env.master()).await;
    let mut v = env.standin_secret("etl_clone", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("etl", &v).await;

    let r = env.alternating().rotate("etl").await;
    assert!(r.is_ok(), "{}", chain(&r));
    let now = env.value("etl", Stage::Current).await;
    assert_eq!(now["username"], "etl");
    // The user the applications used until a moment ago (and keep using until they re-read
    // the secret) has lost everything.
    let after = env.privileges("etl_clone");
    assert_eq!(
        after, before,
        "the current user etl_clone lost privileges during setSecret"
    );
    // And the new user has none of what the applications need.
    assert!(
        env.privileges("etl").contains("table s1.t1 INSERT"),
        "the new AWSCURRENT user etl lacks the privileges its applications need: {:?}",
        env.privileges("etl")
    );
}

/// Hostile names in the privilege synchronisation: schemas, tables, views and groups with
/// quotes, dots, spaces, semicolons, unicode and 63-byte names are quoted by the server, and
/// the clone ends up with exactly the original's privileges.
#[tokio::test]
async fn hostile_object_and_group_names_are_synchronised_exactly() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    let long = "l".repeat(63);
    let names = [
        "we\"ird",
        "dot.ted",
        "sp ace",
        "semi;colon",
        "apos'trophe",
        "ünï",
        "SELECT",
        "x); DROP TABLE s.t; --",
        long.as_str(),
    ];
    for (i, n) in names.iter().enumerate() {
        env.pg()
            .psql_vars(
                "\\c dev\nCREATE SCHEMA :\"n\"; CREATE TABLE :\"n\".:\"n\" (x int); \
                 CREATE VIEW :\"n\".:\"v\" AS SELECT 1 AS x; CREATE GROUP :\"n\"; \
                 GRANT USAGE ON SCHEMA :\"n\" TO app; GRANT SELECT, UPDATE ON :\"n\".:\"n\" TO app; \
                 GRANT SELECT ON :\"n\".:\"v\" TO GROUP :\"n\"; ALTER GROUP :\"n\" ADD USER app;",
                &[("n", n), ("v", &format!("v{i}\"'"))],
            )
            .unwrap_or_else(|e| panic!("{n:?}: {e}"));
    }
    env.put("master", &env.master()).await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let r = env.alternating();
    let res = r.rotate("app").await;
    assert!(res.is_ok(), "{}", chain(&res));
    let a = env.privileges("app");
    assert!(a.len() > names.len() * 3, "{a:?}");
    assert_eq!(env.privileges("app_clone"), a);
    // The original loses them again; the next rotation (back to app) revokes them from the
    // clone.
    for n in names {
        env.pg()
            .psql_vars(
                "\\c dev\nREVOKE UPDATE ON :\"n\".:\"n\" FROM app; ALTER GROUP :\"n\" DROP USER app;",
                &[("n", n)],
            )
            .unwrap();
    }
    let res = r.rotate("app").await;
    assert!(res.is_ok(), "{}", chain(&res));
    let res = r.rotate("app").await;
    assert!(res.is_ok(), "{}", chain(&res));
    assert_eq!(env.privileges("app_clone"), env.privileges("app"));
    assert!(
        !env.privileges("app_clone")
            .iter()
            .any(|l| l.starts_with("group "))
    );
}

/// Thousands of tables: the statements stay bounded and the step ends well within 60 s.
#[tokio::test]
async fn five_thousand_tables_synchronise_within_the_step() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.pg()
        .psql_db(
            "dev",
            "CREATE SCHEMA big; GRANT USAGE ON SCHEMA big TO app;",
        )
        .unwrap();
    for batch in 0..10 {
        env.pg()
            .psql_db(
                "dev",
                &format!(
                    "DO $$ BEGIN FOR i IN {}..{} LOOP \
                       EXECUTE format('CREATE TABLE big.%I (x int)', 'Tab \"' || i); \
                       EXECUTE format('GRANT SELECT, INSERT ON big.%I TO app', 'Tab \"' || i); \
                     END LOOP; END $$;",
                    batch * 500 + 1,
                    batch * 500 + 500
                ),
            )
            .unwrap();
    }
    env.put("master", &env.master()).await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let started = Instant::now();
    let r = env.alternating().rotate("app").await;
    let took = started.elapsed();
    assert!(r.is_ok(), "{}", chain(&r));
    eprintln!("5000 tables: first rotation took {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(env.privileges("app_clone"), env.privileges("app"));
}

// ---------------------------------------------------------------------------------------------
// The `rotate` CLI on a Redshift secret (engine read from the secret).

/// The `rotate` binary: `$ATK_ROTATE`, else `target/<profile>/rotate` beside this test.
fn rotate_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("ATK_ROTATE") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("rotate");
    assert!(
        bin.exists(),
        "build the CLI first (cargo build -p rotation-cli) or set ATK_ROTATE"
    );
    bin
}

fn rotate_cmd(store: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(rotate_bin());
    c.arg("--store")
        .arg(format!("file:{}", store.display()))
        .args(args)
        .env_remove("ROTATION_STRATEGY")
        .env_remove("ROTATE_STORE")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// `rotate -vv` (and RUST_LOG=trace) on Redshift rotations prints no password, and no md5
/// hash of one (which logs in as well as the password under md5 authentication).
#[tokio::test]
async fn verbose_cli_output_carries_no_secret() {
    let env = common::start();
    env.create_user("single", "Initial-Passw0rd");
    env.create_user("pair", "Initial-Passw0rd");
    env.put("master", &env.master()).await;
    env.put("single", &env.standin_secret("single", "Initial-Passw0rd"))
        .await;
    let mut p = env.standin_secret("pair", "Initial-Passw0rd");
    p["masterarn"] = json!("master");
    env.put("pair", &p).await;
    let store = env.store_path();
    let mut secrets: Vec<String> = vec![
        "Initial-Passw0rd".into(),
        env.pg().superuser_password().into(),
    ];
    let mut output = String::new();
    for (secret, strategy) in [
        ("single", "single-user"),
        ("pair", "alternating-users"),
        ("pair", "alternating-users"),
    ] {
        for trace in [false, true] {
            let mut c = rotate_cmd(&store, &["-vv", "run", secret, "--strategy", strategy]);
            if trace {
                c.env("RUST_LOG", "trace");
            }
            let o = c.output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            output.push_str(&String::from_utf8_lossy(&o.stdout));
            output.push_str(&String::from_utf8_lossy(&o.stderr));
            let cur = env.value(secret, Stage::Current).await;
            let pw = cur["password"].as_str().unwrap().to_string();
            secrets.push(sql::md5_password(&pw, cur["username"].as_str().unwrap()));
            secrets
                .push(sql::md5_password(&pw, cur["username"].as_str().unwrap())[3..].to_string());
            secrets.push(pw);
        }
    }
    // Failing runs too: a wrong password for the master.
    let mut m = env.master();
    m["password"] = json!("Wrong-Passw0rd-xyz");
    env.put("badmaster", &m).await;
    let mut p2 = env.value("pair", Stage::Current).await;
    p2["masterarn"] = json!("badmaster");
    env.put("pair2", &p2).await;
    let o = rotate_cmd(
        &store,
        &["-vv", "run", "pair2", "--strategy", "alternating-users"],
    )
    .env("RUST_LOG", "trace")
    .output()
    .unwrap();
    assert!(!o.status.success());
    output.push_str(&String::from_utf8_lossy(&o.stderr));
    secrets.push("Wrong-Passw0rd-xyz".into());
    assert!(output.len() > 1000, "{output}");
    for s in &secrets {
        assert!(
            !output.contains(s.as_str()),
            "the output shows a secret ({}…)",
            &s[..4]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Stalls, masters, pairs.

fn pair_setup_sql() -> &'static str {
    "CREATE SCHEMA s; CREATE TABLE s.t (x int); CREATE GROUP g; \
     GRANT USAGE ON SCHEMA s TO app; GRANT SELECT ON s.t TO app; ALTER GROUP g ADD USER app;"
}

/// A connection stalled during the privilege synchronisation (at its first GRANT): the step
/// fails with a Timeout at its deadline and nothing is committed (no clone without
/// privileges); once the stalled connection is gone, resume completes.
#[tokio::test]
async fn a_stall_during_the_privilege_sync_fails_in_time_and_commits_nothing() {
    let (env, proxy) = stalled_pair().await;
    let r = with_timeout(env.alternating(), 4);
    let started = Instant::now();
    let res = r.rotate("app").await;
    let took = started.elapsed();
    assert!(res.is_err(), "the rotation went through a stalled GRANT");
    eprintln!("stalled: {took:?} {}", chain(&res));
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(chain(&res).contains("Timeout"), "{}", chain(&res));
    assert_eq!(proxy.stalls_triggered(), 1);
    assert!(
        !env.user_exists("app_clone"),
        "the clone was committed without its privileges"
    );
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
    proxy.stall_on_query("no statement contains this");
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = r.resume("app").await;
    assert!(res.is_ok(), "{}", chain(&res));
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "app_clone");
    assert_eq!(env.privileges("app_clone"), env.privileges("app"));
}

async fn stalled_pair() -> (Env, TcpProxy) {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.pg().psql_db("dev", pair_setup_sql()).unwrap();
    let proxy = TcpProxy::to_port(env.pg().port()).unwrap();
    let mut m = env.master();
    m["port"] = json!(proxy.port());
    env.put("master", &m).await;
    let mut v = env.secret_at(proxy.port(), "app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    proxy.stall_on_query("GRANT");
    (env, proxy)
}

/// The known limit (the crate docs): after a stall, the abandoned session's uncommitted CREATE USER
/// stays open on the server for as long as the server keeps the connection (here: the proxy
/// holds it, as a half-dead network path does; the server's TCP keepalive defaults to hours).
/// Every resume until then queues behind it and fails by its deadline, changing nothing;
/// PostgreSQL's `idle_in_transaction_session_timeout` would end it, and Redshift has none.
/// Once the connection goes, the next resume rotates. Asserted as it is, so that a change of
/// it fails here.
#[tokio::test]
async fn a_stalled_transaction_blocks_retries_until_its_connection_goes_as_documented() {
    let (env, proxy) = stalled_pair().await;
    let r = with_timeout(env.alternating(), 4);
    assert!(r.rotate("app").await.is_err());
    proxy.stall_on_query("no statement contains this");
    // Well after the failed step's deadline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = Instant::now();
    let res = r.resume("app").await;
    eprintln!(
        "resume while the stalled session lingers: {:?} {}",
        started.elapsed(),
        chain(&res)
    );
    assert!(
        res.is_err(),
        "the documented limit changed (a resume went through while the stalled transaction \
         lingered): update the crate docs and this test"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The network path dies: the server ends the session, and the next resume rotates.
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res = r.resume("app").await;
    assert!(res.is_ok(), "{}", chain(&res));
}

/// The master secret names one of the pair (its own user, the clone of its own user, or in
/// another case), or masterarn names the secret itself: refused before any change.
#[tokio::test]
async fn a_master_in_the_pair_or_masterarn_pointing_to_itself_changes_nothing() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.put("master", &env.master()).await;
    let su = env.pg().superuser().to_string();
    let before = env.stored_password(&su);
    // masterarn pointing to the secret itself.
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("selfref");
    env.put("selfref", &v).await;
    let res = env.alternating().rotate("selfref").await;
    assert!(res.is_err(), "self-referencing masterarn rotated");
    eprintln!("selfref: {}", chain(&res));
    assert!(!env.user_exists("app_clone"));
    // The master's own user as the secret's user, and as the clone's name.
    let mut v = env.master();
    v["masterarn"] = json!("master");
    env.put("m1", &v).await;
    let res = env.alternating().rotate("m1").await;
    assert!(chain(&res).contains("MasterInPair"), "{}", chain(&res));
    env.create_user(&format!("{su}_clone"), "Clone-Passw0rd1");
    let mut v = env.standin_secret(&format!("{su}_clone"), "Clone-Passw0rd1");
    v["masterarn"] = json!("master");
    env.put("m2", &v).await;
    let res = env.alternating().rotate("m2").await;
    assert!(chain(&res).contains("MasterInPair"), "{}", chain(&res));
    assert_eq!(env.stored_password(&su), before);
    assert!(env.logs_in(&env.master()).await);
}

/// A master that is not a superuser (CREATEROLE only) and a table it cannot grant on (owned by
/// another user, who granted SELECT to the original): what does the rotation do?
#[tokio::test]
async fn a_master_that_cannot_grant_on_an_object() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.create_user("owner", "Owner-Passw0rd1");
    env.pg()
        .psql_db(
            "dev",
            "CREATE USER admin CREATEROLE PASSWORD 'Admin-Passw0rd1'; \
             CREATE SCHEMA s AUTHORIZATION owner; SET ROLE owner; CREATE TABLE s.t (x int); \
             GRANT USAGE ON SCHEMA s TO app; GRANT SELECT ON s.t TO app; RESET ROLE;",
        )
        .unwrap();
    env.put("master", &env.standin_secret("admin", "Admin-Passw0rd1"))
        .await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let res = env.alternating().rotate("app").await;
    eprintln!("non-superuser master: {}", chain(&res));
    assert!(!env.user_exists("app_clone") || res.is_ok());
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

/// A clone created by hand as a superuser (or with extra privileges the sync does not cover)
/// stays so: the rotation hands out a superuser's credentials as the application's.
#[tokio::test]
async fn a_superuser_clone_is_refused_or_brought_in_line() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.pg()
        .psql("CREATE USER app_clone SUPERUSER PASSWORD 'Clone-Passw0rd1'")
        .unwrap();
    env.put("master", &env.master()).await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let res = env.alternating().rotate("app").await;
    let now = env.value("app", Stage::Current).await;
    let superuser = env
        .pg()
        .psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'app_clone'")
        .unwrap();
    // Refused with a message that says why, and AWSCURRENT still names the original.
    let e = res.expect_err("a superuser clone is refused");
    assert!(chain(&Err::<(), _>(e)).contains("superuser"));
    assert_eq!(now["username"], "app");
    assert_eq!(superuser, "t", "nothing changed the clone");
}

/// A non-superuser admin (CREATEROLE; on Redshift a user with the CREATE USER system
/// permission) and a private schema that has nothing to do with the pair: every alternating
/// rotation of every secret on the cluster fails, because the table query resolves every
/// table's name as the admin (`has_table_privilege(user, 'schema.table', ...)` needs USAGE on
/// the schema to look the name up).
#[tokio::test]
async fn a_private_schema_unrelated_to_the_pair_does_not_block_rotation() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.create_user("someone", "Someone-Passw0rd1");
    env.pg()
        .psql_db(
            "dev",
            "CREATE USER admin CREATEROLE PASSWORD 'Admin-Passw0rd1'; \
             CREATE SCHEMA app_s AUTHORIZATION admin; CREATE TABLE app_s.t (x int); ALTER TABLE app_s.t OWNER TO admin; \
             GRANT USAGE ON SCHEMA app_s TO app; GRANT SELECT ON app_s.t TO app; \
             CREATE SCHEMA private AUTHORIZATION someone; SET ROLE someone; CREATE TABLE private.diary (x int); RESET ROLE;",
        )
        .unwrap();
    env.put("master", &env.standin_secret("admin", "Admin-Passw0rd1"))
        .await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let res = env.alternating().rotate("app").await;
    assert!(res.is_ok(), "{}", chain(&res));
    assert_eq!(env.privileges("app_clone"), env.privileges("app"));
}

/// A hand-made clone that was given SELECT WITH GRANT OPTION and passed it on: once the
/// original loses SELECT, the REVOKE fails ("dependent privileges exist") on every rotation.
#[tokio::test]
async fn a_clone_that_passed_a_privilege_on() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.create_user("app_clone", "Clone-Passw0rd1");
    env.create_user("third", "Third-Passw0rd1");
    env.pg()
        .psql_db(
            "dev",
            "CREATE SCHEMA s; CREATE TABLE s.t (x int); GRANT USAGE ON SCHEMA s TO app, app_clone, third; \
             GRANT SELECT ON s.t TO app_clone WITH GRANT OPTION; \
             SET ROLE app_clone; GRANT SELECT ON s.t TO third; RESET ROLE;",
        )
        .unwrap();
    env.put("master", &env.master()).await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let res = env.alternating().rotate("app").await;
    eprintln!("clone with a dependent grant: {}", chain(&res));
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

/// The CLI on a Redshift secret applies Redshift's password policy and its limits, and the
/// engine override cannot cross engines.
#[tokio::test]
async fn cli_applies_redshifts_password_policy_and_engine_checks() {
    let env = common::start();
    env.create_user("single", "Initial-Passw0rd");
    env.put("single", &env.standin_secret("single", "Initial-Passw0rd"))
        .await;
    let mut pgv = env.standin_secret("single", "Initial-Passw0rd");
    pgv["engine"] = json!("postgres");
    env.put("pgsecret", &pgv).await;
    let store = env.store_path();
    let run = |envs: &[(&str, &str)], extra: &[&str], secret: &str| {
        let mut args = vec!["run", secret, "--strategy", "single-user"];
        args.extend_from_slice(extra);
        let mut c = rotate_cmd(&store, &args);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let code = |o: &std::process::Output| o.status.code();
    // Outside Redshift's 8-64.
    for len in ["7", "65", "1000"] {
        let o = run(&[("PASSWORD_LENGTH", len)], &[], "single");
        assert_eq!(
            code(&o),
            Some(2),
            "PASSWORD_LENGTH={len}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // No digit left.
    let o = run(&[("EXCLUDE_CHARACTERS", "0123456789")], &[], "single");
    assert_eq!(code(&o), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[("EXCLUDE_NUMBERS", "true")], &[], "single");
    eprintln!(
        "EXCLUDE_NUMBERS=true: {:?} {}",
        code(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    // Every rule and character allowed: the generated passwords still meet Redshift's rules.
    for _ in 0..5 {
        let o = run(
            &[
                ("PASSWORD_LENGTH", "8"),
                ("EXCLUDE_CHARACTERS", ""),
                ("EXCLUDE_PUNCTUATION", "false"),
                ("REQUIRE_EACH_INCLUDED_TYPE", "false"),
                ("EXCLUDE_UPPERCASE", "true"),
            ],
            &[],
            "single",
        );
        assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let now = env.value("single", Stage::Current).await;
        let pw = now["password"].as_str().unwrap();
        assert!(PROFILE.password.check(pw).is_ok(), "{pw}");
        assert!(env.logs_in(&now).await);
    }
    // Every lower-case letter excluded: stops at start; all but one: works and meets the rules.
    let o = run(
        &[("EXCLUDE_CHARACTERS", "abcdefghijklmnopqrstuvwxyz")],
        &[],
        "single",
    );
    assert_eq!(code(&o), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    for _ in 0..3 {
        let o = run(
            &[
                (
                    "EXCLUDE_CHARACTERS",
                    "abcdefghijklmnopqrstuvwxyABCDEFGHIJKLMNOPQRSTUVWXY012345678",
                ),
                ("PASSWORD_LENGTH", "8"),
                ("EXCLUDE_PUNCTUATION", "true"),
            ],
            &[],
            "single",
        );
        assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let now = env.value("single", Stage::Current).await;
        let pw = now["password"].as_str().unwrap();
        assert!(PROFILE.password.check(pw).is_ok(), "{pw}");
        assert!(env.logs_in(&now).await);
    }
    // Engine override across engines: refused, nothing changed.
    let before = env.stored_password("single");
    let o = run(&[], &["--engine", "redshift"], "pgsecret");
    assert_eq!(code(&o), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[], &["--engine", "postgres"], "single");
    assert_eq!(code(&o), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(env.stored_password("single"), before);
}

/// Logs in with md5 authentication knowing only the stored md5 form (`md5` + 32 hex digits),
/// not the password: the client's answer is md5(hex || salt). Returns the session's user.
async fn login_with_hash(port: u16, user: &str, hash_hex: &str) -> Result<String, String> {
    use md5::{Digest, Md5};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "dev")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).await.map_err(|e| e.to_string())?;
    let mut read_msg = async || -> Result<(u8, Vec<u8>), String> {
        let tag = s.read_u8().await.map_err(|e| e.to_string())?;
        let len = s.read_i32().await.map_err(|e| e.to_string())? as usize;
        let mut b = vec![0; len - 4];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok((tag, b))
    };
    let (tag, b) = read_msg().await?;
    if tag != b'R' || b[..4] != 5i32.to_be_bytes() {
        return Err(format!("not an md5 request: {tag} {b:?}"));
    }
    let salt = b[4..8].to_vec();
    let mut h = Md5::new();
    h.update(hash_hex.as_bytes());
    h.update(&salt);
    let answer: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let pw = format!("md5{answer}\0");
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((pw.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(pw.as_bytes());
    s.write_all(&msg).await.map_err(|e| e.to_string())?;
    let tag = s.read_u8().await.map_err(|e| e.to_string())?;
    let len = s.read_i32().await.map_err(|e| e.to_string())? as usize;
    let mut b = vec![0; len - 4];
    s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    if tag == b'R' && b[..4] == 0i32.to_be_bytes() {
        Ok(user.to_string())
    } else {
        Err(String::from_utf8_lossy(&b).into_owned())
    }
}

/// The crate docs say the server "never saw the password" and its log never shows it. Under md5
/// authentication (Redshift's and the stand-in's), the md5 form that the engine sends in
/// `ALTER USER ... PASSWORD 'md5...'` is itself a login credential: whoever reads the statement
/// log (the stand-in's log_statement; on Redshift any statement or audit log that keeps DDL
/// text unmasked) logs in as the user without knowing the password.
#[tokio::test]
async fn the_md5_form_in_the_statement_log_logs_in() {
    let env = common::logged();
    env.create_user("app", "Initial-Passw0rd");
    env.put("app", &env.standin_secret("app", "Initial-Passw0rd"))
        .await;
    let r = env.rotation(RedshiftRotator::single_user(env.config().clone()));
    r.rotate("app").await.unwrap();
    let log = env.pg().server_log();
    let line = log
        .lines()
        .find(|l| l.contains("ALTER USER"))
        .expect("the ALTER USER is logged");
    let hex = line.split("PASSWORD 'md5").nth(1).unwrap()[..32].to_string();
    let pw = env.value("app", Stage::Current).await["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!log.contains(&pw), "the password itself is not logged");
    // Without the password, from the log line alone:
    let who = login_with_hash(env.pg().port(), "app", &hex).await;
    eprintln!("login with the logged md5 form: {who:?}");
    assert_eq!(
        who,
        Ok("app".to_string()),
        "expected the pass-the-hash login to work"
    );
    // A wrong hash is refused (the raw client is right).
    assert!(
        login_with_hash(env.pg().port(), "app", &"0".repeat(32))
            .await
            .is_err()
    );
}

/// Single user: the engine changes the password of `current_user`, accepting it when it is the
/// secret's user name in lower case (for Redshift's folding). On a server that keeps case, a
/// user `App` whose sessions start as role `app` (ALTER ROLE "App" SET role = 'app') makes the
/// rotation of `App`'s secret change `app`'s password: a bystander locked out, `App`'s own
/// password unchanged, and the rotation failing at testSecret.
#[tokio::test]
async fn single_user_never_changes_a_lower_case_namesake() {
    let env = common::start();
    env.create_user("App", "Initial-Passw0rd");
    env.create_user("app", "Bystander-Passw0rd1");
    env.pg()
        .psql("GRANT app TO \"App\"; ALTER ROLE \"App\" IN DATABASE dev SET role = 'app';")
        .unwrap();
    let bystander = env.standin_secret("app", "Bystander-Passw0rd1");
    assert!(env.logs_in(&bystander).await);
    env.put("s", &env.standin_secret("App", "Initial-Passw0rd"))
        .await;
    let r = env.rotation(RedshiftRotator::single_user(env.config().clone()));
    let res = r.rotate("s").await;
    eprintln!("rotation of App: {}", chain(&res));
    assert!(
        env.logs_in(&bystander).await,
        "the bystander app was locked out by the rotation of App's secret"
    );
}

/// Debug output of the secret, the rotator, sessions and errors carries no password.
#[tokio::test]
async fn debug_output_carries_no_secret() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    let v = env.standin_secret("app", "Initial-Passw0rd");
    let r = RedshiftRotator::single_user(env.config().clone());
    let mut text = format!("{:?} {:?}", parse(&v), r);
    let s = r
        .login(&parse(&v), Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap();
    text.push_str(&format!("{s:?}"));
    r.close(s).await;
    let mut bad = v.clone();
    bad["password"] = json!("Wrong-Passw0rd-1");
    let e = r
        .login(&parse(&bad), Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap_err();
    text.push_str(&format!("{e:?} {e}"));
    // A failing alternating rotation, through the whole error chain.
    let mut m = env.master();
    m["password"] = json!("Wrong-Master-Passw0rd-1");
    env.put("master", &m).await;
    let mut c = v.clone();
    c["masterarn"] = json!("master");
    env.put("app", &c).await;
    let res = env.alternating().rotate("app").await;
    let e = res.unwrap_err();
    text.push_str(&format!("{e:?} {e} {}", rotation_core::error_chain(&e)));
    for secret in [
        "Initial-Passw0rd",
        "Wrong-Passw0rd-1",
        "Wrong-Master-Passw0rd-1",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let pending = env.value("app", Stage::Pending).await;
    assert!(!text.contains(pending["password"].as_str().unwrap()));
}

/// FINDING 1, second entry: a grant made to the user that is AWSCURRENT (the clone, after an
/// odd number of rotations) is revoked from it by the next setSecret, while applications still
/// use it, and the new AWSCURRENT user never had it.
#[tokio::test]
async fn a_grant_to_the_current_clone_is_not_taken_from_it_mid_rotation() {
    let env = common::start();
    env.create_user("app", "Initial-Passw0rd");
    env.pg().psql_db("dev", pair_setup_sql()).unwrap();
    env.put("master", &env.master()).await;
    let mut v = env.standin_secret("app", "Initial-Passw0rd");
    v["masterarn"] = json!("master");
    env.put("app", &v).await;
    let r = env.alternating();
    r.rotate("app").await.unwrap();
    assert_eq!(
        env.value("app", Stage::Current).await["username"],
        "app_clone"
    );
    // The DBA grants the user the application is using now.
    env.pg()
        .psql_db(
            "dev",
            "CREATE TABLE s.orders (x int); GRANT SELECT, INSERT ON s.orders TO app_clone;",
        )
        .unwrap();
    r.rotate("app").await.unwrap();
    let clone = env.privileges("app_clone");
    let app = env.privileges("app");
    // The clone was in use during that rotation: it keeps the grant (the original, which is
    // the pair's source of truth, does not get it; the crate docs).
    assert!(
        clone.contains("table s.orders INSERT"),
        "the user in use lost a grant mid-rotation: app_clone {clone:?}, app {app:?}"
    );
}

/// Hostile and mixed-case user names in the privilege synchronisation (the names are bound as
/// parameters and quoted by the server): the clone gets exactly the original's privileges, in
/// both directions.
#[tokio::test]
async fn hostile_user_names_get_their_privileges_synchronised() {
    let env = common::start();
    env.put("master", &env.master()).await;
    let r = env.alternating();
    for (i, name) in [
        "Mixed \"Q\" Name",
        "o'brien; DROP USER postgres; --",
        "ÜSER.x",
    ]
    .iter()
    .enumerate()
    {
        env.create_user(name, "Initial-Passw0rd");
        env.pg()
            .psql_vars(
                "\\c dev\nCREATE SCHEMA :\"s\"; CREATE TABLE :\"s\".t (x int); CREATE GROUP :\"s\"; \
                 GRANT USAGE ON SCHEMA :\"s\" TO :\"u\"; GRANT SELECT, DELETE ON :\"s\".t TO :\"u\"; \
                 ALTER GROUP :\"s\" ADD USER :\"u\";",
                &[("u", name), ("s", &format!("s{i}"))],
            )
            .unwrap();
        let mut v = env.standin_secret(name, "Initial-Passw0rd");
        v["masterarn"] = json!("master");
        let id = format!("h{i}");
        env.put(&id, &v).await;
        for round in 0..2 {
            let res = r.rotate(&id).await;
            assert!(res.is_ok(), "{name:?} round {round}: {}", chain(&res));
        }
        let clone = format!("{name}_clone");
        let a = env.privileges(name);
        assert!(a.contains(&format!("table s{i}.t DELETE")), "{a:?}");
        assert_eq!(env.privileges(&clone), a, "{name:?}");
        assert!(env.logs_in(&env.value(&id, Stage::Current).await).await);
    }
    assert!(env.logs_in(&env.master()).await);
}
