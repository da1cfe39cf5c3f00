//! PostgreSQL's fence against a late `COMMIT` (RELIABILITY.md, section 3): a single-user
//! `COMMIT` held in the network past the step's deadline still commits when it reaches the
//! server, which keeps the session open in its transaction. A safe `abort` in between proved
//! `AWSCURRENT` logs in and removed `AWSPENDING`; then the late `COMMIT` landed and
//! `AWSCURRENT` no longer logged in. Now a login ends the user's earlier rotation sessions
//! still inside a transaction past their step's deadline (`rotation_postgres::connect::fence_sql`),
//! `abort` with the file store's exclusive claim ends those of runs that died, and rotations
//! sharing a master never end each other's live transactions.

use std::time::{Duration, Instant};

use rotation_core::{
    AbortMode, AwsSecretStore, EngineSettings, Options, RotationEvent, SecretStore, Stage, Step,
    Strategy,
};
use rotation_testkit::Moto;
use rotation_testkit::env::EngineRotation;
use serde_json::json;

mod common;
use common::Env;

fn token() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_commit_delayed_past_the_deadline_does_not_land_after_an_abort() {
    assert!(
        late_commit_after_abort(true).await,
        "the COMMIT landed after the abort: AWSCURRENT no longer logs in"
    );
}

/// The control: the same race without the fence locks the user out, so the test above proves
/// the fence, not a timing accident (the server's own idle timeout, say).
#[tokio::test]
async fn control_without_the_fence_the_late_commit_lands() {
    assert!(
        !late_commit_after_abort(false).await,
        "without the fence the late COMMIT should have landed"
    );
}

/// A single-user setSecret whose COMMIT a proxy holds past the step's deadline, a safe abort,
/// then the COMMIT released. Returns whether AWSCURRENT still logs in.
async fn late_commit_after_abort(fence: bool) -> bool {
    let env = common::plain();
    let proxy = env.app_through_a_proxy().await;
    let mut config = rotation_postgres::PgConfig::default();
    config.dialect.fence_stale_sessions = fence;
    // Without the server's own idle limit (the step's time left), so that only the fence can end
    // the held transaction: with it, a slow abort lets the server end it first, and the control
    // finds no late COMMIT (seen on a loaded machine).
    config.dialect.idle_in_transaction_timeout = false;
    let r = EngineSettings::with_config(
        rotation_postgres::ENGINE,
        std::sync::Arc::new(rotation_postgres::PostgresConfig { config, rds: None }),
    )
    .rotation(env.store.clone(), Strategy::SingleUser)
    .with_options(Options {
        step_timeout: Duration::from_secs(3),
        ..Options::default()
    });
    let token = pending_created(&env, &r).await;
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
    env.logs_in(&current).await
}

/// A run killed while its single-user `COMMIT` is held in the network, well within its step's
/// deadline, then `rotate abort` at once: the held transaction's session is not past its
/// deadline, so the fence of a login leaves it (a live run could own it). Abort holds the file
/// store's exclusive claim, so no live run of the secret can: it ends the session before its
/// proof, and the `COMMIT`, released afterwards, finds none. Before, abort proved `AWSCURRENT`
/// at once and the `COMMIT` landed seconds later: `AWSCURRENT` failed until the next run.
#[tokio::test]
async fn a_commit_held_when_its_run_died_does_not_land_after_an_immediate_abort() {
    let env = common::plain();
    let proxy = env.app_through_a_proxy().await;
    let r = env.single().with_options(Options {
        step_timeout: Duration::from_secs(60),
        ..Options::default()
    });
    let token = pending_created(&env, &r).await;
    proxy.stall_on_query("COMMIT");
    let run = tokio::spawn(async move {
        r.handle(&RotationEvent::new(Step::SetSecret, "app", &token))
            .await
    });
    let held = std::time::Instant::now();
    while proxy.stalls_triggered() == 0 {
        assert!(
            held.elapsed() < Duration::from_secs(20),
            "COMMIT never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The run dies (its connection goes, as with kill -9); the COMMIT stays in the network.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    proxy.stall_on_query("no statement contains this text");
    let report = env
        .single()
        .abort("app", AbortMode::Safe)
        .await
        .expect("abort proves AWSCURRENT logs in");
    assert!(report.current_verified);
    proxy.resume();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let current = env.value("app", Stage::Current).await;
    assert!(
        env.logs_in(&current).await,
        "the dead run's COMMIT landed after abort: AWSCURRENT no longer logs in"
    );
}

/// The same dead run on Secrets Manager, whose claim excludes nothing: the run could be alive,
/// so abort may not end its session at once. It waits until the session's named deadline has
/// passed, ends it, then proves; given less time than that, it refuses (`RotationSessionsOpen`)
/// and removes nothing. Before, it proved `AWSCURRENT` at once and the `COMMIT` landed after.
#[tokio::test]
async fn on_secrets_manager_abort_waits_out_a_commit_held_when_its_run_died() {
    let env = common::plain();
    let proxy = env.app_through_a_proxy().await;
    let moto = Moto::start().expect("start moto (scripts/setup installs it)");
    let value = env.value("app", Stage::Current).await.to_string();
    moto.python(&format!(
        "print(sm.create_secret(Name='app', SecretString={value:?})['ARN'])"
    ))
    .expect("store the secret in moto");
    let store = AwsSecretStore::from_sdk_config(&moto.sdk_config().await);
    let on_aws = |secs| {
        env.rotation_on(store.clone(), Strategy::SingleUser)
            .with_options(Options {
                step_timeout: Duration::from_secs(secs),
                ..Options::default()
            })
    };
    proxy.stall_on_query("COMMIT");
    let r = on_aws(8);
    let run = tokio::spawn(async move { r.rotate("app").await.map(|_| ()) });
    let held = Instant::now();
    while proxy.stalls_triggered() == 0 {
        assert!(
            held.elapsed() < Duration::from_secs(30),
            "COMMIT never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The run dies; the COMMIT stays in the network, its session open until its deadline.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    proxy.stall_on_query("no statement contains this text");
    let refused = on_aws(3).abort("app", AbortMode::Safe).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == "RotationSessionsOpen"),
        "an abort with less time than the held session has left must refuse: {refused:?}"
    );
    assert!(
        store
            .describe("app")
            .await
            .unwrap()
            .rotation_in_flight()
            .is_some(),
        "the refused abort removed AWSPENDING"
    );
    let report = on_aws(30)
        .abort("app", AbortMode::Safe)
        .await
        .expect("abort waits the session out, then proves AWSCURRENT logs in");
    assert!(report.current_verified);
    proxy.resume();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let current = rotation_testkit::env::stage_value(&store, "app", Stage::Current).await;
    assert!(
        env.logs_in(&current).await,
        "the dead run's COMMIT landed after abort: AWSCURRENT no longer logs in"
    );
}

/// The fence ends only sessions past their step's deadline: rotations that share a master (or
/// run side by side in a fleet) never end each other's live transactions. Found by a hostile
/// review: with a fence on every idle-in-transaction session of the user, 29 of 40 alternating
/// rotations sharing a master failed at concurrency 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_sharing_a_master_at_once_all_succeed() {
    const SECRETS: usize = 16;
    let env = common::plain();
    secrets_sharing_a_master(&env, SECRETS).await;
    let r = env.alternating();
    for round in 0..2 {
        let runs = (0..SECRETS).map(|i| {
            let r = &r;
            async move { r.rotate(&format!("app{i}")).await }
        });
        let results = futures_join_all(runs).await;
        for (i, result) in results.into_iter().enumerate() {
            result.unwrap_or_else(|e| {
                panic!("round {round}, app{i}: {}", rotation_core::error_chain(&e))
            });
            let current = env.value(&format!("app{i}"), Stage::Current).await;
            assert!(env.logs_in(&current).await, "app{i}");
        }
    }
}

/// Abort of the master's own secret (its single-user rotation left in flight) while rotations
/// that use that master run: abort's end of dead runs' sessions acts as the master user, whose
/// live sessions belong to those rotations, and must leave them alone (it ends only sessions
/// idle inside their transaction for a second, which no live step is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_masters_own_rotation_leaves_rotations_using_the_master_alone() {
    masters_own_abort_beside_rotations_using_the_master(false).await;
}

