//! The rotation function for every engine the suites register (the built-in ones and the Redis
//! example), the engine named by `ROTATION_ENGINE` as the deployment templates set it: the
//! binary the end-to-end suite runs behind moto's RotateSecret
//! (`rotation_testkit::LambdaService`). Each shipped function is the same call,
//! `rotation_lambda::run(ENGINE)`, with its engine fixed.

#![recursion_limit = "256"]

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    rotation_lambda::init_tracing();
    let name = std::env::var(rotation_core::ENGINE_ENV).unwrap_or_default();
    let engine = rotation_tests::engines::by_name(&name).ok_or_else(|| {
        format!(
            "{} names no registered engine: {name:?}",
            rotation_core::ENGINE_ENV
        )
    })?;
    rotation_lambda::run(engine.engine()).await
}
