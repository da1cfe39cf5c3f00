//! A store chosen at run time.

use secrecy::SecretString;

use super::{
    AwsSecretStore, Claim, LocalSecretStore, SecretDescription, SecretStore, SecretValue,
    StageMove, StoreError, VersionInfo, VersionSelector,
};
use crate::policy::PasswordPolicy;
use crate::stage::Stage;

/// Either store, for callers that choose at run time (the CLI's `--store`). Static dispatch, so
/// the trait keeps its native async methods.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// Secrets Manager.
    Aws(AwsSecretStore),
    /// A local file.
    Local(LocalSecretStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Aws($s) => $call.await,
            AnyStore::Local($s) => $call.await,
        }
    };
}

impl SecretStore for AnyStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, StoreError> {
        dispatch!(self, s => s.describe(secret_id))
    }
    async fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> Result<SecretValue, StoreError> {
        dispatch!(self, s => s.get_value(secret_id, which))
    }
    async fn put_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_value(secret_id, token, value, stages, rotation_token))
    }
    async fn update_stage(&self, secret_id: &str, change: StageMove<'_>) -> Result<(), StoreError> {
        dispatch!(self, s => s.update_stage(secret_id, change))
    }
    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, StoreError> {
        dispatch!(self, s => s.random_password(policy))
    }
    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, StoreError> {
        dispatch!(self, s => s.list_versions(secret_id))
    }
    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        built_from: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_pending(secret_id, token, value, built_from, rotation_token))
    }
    async fn claim(&self, arn: &str) -> Result<Claim, StoreError> {
        dispatch!(self, s => s.claim(arn))
    }
}
