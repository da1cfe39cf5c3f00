//! A [`SecretStore`] that counts the Secrets Manager operations it forwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rotation_core::policy::PasswordPolicy;
use rotation_core::{
    Claim, SecretDescription, SecretStore, SecretValue, Stage, StageMove, StoreError, VersionInfo,
    VersionSelector,
};
use secrecy::SecretString;

/// Calls by API operation.
pub type Counts = BTreeMap<&'static str, u64>;

/// `claim` is not a Secrets Manager call (the AWS store offers no exclusivity and calls
/// nothing); it is counted under this name and left out of the totals.
pub const CLAIM: &str = "(claim, no API call)";

/// Wraps a store; every operation is counted, then delegated.
#[derive(Debug, Clone)]
pub struct CountingStore<S> {
    inner: S,
    counts: Arc<Mutex<Counts>>,
}

impl<S> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            counts: Arc::default(),
        }
    }

    fn count(&self, operation: &'static str) {
        *self
            .counts
            .lock()
            .expect("not poisoned")
            .entry(operation)
            .or_default() += 1;
    }

    /// The counts so far, and starts again from zero.
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().expect("not poisoned"))
    }
}

/// Secrets Manager calls in `counts` (the claim left out).
pub fn api_calls(counts: &Counts) -> u64 {
    counts
        .iter()
        .filter(|(op, _)| **op != CLAIM)
        .map(|(_, n)| n)
        .sum()
}

impl<S: SecretStore> SecretStore for CountingStore<S> {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, StoreError> {
        self.count("DescribeSecret");
        self.inner.describe(secret_id).await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> Result<SecretValue, StoreError> {
        self.count("GetSecretValue");
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
        self.count("PutSecretValue");
        self.inner
            .put_value(secret_id, token, value, stages, rotation_token)
            .await
    }

    async fn update_stage(&self, secret_id: &str, change: StageMove<'_>) -> Result<(), StoreError> {
        self.count("UpdateSecretVersionStage");
        self.inner.update_stage(secret_id, change).await
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, StoreError> {
        self.count("GetRandomPassword");
        self.inner.random_password(policy).await
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, StoreError> {
        // One call per page; a page holds 100 versions, more than a secret keeps.
        self.count("ListSecretVersionIds");
        self.inner.list_versions(secret_id).await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        // The AWS store's put_pending is one PutSecretValue (on the inner store, so it is not
        // counted twice).
        self.count("PutSecretValue");
        self.inner
            .put_pending(secret_id, token, value, rotation_token)
            .await
    }

    async fn claim(&self, arn: &str) -> Result<Claim, StoreError> {
        self.count(CLAIM);
        self.inner.claim(arn).await
    }
}
