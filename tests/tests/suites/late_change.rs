//! A password change that arrives late (held in the network or queued in the server past its
//! step's deadline, or racing an abort on Secrets Manager) never leaves `AWSCURRENT` failing
//! with nothing to recover it, and abort and the identity checks hold at the edges (a role
//! that cannot change its own password, an omitted default port, a master on another port).
//! Each test states the promise it checks; each (but the AWS race, which held) failed before
//! its fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::{
    AbortMode, AnyStore, AwsSecretStore, Credentials, LocalSecretStore, Options, RECOVERY_LIMIT,
    RotationError, RotationEvent, SecretStore, Stage, Step, StepOutcome, Strategy, VersionSelector,
};
use rotation_testkit::{Moto, TcpProxy};
use rotation_tests::engines::{Engine, EngineRotation, Env, parse};
use rotation_tests::{all_engines, token};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

all_engines!(
    a_password_change_landing_after_abort_is_recovered,
    abort_works_when_the_role_cannot_change_its_own_password,
    an_alter_role_still_in_the_network_does_not_land_after_abort,
    an_omitted_default_port_names_the_same_server,
    alternating_master_on_another_port_changes_nothing_there,
    aws_abort_racing_a_resume_is_recovered,
    a_statement_sent_late_in_the_step_does_not_commit_after_the_deadline,
    a_change_queued_when_its_run_died_does_not_land_after_an_immediate_abort,
    a_change_queued_when_its_run_died_is_waited_out_by_an_abort_on_secrets_manager,
    a_late_change_on_the_user_in_use_is_recovered_by_resume_where_abort_cannot_prove_it,
    a_late_change_on_the_user_in_use_is_recovered_by_the_next_run,
    a_late_change_is_recovered_past_many_aborted_rotations,
    a_late_change_making_the_clone_does_not_land_after_a_newer_rotation,
    a_late_drop_of_the_old_password_cannot_lock_out,
);

/// An engine whose server has no lock a client can hold on a user: no password change can wait
/// in a queue of the server past its step (the engine sends its time limit cut to the time
/// left with each command); a change held in the network is
/// `an_alter_role_still_in_the_network_does_not_land_after_abort`. Its limits must say so.
pub(crate) fn no_server_lock(engine: Engine) {
    assert!(
        !engine.limits().server_lock,
        "{engine}'s limits say its server has a lock a client can hold, but its test server \
         offers none (a change held in the network instead: \
         an_alter_role_still_in_the_network_does_not_land_after_abort)"
    );
}

fn chain<T>(r: &Result<T, RotationError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{} [{}]", rotation_core::error_chain(e), e.kind()),
    }
}

fn with_timeout<S: SecretStore>(r: EngineRotation<S>, secs: u64) -> EngineRotation<S> {
    r.with_options(Options {
        step_timeout: Duration::from_secs(secs),
        ..Options::default()
    })
}

