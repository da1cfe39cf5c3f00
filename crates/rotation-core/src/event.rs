//! The Lambda invocation event that Secrets Manager sends, parsed once at the edge.

use std::fmt;

use serde_json::Value;

/// One of the four rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Store a new `AWSPENDING` version.
    CreateSecret,
    /// Make the database accept the pending credentials.
    SetSecret,
    /// Prove the pending credentials work.
    TestSecret,
    /// Move `AWSCURRENT` to the pending version.
    FinishSecret,
}

impl Step {
    /// The four steps in the order Secrets Manager calls them.
    pub const ALL: [Step; 4] = [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ];

    /// The camelCase name Secrets Manager sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateSecret => "createSecret",
            Step::SetSecret => "setSecret",
            Step::TestSecret => "testSecret",
            Step::FinishSecret => "finishSecret",
        }
    }

    /// Parses the camelCase names every AWS function accepts, and the snake_case spelling the
    /// current documentation shows (checklist 8). Anything else is `None`.
    pub fn parse(name: &str) -> Option<Step> {
        match name {
            "createSecret" | "create_secret" => Some(Step::CreateSecret),
            "setSecret" | "set_secret" => Some(Step::SetSecret),
            "testSecret" | "test_secret" => Some(Step::TestSecret),
            "finishSecret" | "finish_secret" => Some(Step::FinishSecret),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step named by an event. An unknown name is kept, because AWS's contract answers success
/// for *any* step name when the token is already `AWSCURRENT` (checklist 5) and only then
/// rejects it (checklist 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStep {
    /// A step this toolkit knows.
    Known(Step),
    /// A printable name that is not a step.
    Unknown(String),
}

impl fmt::Display for EventStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventStep::Known(s) => s.fmt(f),
            EventStep::Unknown(s) => f.write_str(s),
        }
    }
}

/// A rotation invocation: `{"Step", "SecretId", "ClientRequestToken", "RotationToken"?}`.
/// Unknown fields are ignored.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationEvent {
    /// The step to run.
    pub step: EventStep,
    /// Secret name or ARN.
    pub secret_id: String,
    /// The version id of the rotation (idempotency token).
    pub client_request_token: String,
    /// Cross-account rotation token; forwarded to `PutSecretValue`, never logged.
    pub rotation_token: Option<String>,
}

