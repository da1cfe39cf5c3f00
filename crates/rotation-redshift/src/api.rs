//! Redshift-managed admin secrets (spec §9): they hold only `username` and `password`; the
//! cluster or serverless namespace is named by the secret's `aws:redshift:primaryclusterarn` /
//! `aws:redshift-serverless:namespacearn` tag, and the endpoint comes from the Redshift API
//! (`DescribeClusters`) or the Redshift Serverless API (`ListNamespaces`, `ListWorkgroups`),
//! every page of them (AWS's function reads only the first 100: W12).
//!
//! The lookups go through [`Directory`], so that the serverless part, which moto does not
//! emulate, is tested with a wrapped client.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use rotation_core::{EngineError, ErrorKind};
use rotation_rds::master::{Endpoint, api_error};

/// Tag naming a provisioned cluster.
pub const CLUSTER_TAG: &str = "aws:redshift:primaryclusterarn";
/// Tag naming a serverless namespace.
pub const NAMESPACE_TAG: &str = "aws:redshift-serverless:namespacearn";
const MAX_ARN: usize = 256;
/// A bound on pages read, against an API that keeps returning a next token.
const MAX_PAGES: usize = 1000;

/// A boxed future, so that [`Directory`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token of the next page, if any.
    pub next_token: Option<String>,
}

/// A Redshift Serverless namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
}

/// A Redshift Serverless workgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workgroup {
    /// Its name.
    pub name: String,
    /// The namespace it serves.
    pub namespace_name: String,
    /// Endpoint host, once it has one.
    pub host: Option<String>,
    /// Endpoint port.
    pub port: Option<i32>,
}

/// The Redshift and Redshift Serverless lookups a managed admin secret needs.
pub trait Directory: Send + Sync + fmt::Debug {
    /// `DescribeClusters` for one cluster identifier: its endpoint.
    fn cluster_endpoint<'a>(
        &'a self,
        cluster_id: &'a str,
    ) -> BoxFuture<'a, Result<Endpoint, EngineError>>;
    /// One page of `ListNamespaces`.
    fn namespaces(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Namespace>, EngineError>>;
    /// One page of `ListWorkgroups`.
    fn workgroups(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Workgroup>, EngineError>>;
}

fn not_found(message: String) -> EngineError {
    EngineError::new(ErrorKind::InvalidInput, message)
}

/// Reads every page of a listing until `found` matches, or the listing ends.
async fn find_in_pages<'a, T, F>(
    what: &str,
    mut page: impl FnMut(Option<String>) -> BoxFuture<'a, Result<Page<T>, EngineError>>,
    mut found: F,
) -> Result<Option<T>, EngineError>
where
    F: FnMut(&T) -> bool,
{
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let p = page(token.take()).await?;
        if let Some(hit) = p.items.into_iter().find(|i| found(i)) {
            return Ok(Some(hit));
        }
        match p.next_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(None),
        }
    }
    Err(EngineError::new(
        ErrorKind::Other,
        format!("{what} returned more than {MAX_PAGES} pages; giving up"),
    ))
}

/// The endpoint a Redshift-managed admin secret's tags point at. Tag keys match in any case;
/// the first matching tag wins, as in AWS's function.
pub async fn managed_admin_endpoint(
    directory: &dyn Directory,
    tags: &[(String, String)],
) -> Result<Endpoint, EngineError> {
    let tag = tags.iter().find(|(k, _)| {
        k.eq_ignore_ascii_case(NAMESPACE_TAG) || k.eq_ignore_ascii_case(CLUSTER_TAG)
    });
    let Some((key, arn)) = tag else {
        return Err(not_found(format!(
            "the admin secret has no host and no {CLUSTER_TAG} or {NAMESPACE_TAG} tag to find it by"
        )));
    };
    if arn.len() > MAX_ARN {
        return Err(not_found(format!(
            "the admin secret's {key} tag is not a valid ARN: it exceeds the maximum length of {MAX_ARN}"
        )));
    }
    if key.eq_ignore_ascii_case(CLUSTER_TAG) {
        let id = arn.rsplit(':').next().unwrap_or_default();
        return directory.cluster_endpoint(id).await;
    }
    let namespace = find_in_pages(
        "ListNamespaces",
        |t| directory.namespaces(t),
        |n: &Namespace| n.arn == *arn,
    )
    .await?
    .ok_or_else(|| not_found(format!("ListNamespaces found no namespace {arn}")))?;
    let workgroup = find_in_pages(
        "ListWorkgroups",
        |t| directory.workgroups(t),
        |w: &Workgroup| w.namespace_name == namespace.name,
    )
    .await?
    .ok_or_else(|| {
        not_found(format!(
            "ListWorkgroups found no workgroup for namespace {}",
            namespace.name
        ))
    })?;
    let host = workgroup.host.filter(|h| !h.is_empty()).ok_or_else(|| {
        EngineError::new(
            ErrorKind::Other,
            format!("workgroup {} has no endpoint yet", workgroup.name),
        )
    })?;
    let port = port(workgroup.port, &workgroup.name)?;
    Ok(Endpoint {
        host,
        port,
        engine: "redshift".into(),
    })
}