/// docs/state-machine.md: "The server's own lock_timeout and statement_timeout are cut to the time left, so a
/// statement still queued when the step gives up never commits later."
///
/// The limit is computed once, when the session is opened (PostgreSQL: startup `options`;
/// others: a `statement_timeout` set right after login), and the server
/// counts it from the start of each statement. Anything that delays the statement after the
/// login (a slow round trip, a slow Secrets Manager re-check of the stages, a slow network) is
/// added to the window in which the server still waits after the client gave up. Here the
/// network holds a statement setSecret sends before its change (PostgreSQL's `quote_ident`
/// query, [`rotation_testkit::TestEngine::statement_before_change`]) for 1.5 s of a 3 s step;
/// the password change
/// then queues behind a row lock, the client reports `SetPasswordFailed` (Timeout) at 3 s, and
/// the server would wait until ~4.4 s: the lock is released at ~3.5 s and the password changes
/// after the step reported failure, unless the change is rolled back with its connection.
async fn a_statement_sent_late_in_the_step_does_not_commit_after_the_deadline(engine: Engine) {
    let env = Env::plain(engine);
    let proxy = env.app_through_a_proxy().await;
    let Some(blocker) = env.server.hold_in_server("app") else {
        return no_server_lock(engine);
    };
    let blocker = blocker.await;

    let before_change = engine.statement_before_change().unwrap_or_else(|| {
        panic!("{engine}'s server has a lock a client can hold: its TestEngine must name a statement sent before the change")
    });
    proxy.stall_on_query(before_change);
    let r = with_timeout(env.single(), 3);
    let started = Instant::now();
    let run = tokio::spawn(async move { r.rotate("app").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.resume();
    let out = run.await.unwrap();
    eprintln!("run after {:?}: {}", started.elapsed(), chain(&out));
    assert!(
        proxy.stalls_triggered() > 0,
        "{before_change:?} was never sent: the change was not delayed"
    );
    let e = out.unwrap_err();
    assert_eq!(
        e.engine_kind(),
        Some(rotation_core::ErrorKind::Timeout),
        "{e}"
    );
    // The step has reported failure: whatever it left queued must never commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.release().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.logs_in(&env.value("app", Stage::Current).await).await,
        "the password change of a step that had reported a timeout committed afterwards: the \
         server's time limit ran from the statement's start with the whole time left at login"
    );
}

/// A run killed (its connection gone, as with `kill -9`) while its password change waits in the
/// server's lock queue, well inside its step's deadline, then `rotate abort` at once, with the
/// file store's claim free: abort must not prove `AWSCURRENT` while that change can still land
/// (it ends the dead run's queued change first, [`rotation_core::Rotator::end_dead_sessions`],
/// or the engine makes the change in a transaction the dead connection rolls back). The lock
/// is released after abort; `AWSCURRENT` must still log in.
async fn a_change_queued_when_its_run_died_does_not_land_after_an_immediate_abort(engine: Engine) {
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let Some(blocker) = env.server.hold_in_server("app") else {
        return no_server_lock(engine);
    };
    let blocker = blocker.await;
    let r = with_timeout(env.single(), 60);
    let run = tokio::spawn(async move { r.rotate("app").await.map(|_| ()) });
    env.wait_until_held(blocker.as_ref()).await;
    // The run dies; its change stays queued in the server.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    let report = with_timeout(env.single(), 20)
        .abort("app", AbortMode::Safe)
        .await;
    eprintln!("abort: {report:?}");
    assert!(report.unwrap().current_verified);
    blocker.release().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.logs_in(&env.value("app", Stage::Current).await).await,
        "the dead run's queued password change landed after abort: AWSCURRENT no longer logs in"
    );
}

/// The same dead run on Secrets Manager, whose claim excludes nothing: the run that queued the
/// change could be alive, so abort may not end it. Either the engine makes the change in a
/// transaction the dead connection rolls back (abort proves at once), or abort waits until the
/// change has ended by its own time limit (its step's deadline) before its proof; given less
/// time than that, it refuses (`RotationSessionsOpen`) and removes nothing. Before, it proved
/// `AWSCURRENT` at once and a change queued outside a transaction (MySQL) landed after it.
async fn a_change_queued_when_its_run_died_is_waited_out_by_an_abort_on_secrets_manager(
    engine: Engine,
) {
    const INITIAL: &str = "Initial-pw-1-long-enough";
    let env = Env::plain(engine);
    let Some(blocker) = env.server.hold_in_server("app") else {
        return no_server_lock(engine);
    };
    env.create_user("app", INITIAL);
    let moto = Moto::start().expect("start moto (scripts/setup installs it)");
    let store = AnyStore::Aws(AwsSecretStore::from_sdk_config(&moto.sdk_config().await));
    rotation_tests::moto_user_secret(&moto, &env, "app", "app", INITIAL, env.port());
    let blocker = blocker.await;
    let on_aws = |secs| with_timeout(env.rotation_on(store.clone(), Strategy::SingleUser), secs);
    let r = on_aws(8);
    let run = tokio::spawn(async move { r.rotate("app").await.map(|_| ()) });
    env.wait_until_held(blocker.as_ref()).await;
    let held = Instant::now();
    // The run dies; its change stays queued in the server until its step's deadline.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    let first = on_aws(3).abort("app", AbortMode::Safe).await;
    eprintln!("abort with 3 s: {}", chain(&first));
    if let Err(e) = &first {
        assert_eq!(
            e.kind(),
            "RotationSessionsOpen",
            "an abort with less time than the queued change has left refuses, saying so: {e}"
        );
        let d = store.describe("app").await.unwrap();
        assert!(
            d.rotation_in_flight().is_some(),
            "the refused abort removed AWSPENDING"
        );
        let report = on_aws(30).abort("app", AbortMode::Safe).await;
        eprintln!("abort after {:?}: {}", held.elapsed(), chain(&report));
        assert!(report.unwrap().current_verified);
    } else {
        assert!(first.unwrap().current_verified);
    }
    blocker.release().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let current = rotation_testkit::env::stage_value(&store, "app", Stage::Current).await;
    assert!(
        env.logs_in(&current).await,
        "the dead run's queued password change landed after abort: AWSCURRENT no longer logs in"
    );
}

