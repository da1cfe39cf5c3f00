//! The RDS control plane, for what the secret alone cannot say (spec §5):
//!
//! - RDS-managed master secrets hold only `username` and `password`; the instance or cluster is
//!   named by the secret's `aws:rds:primarydbinstancearn` / `aws:rds:primarydbclusterarn` tag
//!   and its endpoint, port and engine come from `DescribeDBInstances` / `DescribeDBClusters`.
//! - A user secret may point at a read replica of the master's instance, or at an Aurora reader
//!   (the reader endpoint, or an instance that is not the writer).
//!
//! API failures are errors that name the call (AWS's functions turned them into a misleading
//! host mismatch before b4b8eca, W11).

use std::fmt;

use aws_sdk_rds::Client;
use rotation_core::{EngineError, ErrorKind};

pub mod master;

const INSTANCE_TAG: &str = "aws:rds:primarydbinstancearn";
const CLUSTER_TAG: &str = "aws:rds:primarydbclusterarn";
const MAX_ARN: usize = 256;

pub use crate::master::{Endpoint, complete_master};

/// The RDS API client of the RDS engines (PostgreSQL, MySQL / MariaDB).
#[derive(Clone)]
pub struct Rds {
    client: Client,
}

impl fmt::Debug for Rds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rds")
    }
}

fn api_error<E: std::error::Error + Send + Sync + 'static>(
    call: &str,
    target: &str,
    e: E,
) -> EngineError {
    master::api_error(&format!("RDS API {call}"), target, e)
}

fn first_label(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

fn port(p: Option<i32>, what: &str) -> Result<u16, EngineError> {
    p.and_then(|p| u16::try_from(p).ok()).ok_or_else(|| {
        EngineError::new(ErrorKind::Other, format!("RDS reported no port for {what}"))
    })
}

impl Rds {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Rds { client }
    }

    /// Builds a client from shared SDK configuration (the regional RDS endpoint, or the SDK's
    /// `AWS_ENDPOINT_URL*` overrides).
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Rds::new(Client::new(config))
    }

    /// The endpoint an RDS-managed master secret's tags point at.
    pub async fn managed_master_endpoint(
        &self,
        tags: &[(String, String)],
    ) -> Result<Endpoint, EngineError> {
        let find = |name: &str| {
            tags.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (kind, arn) = match (find(INSTANCE_TAG), find(CLUSTER_TAG)) {
            (Some(arn), _) => ("instance", arn),
            (None, Some(arn)) => ("cluster", arn),
            (None, None) => {
                return Err(EngineError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the master secret has no host and no {INSTANCE_TAG} or {CLUSTER_TAG} tag to find it by"
                    ),
                ));
            }
        };
        if arn.len() > MAX_ARN {
            return Err(EngineError::new(
                ErrorKind::InvalidInput,
                format!(
                    "the master secret's {kind} ARN is not valid: it exceeds the maximum length of {MAX_ARN}"
                ),
            ));
        }
        if kind == "instance" {
            self.instance_endpoint(arn).await
        } else {
            self.cluster_endpoint(arn).await
        }
    }

    async fn instance(&self, id: &str) -> Result<aws_sdk_rds::types::DbInstance, EngineError> {
        let out = self
            .client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| api_error("DescribeDBInstances", id, e))?;
        out.db_instances().first().cloned().ok_or_else(|| {
            EngineError::new(
                ErrorKind::Other,
                format!("DescribeDBInstances found no instance {id}"),
            )
        })
    }

    async fn cluster(&self, id: &str) -> Result<aws_sdk_rds::types::DbCluster, EngineError> {
        let out = self
            .client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| api_error("DescribeDBClusters", id, e))?;
        out.db_clusters().first().cloned().ok_or_else(|| {
            EngineError::new(
                ErrorKind::Other,
                format!("DescribeDBClusters found no cluster {id}"),
            )
        })
    }

    async fn instance_endpoint(&self, id: &str) -> Result<Endpoint, EngineError> {
        let i = self.instance(id).await?;
        let ep = i.endpoint().ok_or_else(|| {
            EngineError::new(
                ErrorKind::Other,
                format!("instance {id} has no endpoint yet"),
            )
        })?;
        Ok(Endpoint {
            host: ep.address().unwrap_or_default().to_string(),
            port: port(ep.port(), id)?,
            engine: i.engine().unwrap_or_default().to_string(),
        })
    }

    async fn cluster_endpoint(&self, id: &str) -> Result<Endpoint, EngineError> {
        let c = self.cluster(id).await?;
        Ok(Endpoint {
            host: c.endpoint().unwrap_or_default().to_string(),
            port: port(c.port(), id)?,
            engine: c.engine().unwrap_or_default().to_string(),
        })
    }

    /// Whether `current_host` is a replica of the master at `master_host` with engine
    /// `master_engine`: for `postgres`, `mysql` and `mariadb`, an instance whose read-replica
    /// source is the master's instance; for `aurora-postgresql` and `aurora-mysql`, the
    /// cluster's reader endpoint or a non-writer member.
    pub async fn is_replica(
        &self,
        current_host: &str,
        master_host: &str,
        master_engine: &str,
    ) -> Result<bool, EngineError> {
        let current_id = first_label(current_host);
        let master_id = first_label(master_host);
        match master_engine {
            "postgres" | "mysql" | "mariadb" => {
                let i = self.instance(current_id).await?;
                let source = i
                    .read_replica_source_db_instance_identifier()
                    .unwrap_or_default();
                // The source may be given as an identifier or, across regions, as an ARN.
                Ok(source == master_id || source.rsplit(':').next() == Some(master_id))
            }
            "aurora-postgresql" | "aurora-mysql" => {
                let second = master_host.split('.').nth(1).unwrap_or_default();
                let cluster_id = if second.contains("cluster") {
                    master_id.to_string()
                } else {
                    let i = self.instance(master_id).await?;
                    match i.db_cluster_identifier() {
                        Some(c) => c.to_string(),
                        None => return Ok(false),
                    }
                };
                let c = self.cluster(&cluster_id).await?;
                if c.reader_endpoint()
                    .is_some_and(|r| r.eq_ignore_ascii_case(current_host))
                {
                    return Ok(true);
                }
                Ok(c.db_cluster_members().iter().any(|m| {
                    m.db_instance_identifier() == Some(current_id)
                        && m.is_cluster_writer() == Some(false)
                }))
            }
            _ => Ok(false),
        }
    }
}

