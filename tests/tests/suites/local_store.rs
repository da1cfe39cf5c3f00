//! The local store as rotation sees it: a claim dies with its holder, and a version without a
//! label is invisible to the entry checks, as on AWS.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use rotation_core::{AnyStore, RotationError, SecretStore, Step, StoreError, Strategy};
use rotation_tests::fixture::Fixture;
use rotation_tests::{Kind, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_held_by_a_killed_process_is_released() {
    let f = Fixture::new(Kind::Local, Strategy::SingleUser).await;
    let AnyStore::Local(store) = f.svc.store() else {
        unreachable!()
    };
    let arn = f.rotation.status(&f.secret).await.unwrap().arn;
    let mut child = Command::new(env!("CARGO_BIN_EXE_claim_holder"))
        .arg(store.path())
        .arg(&arn)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn claim_holder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "claimed");

    // Held by another process: refused at once, nothing done.
    assert!(matches!(store.claim(&arn).await, Err(StoreError::Busy(_))));
    let e = f.rotation.rotate(&f.secret).await.unwrap_err();
    assert!(matches!(e, RotationError::Busy { .. }), "{e:?}");
    assert_eq!(f.db.logins(), 0);

    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");

    let claim = store.claim(&arn).await.expect("released by the kernel");
    drop(claim);
    f.rotation.rotate(&f.secret).await.unwrap();
    assert!(f.current_logs_in().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_on_an_unlabelled_version_is_not_staged() {
    // DescribeSecret lists only labelled versions; a step whose token lost its label fails the
    // entry checks with TokenNotStaged, as on AWS (moto lists it with no labels, so there it is
    // TokenNotPending).
    let f = Fixture::new(Kind::Local, Strategy::SingleUser).await;
    let t = token();
    f.svc.start_rotation(&f.secret, &t).await;
    f.step(Step::CreateSecret, &t).await.unwrap();
    f.remove_pending(&t).await;
    assert!(
        !f.svc
            .store()
            .describe(&f.secret)
            .await
            .unwrap()
            .versions
            .contains_key(&t)
    );
    for step in Step::ALL {
        let e = f.step(step, &t).await.unwrap_err();
        assert!(
            matches!(e, RotationError::TokenNotStaged { .. }),
            "{step}: {e:?}"
        );
    }
    assert_eq!(f.db.logins(), 0);
}

/// A store path that is not a regular file is refused, never replaced, read forever or read
/// whole: a device (`/dev/null`, `/dev/zero` behind a symbolic link), a FIFO, a directory.
#[tokio::test]
async fn a_store_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let zero = dir.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let null = dir.path().join("null.json");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    for path in [fifo, zero, null, dir.path().to_path_buf()] {
        let store = rotation_core::LocalSecretStore::new(&path);
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), store.describe("x"))
            .await
            .expect("the read ends");
        let e = read.unwrap_err();
        assert!(
            rotation_core::error_chain(&e).contains("not a regular file"),
            "{path:?}: {e}"
        );
        let write = store
            .create_secret("x", &secrecy::SecretString::from("{}".to_string()))
            .await;
        assert!(write.is_err(), "{path:?}");
    }
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&null.file_type()),
        "/dev/null is still a device"
    );
}
