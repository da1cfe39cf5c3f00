//! The database secret JSON that AWS's rotation functions use.
//!
//! `{"engine", "host", "port", "username", "password", "dbname", "masterarn", "ssl", ...}`.
//! Known keys are checked for type when the value is parsed; every other key is kept, in its
//! original order, and written back unchanged. The password lives in a [`SecretString`] from the
//! moment it is read. No type here derives `Debug`, and parse errors never echo a value.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// Why a secret value cannot be used. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The value is not JSON (position only; the parser's message could quote the text).
    #[error("secret value is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// The value is JSON but not an object.
    #[error("secret value must be a JSON object")]
    NotAnObject,
    /// A required key is absent or null.
    #[error("{0} key is missing from secret JSON")]
    MissingKey(&'static str),
    /// A known key holds a value of the wrong type.
    #[error("secret key `{key}` must be {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What was expected, e.g. "a string".
        expected: &'static str,
    },
    /// The `engine` key names another engine.
    #[error(
        "Database engine must be set to '{expected}' in order to use this rotation function (found '{found}')"
    )]
    WrongEngine {
        /// The engine this rotator needs.
        expected: &'static str,
        /// The engine in the secret.
        found: String,
    },
}

/// The value of the secret's `dbname` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbName<'a> {
    /// No `dbname` key.
    Absent,
    /// `"dbname": null`.
    Null,
    /// A database name.
    Name(&'a str),
}

/// The secret's `ssl` key, classified as AWS's `get_ssl_config` does (spec §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslKey {
    /// No `ssl` key.
    Absent,
    /// JSON `true`/`false`, or the strings `"true"`/`"false"` in any case.
    Explicit(bool),
    /// Any other value (number, null, object, other string).
    Unrecognised,
}

/// A parsed database secret.
#[derive(Clone)]
pub struct DatabaseSecret {
    /// Every key except `password`, in original order.
    fields: Map<String, Value>,
    /// Where `password` stood among the keys, to write it back in place.
    password_index: usize,
    password: Option<SecretString>,
    port: Option<u16>,
}

const STRING_KEYS: [&str; 4] = ["engine", "host", "username", "masterarn"];

