//! docs/errors.md documents every error kind the code can report, and nothing else: the kinds
//! are read from the code's own `kind()` and `as_str()` tables.

use std::collections::BTreeSet;

use rotation_testkit::workspace_root;

/// The string literals after `=>` between `start` and `end` in `file`.
fn kinds(file: &str, start: &str, end: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {file}"));
    let to = from
        + text[from..]
            .find(end)
            .unwrap_or_else(|| panic!("{end} in {file}"));
    text[from..to]
        .split("=> \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_kind_has_its_section_and_every_section_a_kind() {
    let rotation = kinds(
        "crates/rotation-core/src/error.rs",
        "pub fn kind(&self)",
        "pub fn category(&self)",
    );
    let database = kinds(
        "crates/rotation-core/src/error.rs",
        "pub fn as_str(self)",
        "impl fmt::Display for ErrorKind",
    );
    assert!(
        rotation.len() >= 30 && database.len() == 9,
        "{rotation:?} {database:?}"
    );
    let doc = std::fs::read_to_string(workspace_root().join("docs/errors.md")).unwrap();
    let sections: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::to_string)
        .collect();
    // A fleet run's own kinds, for failures that are not a rotation's.
    let fleet_text =
        std::fs::read_to_string(workspace_root().join("crates/rotation-cli/src/fleet.rs")).unwrap();
    let fleet: BTreeSet<String> = fleet_text
        .split("kind: \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    assert_eq!(fleet.len(), 2, "{fleet:?}");
    let code: BTreeSet<String> = rotation.union(&database).cloned().chain(fleet).collect();
    let undocumented: Vec<_> = code.difference(&sections).collect();
    let stale: Vec<_> = sections.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "kinds without a section in docs/errors.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "sections of docs/errors.md no kind has: {stale:?}"
    );
}

mod real_failures {
    //! Real failures, on real servers, reported with the kind docs/errors.md gives them:
    //! a wrong password, an unknown host, a closed port, TLS asked of a server without it, an
    //! unknown database, a missing privilege, a missing `masterarn`.

    use rotation_core::{ErrorKind, RotationError, Strategy};
    use rotation_tests::all_engines;
    use rotation_tests::engines::{Engine, Env};
    use serde_json::{Value, json};

    all_engines!(each_failure_has_its_kind);

    /// Rotates secret `name` holding `value` and returns the error.
    async fn fails(env: &Env, name: &str, value: &Value, strategy: Strategy) -> RotationError {
        env.put(name, value).await;
        env.rotation_on(env.store.clone(), strategy)
            .rotate(name)
            .await
            .expect_err(name)
    }

    #[track_caller]
    fn is(e: &RotationError, kind: &str, engine: Option<ErrorKind>) {
        assert_eq!((e.kind(), e.engine_kind()), (kind, engine), "{e}");
        // The kind the database gave is in the message, where an operator reads it.
        if let Some(k) = engine {
            assert!(e.to_string().contains(k.as_str()), "{e}");
        }
    }

    async fn each_failure_has_its_kind(engine: Engine) {
        let env = Env::plain(engine);
        env.create_user("app", "Initial-pw-1-long-enough");
        let good = env.plain_secret("app", "Initial-pw-1-long-enough");
        let single = Strategy::SingleUser;

        let mut v = good.clone();
        v["password"] = json!("Wrong-pw-1-long-enough");
        let e = fails(&env, "wrong-password", &v, single).await;
        is(&e, "NoWorkingCredentials", Some(ErrorKind::AuthFailed));

        let mut v = good.clone();
        v["host"] = json!("no-such-host.invalid");
        let e = fails(&env, "unknown-host", &v, single).await;
        is(&e, "NoWorkingCredentials", Some(ErrorKind::Unreachable));

        let mut v = good.clone();
        v["port"] = json!(rotation_testkit::free_port());
        let e = fails(&env, "closed-port", &v, single).await;
        is(&e, "NoWorkingCredentials", Some(ErrorKind::Unreachable));

        // TLS required of a server that has none: refused, never downgraded.
        let v = env.secret("app", "Initial-pw-1-long-enough", Some(json!(true)));
        let e = fails(&env, "tls-refused", &v, single).await;
        is(
            &e,
            "NoWorkingCredentials",
            Some(engine.limits().tls_to_plain_server),
        );

        let mut v = good.clone();
        v["dbname"] = json!("no_such_db");
        match engine.limits().unknown_database {
            Some(kind) => {
                let e = fails(&env, "unknown-database", &v, single).await;
                is(&e, "NoWorkingCredentials", Some(kind));
            }
            None => {
                // Its own user: the rotation goes through and changes the password.
                env.create_user("nodb", "Initial-pw-1-long-enough");
                let mut v = env.plain_secret("nodb", "Initial-pw-1-long-enough");
                v["dbname"] = json!("no_such_db");
                env.put("unknown-database", &v).await;
                env.rotation_on(env.store.clone(), single)
                    .rotate("unknown-database")
                    .await
                    .expect("an engine without databases ignores `dbname`");
            }
        }

        env.create_user("readonly", "Initial-pw-1-long-enough");
        env.forbid_own_password_change("readonly");
        let v = env.plain_secret("readonly", "Initial-pw-1-long-enough");
        if engine.limits().users_change_own_password {
            let e = fails(&env, "no-privilege", &v, single).await;
            is(&e, "SetPasswordFailed", Some(ErrorKind::PermissionDenied));
        } else {
            // The master changes it: there is no such right to lack.
            env.put("no-privilege", &v).await;
            env.rotation_on(env.store.clone(), single)
                .rotate("no-privilege")
                .await
                .expect("the master sets the password");
        }

        let mut no_master = good.clone();
        no_master.as_object_mut().unwrap().remove("masterarn");
        let e = fails(&env, "no-masterarn", &no_master, Strategy::AlternatingUsers).await;
        is(&e, "MissingMasterArn", None);
        assert_eq!(e.category().exit_code(), 4);
    }
}
