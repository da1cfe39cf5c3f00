//! Two processes writing one local store file at the same time lose nothing.

use rotation_core::{LocalSecretStore, SecretStore, Stage};
use std::process::Command;

#[tokio::test]
async fn two_processes_hammering_one_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.json");
    let spawn = |prefix: &str| {
        Command::new(env!("CARGO_BIN_EXE_store_hammer"))
            .arg(&file)
            .arg(prefix)
            .arg("200")
            .spawn()
            .expect("spawn store_hammer")
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());

    let store = LocalSecretStore::new(&file);
    let names = store.list().await.unwrap();
    assert_eq!(names.len(), 400, "every create survived");
    for name in &names {
        let d = store.describe(name).await.unwrap();
        assert_eq!(d.versions.len(), 2, "{name}: both versions survived");
        assert!(d.version_with(Stage::Pending).is_some());
        assert!(d.version_with(Stage::Current).is_some());
    }
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rotation-store-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
