//! [`RecordingStore`]: a [`SecretStore`] wrapper that counts and records the calls rotation
//! makes, and can hold back the write of a pending value to build races.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Notify;

use crate::policy::PasswordPolicy;
use crate::stage::Stage;
use crate::store::{
    Claim, SecretDescription, SecretStore, SecretValue, StageMove, StoreError, VersionInfo,
    VersionSelector,
};

/// A Secrets Manager API operation, as [`RecordingStore`] counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `DescribeSecret` ([`SecretStore::describe`]).
    DescribeSecret,
    /// `GetSecretValue` ([`SecretStore::get_value`]).
    GetSecretValue,
    /// `PutSecretValue` ([`SecretStore::put_value`] and [`SecretStore::put_pending`]).
    PutSecretValue,
    /// `UpdateSecretVersionStage` ([`SecretStore::update_stage`]).
    UpdateSecretVersionStage,
    /// `GetRandomPassword` ([`SecretStore::random_password`]).
    GetRandomPassword,
    /// `ListSecretVersionIds` ([`SecretStore::list_versions`]).
    ListSecretVersionIds,
}

impl Operation {
    /// Every operation, in a fixed order.
    pub const ALL: [Operation; 6] = [
        Operation::DescribeSecret,
        Operation::GetSecretValue,
        Operation::PutSecretValue,
        Operation::UpdateSecretVersionStage,
        Operation::GetRandomPassword,
        Operation::ListSecretVersionIds,
    ];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DescribeSecret => "DescribeSecret",
            Operation::GetSecretValue => "GetSecretValue",
            Operation::PutSecretValue => "PutSecretValue",
            Operation::UpdateSecretVersionStage => "UpdateSecretVersionStage",
            Operation::GetRandomPassword => "GetRandomPassword",
            Operation::ListSecretVersionIds => "ListSecretVersionIds",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded call: the operation and the ids it named (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub operation: Operation,
    /// The `SecretId` passed (`None` for `GetRandomPassword`).
    pub secret_id: Option<String>,
    /// The version the call named: `VersionId` of a read, `ClientRequestToken` of a put,
    /// `MoveToVersionId` (else `RemoveFromVersionId`) of a stage move.
    pub version_id: Option<String>,
    /// The stage the call named: `VersionStage` of a read or a stage move.
    pub stage: Option<Stage>,
}

/// One recorded `PutSecretValue`. The value itself is not kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Put {
    /// The `SecretId`.
    pub secret_id: String,
    /// The `ClientRequestToken`.
    pub token: String,
    /// The `VersionStages` requested.
    pub stages: Vec<Stage>,
    /// Whether it came through [`SecretStore::put_pending`] (the conditional pending write).
    pub via_put_pending: bool,
    /// The `RotationToken` forwarded (redacted in `Debug`).
    pub rotation_token: Option<String>,
}

