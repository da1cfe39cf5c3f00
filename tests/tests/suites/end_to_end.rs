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
