//! No password reaches a log line (TRACE, JSON, the database drivers' own events included) or
//! the `Debug` / `Display` output of reports and errors, in real rotations of every engine over
//! verified TLS: single user, alternating users (the master's password in play), and a
//! rotation that fails on a wrong password. The fake-engine suite (`no_secret_leaks.rs`) covers
//! the core's paths; this one covers each engine's connection and password-change code. The
//! same rotations show that every session ends with the protocol's goodbye: the server logs
//! no dropped connection.

use rotation_core::{Stage, error_chain};
use rotation_tests::engines::{Engine, Env};
use rotation_tests::{all_engines, capture_logs};
use serde_json::json;

all_engines!(real_rotations_leak_no_password_and_end_every_session_cleanly);

const INITIAL: &str = "Leak-Canary-Initial-7f3a";
const WRONG: &str = "Leak-Canary-Wrong-55aa9";

async fn real_rotations_leak_no_password_and_end_every_session_cleanly(engine: Engine) {
    let logs = capture_logs();
    let env = Env::tls(engine);
    env.create_user("app", INITIAL);
    let master = env.master_secret(None);
    let master_arn = env.put("master", &master).await;
    let mut value = env.secret("app", INITIAL, None);
    value["masterarn"] = json!(master_arn);
    env.put("app", &value).await;
    let mut passwords = vec![
        INITIAL.to_string(),
        WRONG.to_string(),
        master["password"].as_str().unwrap().to_string(),
    ];
    let mut printed = String::new();

    let report = env.single().rotate("app").await.unwrap_or_else(|e| {
        panic!("{engine}: single user: {}", error_chain(&e));
    });
    printed.push_str(&format!("{report:?}\n"));
    let now = env.value("app", Stage::Current).await;
    passwords.push(now["password"].as_str().unwrap().to_string());

    let report = env.alternating().rotate("app").await.unwrap_or_else(|e| {
        panic!("{engine}: alternating users: {}", error_chain(&e));
    });
    printed.push_str(&format!("{report:?}\n"));
    let now = env.value("app", Stage::Current).await;
    assert_eq!(now["username"], "app_clone", "{engine}");
    passwords.push(now["password"].as_str().unwrap().to_string());

    // A failure: the stored password is wrong, so no login works.
    env.put("wrong", &env.secret("app", WRONG, None)).await;
    let e = env
        .single()
        .rotate("wrong")
        .await
        .expect_err("a wrong password cannot rotate");
    printed.push_str(&format!("{e:?}\n{e}\n{}\n", error_chain(&e)));

    let text = logs.text();
    assert!(
        text.contains("setSecret"),
        "{engine}: the capture saw the rotation's logs"
    );
    // A close does not wait for the server to end the session: give it the time to log the
    // last ones before reading.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let unclean = env.server.unclean_closes();
    assert!(
        unclean.is_empty(),
        "{engine}: sessions dropped without the protocol's goodbye: {unclean:#?}"
    );
    for p in &passwords {
        assert!(
            !text.contains(p.as_str()),
            "{engine}: a password in the logs"
        );
        assert!(
            !printed.contains(p.as_str()),
            "{engine}: a password in a report or error: {printed}"
        );
    }
}
