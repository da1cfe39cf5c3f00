//! The MySQL / MariaDB engine against the testkit's MariaDB, where the shared promise suites
//! cannot look: the clone kept in line with the original by difference (privileges per object
//! and column, the grant option, roles, the default role, account limits), accounts the engine
//! refuses before anything changes (several hosts for one name, another plugin), what the
//! general log of a rotation holds, AWS's secret layouts rotated here and back, and the clone
//! name's limit in characters.

use std::time::Duration;

use rotation_core::{
    DatabaseSecret, Deadline, EngineEnv, ErrorKind, Rotator, Strategy, UsernameLimit,
};
use rotation_mysql::sql::native_hash;
use rotation_mysql::{MysqlConfig, MysqlRotator};
use rotation_testkit::mariadb::{MariaDb, literal};
use rotation_trust::ConnectSettings;
use secrecy::SecretString;
use serde_json::{Value, json};

fn parse(v: &Value) -> DatabaseSecret {
    DatabaseSecret::parse(&SecretString::from(v.to_string())).expect("a valid secret")
}

fn secret(db: &MariaDb, user: &str, password: &str) -> Value {
    json!({"engine": "mariadb", "host": "127.0.0.1", "port": db.port(), "username": user,
           "password": password, "ssl": false})
}

fn rotator(strategy: Strategy) -> MysqlRotator {
    MysqlRotator::new(strategy, MysqlConfig::new(ConnectSettings::default()))
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(20))
}