/// An RDS engine's [`Rotator::resolve_master`](rotation_core::Rotator::resolve_master): a
/// managed master secret (`tags` given: it has no host) completed through the RDS API, then
/// acting in the child's database.
pub async fn resolve_master(
    rds: Option<&Rds>,
    master: rotation_core::DatabaseSecret,
    current: &rotation_core::DatabaseSecret,
    tags: Option<&[(String, String)]>,
) -> Result<rotation_core::DatabaseSecret, EngineError> {
    let master = match (tags, rds) {
        (None, _) => master,
        (Some(tags), Some(rds)) => {
            let endpoint = rds.managed_master_endpoint(tags).await?;
            tracing::info!(host = %endpoint.host, "resolved an RDS-managed master secret through the RDS API");
            complete_master(master, &endpoint)?
        }
        (Some(_), None) => {
            return Err(EngineError::new(
                ErrorKind::InvalidInput,
                "the master secret has no host; RDS-managed master secrets need the RDS API, which this rotator was built without",
            ));
        }
    };
    master::in_childs_database(master, current)
}

/// An RDS engine's [`Rotator::is_replica_of`](rotation_core::Rotator::is_replica_of): asked of
/// the RDS API, and no without it.
pub async fn is_replica_of(
    rds: Option<&Rds>,
    current: &rotation_core::DatabaseSecret,
    master: &rotation_core::DatabaseSecret,
) -> Result<bool, EngineError> {
    match rds {
        Some(rds) => {
            rds.is_replica(
                current.host().unwrap_or_default(),
                master.host().unwrap_or_default(),
                master.engine().unwrap_or_default(),
            )
            .await
        }
        None => Ok(false),
    }
}
