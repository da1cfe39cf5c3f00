//! Shared setup: a real PostgreSQL cluster, a local secret store, and helpers.

#![allow(dead_code)]

use rotation_core::{
    DatabaseSecret, LocalSecretStore, PasswordPolicy, Rotation, SecretStore, Stage, VersionSelector,
};
use rotation_postgres::{PROFILE, PgConfig, PostgresRotator};
use rotation_testkit::{PgCluster, PgOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

pub struct Env {
    pub pg: PgCluster,
    pub store: LocalSecretStore,
    pub config: PgConfig,
    _dir: tempfile::TempDir,
}

impl Env {
    pub fn start(options: PgOptions) -> Env {
        let pg = PgCluster::start(options).expect("start PostgreSQL (scripts/setup installs it)");
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets.json"));
        let config = match pg.ca_pem() {
            Some(ca) => PgConfig::with_ca_bundle(ca).expect("the test CA loads"),
            None => PgConfig::default(),
        };
        Env {
            pg,
            store,
            config,
            _dir: dir,
        }
    }

    pub fn plain() -> Env {
        Env::start(PgOptions::default())
    }

    pub fn tls() -> Env {
        Env::start(PgOptions::tls())
    }

    /// Creates a login role with psql's own quoting.
    pub fn create_role(&self, name: &str, password: &str) {
        self.pg
            .psql_vars(
                "CREATE ROLE :\"u\" LOGIN PASSWORD :'pw'; GRANT CREATE ON SCHEMA public TO :\"u\";",
                &[("u", name), ("pw", password)],
            )
            .expect("create role");
    }

    /// A secret value for `username` on this cluster. `ssl`: the `ssl` key, if any.
    pub fn secret(&self, username: &str, password: &str, ssl: Option<Value>) -> Value {
        let mut v = json!({
            "engine": "postgres",
            "host": self.pg.tls_host(),
            "username": username,
            "password": password,
            "dbname": "postgres",
            "port": self.pg.port().to_string(),
        });
        if let Some(ssl) = ssl {
            v["ssl"] = ssl;
        }
        v
    }

    pub fn master_secret(&self, ssl: Option<Value>) -> Value {
        self.secret(self.pg.superuser(), self.pg.superuser_password(), ssl)
    }

    pub async fn put(&self, name: &str, value: &Value) -> String {
        self.store
            .create_secret(name, &SecretString::from(value.to_string()))
            .await
            .unwrap()
    }

    pub fn rotation(
        &self,
        rotator: PostgresRotator,
    ) -> Rotation<LocalSecretStore, PostgresRotator> {
        Rotation::new(
            self.store.clone(),
            rotator,
            PasswordPolicy::defaults(&PROFILE.password),
        )
    }

    pub fn single(&self) -> Rotation<LocalSecretStore, PostgresRotator> {
        self.rotation(PostgresRotator::single_user(self.config.clone()))
    }

    pub fn alternating(&self) -> Rotation<LocalSecretStore, PostgresRotator> {
        self.rotation(PostgresRotator::alternating_users(self.config.clone()))
    }

    pub async fn value(&self, name: &str, stage: Stage) -> Value {
        let v = self
            .store
            .get_value(name, VersionSelector::stage(stage))
            .await
            .unwrap();
        serde_json::from_str(v.value.expose_secret()).unwrap()
    }

    /// Whether `value`'s credentials log in (through the engine's own connection code).
    pub async fn logs_in(&self, value: &Value) -> bool {
        let s = DatabaseSecret::parse(&SecretString::from(value.to_string())).unwrap();
        rotation_postgres::connect::check(&s, &self.config)
            .await
            .is_ok()
    }
}

pub fn parse(value: &Value) -> DatabaseSecret {
    DatabaseSecret::parse(&SecretString::from(value.to_string())).unwrap()
}