/// The same on Secrets Manager, whose claim excludes nothing: abort waits for whatever of the
/// master's sessions it finds inside a transaction instead of ending them, and the live
/// rotations' sessions, each in its transaction for milliseconds, neither fail nor make abort
/// refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_secrets_manager_aborting_the_masters_own_rotation_waits_only_for_live_rotations() {
    masters_own_abort_beside_rotations_using_the_master(true).await;
}

async fn masters_own_abort_beside_rotations_using_the_master(claiming_nothing: bool) {
    const SECRETS: usize = 8;
    let env = common::plain();
    // Only createSecret of the master's own rotation runs: its password never changes.
    secrets_sharing_a_master(&env, SECRETS).await;
    let r = env.alternating();
    let mut store = rotation_core::testing::RecordingStore::new(env.store.clone());
    if claiming_nothing {
        store = store.claiming_nothing();
    }
    let own = env.rotation_on(store, Strategy::SingleUser);
    for round in 0..2 {
        let runs = (0..SECRETS).map(|i| {
            let r = &r;
            async move { r.rotate(&format!("app{i}")).await }
        });
        // The master's own rotation started and aborted again and again while they run.
        let aborts = async {
            for _ in 0..6 {
                let token = token();
                env.store.start_rotation("master", &token).await.unwrap();
                own.handle(&RotationEvent::new(Step::CreateSecret, "master", &token))
                    .await
                    .unwrap();
                own.abort("master", AbortMode::Safe)
                    .await
                    .expect("abort of the master's own rotation");
            }
        };
        let (results, ()) = tokio::join!(futures_join_all(runs), aborts);
        for (i, result) in results.into_iter().enumerate() {
            result.unwrap_or_else(|e| {
                panic!("round {round}, app{i}: {}", rotation_core::error_chain(&e))
            });
        }
    }
}

/// A rotation of `app` started (RotateSecret) and its createSecret run by `r`; its token.
async fn pending_created(env: &Env, r: &EngineRotation) -> String {
    let token = token();
    env.store.start_rotation("app", &token).await.unwrap();
    r.handle(&RotationEvent::new(Step::CreateSecret, "app", &token))
        .await
        .unwrap();
    token
}

/// The master's secret (`master`, the server's administrator) and `n` alternating secrets
/// (`app0`...) that name it, each for a user of its own.
async fn secrets_sharing_a_master(env: &Env, n: usize) {
    let master = env
        .put("master", &env.master_secret(Some(json!(false))))
        .await;
    for i in 0..n {
        let user = format!("app{i}");
        env.create_user(&user, "Initial-pw-1-long-enough");
        let mut v = env.plain_secret(&user, "Initial-pw-1-long-enough");
        v["masterarn"] = json!(master);
        env.put(&user, &v).await;
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(o) => outputs[i] = Some(o),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}