/// The run of "app" (single user, 2 s steps) times out at its password change, held by the
/// network (unacknowledged bytes the kernel keeps retransmitting after the client gave up and
/// closed its socket); abort proves AWSCURRENT, removes AWSPENDING and reports success while
/// the change is still held; then the network heals and the held change reaches the server.
/// Returns the proxy the secret names and whether AWSCURRENT logs in afterwards.
async fn abort_then_the_network_heals(env: &Env) -> (TcpProxy, bool) {
    let proxy = env.app_through_a_proxy().await;

    proxy.stall_on_query(env.password_statement());
    let e = with_timeout(env.single(), 2)
        .rotate("app")
        .await
        .unwrap_err();
    eprintln!("run: {} [{}]", rotation_core::error_chain(&e), e.kind());
    assert!(
        proxy.stalls_triggered() > 0,
        "the password change was not held"
    );
    // The stalled connection stays held; other connections go through.
    proxy.stall_on_query("no statement contains this text");
    let report = env.single().abort("app", AbortMode::Safe).await;
    eprintln!("abort: {report:?}");
    let report = report.unwrap();
    assert!(report.current_verified);
    // The network heals.
    proxy.resume();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let d = env.store.describe("app").await.unwrap();
    assert_eq!(d.rotation_in_flight(), None);
    let current_ok = env.logs_in(&env.value("app", Stage::Current).await).await;
    (proxy, current_ok)
}

/// docs/state-machine.md: "A run that died or timed out cannot change the password after this proof: the
/// engine makes a password change in a transaction committed only once the change has answered
/// in time".
///
/// A statement the dead run sent that has not reached the server yet is in no queue. The run
/// times out at its password change (ALTER ROLE, or the engine's own); abort proves
/// AWSCURRENT, removes AWSPENDING and reports success; the network heals and the run's password
/// change arrives. It must not take effect: AWSCURRENT would no longer log in with nothing in
/// flight.
///
/// An engine whose limits say so (a password change that cannot run in a transaction, and
/// a time limit that counts from the command's arrival, so the held command lands with the whole
/// budget it was sent with) is held to that instead: the change lands, and
/// `a_password_change_landing_after_abort_is_recovered` holds it to the recovery.
async fn an_alter_role_still_in_the_network_does_not_land_after_abort(engine: Engine) {
    let env = Env::plain(engine);
    let current_ok = abort_then_the_network_heals(&env).await.1;
    if engine.limits().late_change_lands_after_abort {
        assert!(
            !current_ok,
            "{engine} documents that a late password change lands after abort, and it did not: \
             update its TestEngine limits and RELIABILITY.md"
        );
    } else {
        assert!(
            current_ok,
            "abort reported AWSCURRENT verified and removed AWSPENDING; then the timed-out run's \
             password change arrived and committed: AWSCURRENT no longer logs in"
        );
    }
}

