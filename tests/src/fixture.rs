//! A rotation over the fake database, its store wrapped in a [`RecordingStore`] so that tests
//! can count Secrets Manager calls and hold back pending writes. Several fixtures can share one
//! [`Service`] (one moto server), each with its own secret and database.

use std::sync::Arc;

use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator, RecordingStore};
use rotation_core::{
    AnyStore, PasswordPolicy, Rotation, RotationError, RotationEvent, SecretStore, Stage,
    StageMove, Step, StepOutcome, Strategy,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::{Kind, Service};

/// The user's password when the secret is created.
pub const PW0: &str = "initial-Password-0";
/// The master user's password.
pub const ADMIN_PW: &str = "admin-Password-1";
/// The database host every secret names.
pub const HOST: &str = "db.internal";

/// The store rotations use in these suites.
pub type Store = RecordingStore<AnyStore>;

/// One secret (and, for alternating users, its master secret), a fake database that knows its
/// users, and a rotation over a recording store.
#[derive(Debug)]
pub struct Fixture {
    /// The service side.
    pub svc: Arc<Service>,
    /// The database.
    pub db: FakeDatabase,
    /// The secret's name.
    pub secret: String,
    /// The ARN of the master secret (alternating users).
    pub masterarn: Option<String>,
    /// The strategy.
    pub strategy: Strategy,
    /// What `rotation` calls go through.
    pub store: Store,
    /// The rotation under test.
    pub rotation: Rotation<Store, FakeRotator>,
}

/// A secret value for `username` on [`HOST`] with password [`PW0`].
pub fn secret_json(username: &str, masterarn: Option<&str>) -> Value {
    let mut v = json!({
        "engine": "fake", "host": HOST, "port": 5432, "username": username,
        "password": PW0, "dbname": "appdb"
    });
    if let Some(m) = masterarn {
        v["masterarn"] = json!(m);
    }
    v
}

impl Fixture {
    /// A fresh service of `kind` with one secret `app-secret` for user `app`.
    pub async fn new(kind: Kind, strategy: Strategy) -> Fixture {
        let svc = Arc::new(Service::start(kind).await);
        Fixture::on(svc, "app-secret", strategy).await
    }

    /// A secret `name` for user `app` on an existing service, with its own database.
    pub async fn on(svc: Arc<Service>, name: &str, strategy: Strategy) -> Fixture {
        let db = FakeDatabase::new();
        db.add_user("app", &SecretString::from(PW0));
        let masterarn = if strategy == Strategy::AlternatingUsers {
            db.add_user("admin", &SecretString::from(ADMIN_PW));
            let master =
                json!({"engine": "fake", "host": HOST, "username": "admin", "password": ADMIN_PW});
            Some(
                svc.create_secret(&format!("{name}-master"), &master.to_string())
                    .await,
            )
        } else {
            None
        };
        svc.create_secret(name, &secret_json("app", masterarn.as_deref()).to_string())
            .await;
        let store = RecordingStore::new(svc.store());
        let rotation = Rotation::new(
            store.clone(),
            FakeRotator::new(db.clone(), strategy),
            PasswordPolicy::defaults(&FAKE_PROFILE.password),
        );
        Fixture {
            svc,
            db,
            secret: name.to_string(),
            masterarn,
            strategy,
            store,
            rotation,
        }
    }

    /// Another rotation of the same secret and database, over its own recording store.
    pub fn another_rotation(&self) -> (Store, Rotation<Store, FakeRotator>) {
        let store = RecordingStore::new(self.svc.store());
        let rotation = Rotation::new(
            store.clone(),
            FakeRotator::new(self.db.clone(), self.strategy),
            PasswordPolicy::defaults(&FAKE_PROFILE.password),
        );
        (store, rotation)
    }

    /// One Lambda invocation.
    pub async fn step(&self, step: Step, token: &str) -> Result<StepOutcome, RotationError> {
        self.rotation
            .handle(&RotationEvent::new(step, &self.secret, token))
            .await
    }

    /// The `AWSCURRENT` value.
    pub async fn current(&self) -> Value {
        self.svc.value(&self.secret, Stage::Current).await
    }

    /// Whether the database accepts the credentials in `v`.
    pub fn logs_in(&self, v: &Value) -> bool {
        self.db.accepts(
            v["username"].as_str().unwrap_or_default(),
            v["password"].as_str().unwrap_or_default(),
        )
    }

    /// Whether the `AWSCURRENT` credentials log in.
    pub async fn current_logs_in(&self) -> bool {
        self.logs_in(&self.current().await)
    }

    /// Stores `value` as version `token` carrying no label (as a pending value whose
    /// `AWSPENDING` was then removed by hand).
    pub async fn put_unlabelled(&self, token: &str, value: &Value) {
        let store = self.svc.store();
        store
            .put_value(
                &self.secret,
                token,
                &SecretString::from(value.to_string()),
                &[Stage::Pending],
                None,
            )
            .await
            .expect("put");
        self.remove_pending(token).await;
    }

    /// Stores `value` as a new `AWSCURRENT` version (the one it replaces becomes `AWSPREVIOUS`),
    /// as an operator's put would, `AWSPENDING` first detached from the current version as
    /// `rotate put` does. Stored, then labelled: moto's PutSecretValue with `AWSCURRENT` also
    /// drops the old version's other labels, which AWS's does not.
    pub async fn put_current(&self, value: &Value) {
        let store = self.svc.store();
        let d = store.describe(&self.secret).await.expect("describe");
        let current = d.version_with(Stage::Current).map(str::to_string);
        if let Some(c) = current.as_deref()
            && d.version_with(Stage::Pending) == Some(c)
        {
            self.remove_pending(c).await;
        }
        let token = crate::token();
        store
            .put_value(
                &self.secret,
                &token,
                &SecretString::from(value.to_string()),
                &[Stage::Previous],
                None,
            )
            .await
            .expect("put");
        store
            .update_stage(
                &self.secret,
                StageMove {
                    stage: Stage::Current,
                    move_to: Some(&token),
                    remove_from: current.as_deref(),
                },
            )
            .await
            .expect("make it AWSCURRENT");
    }

    /// Removes `AWSPENDING` from `token` by hand.
    pub async fn remove_pending(&self, token: &str) {
        self.svc
            .store()
            .update_stage(
                &self.secret,
                StageMove {
                    stage: Stage::Pending,
                    move_to: None,
                    remove_from: Some(token),
                },
            )
            .await
            .expect("remove AWSPENDING");
    }

    /// The current value with another password.
    pub async fn current_with_password(&self, password: &str) -> Value {
        let mut v = self.current().await;
        v["password"] = json!(password);
        v
    }
}