fn sql(db: &MariaDb, s: &str) -> String {
    db.sql(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `SHOW GRANTS FOR user@'%'` with the user's name taken out, sorted, and the password's
/// stored form cut off: what two accounts must share.
fn rights(db: &MariaDb, user: &str) -> Vec<String> {
    let name = format!("`{user}`@`%`");
    let mut lines: Vec<String> = sql(
        db,
        &format!(
            "SET SESSION sql_mode = ''; SHOW GRANTS FOR {}@'%'",
            literal(user)
        ),
    )
    .lines()
    .map(|l| {
        let l = l.replace(&name, "<account>");
        match l.find(" IDENTIFIED BY PASSWORD") {
            Some(i) => l[..i].to_string(),
            None => l,
        }
    })
    .collect();
    lines.sort();
    lines
}

/// The account's options as `SHOW CREATE USER` prints them after its credentials.
fn options(db: &MariaDb, user: &str) -> String {
    let line = sql(
        db,
        &format!(
            "SET SESSION sql_mode = ''; SHOW CREATE USER {}@'%'",
            literal(user)
        ),
    );
    let line = line.trim();
    match line.find(" IDENTIFIED BY PASSWORD '") {
        Some(i) => line[i + 25 + 41..].trim().to_string(),
        None => line
            .split_once("`@`%`")
            .map(|(_, r)| r.trim().to_string())
            .unwrap_or_default(),
    }
}

async fn as_master(
    db: &MariaDb,
    current: &str,
    target: &str,
    password: &str,
) -> Result<(), rotation_core::EngineError> {
    let (admin, admin_pw) = db.admin();
    as_master_named(db, (admin, admin_pw), current, target, password).await
}

async fn as_master_named(
    db: &MariaDb,
    master: (&str, &str),
    current: &str,
    target: &str,
    password: &str,
) -> Result<(), rotation_core::EngineError> {
    let r = rotator(Strategy::AlternatingUsers);
    let mut s = r
        .login(&parse(&secret(db, master.0, master.1)), deadline())
        .await
        .expect("master login");
    let out = r
        .set_password_as_master(
            &mut s,
            &parse(&secret(db, current, "unused-here")),
            &parse(&secret(db, target, password)),
        )
        .await;
    r.close(s).await;
    out
}

#[tokio::test]
async fn the_clone_follows_the_original_by_difference() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    sql(
        &db,
        &format!(
            "CREATE TABLE app.t (a INT, b INT); CREATE ROLE reader; GRANT SELECT ON app.* TO reader; \
             GRANT reader TO {admin}@'%' WITH ADMIN OPTION; \
             CREATE USER app@'%' IDENTIFIED BY PASSWORD '{}' WITH MAX_USER_CONNECTIONS 5; \
             GRANT SELECT, INSERT ON app.* TO app@'%' WITH GRANT OPTION; \
             GRANT UPDATE (a, b) ON app.t TO app@'%'; GRANT reader TO app@'%'; \
             SET DEFAULT ROLE reader FOR app@'%'",
            native_hash("App-initial-pw-1"),
            admin = literal(db.admin().0),
        ),
    );
    // A new clone gets what the original has, and its password.
    as_master(&db, "app", "app_clone", "Clone-pw-number-1")
        .await
        .expect("clone made");
    assert_eq!(rights(&db, "app_clone"), rights(&db, "app"));
    assert_eq!(options(&db, "app_clone"), options(&db, "app"));
    assert!(
        options(&db, "app").contains("MAX_USER_CONNECTIONS 5"),
        "{}",
        options(&db, "app")
    );
    assert!(db.logs_in("app_clone", "Clone-pw-number-1").unwrap());

    // The original loses INSERT, a column and its role; the clone gained DELETE by hand.
    sql(
        &db,
        "REVOKE INSERT ON app.* FROM app@'%'; REVOKE UPDATE (b) ON app.t FROM app@'%'; \
         REVOKE reader FROM app@'%'; SET DEFAULT ROLE NONE FOR app@'%'; \
         GRANT DELETE ON app.* TO app_clone@'%'; ALTER USER app@'%' WITH MAX_USER_CONNECTIONS 7",
    );
    // The clone is pending: it follows the original exactly.
    as_master(&db, "app", "app_clone", "Clone-pw-number-2")
        .await
        .expect("clone in line");
    assert_eq!(rights(&db, "app_clone"), rights(&db, "app"));
    assert_eq!(options(&db, "app_clone"), options(&db, "app"));
    let clone = rights(&db, "app_clone").join("\n");
    assert!(
        !clone.contains("INSERT") && !clone.contains("DELETE") && !clone.contains("reader"),
        "{clone}"
    );
    assert!(db.logs_in("app_clone", "Clone-pw-number-2").unwrap());

    // The clone is in use (AWSCURRENT) and the original pending: the clone gains what the
    // original gained, and loses nothing mid-rotation (its DELETE stays until it is pending).
    sql(
        &db,
        "GRANT DELETE ON app.* TO app_clone@'%'; GRANT INSERT ON app.* TO app@'%'",
    );
    as_master(&db, "app_clone", "app", "App-pw-number-3")
        .await
        .expect("clone in line while in use");
    let clone = rights(&db, "app_clone").join("\n");
    assert!(
        clone.contains("INSERT") && clone.contains("DELETE"),
        "{clone}"
    );
    assert!(
        !rights(&db, "app").join("\n").contains("DELETE"),
        "{:?}",
        rights(&db, "app")
    );
    assert!(db.logs_in("app", "App-pw-number-3").unwrap());
}

#[tokio::test]
async fn accounts_the_engine_cannot_name_are_refused_before_anything_changes() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    let hash = native_hash("App-initial-pw-1");
    sql(
        &db,
        &format!(
            "CREATE USER app@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             CREATE USER app@'localhost' IDENTIFIED BY PASSWORD '{hash}'; \
             CREATE USER sock@'%' IDENTIFIED VIA unix_socket OR mysql_native_password USING '{hash}'"
        ),
    );
    let fingerprint = || {
        sql(
            &db,
            "SELECT CONCAT(user, '@', host, ' ', priv) FROM mysql.global_priv ORDER BY user, host",
        )
    };
    let before = fingerprint();

    // Several accounts of one name: the secret cannot say which.
    let e = as_master(&db, "app", "app_clone", "Clone-pw-number-1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("app@%") && text.contains("app@localhost"),
        "{text}"
    );

    // Another plugin first: refused as the original of a pair, and as a single user.
    let e = as_master(&db, "sock", "sock_clone", "Clone-pw-number-1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("unix_socket"), "{e}");
    let r = rotator(Strategy::SingleUser);
    let mut s = r
        .login(&parse(&secret(&db, "sock", "App-initial-pw-1")), deadline())
        .await
        .expect("sock logs in with its password");
    let e = r
        .set_own_password(&mut s, &parse(&secret(&db, "sock", "New-pw-number-1")))
        .await
        .unwrap_err();
    r.close(s).await;
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("unix_socket"), "{e}");
    assert_eq!(fingerprint(), before, "a refusal changed an account");
}

