//! Shared harness for the workspace suites: the "service side" of a rotation (creating secrets,
//! starting rotations the way RotateSecret does) over either secret store.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use rotation_core::store::{AnyStore, AwsSecretStore, LocalSecretStore, SecretStore};
use rotation_core::{Stage, StageMove, VersionSelector};
use rotation_testkit::Moto;
use secrecy::{ExposeSecret, SecretString};

pub mod engines;
pub mod faults;
pub mod fixture;
pub mod kill;
pub mod lambda;

/// One test per scenario and store: `both_stores!(scenario, ...)` makes `scenario::local` and
/// `scenario::moto`, each calling `async fn scenario(kind: Kind)` of the including module.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() { super::$name($crate::Kind::Local).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn moto() { super::$name($crate::Kind::Moto).await }
        }
    )*};
}

/// Which store a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `LocalSecretStore` in a temp file.
    Local,
    /// `AwsSecretStore` against a moto server.
    Moto,
}

/// The service side of rotation for one scenario.
#[derive(Debug)]
pub struct Service {
    store: AnyStore,
    local: Option<(LocalSecretStore, tempfile::TempDir)>,
    moto: Option<(
        Moto,
        aws_sdk_secretsmanager::Client,
        tokio::sync::OnceCell<String>,
    )>,
}

impl Service {
    /// A fresh service of `kind`.
    pub async fn start(kind: Kind) -> Service {
        match kind {
            Kind::Local => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = LocalSecretStore::new(dir.path().join("secrets.json"));
                Service {
                    store: AnyStore::Local(store.clone()),
                    local: Some((store, dir)),
                    moto: None,
                }
            }
            Kind::Moto => {
                let moto = Moto::start().expect("start moto (scripts/setup installs it)");
                let config = moto.sdk_config().await;
                let client = aws_sdk_secretsmanager::Client::new(&config);
                Service {
                    store: AnyStore::Aws(AwsSecretStore::new(client.clone())),
                    local: None,
                    moto: Some((moto, client, tokio::sync::OnceCell::new())),
                }
            }
        }
    }

    /// The store a rotation uses.
    pub fn store(&self) -> AnyStore {
        self.store.clone()
    }

    /// Creates a secret whose first version is AWSCURRENT; returns its ARN.
    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        let value = SecretString::from(value.to_string());
        if let Some((store, _)) = &self.local {
            return store
                .create_secret(name, &value)
                .await
                .expect("create secret");
        }
        let (_, client, _) = self.moto.as_ref().unwrap();
        client
            .create_secret()
            .name(name)
            .secret_string(value.expose_secret())
            .send()
            .await
            .expect("create secret in moto")
            .arn()
            .unwrap()
            .to_string()
    }

    /// What RotateSecret does before the first step: a value-less AWSPENDING version `token`.
    pub async fn start_rotation(&self, secret: &str, token: &str) {
        if let Some((store, _)) = &self.local {
            store
                .start_rotation(secret, token)
                .await
                .expect("start rotation");
            return;
        }
        let (moto, client, function) = self.moto.as_ref().unwrap();
        // moto refuses RotateSecret while AWSPENDING shares a version with AWSCURRENT (its check
        // is inverted, test-infra §1.4 #2); AWS does not. Detach it as an operator would.
        let d = self.store.describe(secret).await.unwrap();
        for (v, s) in &d.versions {
            if s.has(Stage::Pending) && s.has(Stage::Current) {
                self.store
                    .update_stage(
                        secret,
                        StageMove {
                            stage: Stage::Pending,
                            move_to: None,
                            remove_from: Some(v),
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        let arn = function
            .get_or_init(|| async {
                moto.create_function("rotation-fake")
                    .expect("create function")
            })
            .await;
        Moto::rotate_secret(client, secret, token, arn)
            .await
            .expect("RotateSecret in moto");
    }

    /// Turns rotation off.
    pub async fn disable_rotation(&self, secret: &str) {
        if let Some((store, _)) = &self.local {
            store
                .set_rotation_enabled(secret, Some(false))
                .await
                .unwrap();
            return;
        }
        let (_, client, _) = self.moto.as_ref().unwrap();
        client
            .cancel_rotate_secret()
            .secret_id(secret)
            .send()
            .await
            .unwrap();
    }

    /// Version id -> AWS stages.
    pub async fn stages(&self, secret: &str) -> BTreeMap<String, Vec<Stage>> {
        self.store
            .describe(secret)
            .await
            .unwrap()
            .versions
            .into_iter()
            .map(|(k, v)| (k, v.stages))
            .filter(|(_, s)| !s.is_empty())
            .collect()
    }

    /// The value at `stage` as JSON.
    pub async fn value(&self, secret: &str, stage: Stage) -> serde_json::Value {
        let v = self
            .store
            .get_value(secret, VersionSelector::stage(stage))
            .await
            .unwrap();
        serde_json::from_str(v.value.expose_secret()).unwrap()
    }

    /// The value of version `token`, if it has one.
    pub async fn version_value(&self, secret: &str, token: &str) -> Option<serde_json::Value> {
        let sel = VersionSelector {
            version_id: Some(token),
            stage: None,
        };
        match self.store.get_value(secret, sel).await {
            Ok(v) => Some(serde_json::from_str(v.value.expose_secret()).unwrap()),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A 36-character token (uuid), as the SDK makes them.
/// Stores in moto, as secret `name`, `user`'s value on `env`'s server with `"ssl": false` and
/// its port set to `port` (a proxy's in front of the server, say); for an engine whose single
/// user acts through a master ([`rotation_core::EngineProfile::single_user_master`]), the
/// administrator's secret stored beside it (`<name>-master`, through the same port) and named
/// as its `masterarn`. Returns the value stored.
pub fn moto_user_secret(
    moto: &Moto,
    env: &engines::Env,
    name: &str,
    user: &str,
    password: &str,
    port: u16,
) -> serde_json::Value {
    let create = |name: &str, value: &serde_json::Value| {
        moto.python(&format!(
            "print(sm.create_secret(Name={name:?}, SecretString={:?})['ARN'])",
            value.to_string()
        ))
        .unwrap_or_else(|e| panic!("store {name} in moto: {e}"))
        .trim()
        .to_string()
    };
    let mut value = env.plain_secret(user, password);
    value["port"] = serde_json::json!(port);
    if env.engine_master.is_some() {
        let mut master = env.master_secret(Some(serde_json::json!(false)));
        master["port"] = serde_json::json!(port);
        value["masterarn"] = serde_json::json!(create(&format!("{name}-master"), &master));
    }
    create(name, &value);
    value
}

pub fn token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Everything tracing writes while a test runs, for leak checks.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// The captured text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a global subscriber that records every event at TRACE level,
/// JSON-formatted, into the returned capture.
pub fn capture_logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::TRACE)
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || writer.clone())
                .init();
            capture
        })
        .clone()
}
