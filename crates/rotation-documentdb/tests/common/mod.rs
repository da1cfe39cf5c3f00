//! This crate's suites on the one test environment ([`rotation_testkit::Env`]) with
//! SecantusDB (the DocumentDB stand-in), and what only DocumentDB's suites need of it: the
//! server itself, users in a database of their own with roles, the engine's typed settings.

#![allow(dead_code)]

use rotation_core::{LocalSecretStore, Rotation};
use rotation_documentdb::DocumentDbRotator;
use rotation_documentdb::testing::{DOCUMENTDB, SecantusServer};
use rotation_testkit::Secantus;
pub use rotation_testkit::env::{Env, parse};
use rotation_trust::{ConnectSettings, Trust};
use serde_json::{Value, json};

/// A Python string literal for `s` (JSON escapes are valid Python).
pub fn py(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A server, TLS-only with a generated CA the engine trusts when `tls`.
pub fn start(tls: bool) -> Env {
    Env::start(&DOCUMENTDB, tls)
}

/// A server (TLS or not) with the `selfService` role and user `app` (password
/// `Initial-Passw0rd`) in `admin`, allowed to change its own password.
pub fn with_app_user(tls: bool) -> Env {
    let env = start(tls);
    env.db().create_self_service_role().unwrap();
    env.create_user_in(
        "app",
        "Initial-Passw0rd",
        "admin",
        "[{'role': 'selfService', 'db': 'admin'}]",
    );
    env
}

/// What this crate's suites need of the environment beyond every engine's.
pub trait DocumentDbEnv {
    /// The server itself (secrets name its own port, not the front proxy's).
    fn db(&self) -> &Secantus;
    /// The engine's connection settings, trusting the server's CA.
    fn connect_settings(&self) -> ConnectSettings;
    /// Creates `user` in database `db` with `roles` (a Python list); whether it worked.
    fn try_create_user(&self, user: &str, password: &str, db: &str, roles: &str) -> bool;
    /// [`DocumentDbEnv::try_create_user`], which must work.
    fn create_user_in(&self, user: &str, password: &str, db: &str, roles: &str);
    /// `user`'s roles in `db`, sorted (`None`: no such user).
    fn roles(&self, user: &str, db: &str) -> Option<Vec<(String, String)>>;
    /// A secret for the server (or a proxy) at `port` of localhost.
    fn secret_at(&self, port: u16, user: &str, password: &str, dbname: Option<&str>) -> Value;
    /// A secret for the server.
    fn secret_in(&self, user: &str, password: &str, dbname: Option<&str>) -> Value;
    /// A rotation by `rotator`.
    fn rotation(&self, r: DocumentDbRotator) -> Rotation<LocalSecretStore, DocumentDbRotator>;
    /// Whether `user` logs in to `db` with `password` (pymongo, not the code under test).
    fn logs_in_db(&self, user: &str, password: &str, db: &str) -> bool;
    /// Whether the server refuses `value`'s credentials as an authentication failure (code
    /// 18, checked with pymongo): never a server that was not there or any other error.
    fn refused(&self, value: &Value) -> bool;
    /// Whether `value` logs in through the engine's own connection code.
    fn secret_logs_in(&self, value: &Value) -> impl std::future::Future<Output = bool>;
}

impl DocumentDbEnv for Env {
    fn db(&self) -> &Secantus {
        self.server_as::<SecantusServer>().secantus()
    }

    fn connect_settings(&self) -> ConnectSettings {
        match self.ca_pem() {
            Some(ca) => ConnectSettings::with_trust(std::sync::Arc::new(
                Trust::load(Some(ca)).expect("the test CA loads"),
            )),
            None => ConnectSettings::default(),
        }
    }

    fn try_create_user(&self, user: &str, password: &str, db: &str, roles: &str) -> bool {
        self.db()
            .python(&format!(
                "db[{}].command('createUser', {}, pwd={}, roles={roles})",
                py(db),
                py(user),
                py(password)
            ))
            .is_ok()
    }

    fn create_user_in(&self, user: &str, password: &str, db: &str, roles: &str) {
        assert!(
            self.try_create_user(user, password, db, roles),
            "create {user:?}"
        );
    }

    fn roles(&self, user: &str, db: &str) -> Option<Vec<(String, String)>> {
        let out = self
            .db()
            .python(&format!(
                "u = db[{d}].command('usersInfo', {{'user': {u}, 'db': {d}}})['users']\n\
                 print(json.dumps(sorted([[r['role'], r['db']] for r in u[0]['roles']]) if u else None))",
                d = py(db),
                u = py(user)
            ))
            .unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        v.as_array().map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_string(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
    }

    fn secret_at(&self, port: u16, user: &str, password: &str, dbname: Option<&str>) -> Value {
        let mut v = json!({
            "engine": "mongo",
            "host": "localhost",
            "port": port,
            "username": user,
            "password": password,
        });
        if let Some(d) = dbname {
            v["dbname"] = json!(d);
        }
        if self.db().ca_pem().is_none() {
            v["ssl"] = json!(false);
        }
        v
    }

    fn secret_in(&self, user: &str, password: &str, dbname: Option<&str>) -> Value {
        self.secret_at(self.db().port(), user, password, dbname)
    }

    fn rotation(&self, r: DocumentDbRotator) -> Rotation<LocalSecretStore, DocumentDbRotator> {
        self.rotation_with(r)
    }

    fn logs_in_db(&self, user: &str, password: &str, db: &str) -> bool {
        self.db().logs_in(user, password, db).expect("login check")
    }

    fn refused(&self, value: &Value) -> bool {
        let db = value["dbname"].as_str().unwrap_or("admin");
        !self.logs_in_db(
            value["username"].as_str().unwrap(),
            value["password"].as_str().unwrap(),
            db,
        )
    }

    async fn secret_logs_in(&self, value: &Value) -> bool {
        rotation_core::testing::json::logs_in(
            &DocumentDbRotator::single_user(self.connect_settings()),
            value,
        )
        .await
    }
}
