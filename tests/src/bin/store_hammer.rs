//! Child process for the local store concurrency test: creates `COUNT` secrets named
//! `<prefix>-<i>` in the store file, each followed by a put of a pending version.
//! Usage: store_hammer FILE PREFIX COUNT

use rotation_core::{LocalSecretStore, SecretStore, Stage};
use secrecy::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, prefix, count] = args.as_slice() else {
        eprintln!("usage: store_hammer FILE PREFIX COUNT");
        std::process::exit(2);
    };
    let store = LocalSecretStore::new(file);
    let count: usize = count.parse().expect("COUNT is a number");
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        store
            .create_secret(&name, &SecretString::from(format!("{{\"n\":{i}}}")))
            .await
            .expect("create");
        let token = format!("{:032}", i);
        store
            .put_value(
                &name,
                &token,
                &SecretString::from("{}"),
                &[Stage::Pending],
                None,
            )
            .await
            .expect("put");
    }
}