/// "No stranded password", whatever became of that late password change: the next rotation
/// ends with AWSCURRENT logging in (where the change landed, setSecret recovers the password
/// from the aborted version, which the store keeps without a label).
async fn a_password_change_landing_after_abort_is_recovered(engine: Engine) {
    let env = Env::plain(engine);
    let (_proxy, current_ok) = abort_then_the_network_heals(&env).await;
    eprintln!("AWSCURRENT logs in after the late change: {current_ok}");
    let report = with_timeout(env.single(), 10).rotate("app").await;
    eprintln!("next rotation: {}", chain(&report));
    let report = report.unwrap();
    let set = report
        .steps
        .iter()
        .find(|(step, _)| *step == Step::SetSecret)
        .map(|(_, outcome)| *outcome);
    if !current_ok {
        assert_eq!(set, Some(StepOutcome::PasswordSet(Credentials::Recovered)));
    }
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

/// docs/state-machine.md: "abort changes nothing unless it proves the AWSCURRENT credentials log in
/// afterwards." A role that cannot change its own password (here: `default_transaction_read_only`
/// on the role; on RDS `rds.restrict_password_commands`, or a server password policy that
/// refuses re-using a password, e.g. credcheck's reuse history) gets stuck in flight after a
/// failed setSecret; AWSCURRENT logs in and nothing was changed, yet safe abort now always fails
/// with `RollbackFailed` ("could not be restored"), so only `--force` gets out. Before the
/// re-assertion, abort succeeded. A refusal of the re-assertion for a reason that would equally
/// have refused any earlier change of the role's own password (read-only, permission denied)
/// proves the same thing as a successful re-assertion.
async fn abort_works_when_the_role_cannot_change_its_own_password(engine: Engine) {
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.forbid_own_password_change("app");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = env.single();
    let run = r.rotate("app").await;
    eprintln!("run: {}", chain(&run));
    if !engine.limits().users_change_own_password {
        // The master changes it: no right was taken away, and the rotation goes through.
        assert!(run.is_ok(), "{}", chain(&run));
        return;
    }
    assert!(run.is_err());
    let before = env.store.describe("app").await.unwrap();
    assert!(before.rotation_in_flight().is_some());
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);

    let abort = r.abort("app", AbortMode::Safe).await;
    eprintln!("abort: {}", chain(&abort));
    assert!(
        abort.is_ok(),
        "safe abort refused although AWSCURRENT logs in and the role cannot change its own password"
    );
}

/// Port absent and the default port (the engine's `default_port`) name the
/// same server (the engine connects to the default for both), as do `"dbname"` absent and the
/// default database (the engine's, or its authentication database); the
/// identity checks call them different servers / databases, so a version written without the
/// default (AWS console or an operator's put-secret-value may omit `port`) is refused as
/// AWSPREVIOUS (setSecret fails with ServerMismatch before even trying recovery), skipped as a
/// recovery candidate, and skipped by abort.
async fn an_omitted_default_port_names_the_same_server(engine: Engine) {
    let profile = engine.profile();
    let without = parse(&json!({
        "engine": profile.engines[0], "host": "db.example", "username": "app", "password": "x"
    }));
    // Where the connection goes without them.
    let (port, db) = (engine.login_port(&without), engine.login_database(&without));
    assert_eq!(db, engine.default_database());
    let mut with = json!({
        "engine": profile.engines[0], "host": "db.example", "username": "app",
        "password": "x", "port": port
    });
    if !db.is_empty() {
        with["dbname"] = json!(db);
    }
    let with = parse(&with);
    assert_eq!(engine.login_database(&with), db);
    // The identity checks' default port is the one the connection uses.
    assert_eq!(profile.default_port, Some(port));
    assert_eq!(
        with.server_difference(&without, profile.default_port),
        None,
        "port {port} and no port are reported as different servers"
    );
}