impl fmt::Debug for RotationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationEvent")
            .field("step", &self.step)
            .field("secret_id", &self.secret_id)
            .field("client_request_token", &self.client_request_token)
            .field(
                "rotation_token",
                &self.rotation_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Why an event was refused before any call to Secrets Manager.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event is not a JSON object.
    #[error("rotation event must be a JSON object")]
    NotAnObject,
    /// A required field is absent, null or empty.
    #[error("No value provided for \"{0}\".")]
    MissingField(&'static str),
    /// A field is not a string.
    #[error("\"{0}\" must be a string.")]
    NotAString(&'static str),
    /// A field holds characters outside printable ASCII.
    #[error("\"{0}\" contains invalid characters.")]
    InvalidCharacters(&'static str),
}

impl RotationEvent {
    /// Builds an event for a known step (used by the in-process driver).
    pub fn new(step: Step, secret_id: impl Into<String>, token: impl Into<String>) -> Self {
        RotationEvent {
            step: EventStep::Known(step),
            secret_id: secret_id.into(),
            client_request_token: token.into(),
            rotation_token: None,
        }
    }

    /// Parses and validates the Lambda payload (checklist 1; W20: contents are checked to be
    /// printable ASCII as AWS's newer vended code does).
    pub fn from_json(value: &Value) -> Result<Self, EventError> {
        let obj = value.as_object().ok_or(EventError::NotAnObject)?;
        let secret_id = required(obj, "SecretId")?;
        let token = required(obj, "ClientRequestToken")?;
        let step_name = required(obj, "Step")?;
        let rotation_token = match obj.get("RotationToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                check_printable("RotationToken", s)?;
                Some(s.clone())
            }
            Some(_) => return Err(EventError::NotAString("RotationToken")),
        };
        let step = match Step::parse(&step_name) {
            Some(s) => EventStep::Known(s),
            None => EventStep::Unknown(step_name),
        };
        Ok(RotationEvent {
            step,
            secret_id,
            client_request_token: token,
            rotation_token,
        })
    }
}

fn required(obj: &serde_json::Map<String, Value>, key: &'static str) -> Result<String, EventError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(EventError::MissingField(key)),
        Some(Value::String(s)) if s.is_empty() => Err(EventError::MissingField(key)),
        Some(Value::String(s)) => {
            check_printable(key, s)?;
            Ok(s.clone())
        }
        Some(_) => Err(EventError::NotAString(key)),
    }
}

fn check_printable(key: &'static str, s: &str) -> Result<(), EventError> {
    if s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(EventError::InvalidCharacters(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_the_lambda_payload_and_ignores_unknown_fields() {
        let ev = RotationEvent::from_json(&json!({
            "Step": "setSecret", "SecretId": "arn:x", "ClientRequestToken": TOKEN,
            "SomethingNew": 1
        }))
        .unwrap();
        assert_eq!(ev.step, EventStep::Known(Step::SetSecret));
        assert_eq!(ev.secret_id, "arn:x");
        assert_eq!(ev.rotation_token, None);
    }

    #[test]
    fn accepts_snake_case_steps() {
        for (name, step) in [
            ("create_secret", Step::CreateSecret),
            ("finish_secret", Step::FinishSecret),
        ] {
            let ev = RotationEvent::from_json(
                &json!({"Step": name, "SecretId": "s", "ClientRequestToken": TOKEN}),
            )
            .unwrap();
            assert_eq!(ev.step, EventStep::Known(step));
        }
    }

    #[test]
    fn keeps_unknown_step_names_for_the_handler_to_judge() {
        let ev = RotationEvent::from_json(
            &json!({"Step": "CreateSecret", "SecretId": "s", "ClientRequestToken": TOKEN}),
        )
        .unwrap();
        assert_eq!(ev.step, EventStep::Unknown("CreateSecret".into()));
    }

    #[test]
    fn missing_empty_or_null_fields_are_refused() {
        for key in ["Step", "SecretId", "ClientRequestToken"] {
            let mut v = json!({"Step": "setSecret", "SecretId": "s", "ClientRequestToken": TOKEN});
            v.as_object_mut().unwrap().remove(key);
            assert!(matches!(
                RotationEvent::from_json(&v),
                Err(EventError::MissingField(k)) if k == key
            ));
            v[key] = json!("");
            assert!(matches!(
                RotationEvent::from_json(&v),
                Err(EventError::MissingField(_))
            ));
            v[key] = Value::Null;
            assert!(matches!(
                RotationEvent::from_json(&v),
                Err(EventError::MissingField(_))
            ));
            v[key] = json!(5);
            assert!(matches!(
                RotationEvent::from_json(&v),
                Err(EventError::NotAString(_))
            ));
        }
        assert_eq!(
            RotationEvent::from_json(&json!([1])),
            Err(EventError::NotAnObject)
        );
    }

    #[test]
    fn non_printable_values_are_refused() {
        let v = json!({"Step": "setSecret", "SecretId": "s\n", "ClientRequestToken": TOKEN});
        assert_eq!(
            RotationEvent::from_json(&v),
            Err(EventError::InvalidCharacters("SecretId"))
        );
        let v = json!({"Step": "set\u{e9}", "SecretId": "s", "ClientRequestToken": TOKEN});
        assert_eq!(
            RotationEvent::from_json(&v),
            Err(EventError::InvalidCharacters("Step"))
        );
        let msg = EventError::InvalidCharacters("Step").to_string();
        assert_eq!(msg, "\"Step\" contains invalid characters.");
    }

    #[test]
    fn rotation_token_is_kept_but_never_printed() {
        let ev = RotationEvent::from_json(&json!({
            "Step": "createSecret", "SecretId": "s", "ClientRequestToken": TOKEN,
            "RotationToken": "cross-account-secret-token"
        }))
        .unwrap();
        assert_eq!(
            ev.rotation_token.as_deref(),
            Some("cross-account-secret-token")
        );
        assert!(!format!("{ev:?}").contains("cross-account-secret-token"));
    }
}