impl DatabaseSecret {
    /// Parses a secret value. Types of known keys are checked; required keys are checked later
    /// by [`DatabaseSecret::require`], because which keys are required depends on its use.
    pub fn parse(value: &SecretString) -> Result<Self, SecretError> {
        let parsed: Value =
            serde_json::from_str(value.expose_secret()).map_err(|e| SecretError::NotJson {
                line: e.line(),
                column: e.column(),
            })?;
        let Value::Object(mut fields) = parsed else {
            return Err(SecretError::NotAnObject);
        };
        let password_index = fields
            .keys()
            .position(|k| k == "password")
            .unwrap_or(fields.len());
        let password = match fields.shift_remove("password") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(SecretString::from(s)),
            Some(_) => {
                return Err(SecretError::WrongType {
                    key: "password",
                    expected: "a string",
                });
            }
        };
        for key in STRING_KEYS {
            match fields.get(key) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => {
                    return Err(SecretError::WrongType {
                        key,
                        expected: "a string",
                    });
                }
            }
        }
        match fields.get("dbname") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(SecretError::WrongType {
                    key: "dbname",
                    expected: "a string or null",
                });
            }
        }
        let port = parse_port(fields.get("port"))?;
        Ok(DatabaseSecret {
            fields,
            password_index,
            password,
            port,
        })
    }

    /// Checks that `host`, `username` and `password` are present and that `engine`, if
    /// `engines` is not empty, is one of them. `engine_required` makes a missing `engine` an error.
    pub fn require(
        &self,
        engines: &[&'static str],
        engine_required: bool,
    ) -> Result<(), SecretError> {
        if !engines.is_empty() {
            match self.engine() {
                Some(e) if engines.contains(&e) => {}
                Some(e) => {
                    return Err(SecretError::WrongEngine {
                        expected: engines[0],
                        found: e.to_string(),
                    });
                }
                None if engine_required => return Err(SecretError::MissingKey("engine")),
                None => {}
            }
        }
        if self.host().is_none() {
            return Err(SecretError::MissingKey("host"));
        }
        if self.username().is_none() {
            return Err(SecretError::MissingKey("username"));
        }
        if self.password.is_none() {
            return Err(SecretError::MissingKey("password"));
        }
        Ok(())
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// `engine`.
    pub fn engine(&self) -> Option<&str> {
        self.str_field("engine")
    }
    /// `host`.
    pub fn host(&self) -> Option<&str> {
        self.str_field("host")
    }
    /// `username`.
    pub fn username(&self) -> Option<&str> {
        self.str_field("username")
    }
    /// `masterarn`.
    pub fn masterarn(&self) -> Option<&str> {
        self.str_field("masterarn").filter(|s| !s.is_empty())
    }
    /// `port`, from a number or a numeric string.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// `password`.
    pub fn password(&self) -> Option<&SecretString> {
        self.password.as_ref()
    }
    /// `dbname`.
    pub fn dbname(&self) -> DbName<'_> {
        match self.fields.get("dbname") {
            None => DbName::Absent,
            Some(Value::String(s)) => DbName::Name(s),
            Some(_) => DbName::Null,
        }
    }
    /// `ssl`, classified.
    pub fn ssl(&self) -> SslKey {
        match self.fields.get("ssl") {
            None => SslKey::Absent,
            Some(Value::Bool(b)) => SslKey::Explicit(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => SslKey::Explicit(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => SslKey::Explicit(false),
            Some(_) => SslKey::Unrecognised,
        }
    }
    /// Any key's raw value (`password` is never returned).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
    /// The keys present, including `password` when present.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields
            .keys()
            .map(String::as_str)
            .chain(self.password.as_ref().map(|_| "password"))
    }

    /// A copy with another username.
    pub fn with_username(&self, username: &str) -> Self {
        let mut s = self.clone();
        s.fields
            .insert("username".into(), Value::String(username.into()));
        s
    }
    /// A copy with another password.
    pub fn with_password(&self, password: SecretString) -> Self {
        let mut s = self.clone();
        s.password = Some(password);
        s
    }
    /// A copy whose `ssl` key is taken from `other` (or removed when `other` has none). AWS does
    /// this before logging in with `AWSPREVIOUS`, whose version may predate the `ssl` key.
    pub fn with_ssl_of(&self, other: &DatabaseSecret) -> Self {
        let mut s = self.clone();
        match other.fields.get("ssl") {
            Some(v) => {
                s.fields.insert("ssl".into(), v.clone());
            }
            None => {
                s.fields.shift_remove("ssl");
            }
        }
        s
    }
    /// A copy with a string key set (used to fill in connection details of managed secrets).
    pub fn with_field(&self, key: &str, value: Value) -> Result<Self, SecretError> {
        let mut fields = self.fields.clone();
        fields.insert(key.into(), value);
        let mut s = DatabaseSecret {
            fields,
            password_index: self.password_index,
            password: self.password.clone(),
            port: None,
        };
        s.port = parse_port(s.fields.get("port"))?;
        Ok(s)
    }

    /// Serialises back to JSON, `password` at its original position, every other key unchanged.
    pub fn to_json(&self) -> SecretString {
        let mut out = Map::new();
        let mut placed = false;
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i == self.password_index {
                self.push_password(&mut out);
                placed = true;
            }
            out.insert(k.clone(), v.clone());
        }
        if !placed {
            self.push_password(&mut out);
        }
        SecretString::from(Value::Object(out).to_string())
    }

    fn push_password(&self, out: &mut Map<String, Value>) {
        if let Some(p) = &self.password {
            out.insert(
                "password".into(),
                Value::String(p.expose_secret().to_string()),
            );
        }
    }
}

fn parse_port(v: Option<&Value>) -> Result<Option<u16>, SecretError> {
    const BAD: SecretError = SecretError::WrongType {
        key: "port",
        expected: "a port number (1-65535) or a string holding one",
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or(BAD),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or(BAD),
        Some(_) => Err(BAD),
    }
}