#[tokio::test]
async fn aws_layouts_rotate_here_and_back_with_no_password_in_the_log() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    // AWS's single-user function sets a password as `SET PASSWORD = PASSWORD(%s)`: the same
    // stored form.
    sql(
        &db,
        &format!(
            "CREATE USER app@'%' IDENTIFIED BY PASSWORD '{}'; GRANT SELECT ON app.* TO app@'%'",
            native_hash("Aws-set-pw-1")
        ),
    );
    let r = rotator(Strategy::SingleUser);
    let mut password = "Aws-set-pw-1".to_string();
    for (i, engine) in ["mysql", "aurora-mysql", "mariadb"].into_iter().enumerate() {
        // AWS's layout: port as a number, a dbname, no ssl key would mean verified TLS here,
        // so the test server's plaintext is said explicitly.
        let current = json!({"engine": engine, "host": "localhost", "port": db.port(), "dbname": "app",
                             "username": "app", "password": password, "ssl": "false"});
        let next = format!("Ours-pw-number-{i}");
        let mut pending = current.clone();
        pending["password"] = json!(next);
        let mut s = r
            .login(&parse(&current), deadline())
            .await
            .expect("AWS's password logs in");
        r.set_own_password(&mut s, &parse(&pending))
            .await
            .expect("rotated here");
        r.close(s).await;
        assert!(db.logs_in("app", &next).unwrap());
        assert!(!db.logs_in("app", &password).unwrap());
        // And back: AWS's statement, as the user, from our password.
        password = format!("Aws-set-pw-{}", i + 2);
        sql(
            &db,
            &format!("SET PASSWORD FOR app@'%' = '{}'", native_hash(&password)),
        );
        assert!(db.logs_in("app", &password).unwrap());
        let log = db.log();
        assert!(!log.contains(&next), "our password in the general log");
        assert!(
            log.contains(&native_hash(&next)),
            "the change went by its stored form"
        );
    }
}

#[test]
fn the_clone_name_is_limited_in_characters_by_the_secrets_engine() {
    let named = |engine: &str| {
        parse(&json!({"engine": engine, "host": "h", "username": "u", "password": "p"}))
    };
    let limit = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let env = EngineEnv {
            lookup: &lookup,
            aws: None,
        };
        (rotation_mysql::ENGINE.configure)(&env).map(|c| {
            let r = c.rotator(Strategy::AlternatingUsers);
            (
                r.username_limit(&named("mysql")),
                r.username_limit(&named("aurora-mysql")),
                r.username_limit(&named("mariadb")),
            )
        })
    };
    assert_eq!(
        limit(&[]).unwrap(),
        (
            Some(UsernameLimit::Characters(16)),
            Some(UsernameLimit::Characters(16)),
            Some(UsernameLimit::Characters(80))
        )
    );
    assert_eq!(
        limit(&[("USERNAME_CHARACTER_LIMIT", "32")]).unwrap(),
        (
            Some(UsernameLimit::Characters(32)),
            Some(UsernameLimit::Characters(32)),
            Some(UsernameLimit::Characters(80))
        )
    );
    for bad in ["0", "x", "256", ""] {
        let e = limit(&[("USERNAME_CHARACTER_LIMIT", bad)]).unwrap_err();
        assert!(
            e.to_string().contains("USERNAME_CHARACTER_LIMIT"),
            "{bad:?}: {e}"
        );
    }
    // Ten two-byte characters and `_clone` are 16 characters (22 bytes): within MySQL's 16.
    let name = "é".repeat(10);
    assert!(
        rotation_core::rotator::alternate_username(&name, Some(UsernameLimit::Characters(16)))
            .is_ok()
    );
    assert!(
        rotation_core::rotator::alternate_username(
            &format!("{name}x"),
            Some(UsernameLimit::Characters(16))
        )
        .is_err()
    );
}

/// The pair's rights and options as `SHOW GRANTS` and `SHOW CREATE USER` hold them.
fn pair_in_line(db: &MariaDb, original: &str) {
    let clone = format!("{original}_clone");
    assert_eq!(rights(db, &clone), rights(db, original), "rights");
    assert_eq!(options(db, &clone), options(db, original), "options");
}

