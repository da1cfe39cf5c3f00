//! `rotate run --prefix/--tag/--all`: 200 secrets of real PostgreSQL users, 5 of them broken,
//! plus a second secret of one user. 195 rotate, the 6 others are reported with their kinds,
//! the exit code is non-zero, and no other secret is touched.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use rotation_core::{LocalSecretStore, SecretStore, Stage, VersionSelector};
use rotation_testkit::{PgCluster, PgOptions, free_port};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const USERS: usize = 200;

fn rotate(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotate"))
        .args(["--store", store])
        .args(args)
        .env_remove("ROTATION_STRATEGY")
        .env_remove("ROTATE_STORE")
        .output()
        .expect("run rotate")
}

/// Every secret's AWSCURRENT version id and value.
async fn currents(store: &LocalSecretStore) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for name in store.list().await.unwrap() {
        let v = store
            .get_value(&name, VersionSelector::stage(Stage::Current))
            .await
            .unwrap();
        let value = serde_json::from_str(v.value.expose_secret()).unwrap();
        out.insert(name, (v.version_id, value));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_secrets_five_broken() {
    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL (scripts/setup)");
    pg.psql(&format!(
        "DO $$ BEGIN FOR i IN 0..{} LOOP EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', 'u' || i, 'Initial-pw-' || i); END LOOP; END $$;",
        USERS - 1
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.json");
    let spec = format!("file:{}", path.display());
    let store = LocalSecretStore::new(&path);
    let secret = |i: usize| {
        json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port(), "username": format!("u{i}"),
               "password": format!("Initial-pw-{i}"), "dbname": "postgres", "ssl": false})
    };
    for i in 0..USERS {
        let mut v = secret(i);
        match i {
            // The broken five.
            7 => v["password"] = json!("Wrong-pw-1"),
            42 => v["port"] = json!(free_port()),
            99 => v["engine"] = json!("oracle"),
            150 => v["username"] = json!("nobody"),
            _ => {}
        }
        store
            .create_secret(
                &format!("fleet/s{i:03}"),
                &SecretString::from(v.to_string()),
            )
            .await
            .unwrap();
    }
    // Broken by its tag: alternating users without a masterarn.
    store
        .tag("fleet/s180", "rotation-strategy", "alternating-users")
        .await
        .unwrap();
    // A second secret of user u1: both refused, before either is rotated (rotating one would
    // lock out the other's clients).
    store
        .create_secret("fleet/s999", &SecretString::from(secret(1).to_string()))
        .await
        .unwrap();
    // Not selected by the prefix: must not be touched.
    store
        .create_secret("other/s0", &SecretString::from(secret(0).to_string()))
        .await
        .unwrap();
    let broken = [
        "fleet/s007",
        "fleet/s042",
        "fleet/s099",
        "fleet/s150",
        "fleet/s180",
        "fleet/s999",
        "fleet/s001",
    ];
    let before = currents(&store).await;

    let o = rotate(
        &spec,
        &["--json", "run", "--prefix", "fleet/", "--concurrency", "8"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(5),
        "a database failure is the worst: {stderr}"
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("a JSON summary");
    assert_eq!(report["rotated"], json!(USERS - 6), "{report}");
    assert_eq!(report["failed"], json!(7));
    let failed: BTreeMap<String, String> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == json!("failed"))
        .map(|r| {
            (
                r["secret"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("fleet/s007", "NoWorkingCredentials"),
        ("fleet/s042", "NoWorkingCredentials"),
        ("fleet/s099", "InvalidSecret"),
        ("fleet/s150", "NoWorkingCredentials"),
        ("fleet/s180", "MissingMasterArn"),
        ("fleet/s999", "InvalidSecret"),
        ("fleet/s001", "InvalidSecret"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(failed, expected);
    // The summary says which failures left a rotation in flight, as the store does.
    let mut in_flight = Vec::new();
    for row in report["secrets"].as_array().unwrap() {
        if row["result"] != json!("failed") {
            continue;
        }
        let name = row["secret"].as_str().unwrap();
        let pending = store
            .describe(name)
            .await
            .unwrap()
            .rotation_in_flight()
            .map(str::to_owned);
        assert_eq!(row["in_flight"], json!(pending), "{name}: {row}");
        if pending.is_some() {
            in_flight.push(name.to_string());
        }
    }
    assert_eq!(
        in_flight,
        ["fleet/s007", "fleet/s042", "fleet/s150"],
        "the database failures leave their rotation in flight; the refused ones (no masterarn among them) change nothing"
    );
    assert_eq!(report["in_flight"], json!(3));
    // No password in the report.
    let all = format!("{}{stderr}", String::from_utf8_lossy(&o.stdout));
    assert!(!all.contains("Initial-pw-") && !all.contains("Wrong-pw-1"));

    let after = currents(&store).await;
    for (name, (version, value)) in &before {
        let (v_after, value_after) = &after[name];
        if name.starts_with("fleet/") && !broken.contains(&name.as_str()) {
            assert_ne!(v_after, version, "{name} rotated");
            assert_eq!(value_after["username"], value["username"]);
        } else {
            // Broken and unselected secrets keep their AWSCURRENT exactly.
            assert_eq!((v_after, value_after), (version, value), "{name}");
        }
    }
    // The new passwords are the database's (every 20th user, and the last).
    for i in (0..USERS).step_by(20).chain([USERS - 1]) {
        let name = format!("fleet/s{i:03}");
        if broken.contains(&name.as_str()) {
            continue;
        }
        let (_, value) = &after[&name];
        assert!(
            pg.logs_in(&format!("u{i}"), value["password"].as_str().unwrap()),
            "{name}"
        );
        assert!(!pg.logs_in(&format!("u{i}"), &format!("Initial-pw-{i}")));
    }
    // The unselected secret's user was rotated by fleet/s000, so its secret no longer logs in:
    // proof that selection, not the user, decides what is rotated.
    assert!(!pg.logs_in("u0", "Initial-pw-0"));

    // A selection that matches nothing is a usage error.
    let o = rotate(&spec, &["run", "--tag", "team=none"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // One secret still needs --strategy.
    let o = rotate(&spec, &["run", "other/s0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A master secret selected with the secrets that name it rotates after them: rotated at the
/// same time, its password would change under their setSecret.
#[tokio::test]
async fn masters_rotate_after_the_secrets_that_use_them() {
    let pg = PgCluster::start(PgOptions::default()).expect("start PostgreSQL (scripts/setup)");
    pg.psql(
        "CREATE ROLE admin1 LOGIN CREATEROLE PASSWORD 'Admin-pw-1'; \
         DO $$ BEGIN FOR i IN 0..11 LOOP EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', 'a' || i, 'Initial-pw-' || i); END LOOP; END $$;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.json");
    let spec = format!("file:{}", path.display());
    let store = LocalSecretStore::new(&path);
    let secret = |user: &str, password: &str| {
        json!({"engine": "postgres", "host": "127.0.0.1", "port": pg.port(), "username": user,
               "password": password, "dbname": "postgres", "ssl": false})
    };
    // Named so that the master sorts in the middle of the listing.
    let master = store
        .create_secret(
            "m/f-admin",
            &SecretString::from(secret("admin1", "Admin-pw-1").to_string()),
        )
        .await
        .unwrap();
    for i in 0..12 {
        let mut v = secret(&format!("a{i}"), &format!("Initial-pw-{i}"));
        v["masterarn"] = json!(master);
        store
            .create_secret(
                &format!("m/{}-app{i}", if i < 6 { "a" } else { "z" }),
                &SecretString::from(v.to_string()),
            )
            .await
            .unwrap();
    }
    let o = rotate(
        &spec,
        &["--json", "run", "--prefix", "m/", "--concurrency", "8"],
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        o.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(report["rotated"], json!(13), "{report}");
    for (name, (_, value)) in currents(&store).await {
        let user = value["username"].as_str().unwrap();
        assert!(
            pg.logs_in(user, value["password"].as_str().unwrap()),
            "{name}: AWSCURRENT does not log in"
        );
    }
    assert!(
        !pg.logs_in("admin1", "Admin-pw-1"),
        "the master rotated too"
    );
}
