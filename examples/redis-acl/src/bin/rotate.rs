//! Rotates a Redis ACL user's secret in a local file store, for trying the engine out and for
//! its kill -9 tests: `redis-acl-rotate STORE run|resume|abort SECRET single-user|alternating-users`.
//! `CA_BUNDLE_PATH` and the other connection variables apply. Exit 0 on success, else the
//! error's category (3 refused, 4 the secret or the store, 5 the database).

use std::process::ExitCode;

use redis_acl_rotation::{PROFILE, RedisAclRotator};
use rotation_core::{AbortMode, LocalSecretStore, PasswordPolicy, Rotation, Strategy};
use rotation_trust::ConnectSettings;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, command, secret, strategy] = args.as_slice() else {
        eprintln!("usage: redis-acl-rotate STORE run|resume|abort SECRET STRATEGY");
        return ExitCode::from(2);
    };
    let (Some(strategy), Ok(settings)) = (
        Strategy::parse(strategy),
        ConnectSettings::from_lookup(|k| std::env::var(k).ok()),
    ) else {
        eprintln!("error: bad strategy or connection settings");
        return ExitCode::from(2);
    };
    let rotation = Rotation::new(
        LocalSecretStore::new(store),
        RedisAclRotator::new(strategy, settings),
        PasswordPolicy::defaults(&PROFILE.password),
    );
    let result = match command.as_str() {
        "run" => rotation.rotate(secret).await.map(|r| r.token),
        "resume" => rotation.resume(secret).await.map(|r| r.token),
        "abort" => rotation
            .abort(secret, AbortMode::Safe)
            .await
            .map(|r| format!("{r:?}")),
        _ => {
            eprintln!("error: the command is run, resume or abort");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(done) => {
            println!("{command} {secret}: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error [{}]: {}", e.kind(), rotation_core::error_chain(&e));
            ExitCode::from(e.category().exit_code())
        }
    }
}