#[tokio::test]
async fn the_servers_sql_mode_changes_nothing_the_engine_reads_or_sends() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    let hash = native_hash("App-initial-pw-1");
    // Two accounts whose names would be confused if the server's QUOTE() output were read
    // under NO_BACKSLASH_ESCAPES: the second's name is a statement.
    sql(
        &db,
        &format!(
            "CREATE USER 'P\\\\'@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             CREATE USER 'P'';CREATE DATABASE pwned;#'@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             CREATE USER app@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             GRANT SELECT, INSERT ON app.* TO app@'%'; \
             SET GLOBAL sql_mode = CONCAT(@@global.sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES')"
        ),
    );
    as_master(&db, "app", "app_clone", "Clone-pw-number-1")
        .await
        .expect("clone made under ANSI_QUOTES");
    pair_in_line(&db, "app");
    as_master(&db, "app", "app_clone", "Clone-pw-number-2")
        .await
        .expect("clone kept in line under ANSI_QUOTES");
    pair_in_line(&db, "app");
    let _ = as_master(
        &db,
        "P';CREATE DATABASE pwned;#",
        "P';CREATE DATABASE pwned;#_clone",
        "Clone-pw-number-3",
    )
    .await;
    assert_eq!(
        sql(&db, "SHOW DATABASES LIKE 'pwned'"),
        "",
        "a name ran as a statement"
    );
    assert!(
        db.logs_in("P';CREATE DATABASE pwned;#_clone", "Clone-pw-number-3")
            .unwrap()
    );
}

#[tokio::test]
async fn a_planted_clone_is_brought_in_line_whatever_it_holds() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    let hash = native_hash("App-initial-pw-1");
    sql(
        &db,
        &format!(
            "CREATE TABLE app.t (a INT, b INT); \
             CREATE USER app@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             GRANT SELECT ON app.* TO app@'%'; GRANT SELECT (a) ON app.t TO app@'%'; \
             CREATE USER app_clone@'%' IDENTIFIED VIA mysql_native_password USING '{hash}' OR unix_socket \
               WITH MAX_STATEMENT_TIME 0.001 PASSWORD EXPIRE INTERVAL 1 DAY ACCOUNT LOCK; \
             GRANT ALL PRIVILEGES ON app.* TO app_clone@'%'; GRANT SELECT ON app.t TO app_clone@'%'"
        ),
    );
    // Wider rights than the original's are narrowed, not lost; its options and its second
    // plugin go.
    as_master(&db, "app", "app_clone", "Clone-pw-number-1")
        .await
        .expect("clone in line");
    pair_in_line(&db, "app");
    let created = sql(&db, "SHOW CREATE USER app_clone@'%'");
    assert!(!created.contains("unix_socket"), "{created}");
    assert!(db.logs_in("app_clone", "Clone-pw-number-1").unwrap());
}

#[tokio::test]
async fn a_step_that_stops_half_way_leaves_no_clone_to_promote() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    let hash = native_hash("App-initial-pw-1");
    // A master that may create users but not grant: the rights cannot be copied.
    sql(
        &db,
        &format!(
            "CREATE USER app@'%' IDENTIFIED BY PASSWORD '{hash}'; GRANT SELECT ON app.* TO app@'%'; \
             CREATE USER weak@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             GRANT CREATE USER, SELECT ON *.* TO weak@'%'"
        ),
    );
    let weak = ("weak", "App-initial-pw-1");
    let e = as_master_named(&db, weak, "app", "app_clone", "Clone-pw-number-1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // The clone exists but cannot log in with the pending password: a resumed rotation does
    // not find its setSecret done, and does it again.
    assert!(!db.logs_in("app_clone", "Clone-pw-number-1").unwrap());
    // With an able master, the next attempt completes it.
    as_master(&db, "app", "app_clone", "Clone-pw-number-1")
        .await
        .expect("clone in line");
    pair_in_line(&db, "app");
    assert!(db.logs_in("app_clone", "Clone-pw-number-1").unwrap());
}