impl fmt::Debug for DatabaseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only non-secret known fields; other keys by name only, since users keep all sorts of
        // things in secrets.
        f.debug_struct("DatabaseSecret")
            .field("engine", &self.engine())
            .field("host", &self.host())
            .field("port", &self.port)
            .field("username", &self.username())
            .field("dbname", &self.dbname())
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("keys", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DatabaseSecret, SecretError> {
        DatabaseSecret::parse(&SecretString::from(s.to_string()))
    }

    #[test]
    fn round_trips_unknown_keys_order_and_port_type() {
        let src = r#"{"engine":"postgres","host":"h","username":"u","password":"p1","dbname":"d","port":"5432","ssl":"true","masterarn":"arn:m","custom":{"a":[1,2]},"dbInstanceIdentifier":"db1"}"#;
        let s = parse(src).unwrap();
        assert_eq!(s.to_json().expose_secret(), src);
        assert_eq!(s.port(), Some(5432));
        assert_eq!(s.ssl(), SslKey::Explicit(true));
        let numeric = parse(r#"{"port":5439,"password":"x"}"#).unwrap();
        assert_eq!(
            numeric.to_json().expose_secret(),
            r#"{"port":5439,"password":"x"}"#
        );
    }

    #[test]
    fn rewriting_changes_only_username_and_password() {
        let s = parse(r#"{"username":"app","password":"old","host":"h","x":1}"#).unwrap();
        let p = s
            .with_username("app_clone")
            .with_password(SecretString::from("new"));
        assert_eq!(
            p.to_json().expose_secret(),
            r#"{"username":"app_clone","password":"new","host":"h","x":1}"#
        );
    }

    #[test]
    fn ssl_key_follows_aws_classification() {
        let cases = [
            (r#"{}"#, SslKey::Absent),
            (r#"{"ssl":true}"#, SslKey::Explicit(true)),
            (r#"{"ssl":false}"#, SslKey::Explicit(false)),
            (r#"{"ssl":"FALSE"}"#, SslKey::Explicit(false)),
            (r#"{"ssl":"yes"}"#, SslKey::Unrecognised),
            (r#"{"ssl":1}"#, SslKey::Unrecognised),
            (r#"{"ssl":null}"#, SslKey::Unrecognised),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).unwrap().ssl(), want, "{src}");
        }
    }

    #[test]
    fn dbname_absent_null_and_set_are_distinct() {
        assert_eq!(parse("{}").unwrap().dbname(), DbName::Absent);
        assert_eq!(parse(r#"{"dbname":null}"#).unwrap().dbname(), DbName::Null);
        assert_eq!(
            parse(r#"{"dbname":"x"}"#).unwrap().dbname(),
            DbName::Name("x")
        );
    }

    #[test]
    fn errors_name_keys_never_values() {
        let e = parse(r#"{"password": 123456789}"#).err().unwrap();
        assert!(!e.to_string().contains("123456789"));
        let e = parse(r#"{"password":"hunter2", "port": "hunter2"}"#)
            .err()
            .unwrap();
        assert!(matches!(e, SecretError::WrongType { key: "port", .. }));
        assert!(!e.to_string().contains("hunter2"));
        let e = parse(r#"{"password":"hunter2", oops}"#).err().unwrap();
        assert!(matches!(e, SecretError::NotJson { .. }));
        assert!(!e.to_string().contains("hunter2"));
        assert_eq!(parse("[]").err(), Some(SecretError::NotAnObject));
        assert!(parse(r#"{"port": 70000}"#).is_err());
        assert!(parse(r#"{"host": 1}"#).is_err());
    }

    #[test]
    fn require_checks_engine_then_keys() {
        let s = parse(r#"{"engine":"mysql","host":"h","username":"u","password":"p"}"#).unwrap();
        assert!(matches!(
            s.require(&["postgres", "aurora-postgresql"], true),
            Err(SecretError::WrongEngine {
                expected: "postgres",
                ..
            })
        ));
        let s = parse(r#"{"engine":"postgres","host":"h","password":"p"}"#).unwrap();
        assert_eq!(
            s.require(&["postgres"], true),
            Err(SecretError::MissingKey("username"))
        );
        let s = parse(r#"{"host":"h","username":"u","password":"p"}"#).unwrap();
        assert_eq!(
            s.require(&["postgres"], true),
            Err(SecretError::MissingKey("engine"))
        );
        assert_eq!(s.require(&["postgres"], false), Ok(()));
    }

    #[test]
    fn debug_never_shows_the_password_or_unknown_values() {
        let s = parse(r#"{"username":"u","password":"hunter2","api_key":"sekrit"}"#).unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && !d.contains("sekrit"), "{d}");
        assert!(d.contains("api_key"));
    }

    #[test]
    fn ssl_is_copied_or_removed() {
        let prev = parse(r#"{"username":"u","password":"p"}"#).unwrap();
        let cur = parse(r#"{"ssl":false}"#).unwrap();
        assert_eq!(prev.with_ssl_of(&cur).ssl(), SslKey::Explicit(false));
        let prev = parse(r#"{"ssl":true}"#).unwrap();
        assert_eq!(
            prev.with_ssl_of(&parse("{}").unwrap()).ssl(),
            SslKey::Absent
        );
    }
}
