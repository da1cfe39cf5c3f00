//! W16 for every engine, through its built Lambda function (the suites' `lambda_all`) on moto:
//! a step ends before the invocation's deadline whatever the database does (a server that
//! accepts and never answers, a password change that never answers), reports a typed error
//! with time to spare for the report, and changes nothing behind it.

use std::path::Path;
use std::time::{Duration, Instant};

use rotation_lambda::DEADLINE_MARGIN;
use rotation_testkit::{LambdaService, Moto, TcpProxy};
use rotation_tests::all_engines;
use rotation_tests::engines::{Engine, Env};
use serde_json::{Value, json};

all_engines!(
    a_server_that_never_answers_ends_the_step_before_the_invocation_deadline,
    a_password_change_that_never_answers_ends_the_step_before_the_invocation_deadline,
);

/// The invocation's time: the step has this less [`DEADLINE_MARGIN`].
const INVOCATION: Duration = Duration::from_secs(8);
/// What the function's process and the Runtime API add to the step's own time.
const SLACK: Duration = Duration::from_millis(1000);
const TOKEN: &str = "d0000000-0000-4000-8000-000000000001";
const INITIAL: &str = "Initial-pw-1-Long-enough";

async fn a_server_that_never_answers_ends_the_step_before_the_invocation_deadline(engine: Engine) {
    stalled_set_secret(engine, |proxy, _| proxy.stall(), false).await
}

async fn a_password_change_that_never_answers_ends_the_step_before_the_invocation_deadline(
    engine: Engine,
) {
    stalled_set_secret(
        engine,
        |proxy, env| proxy.stall_on_query(env.password_statement()),
        true,
    )
    .await
}

/// A single-user rotation of `app` through the function on moto: createSecret done, then
/// `stall` applied to the proxy the secret names, then setSecret with [`INVOCATION`] left.
/// `change_held`: the stall holds the password change itself, which an engine whose limits
/// say so lets land once the network delivers it (RELIABILITY.md; the next rotation recovers
/// it, `late_change`).
async fn stalled_set_secret(engine: Engine, stall: impl Fn(&TcpProxy, &Env), change_held: bool) {
    let env = Env::plain(engine);
    let proxy = env.proxy();
    env.create_user("app", INITIAL);
    let moto = Moto::start().expect("start moto (scripts/setup installs it)");
    let name = engine.engine().function_name;
    let mut lambda = LambdaService::new(name).expect("serve the function");
    let mut vars = moto.env();
    vars.push((rotation_core::ENGINE_ENV.into(), engine.name().into()));
    vars.push((rotation_core::STRATEGY_ENV.into(), "single-user".into()));
    lambda
        .start(Path::new(env!("CARGO_BIN_EXE_lambda_all")), &vars)
        .expect("start the rotation function");

    rotation_tests::moto_user_secret(&moto, &env, "app", "app", INITIAL, proxy.port());
    let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let function = moto.create_function(name).expect("register the function");
    Moto::rotate_secret(&client, "app", TOKEN, &function)
        .await
        .expect("RotateSecret (the AWSPENDING stub)");
    let event = |step: &str| {
        json!({"Step": step, "SecretId": "app", "ClientRequestToken": TOKEN}).to_string()
    };
    lambda
        .invoke(&event("createSecret"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("createSecret: {e}\n{}", lambda.output()));

    stall(&proxy, &env);
    let started = Instant::now();
    let failure = lambda
        .invoke(&event("setSecret"), INVOCATION)
        .expect_err("the step cannot succeed");
    let took = started.elapsed();
    eprintln!("setSecret failed after {took:?}: {failure}");
    let budget = INVOCATION - DEADLINE_MARGIN;
    assert!(
        took <= budget + SLACK,
        "the step ran {took:?}, past its budget of {budget:?}\n{}",
        lambda.output()
    );
    // It failed by running out of time at the stall, not at once for another reason.
    assert!(
        took + SLACK >= budget,
        "the step failed after {took:?}, well before its budget of {budget:?}: {failure}"
    );
    assert!(
        proxy.stalls_triggered() > 0 || !change_held,
        "the change was not held"
    );
    assert!(failure.contains("Timeout"), "{failure}");
    let failure: Value = serde_json::from_str(&failure).expect("the function's own error");
    let kind = failure["errorType"].as_str().unwrap_or_default();
    assert!(
        [
            "DatabaseError",
            "NoWorkingCredentials",
            "SetPasswordFailed",
            "MasterLoginFailed",
            "SecretsManagerTimeout",
        ]
        .contains(&kind),
        "{failure}"
    );
    // Nothing changed behind the failed step: the first password still logs in, once the
    // network has delivered what it held.
    proxy.resume();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unchanged = env.server.logs_in_with_own_client("app", INITIAL);
    if change_held && engine.limits().late_change_lands_after_abort {
        assert!(
            !unchanged,
            "{engine}'s limits say a late password change lands, and this one did not: update its TestEngine limits and RELIABILITY.md"
        );
    } else {
        assert!(unchanged, "the password changed behind the failed step");
    }
}