/// The preflight's rights line for `user` under `strategy`, read on `login`'s session.
async fn rights_line(
    db: &MariaDb,
    strategy: Strategy,
    login: (&str, &str),
    user: &str,
) -> Result<Option<String>, rotation_core::EngineError> {
    let r = rotator(strategy);
    let mut s = r
        .login(&parse(&secret(db, login.0, login.1)), deadline())
        .await
        .expect("login");
    let out = r
        .check_rights(&mut s, &parse(&secret(db, user, "unused-here")))
        .await;
    r.close(s).await;
    out
}

#[tokio::test]
async fn the_preflight_names_the_plugin_and_what_a_taken_over_clone_will_lose() {
    let db = MariaDb::start(false).expect("start MariaDB (scripts/setup installs it)");
    let hash = native_hash("App-initial-pw-1");
    // A pair as AWS's function leaves it: the clone only ever gained rights, so it still holds
    // DELETE, which the original lost.
    sql(
        &db,
        &format!(
            "CREATE USER app@'%' IDENTIFIED BY PASSWORD '{hash}'; GRANT SELECT ON app.* TO app@'%'; \
             CREATE USER app_clone@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             GRANT SELECT, DELETE ON app.* TO app_clone@'%'; \
             CREATE USER solo@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             CREATE USER pl@'%' IDENTIFIED BY PASSWORD '{hash}'; \
             CREATE USER pl_clone@'%' IDENTIFIED VIA unix_socket OR mysql_native_password USING '{hash}'; \
             CREATE USER sock@'%' IDENTIFIED VIA unix_socket OR mysql_native_password USING '{hash}'"
        ),
    );
    let fingerprint = || {
        sql(
            &db,
            "SELECT CONCAT(user, '@', host, ' ', priv) FROM mysql.global_priv ORDER BY user, host",
        ) + &rights(&db, "app_clone").join("\n")
    };
    let before = fingerprint();
    let admin = db.admin();

    let line = rights_line(&db, Strategy::AlternatingUsers, admin, "app")
        .await
        .expect("the master may")
        .expect("the engine tells");
    assert!(line.contains("app@% uses mysql_native_password"), "{line}");
    assert!(
        line.contains("app_clone@% uses mysql_native_password"),
        "{line}"
    );
    assert!(
        line.contains("revokes from app_clone@% what app@% lacks")
            && line.contains("REVOKE DELETE ON `app`.* FROM 'app_clone'@'%'"),
        "{line}"
    );
    assert!(
        !line.contains("SELECT"),
        "only what the clone will lose: {line}"
    );
    // The clone in use loses nothing now: at the rotation after next; a pair not made yet is
    // said to be made; a clone on a plugin without a computed stored form is moved.
    let line = rights_line(&db, Strategy::AlternatingUsers, admin, "app_clone")
        .await
        .unwrap()
        .unwrap();
    assert!(
        line.contains("the rotation after next (the first with app_clone@% pending) revokes from app_clone@% what app@% lacks: REVOKE DELETE"),
        "{line}"
    );
    let line = rights_line(&db, Strategy::AlternatingUsers, admin, "pl")
        .await
        .unwrap()
        .unwrap();
    assert!(
        line.contains("the next rotation moves pl_clone@% from unix_socket and another plugin to mysql_native_password"),
        "{line}"
    );
    let line = rights_line(&db, Strategy::AlternatingUsers, admin, "solo")
        .await
        .unwrap()
        .unwrap();
    assert!(line.contains("solo_clone@% does not exist yet"), "{line}");
    // A single user is told its plugin; one on another plugin is refused, as a rotation would.
    let line = rights_line(
        &db,
        Strategy::SingleUser,
        ("solo", "App-initial-pw-1"),
        "solo",
    )
    .await
    .unwrap()
    .unwrap();
    assert!(line.ends_with("it uses mysql_native_password"), "{line}");
    let e = rights_line(
        &db,
        Strategy::SingleUser,
        ("sock", "App-initial-pw-1"),
        "sock",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("unix_socket"), "{e}");
    let e = rights_line(&db, Strategy::AlternatingUsers, admin, "sock")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unix_socket"), "{e}");
    assert_eq!(fingerprint(), before, "the preflight changed an account");

    // The rotation then makes exactly the revoke the preflight listed.
    as_master(&db, "app", "app_clone", "Clone-pw-number-1")
        .await
        .expect("clone in line");
    assert!(!rights(&db, "app_clone").join("\n").contains("DELETE"));
    pair_in_line(&db, "app");
}
