//! SecantusDB (the DocumentDB stand-in), a local secret store and the engine's connection
//! settings trusting the server's CA, shared by this crate's suites.

#![allow(dead_code)]

use rotation_core::testing::json;
use rotation_core::{DatabaseSecret, LocalSecretStore, PasswordPolicy, Rotation, Stage};
use rotation_documentdb::{DocumentDbRotator, PROFILE};
use rotation_testkit::Secantus;
use rotation_trust::{ConnectSettings, Trust};
use serde_json::{Value, json};

pub struct Env {
    pub db: Secantus,
    pub store: LocalSecretStore,
    pub settings: ConnectSettings,
    _dir: tempfile::TempDir,
}

/// A Python string literal for `s` (JSON escapes are valid Python).
pub fn py(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

impl Env {
    pub fn start(tls: bool) -> Env {
        let db = Secantus::start(tls).expect("start SecantusDB");
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let settings = match db.ca_pem() {
            Some(ca) => ConnectSettings::with_trust(std::sync::Arc::new(
                Trust::load(Some(ca)).expect("the test CA loads"),
            )),
            None => ConnectSettings::default(),
        };
        Env {
            db,
            store,
            settings,
            _dir: dir,
        }
    }

    /// A server (TLS or not) with the `selfService` role and user `app` (password
    /// `Initial-Passw0rd`) in `admin`, allowed to change its own password.
    pub fn with_app_user(tls: bool) -> Env {
        let env = Env::start(tls);
        env.db.create_self_service_role().unwrap();
        env.create_user(
            "app",
            "Initial-Passw0rd",
            "admin",
            "[{'role': 'selfService', 'db': 'admin'}]",
        );
        env
    }

    pub fn try_create_user(&self, user: &str, password: &str, db: &str, roles: &str) -> bool {
        self.db
            .python(&format!(
                "db[{}].command('createUser', {}, pwd={}, roles={roles})",
                py(db),
                py(user),
                py(password)
            ))
            .is_ok()
    }

    pub fn create_user(&self, user: &str, password: &str, db: &str, roles: &str) {
        assert!(
            self.try_create_user(user, password, db, roles),
            "create {user:?}"
        );
    }

    pub fn roles(&self, user: &str, db: &str) -> Option<Vec<(String, String)>> {
        let out = self
            .db
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

    pub fn secret_at(&self, port: u16, user: &str, password: &str, dbname: Option<&str>) -> Value {
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
        if self.db.ca_pem().is_none() {
            v["ssl"] = json!(false);
        }
        v
    }

    pub fn secret(&self, user: &str, password: &str, dbname: Option<&str>) -> Value {
        self.secret_at(self.db.port(), user, password, dbname)
    }

    pub fn rotation(&self, r: DocumentDbRotator) -> Rotation<LocalSecretStore, DocumentDbRotator> {
        Rotation::new(
            self.store.clone(),
            r,
            PasswordPolicy::defaults(&PROFILE.password),
        )
    }

    pub fn logs_in(&self, user: &str, password: &str, db: &str) -> bool {
        self.db.logs_in(user, password, db).expect("login check")
    }

    pub async fn put(&self, name: &str, value: &Value) {
        json::put(&self.store, name, value).await;
    }

    pub async fn value(&self, name: &str, stage: Stage) -> Value {
        json::at(&self.store, name, stage).await
    }

    /// Whether the server refuses `value`'s credentials as an authentication failure (code
    /// 18, checked with pymongo): never a server that was not there or any other error.
    pub fn refused(&self, value: &Value) -> bool {
        let db = value["dbname"].as_str().unwrap_or("admin");
        !self.logs_in(
            value["username"].as_str().unwrap(),
            value["password"].as_str().unwrap(),
            db,
        )
    }

    /// Whether `value` logs in through the engine's own connection code.
    pub async fn secret_logs_in(&self, value: &Value) -> bool {
        json::logs_in(
            &DocumentDbRotator::single_user(self.settings.clone()),
            value,
        )
        .await
    }
}

pub fn parse(value: &Value) -> DatabaseSecret {
    json::secret(value)
}
