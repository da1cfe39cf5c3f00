//! End to end, for every registered engine and both strategies: moto's RotateSecret invokes
//! the rotation function through the Lambda Runtime API, and the function rotates a real user
//! over verified TLS (`rotation_tests::lambda` says what is checked).

use std::path::Path;

use rotation_core::Strategy;
use rotation_tests::engines::Engine;

async fn moto_rotate_secret_runs_the_lambda(engine: Engine, strategy: Strategy) {
    let function = Path::new(env!("CARGO_BIN_EXE_lambda_all"));
    tokio::task::block_in_place(|| {
        rotation_tests::lambda::rotates_through_its_lambda(engine, strategy, function)
    })
}

rotation_tests::all_rotators!(moto_rotate_secret_runs_the_lambda);

/// On AWS the function reaches Secrets Manager over HTTPS, verified against the platform's
/// store (the SDK's client reads it). Here moto serves HTTPS with a certificate of its own CA,
/// which the function's platform store (`SSL_CERT_FILE`) holds, or not.
#[test]
fn the_function_reaches_secrets_manager_over_tls_verified_by_the_system_store() {
    use rotation_testkit::{LambdaService, Moto, TestCa};
    use std::time::Duration;

    let moto = Moto::start_tls().expect("start moto over HTTPS");
    moto.python("sm.create_secret(Name='app', SecretString='{}')")
        .expect("create a secret over HTTPS");
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::generate(dir.path(), &["127.0.0.1"]).expect("another CA");
    let function = Path::new(env!("CARGO_BIN_EXE_lambda_all"));
    let event = serde_json::json!({
        "Step": "createSecret",
        "SecretId": "app",
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
    })
    .to_string();
    for (store, verifies) in [(moto.ca_pem().unwrap(), true), (&*other.ca_pem, false)] {
        let mut lambda = LambdaService::new("rds-postgres").expect("serve the Runtime API");
        let mut vars = moto.env();
        vars.push((rotation_core::ENGINE_ENV.into(), "postgres".into()));
        vars.push((rotation_core::STRATEGY_ENV.into(), "single-user".into()));
        vars.push(("SSL_CERT_FILE".into(), store.display().to_string()));
        lambda.start(function, &vars).expect("start the function");
        let err = lambda
            .invoke(&event, Duration::from_secs(60))
            .expect_err("the token is no version of the secret");
        let output = lambda.output();
        if verifies {
            // Secrets Manager's answer was read: the token is no version of the secret.
            assert!(err.contains("TokenNotStaged"), "{err}\n{output}");
        } else {
            // Its certificate is not trusted: no answer, a Secrets Manager error saying why.
            assert!(
                err.contains("\"SecretsManagerError\"") && err.contains("invalid peer certificate"),
                "{err}\n{output}"
            );
        }
    }
}
