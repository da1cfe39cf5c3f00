//! [`SecretStore`] over the AWS SDK's Secrets Manager client.

use crate::calls::Timed;
use std::fmt;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Claim, SecretDescription, SecretStore, SecretValue, StageMove, StoreError, VersionInfo,
    VersionSelector, VersionStages,
};
use crate::policy::PasswordPolicy;
use crate::stage::Stage;

/// The environment variable AWS's functions read for the Secrets Manager endpoint. We honour it
/// when set; unlike AWS's functions, it is optional (the SDK's own `AWS_ENDPOINT_URL*` variables
/// and the regional default apply otherwise).
pub const ENDPOINT_ENV: &str = "SECRETS_MANAGER_ENDPOINT";

/// Secrets Manager through `aws-sdk-secretsmanager`. Build once and reuse: the client holds the
/// connection pool and credentials cache.
#[derive(Clone)]
pub struct AwsSecretStore {
    client: Client,
}

impl fmt::Debug for AwsSecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretStore").finish_non_exhaustive()
    }
}

impl AwsSecretStore {
    /// Wraps a client built elsewhere.
    pub fn new(client: Client) -> Self {
        AwsSecretStore { client }
    }

    /// Builds a client from shared SDK configuration, applying `SECRETS_MANAGER_ENDPOINT` when
    /// it is set and not empty.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(config);
        if let Ok(endpoint) = std::env::var(ENDPOINT_ENV)
            && !endpoint.trim().is_empty()
        {
            builder = builder.endpoint_url(endpoint.trim());
        }
        AwsSecretStore::new(Client::from_conf(builder.build()))
    }

    /// Loads SDK configuration from the environment and builds the store.
    pub async fn from_env() -> Self {
        let config = aws_config::from_env().load().await;
        Self::from_sdk_config(&config)
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// A Secrets Manager SDK error as a [`StoreError`], by its error code: not found, access
/// denied (KMS included), an invalid request, or a service failure with the SDK's description.
/// For other code that calls Secrets Manager with the store's client (the CLI's listing).
pub fn store_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    map_err(operation, err)
}

fn map_err<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    if let Some(service) = err.as_service_error() {
        let message = service
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| service.to_string());
        match service.code() {
            Some("ResourceNotFoundException") => return StoreError::NotFound(message),
            Some("ResourceExistsException") => return StoreError::VersionExists(message),
            Some(
                "InvalidParameterException"
                | "InvalidRequestException"
                | "ValidationException"
                | "InvalidParameterValue",
            ) => return StoreError::InvalidRequest(format!("{operation}: {message}")),
            Some("AccessDeniedException" | "DecryptionFailure" | "KMSAccessDeniedException") => {
                return StoreError::AccessDenied(format!("{operation}: {message}"));
            }
            _ => {}
        }
    }
    StoreError::Service {
        operation,
        message: DisplayErrorContext(&err).to_string(),
        source: Some(Box::new(err)),
    }
}

impl SecretStore for AwsSecretStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, StoreError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .timed("DescribeSecret")
            .await
            .map_err(|e| map_err("DescribeSecret", e))?;
        Ok(SecretDescription {
            arn: out.arn().unwrap_or(secret_id).to_string(),
            name: out.name().unwrap_or(secret_id).to_string(),
            rotation_enabled: out.rotation_enabled(),
            versions: out
                .version_ids_to_stages()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), VersionStages::from_labels(v)))
                        .collect()
                })
                .unwrap_or_default(),
            tags: out
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        })
    }

    async fn get_value(
        &self,
        secret_id: &str,
        which: VersionSelector<'_>,
    ) -> Result<SecretValue, StoreError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(which.version_id.map(str::to_string))
            .set_version_stage(which.stage.map(|s| s.as_str().to_string()))
            .send()
            .timed("GetSecretValue")
            .await
            .map_err(|e| map_err("GetSecretValue", e))?;
        let value = out.secret_string().ok_or_else(|| {
            StoreError::InvalidRequest(format!(
                "secret {secret_id} holds a binary value; rotation needs a SecretString"
            ))
        })?;
        Ok(SecretValue {
            version_id: out.version_id().unwrap_or_default().to_string(),
            stages: VersionStages::from_labels(out.version_stages()),
            value: SecretString::from(value.to_string()),
            created: out.created_date().and_then(|d| {
                let secs = u64::try_from(d.secs()).ok()?;
                Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, d.subsec_nanos()))
            }),
        })
    }

    async fn put_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        stages: &[Stage],
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value.expose_secret())
            .set_version_stages(Some(
                stages.iter().map(|s| s.as_str().to_string()).collect(),
            ))
            .set_rotation_token(rotation_token.map(str::to_string))
            .send()
            .timed("PutSecretValue")
            .await
            .map_err(|e| map_err("PutSecretValue", e))?;
        Ok(())
    }

    async fn update_stage(&self, secret_id: &str, change: StageMove<'_>) -> Result<(), StoreError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(change.stage.as_str())
            .set_move_to_version_id(change.move_to.map(str::to_string))
            .set_remove_from_version_id(change.remove_from.map(str::to_string))
            .send()
            .timed("UpdateSecretVersionStage")
            .await
            .map_err(|e| map_err("UpdateSecretVersionStage", e))?;
        Ok(())
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<SecretString, StoreError> {
        let out = self
            .client
            .get_random_password()
            .password_length(i64::from(policy.length))
            .exclude_characters(&policy.exclude_characters)
            .set_exclude_numbers(policy.exclude_numbers)
            .exclude_punctuation(policy.exclude_punctuation)
            .set_exclude_uppercase(policy.exclude_uppercase)
            .set_exclude_lowercase(policy.exclude_lowercase)
            .require_each_included_type(policy.require_each_included_type)
            .send()
            .timed("GetRandomPassword")
            .await
            .map_err(|e| map_err("GetRandomPassword", e))?;
        out.random_password()
            .map(|p| SecretString::from(p.to_string()))
            .ok_or_else(|| StoreError::Service {
                operation: "GetRandomPassword",
                message: "response held no password".into(),
                source: None,
            })
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
        built_from: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        // No conditional write in Secrets Manager (`built_from` is not sent): setSecret compares
        // the pending value's keys with AWSCURRENT's before it changes the database.
        let _ = built_from;
        self.put_value(secret_id, token, value, &[Stage::Pending], rotation_token)
            .await
    }

    async fn claim(&self, _arn: &str) -> Result<Claim, StoreError> {
        // Secrets Manager offers no lock: exclusivity cannot be proven (docs/state-machine.md).
        Ok(Claim::none())
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let mut versions = Vec::new();
        let mut next: Option<String> = None;
        // At most 100 versions are kept; a few pages at most.
        for _ in 0..10 {
            let out = self
                .client
                .list_secret_version_ids()
                .secret_id(secret_id)
                .include_deprecated(true)
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .timed("ListSecretVersionIds")
                .await
                .map_err(|e| map_err("ListSecretVersionIds", e))?;
            for v in out.versions() {
                let created = v.created_date().map(|d| (d.secs(), d.subsec_nanos()));
                versions.push((
                    created,
                    VersionInfo {
                        id: v.version_id().unwrap_or_default().to_string(),
                        stages: VersionStages::from_labels(v.version_stages()),
                    },
                ));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        // Newest first; the sort is stable, so equal dates keep the service's order.
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        Ok(versions.into_iter().map(|(_, v)| v).collect())
    }
}