impl fmt::Debug for Put {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Put")
            .field("secret_id", &self.secret_id)
            .field("token", &self.token)
            .field("stages", &self.stages)
            .field("via_put_pending", &self.via_put_pending)
            .field(
                "rotation_token",
                &self.rotation_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Calls counted by operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts(BTreeMap<Operation, usize>);

impl CallCounts {
    /// Calls of `operation`.
    pub fn get(&self, operation: Operation) -> usize {
        self.0.get(&operation).copied().unwrap_or(0)
    }
    /// All calls.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
    /// The calls made since `earlier` (a snapshot of the same store).
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts(
            Operation::ALL
                .iter()
                .map(|op| (*op, self.get(*op).saturating_sub(earlier.get(*op))))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
    /// The sum of two counts.
    pub fn plus(&self, other: &CallCounts) -> CallCounts {
        CallCounts(
            Operation::ALL
                .iter()
                .map(|op| (*op, self.get(*op) + other.get(*op)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }
    /// Every operation with its count, zeros included, in [`Operation::ALL`] order.
    pub fn by_operation(&self) -> Vec<(Operation, usize)> {
        Operation::ALL
            .iter()
            .map(|op| (*op, self.get(*op)))
            .collect()
    }
}

impl fmt::Display for CallCounts {
    /// `DescribeSecret=1 GetSecretValue=2 ... total=3`, zeros left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (op, n) in self.by_operation() {
            if n > 0 {
                write!(f, "{op}={n} ")?;
            }
        }
        write!(f, "total={}", self.total())
    }
}

/// A rendezvous with a held-back pending write: the store signals [`PutGate::reached`] right
/// before the write and waits for [`PutGate::release`]. Clones share the gate.
#[derive(Debug, Clone, Default)]
pub struct PutGate {
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

impl PutGate {
    /// Waits until the store is about to write the pending value (returns at once if it
    /// already got there).
    pub async fn reached(&self) {
        self.reached.notified().await;
    }
    /// Lets the held-back write go (before or after it arrives).
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// How the next pending write is held back.
#[derive(Debug, Clone)]
pub enum Pause {
    /// Sleep this long, then write.
    Sleep(Duration),
    /// Wait at the gate.
    Gate(PutGate),
}

#[derive(Default)]
struct Log {
    calls: Vec<Call>,
    puts: Vec<Put>,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    pause: Mutex<Option<Pause>>,
    generated: Mutex<Option<String>>,
    claims_nothing: std::sync::atomic::AtomicBool,
}

/// Wraps any [`SecretStore`] and records every call made through it, for tests that assert
/// how many Secrets Manager calls rotation makes (checklist 10, 11, 43, 44) and which
/// arguments reach them (the `ClientRequestToken` and `RotationToken` of each put).
///
/// - Counts are by API [`Operation`]: `put_value` and `put_pending` both count as one
///   `PutSecretValue`; `claim` is not a Secrets Manager call and is not counted.
/// - [`RecordingStore::calls`] keeps each call in order with the secret and version ids it
///   named; [`RecordingStore::puts`] keeps each put's token, stages and `RotationToken`.
///   Values are never recorded, and `Debug` shows only the counts.
/// - [`RecordingStore::pause_next_pending_put`] holds back the next write of a pending value
///   (`put_pending`, or `put_value` with `AWSPENDING` among the stages) right before it goes to
///   the inner store, by a sleep or at a [`PutGate`]: a concurrent rotation can then overtake
///   it. The call is recorded when it is made, before the pause.
///
/// Clones share the record and the pause, so a test can keep one while a
/// [`crate::Rotation`] owns another.
///
/// ```
/// use rotation_core::testing::{FAKE_PROFILE, FakeDatabase, FakeRotator, Operation, RecordingStore};
/// use rotation_core::{LocalSecretStore, PasswordPolicy, Rotation, Strategy};
/// use secrecy::SecretString;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let local = LocalSecretStore::new(dir.path().join("secrets.json"));
/// let value = r#"{"engine": "fake", "host": "db", "username": "app", "password": "pw-0"}"#;
/// local.create_secret("app", &SecretString::from(value)).await?;
/// let db = FakeDatabase::new();
/// db.add_user("app", &SecretString::from("pw-0"));
///
/// let store = RecordingStore::new(local);
/// let rotation = Rotation::new(
///     store.clone(),
///     FakeRotator::new(db, Strategy::SingleUser),
///     PasswordPolicy::defaults(&FAKE_PROFILE.password),
/// );
/// rotation.rotate("app").await?;
/// assert_eq!(store.count(Operation::PutSecretValue), 1);
/// assert_eq!(store.count(Operation::UpdateSecretVersionStage), 1);
/// # Ok(())
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
pub struct RecordingStore<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for RecordingStore<S> {
    fn clone(&self) -> Self {
        RecordingStore {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RecordingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingStore")
            .field("inner", &self.inner)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl<S> RecordingStore<S> {
    /// Wraps `inner`, with nothing recorded and no pause.
    pub fn new(inner: S) -> Self {
        RecordingStore {
            inner,
            shared: Arc::default(),
        }
    }

    /// From now on, its claims exclude nothing, as Secrets Manager's do ([`Claim::none`]), whatever
    /// the wrapped store offers: a file store's secrets handled as rotations handle those of
    /// Secrets Manager.
    pub fn claiming_nothing(self) -> Self {
        self.shared
            .claims_nothing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self
    }

    /// From now on, `GetRandomPassword` returns `password` instead of asking the wrapped store
    /// (a generator that breaks the policy, for tests of what rotation does with its output).
    pub fn generate_with(&self, password: &str) {
        *self.shared.generated.lock().unwrap() = Some(password.to_string());
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Calls so far, by operation.
    pub fn counts(&self) -> CallCounts {
        let log = self.shared.log.lock().unwrap();
        let mut counts = BTreeMap::new();
        for call in &log.calls {
            *counts.entry(call.operation).or_insert(0) += 1;
        }
        CallCounts(counts)
    }

    /// Calls of `operation` so far.
    pub fn count(&self, operation: Operation) -> usize {
        self.counts().get(operation)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.log.lock().unwrap().calls.clone()
    }

    /// Every `PutSecretValue` so far, in order.
    pub fn puts(&self) -> Vec<Put> {
        self.shared.log.lock().unwrap().puts.clone()
    }

    /// The `RotationToken` of each put so far, in order.
    pub fn rotation_tokens(&self) -> Vec<Option<String>> {
        self.puts().into_iter().map(|p| p.rotation_token).collect()
    }

    /// Forgets every recorded call (a pause stays armed).
    pub fn reset(&self) {
        let mut log = self.shared.log.lock().unwrap();
        log.calls.clear();
        log.puts.clear();
    }

    /// Holds back the next write of a pending value as `pause` says. One write only; arming
    /// again replaces a pause not used yet.
    pub fn pause_next_pending_put(&self, pause: Pause) {
        *self.shared.pause.lock().unwrap() = Some(pause);
    }

    /// Holds back the next write of a pending value at a new gate, returned.
    pub fn gate_next_pending_put(&self) -> PutGate {
        let gate = PutGate::default();
        self.pause_next_pending_put(Pause::Gate(gate.clone()));
        gate
    }

    /// Whether a pause is armed and not used yet.
    pub fn pause_armed(&self) -> bool {
        self.shared.pause.lock().unwrap().is_some()
    }

    fn record(
        &self,
        operation: Operation,
        secret_id: Option<&str>,
        version_id: Option<&str>,
        stage: Option<Stage>,
    ) {
        self.shared.log.lock().unwrap().calls.push(Call {
            operation,
            secret_id: secret_id.map(str::to_string),
            version_id: version_id.map(str::to_string),
            stage,
        });
    }

    fn record_put(
        &self,
        secret_id: &str,
        token: &str,
        stages: &[Stage],
        via_put_pending: bool,
        rotation_token: Option<&str>,
    ) {
        self.record(
            Operation::PutSecretValue,
            Some(secret_id),
            Some(token),
            None,
        );
        self.shared.log.lock().unwrap().puts.push(Put {
            secret_id: secret_id.to_string(),
            token: token.to_string(),
            stages: stages.to_vec(),
            via_put_pending,
            rotation_token: rotation_token.map(str::to_string),
        });
    }

    /// Runs the armed pause, if any, taking it.
    async fn hold_pending_write(&self) {
        let pause = self.shared.pause.lock().unwrap().take();
        match pause {
            None => {}
            Some(Pause::Sleep(d)) => tokio::time::sleep(d).await,
            Some(Pause::Gate(gate)) => {
                gate.reached.notify_one();
                gate.release.notified().await;
            }
        }
    }
}

impl<S: SecretStore> SecretStore for RecordingStore<S> {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, StoreError> {
        self.record(Operation::DescribeSecret, Some(secret_id), None, None);
        self.inner.describe(secret_id).await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> Result<SecretValue, StoreError> {
        self.record(
            Operation::GetSecretValue,
            Some(secret_id),
            which.version_id,
            which.stage,
        );
        self.inner.get_value(secret_id, which).await
    }

    async fn put_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.record_put(secret_id, token, stages, false, rotation_token);
        if stages.contains(&Stage::Pending) {
            self.hold_pending_write().await;
        }
        self.inner
            .put_value(secret_id, token, value, stages, rotation_token)
            .await
    }

    async fn update_stage(&self, secret_id: &str, change: StageMove<'_>) -> Result<(), StoreError> {
        self.record(
            Operation::UpdateSecretVersionStage,
            Some(secret_id),
            change.move_to.or(change.remove_from),
            Some(change.stage),
        );
        self.inner.update_stage(secret_id, change).await
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, StoreError> {
        self.record(Operation::GetRandomPassword, None, None, None);
        let fixed = self.shared.generated.lock().unwrap().clone();
        match fixed {
            Some(p) => Ok(SecretString::from(p)),
            None => self.inner.random_password(policy).await,
        }
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, StoreError> {
        self.record(Operation::ListSecretVersionIds, Some(secret_id), None, None);
        self.inner.list_versions(secret_id).await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        built_from: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.record_put(secret_id, token, &[Stage::Pending], true, rotation_token);
        self.hold_pending_write().await;
        self.inner
            .put_pending(secret_id, token, value, built_from, rotation_token)
            .await
    }

    async fn claim(&self, arn: &str) -> Result<Claim, StoreError> {
        if self
            .shared
            .claims_nothing
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(Claim::none());
        }
        self.inner.claim(arn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalSecretStore;

    const T1: &str = "11111111111111111111111111111111";

    #[tokio::test]
    async fn counts_records_and_holds_back_the_pending_write() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalSecretStore::new(dir.path().join("s.json"));
        local
            .create_secret("app", &SecretString::from("v1"))
            .await
            .unwrap();
        let store = RecordingStore::new(local);
        let shared = store.clone();
        let v1 = store
            .describe("app")
            .await
            .unwrap()
            .version_with(Stage::Current)
            .unwrap()
            .to_string();
        store
            .get_value("app", VersionSelector::stage(Stage::Current))
            .await
            .unwrap();
        let gate = store.gate_next_pending_put();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_pending("app", T1, &SecretString::from("v2"), &v1, Some("rt-1"))
                    .await
            })
        };
        gate.reached().await;
        // Recorded as made, not written yet.
        assert_eq!(shared.count(Operation::PutSecretValue), 1);
        assert!(
            store
                .inner()
                .describe("app")
                .await
                .unwrap()
                .version_with(Stage::Pending)
                .is_none()
        );
        gate.release();
        writer.await.unwrap().unwrap();
        assert!(!store.pause_armed());
        let counts = shared.counts();
        assert_eq!(counts.get(Operation::DescribeSecret), 1);
        assert_eq!(counts.get(Operation::GetSecretValue), 1);
        assert_eq!(counts.total(), 3);
        assert_eq!(
            counts.to_string(),
            "DescribeSecret=1 GetSecretValue=1 PutSecretValue=1 total=3"
        );
        assert_eq!(shared.rotation_tokens(), vec![Some("rt-1".to_string())]);
        let put = &shared.puts()[0];
        assert!(put.via_put_pending && put.stages == vec![Stage::Pending] && put.token == T1);
        assert!(!format!("{put:?} {store:?}").contains("rt-1"));
        assert_eq!(shared.calls()[2].version_id.as_deref(), Some(T1));
        let before = shared.counts();
        store.list_versions("app").await.unwrap();
        assert_eq!(
            shared.counts().since(&before).by_operation()[5],
            (Operation::ListSecretVersionIds, 1)
        );
        shared.reset();
        assert_eq!(store.counts().total(), 0);
    }
}