fn port(p: Option<i32>, what: &str) -> Result<u16, EngineError> {
    p.and_then(|p| u16::try_from(p).ok()).ok_or_else(|| {
        EngineError::new(
            ErrorKind::Other,
            format!("the Redshift API reported no port for {what}"),
        )
    })
}

/// The [`Directory`] over the AWS SDK clients.
#[derive(Clone)]
pub struct SdkDirectory {
    redshift: aws_sdk_redshift::Client,
    serverless: aws_sdk_redshiftserverless::Client,
}

impl fmt::Debug for SdkDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SdkDirectory")
    }
}

impl SdkDirectory {
    /// Clients from shared SDK configuration (regional endpoints, or `AWS_ENDPOINT_URL*`).
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        SdkDirectory {
            redshift: aws_sdk_redshift::Client::new(config),
            serverless: aws_sdk_redshiftserverless::Client::new(config),
        }
    }
}

impl Directory for SdkDirectory {
    fn cluster_endpoint<'a>(
        &'a self,
        cluster_id: &'a str,
    ) -> BoxFuture<'a, Result<Endpoint, EngineError>> {
        Box::pin(async move {
            let out = self
                .redshift
                .describe_clusters()
                .cluster_identifier(cluster_id)
                .send()
                .await
                .map_err(|e| api_error("Redshift DescribeClusters", cluster_id, e))?;
            let cluster = out.clusters().first().ok_or_else(|| {
                not_found(format!("DescribeClusters found no cluster {cluster_id}"))
            })?;
            let no_endpoint = || {
                EngineError::new(
                    ErrorKind::Other,
                    format!("cluster {cluster_id} has no endpoint yet"),
                )
            };
            let ep = cluster.endpoint().ok_or_else(no_endpoint)?;
            let host = ep
                .address()
                .filter(|a| !a.is_empty())
                .ok_or_else(no_endpoint)?;
            Ok(Endpoint {
                host: host.to_string(),
                port: port(ep.port(), cluster_id)?,
                engine: "redshift".into(),
            })
        })
    }

    fn namespaces(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Namespace>, EngineError>> {
        Box::pin(async move {
            let out = self
                .serverless
                .list_namespaces()
                .max_results(100)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| api_error("Redshift Serverless ListNamespaces", "the account", e))?;
            Ok(Page {
                items: out
                    .namespaces()
                    .iter()
                    .map(|n| Namespace {
                        arn: n.namespace_arn().unwrap_or_default().to_string(),
                        name: n.namespace_name().unwrap_or_default().to_string(),
                    })
                    .collect(),
                next_token: out.next_token().map(str::to_string),
            })
        })
    }

    fn workgroups(
        &self,
        next_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Workgroup>, EngineError>> {
        Box::pin(async move {
            let out = self
                .serverless
                .list_workgroups()
                .max_results(100)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| api_error("Redshift Serverless ListWorkgroups", "the account", e))?;
            Ok(Page {
                items: out
                    .workgroups()
                    .iter()
                    .map(|w| Workgroup {
                        name: w.workgroup_name().unwrap_or_default().to_string(),
                        namespace_name: w.namespace_name().unwrap_or_default().to_string(),
                        host: w.endpoint().and_then(|e| e.address()).map(str::to_string),
                        port: w.endpoint().and_then(|e| e.port()),
                    })
                    .collect(),
                next_token: out.next_token().map(str::to_string),
            })
        })
    }
}
