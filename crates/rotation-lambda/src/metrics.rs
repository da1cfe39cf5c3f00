//! CloudWatch metrics without an API call: one line per invocation in the embedded metric
//! format (EMF), which CloudWatch Logs turns into metrics, so alarms need no log parsing.
//!
//! Metrics, namespace [`NAMESPACE`]:
//! - `RotationDuration` (milliseconds): how long the step took;
//! - `RotationFailed` (count, 0 or 1): whether it failed.
//!
//! Both by `Engine`, `Strategy` and `Step`, and by `FunctionName` alone (one alarm per function,
//! whatever its steps: the deployment templates' alarm); a failed step's line adds the dimension
//! set `Engine`, `Strategy`, `Step`, `ErrorKind` (the stable kind of the error, as in the Lambda
//! `errorType`). The secret's ARN, the version and the outcome ride along as properties (found
//! in the log line, not dimensions: a dimension per secret would make a metric per secret). No
//! secret value is ever in a line: every field is a name, a kind or a number.

use std::time::{SystemTime, UNIX_EPOCH};

use rotation_core::Strategy;
use serde_json::{Value, json};

/// The CloudWatch namespace of the metrics.
pub const NAMESPACE: &str = "SecretsManagerRotation";

/// What one invocation did, for its metric line.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// The engine's short name (`postgres`).
    pub engine: &'static str,
    /// The function's strategy.
    pub strategy: Strategy,
    /// The event's step (`setSecret`), or `invalid` for an event that could not be read.
    pub step: String,
    /// The event's `SecretId`, as sent.
    pub secret_id: String,
    /// The event's `ClientRequestToken`.
    pub version: String,
    /// The step's outcome (`PasswordSet(Current)`), or `failed`.
    pub outcome: String,
    /// The error's stable kind, when the step failed.
    pub error_kind: Option<&'static str>,
    /// How long the step took.
    pub duration_ms: f64,
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`), when known.
    pub function: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl StepMetrics {
    /// The EMF document for this invocation, stamped `timestamp_ms`.
    pub fn emf(&self, timestamp_ms: u64) -> Value {
        let base = ["Engine", "Strategy", "Step"];
        let mut dimensions = vec![json!(base)];
        if self.function.is_some() {
            dimensions.push(json!(["FunctionName"]));
        }
        if self.error_kind.is_some() {
            dimensions.push(json!(["Engine", "Strategy", "Step", "ErrorKind"]));
        }
        let mut doc = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dimensions,
                    "Metrics": [
                        {"Name": "RotationDuration", "Unit": "Milliseconds"},
                        {"Name": "RotationFailed", "Unit": "Count"},
                    ],
                }],
            },
            "Engine": self.engine,
            "Strategy": self.strategy.to_string(),
            "Step": self.step,
            "RotationDuration": (self.duration_ms * 1000.0).round() / 1000.0,
            "RotationFailed": u8::from(self.error_kind.is_some()),
            "SecretId": self.secret_id,
            "Version": self.version,
            "Outcome": self.outcome,
        });
        if let Some(kind) = self.error_kind {
            doc["ErrorKind"] = json!(kind);
        }
        if let Some(function) = &self.function {
            doc["FunctionName"] = json!(function);
        }
        doc
    }

    /// The line to print: the EMF document, one line.
    pub fn line(&self) -> String {
        self.emf(now_ms()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(error_kind: Option<&'static str>) -> StepMetrics {
        StepMetrics {
            engine: "example",
            strategy: Strategy::AlternatingUsers,
            step: "setSecret".into(),
            secret_id: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf".into(),
            version: "t1".into(),
            outcome: "failed".into(),
            error_kind,
            duration_ms: 12.345_678,
            function: None,
        }
    }

    #[test]
    fn a_success_has_one_dimension_set_and_a_failure_two() {
        let ok = sample(None).emf(1_700_000_000_000);
        let dims = &ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(dims, &json!([["Engine", "Strategy", "Step"]]));
        assert_eq!(ok["RotationFailed"], json!(0));
        assert!(ok.get("ErrorKind").is_none());
        assert_eq!(ok["RotationDuration"], json!(12.346));
        assert_eq!(ok["Strategy"], json!("alternating-users"));

        let failed = sample(Some("SetPasswordFailed")).emf(1_700_000_000_000);
        let dims = &failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(dims[1], json!(["Engine", "Strategy", "Step", "ErrorKind"]));
        assert_eq!(failed["RotationFailed"], json!(1));
        assert_eq!(failed["ErrorKind"], json!("SetPasswordFailed"));
    }

    #[test]
    fn under_lambda_the_metrics_are_also_by_function_name_alone() {
        let mut m = sample(Some("SetPasswordFailed"));
        m.function = Some("rotation-postgres".into());
        let doc = m.emf(1_700_000_000_000);
        let dims = &doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(dims[1], json!(["FunctionName"]));
        assert_eq!(dims[2], json!(["Engine", "Strategy", "Step", "ErrorKind"]));
        assert_eq!(doc["FunctionName"], json!("rotation-postgres"));
    }
}
