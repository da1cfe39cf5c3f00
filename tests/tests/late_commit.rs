//! A lockout found by the hostile review of issue 19: a single-user `COMMIT` held in the network
//! past the step's deadline still commits when it reaches the server, which keeps the session
//! open in its transaction until its own `idle_in_transaction_session_timeout`. A safe `abort`
//! in between proved `AWSCURRENT` logs in and removed `AWSPENDING`; then the late `COMMIT`
//! landed and `AWSCURRENT` no longer logged in. Now a login ends the user's earlier rotation
//! sessions still inside a transaction (`rotation_postgres::connect::FENCE_SQL`), so the late
//! `COMMIT` finds no session.

use std::time::Duration;

use rotation_core::{AbortMode, Options, RotationEvent, Stage, Step};
use rotation_tests::engines::{Engine, Env};
use serde_json::json;

#[tokio::test]
async fn a_commit_delayed_past_the_deadline_does_not_land_after_an_abort() {
    let env = Env::plain(Engine::Postgres);
    let proxy = env.proxy();
    env.create_user("app", "Initial-pw-1");
    let mut v = env.plain_secret("app", "Initial-pw-1");
    v["port"] = json!(proxy.port());
    env.put("app", &v).await;
    let r = env.single().with_options(Options {
        step_timeout: Duration::from_secs(3),
        ..Options::default()
    });
    let token = rotation_tests::token();
    env.store.start_rotation("app", &token).await.unwrap();
    r.handle(&RotationEvent::new(Step::CreateSecret, "app", &token))
        .await
        .unwrap();
    proxy.stall_on_query("COMMIT");
    let set = r
        .handle(&RotationEvent::new(Step::SetSecret, "app", &token))
        .await;
    assert!(set.is_err(), "the COMMIT is held: setSecret cannot succeed");
    r.abort("app", AbortMode::Safe)
        .await
        .expect("abort proves AWSCURRENT logs in");
    // The held COMMIT reaches the server now.
    proxy.resume();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let current = env.value("app", Stage::Current).await;
    assert!(
        env.logs_in(&current).await,
        "the COMMIT landed after the abort: AWSCURRENT no longer logs in"
    );
}
