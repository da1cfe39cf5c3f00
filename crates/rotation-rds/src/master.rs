//! Completing a master (admin) secret before alternating users act through it: the endpoint
//! of a managed master secret found through a cloud API, and the database it acts in.

use rotation_core::{DatabaseSecret, EngineError, ErrorKind, SecretError};
use serde_json::Value;

/// Connection details of a managed database (an RDS instance or cluster, a data warehouse
/// cluster or workgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Engine name for the secret's `engine` key (`postgres`, `aurora-postgresql`, ...).
    pub engine: String,
}

/// A failed cloud API call (RDS and the like): the call, what it was about, and the SDK's whole
/// error context (service error code and message, or the transport failure).
pub fn api_error<E: std::error::Error + Send + Sync + 'static>(
    call: &str,
    target: &str,
    e: E,
) -> EngineError {
    EngineError::new(
        ErrorKind::Other,
        format!(
            "{call} for {target} failed: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ),
    )
    .with_source(e)
}

fn invalid(e: SecretError) -> EngineError {
    EngineError::new(ErrorKind::InvalidInput, e.to_string())
}

/// Fills host, port and engine into a managed master secret.
pub fn complete_master(
    master: DatabaseSecret,
    ep: &Endpoint,
) -> Result<DatabaseSecret, EngineError> {
    master
        .with_field("host", Value::String(ep.host.clone()))
        .and_then(|m| m.with_field("port", Value::from(ep.port)))
        .and_then(|m| m.with_field("engine", Value::String(ep.engine.clone())))
        .map_err(invalid)
}

/// The master acts in the child's database (AWS 13a7a46): the child's `dbname`, or null (the
/// engine's default) when the child has none.
pub fn in_childs_database(
    master: DatabaseSecret,
    current: &DatabaseSecret,
) -> Result<DatabaseSecret, EngineError> {
    let dbname = match current.get("dbname") {
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    };
    master.with_field("dbname", dbname).map_err(invalid)
}