/// docs/state-machine.md "Only the server the secret names". Alternating users: the master secret is only
/// compared by `host`; a master on another server of the same host (another port) logs in
/// there and creates `app_clone` (LOGIN, member of `app`) on that other server. A rotation of
/// one secret changes another database.
async fn alternating_master_on_another_port_changes_nothing_there(engine: Engine) {
    let env = Env::plain(engine);
    let other = Env::plain_own(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    other.create_user("app", "Other-server-pw-1");
    let master_arn = env
        .put("master", &other.master_secret(Some(json!(false))))
        .await;
    let mut s = env.plain_secret("app", "Initial-pw-1-long-enough");
    s["masterarn"] = json!(master_arn);
    env.put("app", &s).await;
    let out = env.alternating().rotate("app").await;
    eprintln!("rotate: {}", chain(&out));
    let roles = other.users_named("app");
    assert_eq!(
        roles,
        "app",
        "a rotation of a secret on port {} created or changed roles on the server at port {}",
        env.port(),
        other.port()
    );
}

/// Secrets Manager (no claim): abort's re-assertion racing a live `resume`. The resume passed
/// its re-check of the stages (AWSPENDING still there) and its ALTER ROLE is on the wire (held by
/// the network for a moment); abort re-asserts AWSCURRENT, proves it, removes AWSPENDING and
/// reports success; the resume's ALTER ROLE then arrives and commits. docs/state-machine.md: on Secrets Manager
/// exclusivity cannot be proven; the guarantee is no lockout (a late writer is caught by
/// recovery) and a run whose own setSecret changed the password and then finds another rotation
/// took the secret says `RotationSuperseded`. Checks those two.
///
/// (A variant with both ALTER ROLEs queued behind a row lock is safe: the second one fails with
/// "tuple concurrently updated" instead of landing.)
async fn aws_abort_racing_a_resume_is_recovered(engine: Engine) {
    let env = Env::plain(engine);
    let proxy = env.proxy();
    env.create_user("app", "Initial-pw-1-long-enough");
    let moto = Moto::start().unwrap();
    let store = AnyStore::Aws(AwsSecretStore::from_sdk_config(&moto.sdk_config().await));
    let current = rotation_tests::moto_user_secret(
        &moto,
        &env,
        "app",
        "app",
        "Initial-pw-1-long-enough",
        proxy.port(),
    );
    let rotation = |secs| with_timeout(env.rotation_on(store.clone(), Strategy::SingleUser), secs);
    // A rotation in flight after createSecret.
    let mut pending = current.clone();
    pending["password"] = env.password("Pending-pw-1-abcdefghij");
    let t = token();
    store
        .put_value(
            "app",
            &t,
            &SecretString::from(pending.to_string()),
            &[Stage::Pending],
            None,
        )
        .await
        .unwrap();
    proxy.stall_on_query(env.password_statement());
    let a = Arc::new(rotation(20));
    let resume = {
        let a = a.clone();
        tokio::spawn(async move { a.resume("app").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.stall_on_query("no statement contains this text");
    let abort = a.abort("app", AbortMode::Safe).await;
    proxy.resume();
    let resume = resume.await.unwrap();
    eprintln!("abort: {abort:?}\nresume: {}", chain(&resume));
    let read_current = || async {
        let v = store
            .get_value("app", rotation_core::VersionSelector::stage(Stage::Current))
            .await
            .unwrap();
        serde_json::from_str::<Value>(secrecy::ExposeSecret::expose_secret(&v.value)).unwrap()
    };
    let mut direct = read_current().await;
    direct["port"] = json!(env.port());
    let current_ok = env.logs_in(&direct).await;
    eprintln!(
        "AWSCURRENT logs in after the race: {current_ok}; in flight: {:?}",
        store.describe("app").await.unwrap().rotation_in_flight()
    );
    if !current_ok {
        // The loser must say its password change stands, and the next rotation must recover.
        assert_eq!(resume.as_ref().unwrap_err().kind(), "RotationSuperseded");
        let next = rotation(20).rotate("app").await;
        eprintln!("next rotation: {}", chain(&next));
        next.unwrap();
        let mut direct = read_current().await;
        direct["port"] = json!(env.port());
        assert!(env.logs_in(&direct).await);
    }
}

/// docs/state-machine.md: "a local store write abandoned at the deadline never lands". The abandoned flag is
/// read once, before the state is serialised, written, fsynced and renamed into place; a
/// deadline that passes during that write is reported as a timeout and the write lands anyway.
/// A big store (or a slow disk: fsync) makes the window as wide as the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_write_in_progress_at_the_deadline_does_not_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("secrets.json"));
    let big = "x".repeat(40 * 1024 * 1024);
    store
        .create_secret("big", &SecretString::from(big))
        .await
        .unwrap();
    store
        .create_secret("app", &SecretString::from("{}".to_string()))
        .await
        .unwrap();
    // Measure a read and a whole write.
    let t = Instant::now();
    store.describe("app").await.unwrap();
    let read = t.elapsed();
    let t = Instant::now();
    store
        .put_value(
            "app",
            &token(),
            &SecretString::from("{}".to_string()),
            &[],
            None,
        )
        .await
        .unwrap();
    let whole = t.elapsed();
    let write = whole.saturating_sub(read);
    eprintln!("read {read:?}, read+write {whole:?}");

    let mut lock_path = store.path().as_os_str().to_owned();
    lock_path.push(".lock");
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.lock().unwrap();
    let deadline = Duration::from_secs(4);
    let late = token();
    let started = Instant::now();
    let writer = {
        let store = store.clone();
        let late = late.clone();
        tokio::spawn(async move {
            tokio::time::timeout(
                deadline,
                store.put_value(
                    "app",
                    &late,
                    &SecretString::from("{}".to_string()),
                    &[],
                    None,
                ),
            )
            .await
        })
    };
    // Release the lock so that the flag is checked before the deadline and the write spans it.
    tokio::time::sleep(deadline.saturating_sub(read + write / 2)).await;
    holder.unlock().unwrap();
    let out = writer.await.unwrap();
    eprintln!("write after {:?}: {out:?}", started.elapsed());
    if out.is_ok() {
        eprintln!("(finished before the deadline: no finding this time)");
        return;
    }
    tokio::time::sleep(whole * 2).await;
    assert!(
        !store
            .describe("app")
            .await
            .unwrap()
            .versions
            .contains_key(&late),
        "a write reported as timed out (abandoned at its deadline) landed"
    );
}

/// Releases the statement `proxy` holds and waits until the proxy has written it to the
/// server (nothing else is in flight), then a second for the server to act on it: the late
/// statement did arrive, so a test that sees no change proves something.
async fn deliver_late(proxy: &TcpProxy) {
    let sent = proxy.bytes_client_to_target();
    proxy.resume();
    let started = Instant::now();
    while proxy.bytes_client_to_target() == sent {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the held statement never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
}

/// Alternating users: rotation A's password change of `app` (the original, pending while the
/// clone is in use) is held in the network past its 2 s step; abort; rotation B sets `app`'s
/// password and makes it AWSCURRENT; then the network heals and A's change arrives. Returns
/// the secret's proxy, whether the change landed (AWSCURRENT no longer logs in: an engine
/// whose limits say a late change can land).
async fn a_late_change_lands_on_the_user_in_use(env: &Env) -> (TcpProxy, bool) {
    late_change_after_a_newer_rotation(env, true).await
}

/// The secret "app" (alternating users) with its master, both reaching the server through a
/// new proxy, which this returns.
async fn alternating_through_a_proxy(env: &Env) -> TcpProxy {
    let proxy = env.proxy();
    env.create_user("app", "Initial-pw-1-long-enough");
    // The master acts through the proxy too, so that its password change is the one held.
    let mut master = env.master_secret(Some(json!(false)));
    master["port"] = json!(proxy.port());
    let master_arn = env.put("app-master", &master).await;
    let mut v = env.plain_secret("app", "Initial-pw-1-long-enough");
    v["port"] = json!(proxy.port());
    v["masterarn"] = json!(master_arn);
    env.put("app", &v).await;
    proxy
}

/// [`a_late_change_lands_on_the_user_in_use`] when `pair_made`; otherwise rotation A is the
/// first, whose held change is the one that makes the clone, and B makes the clone AWSCURRENT.
async fn late_change_after_a_newer_rotation(env: &Env, pair_made: bool) -> (TcpProxy, bool) {
    let proxy = alternating_through_a_proxy(env).await;
    let (held_user, in_use) = if pair_made {
        // The pair: app_clone made and in use.
        env.alternating().rotate("app").await.unwrap();
        assert_eq!(
            env.value("app", Stage::Current).await["username"],
            "app_clone"
        );
        ("app", "app")
    } else {
        ("app_clone", "app_clone")
    };

    proxy.stall_on_query(if pair_made {
        env.password_statement()
    } else {
        env.engine.clone_statement()
    });
    let a = with_timeout(env.alternating(), 2).rotate("app").await;
    eprintln!("rotation A: {}", chain(&a));
    assert!(
        a.is_err() && proxy.stalls_triggered() > 0,
        "A's change of {held_user} was not held"
    );
    let aborted = env
        .store
        .get_value("app", VersionSelector::stage(Stage::Pending))
        .await
        .map(|v| serde_json::from_str::<Value>(v.value.expose_secret()).unwrap());
    // The held connection stays held; others go through.
    proxy.stall_on_query("no statement contains this text");
    let abort = env.alternating().abort("app", AbortMode::Safe).await;
    eprintln!("abort of A: {}", chain(&abort));
    assert!(abort.unwrap().current_verified);
    let b = env.alternating().rotate("app").await;
    eprintln!("rotation B: {}", chain(&b));
    b.unwrap();
    let current = env.value("app", Stage::Current).await;
    assert_eq!(current["username"], in_use);
    let after_b = env.fingerprint();
    deliver_late(&proxy).await;
    let landed = !env.logs_in(&current).await;
    // Held while the clone was being made, the late statement finds it made by B, on every
    // engine: refused, or fenced off; a late change of a user that exists lands where the
    // engine's limits say so.
    let may_land = pair_made && env.engine.limits().late_change_lands_after_abort;
    assert_eq!(
        landed,
        may_land,
        "{}'s limits say whether a late change lands after abort, and this one {}",
        env.engine,
        if landed { "did" } else { "did not" }
    );
    if !landed {
        // Neither the aborted password nor the rights of A's time came back.
        assert_eq!(env.fingerprint(), after_b, "the late change changed users");
        let aborted = aborted.expect("A's pending version, read before the abort");
        assert!(
            !env.logs_in(&aborted).await,
            "the aborted rotation's password works for {held_user}"
        );
    }
    (proxy, landed)
}

/// Alternating users, the first rotation: its change that makes the clone (the clone has no
/// password of its own yet) is held in the network past its step; abort; a newer rotation makes
/// the clone AWSCURRENT; then the held change arrives. It must not take effect (AWSCURRENT
/// logs in, the aborted password does not, no user changed), on every engine: the clone it
/// was making exists by then.
async fn a_late_change_making_the_clone_does_not_land_after_a_newer_rotation(engine: Engine) {
    let env = Env::plain(engine);
    let (_proxy, landed) = late_change_after_a_newer_rotation(&env, false).await;
    assert!(!landed);
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
}

/// Single user on an engine that keeps the current password beside the new one until
/// finishSecret drops it (`single_user_keeps_current`): that drop, held in the network until a
/// newer rotation has finished, then delivered, must not remove the newer password. Engines
/// that replace the password at setSecret drop nothing at finishSecret, and name no drop.
async fn a_late_drop_of_the_old_password_cannot_lock_out(engine: Engine) {
    assert_eq!(
        engine.old_password_drop().is_some(),
        engine.limits().single_user_keeps_current,
        "{engine}: a drop command (old_password_drop) is named exactly where the engine keeps \
         the current password beside the new one (single_user_keeps_current)"
    );
    let Some(drop) = engine.old_password_drop() else {
        // Nothing to drop: setSecret replaced the password (the stranded suite's
        // `a_rotation_after_a_hand_removed_pending_label_recovers_the_password` checks that
        // AWSCURRENT stops logging in at setSecret on these engines).
        return;
    };
    let env = Env::plain(engine);
    let proxy = env.app_through_a_proxy().await;
    let r = with_timeout(env.single(), 2);
    r.rotate("app").await.expect("first rotation");
    let first = env.value("app", Stage::Current).await;
    proxy.stall_on_query(drop);
    let second = r.rotate("app").await;
    eprintln!("second rotation: {}", chain(&second));
    second.expect("a drop that did not answer is not the step's failure");
    assert!(proxy.stalls_triggered() > 0, "the drop was not held");
    let second = env.value("app", Stage::Current).await;
    assert!(
        env.logs_in(&second).await && env.logs_in(&first).await,
        "the held drop landed"
    );
    // A newer rotation: its drop goes through.
    proxy.stall_on_query("no statement contains this text");
    r.rotate("app").await.expect("third rotation");
    let third = env.value("app", Stage::Current).await;
    assert!(!env.logs_in(&first).await && !env.logs_in(&second).await);
    let before = env.fingerprint();
    deliver_late(&proxy).await;
    assert_eq!(env.fingerprint(), before, "the late drop changed users");
    assert!(
        env.logs_in(&third).await,
        "the late drop removed AWSCURRENT's password"
    );
}

/// "No stranded password" for alternating users, with a rotation in flight when the late
/// change has landed on the user AWSCURRENT names: safe abort cannot prove AWSCURRENT and
/// refuses, saying to resume; `resume` then finishes the rotation (its setSecret takes the
/// version the late change left without a label as the proof that the account is the
/// secret's), and AWSCURRENT logs in. Before, `resume` failed CurrentLoginFailed too, and only
/// `abort --force` then `rollback` got out.
async fn a_late_change_on_the_user_in_use_is_recovered_by_resume_where_abort_cannot_prove_it(
    engine: Engine,
) {
    let env = Env::plain(engine);
    let (_proxy, landed) = a_late_change_lands_on_the_user_in_use(&env).await;
    // A rotation in flight, after its createSecret.
    let mut pending = env.value("app", Stage::Current).await;
    pending["username"] = json!("app_clone");
    pending["password"] = env.password("Pending-pw-1-abcdefghij");
    env.store
        .put_value(
            "app",
            &token(),
            &SecretString::from(pending.to_string()),
            &[Stage::Pending],
            None,
        )
        .await
        .unwrap();
    let abort = env.alternating().abort("app", AbortMode::Safe).await;
    eprintln!("abort: {}", chain(&abort));
    if landed {
        let e = abort.unwrap_err();
        assert_eq!(e.kind(), "AbortUnsafe");
        assert!(e.to_string().contains("resume the rotation"), "{e}");
        let resume = env.alternating().resume("app").await;
        eprintln!("resume: {}", chain(&resume));
        resume.unwrap();
        assert_eq!(
            env.value("app", Stage::Current).await["username"],
            "app_clone"
        );
    } else {
        assert!(abort.unwrap().current_verified);
    }
    assert!(env.logs_in(&env.value("app", Stage::Current).await).await);
    assert_eq!(
        env.store
            .describe("app")
            .await
            .unwrap()
            .rotation_in_flight(),
        None
    );
}

/// The same without a rotation in flight: the next run's setSecret, finding AWSCURRENT's
/// password refused, takes the unlabelled version as the proof and rotates on; the master sets
/// only the new user's generated password (before, the run failed CurrentLoginFailed).
async fn a_late_change_on_the_user_in_use_is_recovered_by_the_next_run(engine: Engine) {
    let env = Env::plain(engine);
    let (_proxy, _landed) = a_late_change_lands_on_the_user_in_use(&env).await;
    let run = env.alternating().rotate("app").await;
    eprintln!("next rotation: {}", chain(&run));
    run.unwrap();
    let current = env.value("app", Stage::Current).await;
    assert_eq!(current["username"], "app_clone");
    assert!(env.logs_in(&current).await);
}

/// A change that lands late, after more aborted rotations than the old ten-version recovery
/// window: the database holds the oldest aborted version's password, AWSCURRENT no longer logs
/// in, and the next rotation still finds it and carries on, for every engine.
async fn a_late_change_is_recovered_past_many_aborted_rotations(engine: Engine) {
    const ABORTED: usize = 12;
    let env = Env::plain(engine);
    env.create_user("app", "Initial-pw-1-long-enough");
    env.put("app", &env.plain_secret("app", "Initial-pw-1-long-enough"))
        .await;
    let r = env.single();
    let mut tokens = Vec::new();
    for _ in 0..ABORTED {
        let token = token();
        env.store.start_rotation("app", &token).await.unwrap();
        r.handle(&RotationEvent::new(Step::CreateSecret, "app", &token))
            .await
            .unwrap();
        r.abort("app", AbortMode::Safe).await.expect("safe abort");
        tokens.push(token);
    }
    // The first rotation's change lands now, as a COMMIT or an updateUser held in the network
    // would.
    let oldest = env
        .store
        .get_value(
            "app",
            rotation_core::VersionSelector {
                version_id: Some(&tokens[0]),
                stage: None,
            },
        )
        .await
        .unwrap();
    let oldest: Value = serde_json::from_str(oldest.value.expose_secret()).unwrap();
    env.set_password("app", oldest["password"].as_str().unwrap());
    let current = env.value("app", Stage::Current).await;
    assert!(!env.logs_in(&current).await, "the late change took effect");
    const { assert!(ABORTED > 10 && ABORTED < RECOVERY_LIMIT) };

    r.rotate("app").await.expect("the next rotation recovers");
    let current = env.value("app", Stage::Current).await;
    assert!(env.logs_in(&current).await, "AWSCURRENT logs in again");
    assert_eq!(
        env.value("app", Stage::Previous).await["password"],
        "Initial-pw-1-long-enough",
        "AWSPREVIOUS moved from the version that was AWSCURRENT"
    );
}
