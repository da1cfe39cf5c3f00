//! Child process for the claim test: takes the rotation claim on ARN in the local store FILE,
//! prints `claimed`, and holds it until it is killed (or its stdin closes, so that it never
//! outlives a failed test). Usage: claim_holder FILE ARN

use std::io::{Read, Write};

use rotation_core::{LocalSecretStore, SecretStore};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, arn] = args.as_slice() else {
        eprintln!("usage: claim_holder FILE ARN");
        std::process::exit(2);
    };
    let claim = LocalSecretStore::new(file)
        .claim(arn)
        .await
        .expect("take the claim");
    assert!(claim.is_exclusive());
    let mut out = std::io::stdout();
    writeln!(out, "claimed")
        .and_then(|()| out.flush())
        .expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(claim);
}
