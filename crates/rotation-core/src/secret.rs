//! The database secret JSON that AWS's rotation functions use.
//!
//! `{"engine", "host", "port", "username", "password", "dbname", "masterarn", "ssl", ...}`.
//!
//! A secret is kept as JSON text, one entry per top-level key, and written back from that text:
//! every value, known key or not, comes back exactly as it was written (numbers of any size or
//! precision, string escapes, nested objects and arrays, even whitespace inside a value). Only
//! the whitespace between top-level tokens is dropped, and key order is kept, `password`
//! included. The known keys alone are decoded, and their types checked, when the secret is
//! parsed; a value replaced through a `with_*` method is written as serde_json renders it.
//!
//! Duplicate top-level keys are rejected ([`SecretError::DuplicateKey`]): which `username` or
//! `password` was meant would be a guess. The values of unknown keys are checked against the JSON
//! grammar but never decoded, so duplicate keys nested inside them, like lone surrogate escapes
//! (`"\ud800"`), are accepted and kept as written: the rotation never reads those values, and
//! rejecting or rewriting them would change, or refuse, a secret that belongs to someone else.
//!
//! The password lives in a [`SecretString`] from the moment it is read, and so does its JSON text.
//! [`DatabaseSecret`]'s `Debug` shows key names but no values, and errors never echo a value.

use std::collections::HashSet;
use std::fmt;

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserialize, IgnoredAny, MapAccess, Visitor};
use serde::ser::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The key naming the server to connect to and verify a certificate against, when `host` is an
/// alias (a CNAME) of the endpoint the certificate names.
pub const TLS_SERVER_NAME_KEY: &str = "tls_server_name";

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
    /// A top-level key appears more than once (the key, decoded; never a value).
    #[error("secret key `{0}` appears more than once")]
    DuplicateKey(String),
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
    /// Another secret (named) is for the same database user on the same server: rotating
    /// both would leave one of them with a password the database no longer has.
    #[error(
        "secret {0} names the same database user on the same server; two secrets of one user lock each other's clients out: keep one"
    )]
    Shared(String),
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
    /// Every top-level key, `password` included, in original order.
    entries: Vec<Entry>,
}

/// One top-level key and its value.
#[derive(Clone)]
struct Entry {
    /// The key's JSON text, quotes and escapes as written.
    raw_key: Box<RawValue>,
    /// The key, decoded.
    key: String,
    value: Slot,
}

/// A top-level value.
#[derive(Clone)]
enum Slot {
    /// The `password` key: its JSON text and its string (`None` for null), both kept secret.
    Password {
        raw: SecretString,
        value: Option<SecretString>,
    },
    /// Any other key: its JSON text and, for a known key, the typed value (see [`typed`]).
    Plain {
        raw: Box<RawValue>,
        typed: Option<Value>,
    },
}

impl Slot {
    fn text(&self) -> &str {
        match self {
            Slot::Password { raw, .. } => raw.expose_secret(),
            Slot::Plain { raw, .. } => raw.get(),
        }
    }
}

const PASSWORD: &str = "password";

/// The keys, besides `password`, whose values are decoded and type-checked.
const KNOWN_KEYS: [&str; 7] = [
    "engine",
    "host",
    "username",
    "masterarn",
    "dbname",
    "port",
    "ssl",
];

/// Whether a key's value is decoded when the secret is parsed.
fn is_decoded(key: &str) -> bool {
    key == PASSWORD || KNOWN_KEYS.contains(&key)
}

impl DatabaseSecret {
    /// Parses a secret value. Types of known keys are checked; required keys are checked later
    /// by [`DatabaseSecret::require`], because which keys are required depends on its use.
    ///
    /// Errors, in this order: [`SecretError::NotJson`] (with the position only) or
    /// [`SecretError::NotAnObject`]; [`SecretError::DuplicateKey`] for a repeated top-level key
    /// (compared decoded, so `"a"` and `"\u0061"` are the same key); [`SecretError::WrongType`]
    /// for the first known key, in document order, whose value has the wrong type. A string that
    /// has to be decoded (any key, and the values of known keys) and holds a lone surrogate
    /// escape is `NotJson`.
    pub fn parse(value: &SecretString) -> Result<Self, SecretError> {
        let text = value.expose_secret();
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            // Only to tell a JSON value that is not an object from text that is not JSON.
            let _: &RawValue = serde_json::from_str(text).map_err(not_json)?;
            return Err(SecretError::NotAnObject);
        }
        let collected: Collected<'_> = serde_json::from_str(text).map_err(not_json)?;
        if let Some(key) = collected.duplicate {
            return Err(SecretError::DuplicateKey(key));
        }
        let entries = collected
            .entries
            .into_iter()
            .map(|p| {
                Ok(Entry {
                    value: slot(&p.key, p.raw, p.scalar)?,
                    raw_key: p.raw_key.to_owned(),
                    key: p.key,
                })
            })
            .collect::<Result<_, SecretError>>()?;
        Ok(DatabaseSecret { entries })
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
        if self.password().is_none() {
            return Err(SecretError::MissingKey("password"));
        }
        Ok(())
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// `engine`.
    pub fn engine(&self) -> Option<&str> {
        self.str_field("engine")
    }
    /// `host`.
    pub fn host(&self) -> Option<&str> {
        self.str_field("host")
    }
    /// The first connection key in which `other` names another server than this secret:
    /// `host`, `port` (a missing port is `default_port`; a number or a string holding it are
    /// the same) or `tls_server_name` (the name engines connect to and verify when `host` is an
    /// alias), as written; `None` when they name the same server.
    pub fn server_difference(
        &self,
        other: &DatabaseSecret,
        default_port: Option<u16>,
    ) -> Option<&'static str> {
        let name = |s: &DatabaseSecret| s.get_raw(TLS_SERVER_NAME_KEY).map(|r| r.get().to_string());
        if self.host() != other.host() {
            Some("host")
        } else if self.port().or(default_port) != other.port().or(default_port) {
            Some("port")
        } else if name(self) != name(other) {
            Some(TLS_SERVER_NAME_KEY)
        } else {
            None
        }
    }
    /// Whether `other` names the same server (see [`DatabaseSecret::server_difference`]).
    pub fn same_server(&self, other: &DatabaseSecret, default_port: Option<u16>) -> bool {
        self.server_difference(other, default_port).is_none()
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
        self.get("port").and_then(port_number)
    }
    /// `password` (`None` when absent or null).
    pub fn password(&self) -> Option<&SecretString> {
        match &self.entry(PASSWORD)?.value {
            Slot::Password { value, .. } => value.as_ref(),
            Slot::Plain { .. } => None,
        }
    }
    /// `dbname`.
    pub fn dbname(&self) -> DbName<'_> {
        match (self.entry("dbname"), self.str_field("dbname")) {
            (None, _) => DbName::Absent,
            (Some(_), Some(name)) => DbName::Name(name),
            (Some(_), None) => DbName::Null,
        }
    }
    /// `ssl`, classified.
    pub fn ssl(&self) -> SslKey {
        if self.entry("ssl").is_none() {
            return SslKey::Absent;
        }
        match self.get("ssl") {
            Some(Value::Bool(b)) => SslKey::Explicit(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => SslKey::Explicit(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => SslKey::Explicit(false),
            _ => SslKey::Unrecognised,
        }
    }
    /// The typed value of a known key: `engine`, `host`, `username`, `masterarn` and `dbname`
    /// (a string or null), `port` (a number or a string, as written) and `ssl` when it is a
    /// bool, a string or null.
    ///
    /// `None` for `password` (see [`password`](Self::password)), for an `ssl` of another type,
    /// and for every other key: their values are kept only as JSON text, which is what lets them
    /// round-trip exactly. [`get_raw`](Self::get_raw) returns that text.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.entry(key)?.value {
            Slot::Plain { typed, .. } => typed.as_ref(),
            Slot::Password { .. } => None,
        }
    }
    /// Any key's JSON text, as written (`password` is never returned).
    pub fn get_raw(&self, key: &str) -> Option<&RawValue> {
        match &self.entry(key)?.value {
            Slot::Plain { raw, .. } => Some(raw),
            Slot::Password { .. } => None,
        }
    }
    /// The keys present, in order, including `password` when the JSON has it (even as null).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// Sets a key's value where the key stands, or appends the key.
    fn set(&mut self, key: &str, value: Slot) {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value,
            None => self.entries.push(Entry {
                raw_key: json_text(key),
                key: key.to_owned(),
                value,
            }),
        }
    }

    /// A copy with another username.
    pub fn with_username(&self, username: &str) -> Self {
        let mut s = self.clone();
        s.set(
            "username",
            Slot::Plain {
                raw: json_text(username),
                typed: Some(Value::String(username.into())),
            },
        );
        s
    }
    /// A copy with another password, written where the old one stood (or last).
    pub fn with_password(&self, password: SecretString) -> Self {
        let mut text = serde_json::to_string(password.expose_secret())
            .expect("a string always serialises to JSON");
        let raw = SecretString::from(text.as_str());
        text.zeroize();
        let mut s = self.clone();
        s.set(
            PASSWORD,
            Slot::Password {
                raw,
                value: Some(password),
            },
        );
        s
    }
    /// A copy whose `ssl` key is taken from `other` (or removed when `other` has none). AWS does
    /// this before logging in with `AWSPREVIOUS`, whose version may predate the `ssl` key.
    pub fn with_ssl_of(&self, other: &DatabaseSecret) -> Self {
        let mut s = self.clone();
        match other.entry("ssl") {
            Some(e) => s.set("ssl", e.value.clone()),
            None => s.entries.retain(|e| e.key != "ssl"),
        }
        s
    }
    /// A copy with a key set (used to fill in connection details of managed secrets). A known
    /// key's value is type-checked as [`parse`](Self::parse) does; `password` takes a string or
    /// null.
    pub fn with_field(&self, key: &str, value: Value) -> Result<Self, SecretError> {
        let raw = json_text(&value);
        let scalar = is_decoded(key).then(|| Scalar::of_value(value, &raw));
        let mut s = self.clone();
        s.set(key, slot(key, &raw, scalar)?);
        Ok(s)
    }

    /// Serialises back to JSON: every key in order, each value's text as parsed (or as set).
    pub fn to_json(&self) -> SecretString {
        // Sized exactly, so that the buffer holding the password never reallocates and leaves a
        // copy behind.
        let len = 2
            + self.entries.len().saturating_sub(1)
            + self
                .entries
                .iter()
                .map(|e| e.raw_key.get().len() + 1 + e.value.text().len())
                .sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push('{');
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(e.raw_key.get());
            out.push(':');
            out.push_str(e.value.text());
        }
        out.push('}');
        debug_assert_eq!(out.len(), len);
        SecretString::from(out)
    }
}

fn not_json(e: serde_json::Error) -> SecretError {
    SecretError::NotJson {
        line: e.line(),
        column: e.column(),
    }
}

/// The JSON text of a value built in memory. Serialising a `str` or a [`Value`] cannot fail:
/// their map keys are strings and their numbers finite.
fn json_text<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("strings and JSON values always serialise")
}

/// A decoded key's value, as far as the type rules look at it.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Str(String),
    /// A number, as written.
    Number(&'a str),
    /// An object or an array.
    Composite,
}

impl<'a> Scalar<'a> {
    /// Reads JSON text that the parser has already found grammatical, so the first byte tells
    /// the type, and the one thing that can still fail is decoding a string's escapes (a lone
    /// surrogate).
    fn read(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        let text = raw.get();
        Ok(match text.as_bytes().first() {
            Some(b'n') => Scalar::Null,
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'"') => Scalar::Str(serde_json::from_str(text)?),
            Some(b'{' | b'[') => Scalar::Composite,
            _ => Scalar::Number(text),
        })
    }

    /// The same for a value built in memory, whose JSON text is `raw`.
    fn of_value(value: Value, raw: &'a RawValue) -> Self {
        match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(b),
            Value::String(s) => Scalar::Str(s),
            Value::Number(_) => Scalar::Number(raw.get()),
            Value::Array(_) | Value::Object(_) => Scalar::Composite,
        }
    }
}

/// Builds a key's slot from its JSON text; `scalar` is that text read, for the decoded keys
/// ([`is_decoded`]), and `None` for every other key.
fn slot(key: &str, raw: &RawValue, scalar: Option<Scalar<'_>>) -> Result<Slot, SecretError> {
    if key == PASSWORD {
        let value = match scalar {
            Some(Scalar::Str(s)) => Some(SecretString::from(s)),
            Some(Scalar::Null) => None,
            _ => {
                return Err(SecretError::WrongType {
                    key: PASSWORD,
                    expected: "a string",
                });
            }
        };
        return Ok(Slot::Password {
            raw: SecretString::from(raw.get()),
            value,
        });
    }
    let typed = match scalar {
        Some(scalar) => typed(key, scalar)?,
        None => None,
    };
    Ok(Slot::Plain {
        raw: raw.to_owned(),
        typed,
    })
}

/// Checks a known key's value (`password` aside) and returns what [`DatabaseSecret::get`] gives
/// for it: `None` for unknown keys and for an `ssl` that is not a bool, a string or null.
fn typed(key: &str, value: Scalar<'_>) -> Result<Option<Value>, SecretError> {
    const BAD_PORT: SecretError = SecretError::WrongType {
        key: "port",
        expected: "a port number (1-65535) or a string holding one",
    };
    let Some(&key) = KNOWN_KEYS.iter().find(|k| **k == key) else {
        return Ok(None);
    };
    Ok(match key {
        "ssl" => match value {
            Scalar::Null => Some(Value::Null),
            Scalar::Bool(b) => Some(Value::Bool(b)),
            Scalar::Str(s) => Some(Value::String(s)),
            Scalar::Number(_) | Scalar::Composite => None,
        },
        "port" => {
            let port = match value {
                Scalar::Null => return Ok(Some(Value::Null)),
                Scalar::Number(n) => n.parse::<u16>().map(Value::from).map_err(|_| BAD_PORT)?,
                Scalar::Str(s) => Value::String(s),
                Scalar::Bool(_) | Scalar::Composite => return Err(BAD_PORT),
            };
            port_number(&port).ok_or(BAD_PORT)?;
            Some(port)
        }
        _ => match value {
            Scalar::Null => Some(Value::Null),
            Scalar::Str(s) => Some(Value::String(s)),
            Scalar::Bool(_) | Scalar::Number(_) | Scalar::Composite => {
                return Err(SecretError::WrongType {
                    key,
                    expected: if key == "dbname" {
                        "a string or null"
                    } else {
                        "a string"
                    },
                });
            }
        },
    })
}

/// A port from a checked `port` value: a number, or a string holding one; never 0.
fn port_number(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.trim().parse::<u16>().ok(),
        _ => None,
    }
    .filter(|p| *p != 0)
}

/// A top-level entry as read from the secret's text, before its type is checked.
struct Pending<'de> {
    raw_key: &'de RawValue,
    key: String,
    raw: &'de RawValue,
    scalar: Option<Scalar<'de>>,
}

/// The secret's top-level entries, read by [`CollectVisitor`].
struct Collected<'de> {
    entries: Vec<Pending<'de>>,
    /// The first key seen twice.
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for Collected<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CollectVisitor)
    }
}

/// Reads a JSON object's entries as text borrowed from the input, decoding the keys (to find
/// duplicates and known keys) and the values of the decoded keys. A duplicate is recorded, not
/// an error here, so the rest of the object is still read and a later syntax error still wins.
/// A string that fails to decode is an error here, where the parser adds its position.
struct CollectVisitor;

impl<'de> Visitor<'de> for CollectVisitor {
    type Value = Collected<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        let mut duplicate = None;
        while let Some(raw_key) = map.next_key::<&'de RawValue>()? {
            let key: String = serde_json::from_str(raw_key.get()).map_err(de::Error::custom)?;
            if !seen.insert(key.clone()) {
                duplicate.get_or_insert(key);
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let raw = map.next_value::<&'de RawValue>()?;
            let scalar = if is_decoded(&key) {
                Some(Scalar::read(raw).map_err(de::Error::custom)?)
            } else {
                None
            };
            entries.push(Pending {
                raw_key,
                key,
                raw,
                scalar,
            });
        }
        Ok(Collected { entries, duplicate })
    }
}

impl fmt::Debug for DatabaseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only non-secret known fields; other keys by name only, since users keep all sorts of
        // things in secrets.
        f.debug_struct("DatabaseSecret")
            .field("engine", &self.engine())
            .field("host", &self.host())
            .field("port", &self.port())
            .field("username", &self.username())
            .field("dbname", &self.dbname())
            .field("password", &self.password().map(|_| "[redacted]"))
            .field("keys", &self.keys().collect::<Vec<_>>())
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
    fn server_identity_reads_ports_alike_and_names_the_difference() {
        let a = parse(r#"{"host":"h","port":"5432"}"#).unwrap();
        let b = parse(r#"{"host":"h","port":5432}"#).unwrap();
        let none = parse(r#"{"host":"h"}"#).unwrap();
        assert_eq!(a.server_difference(&b, None), None);
        assert_eq!(a.server_difference(&none, Some(5432)), None);
        assert_eq!(a.server_difference(&none, None), Some("port"));
        let other_port = parse(r#"{"host":"h","port":5433}"#).unwrap();
        assert_eq!(a.server_difference(&other_port, Some(5432)), Some("port"));
        let other_host = parse(r#"{"host":"g","port":5432}"#).unwrap();
        assert_eq!(a.server_difference(&other_host, Some(5432)), Some("host"));
        let named = parse(r#"{"host":"h","port":5432,"tls_server_name":"db.example"}"#).unwrap();
        assert_eq!(
            a.server_difference(&named, Some(5432)),
            Some(TLS_SERVER_NAME_KEY)
        );
        assert!(named.same_server(&named, None));
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

    #[test]
    fn big_integers_and_precise_numbers_come_back_as_written() {
        let src = r#"{"username":"u","extra":12345678901234567890123,"tiny":0.1000000000000000000001,"huge":1e400,"neg":-0.0,"exp":-12.50E-0400,"password":"p","n":[18446744073709551616,1.0]}"#;
        let s = parse(src).unwrap();
        assert_eq!(s.to_json().expose_secret(), src);
        assert_eq!(
            s.get_raw("extra").map(RawValue::get),
            Some("12345678901234567890123")
        );
        let changed = s.with_password(SecretString::from("q"));
        assert_eq!(
            changed.to_json().expose_secret(),
            src.replace(r#""password":"p""#, r#""password":"q""#)
        );
    }

    #[test]
    fn nested_unknown_values_and_escapes_come_back_as_written() {
        // Nested duplicates and lone surrogates are kept: unknown values are never decoded.
        let src = r#"{"meta":{"a":[1,2.50,{"b":123456789012345678901234567890}],"s":"\u00e9\/\"x\ud800","dup":1,"dup":2},"host":"db\/1","username":"\u0061pp","\u0078":[]}"#;
        let s = parse(src).unwrap();
        assert_eq!(s.to_json().expose_secret(), src);
        assert_eq!(s.host(), Some("db/1"));
        assert_eq!(s.username(), Some("app"));
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["meta", "host", "username", "x"]
        );
        // Whitespace between top-level tokens goes; whitespace inside a value stays.
        let s = parse(" {\n \"a\" : [1, 2] ,\t\"b\":1e2 } ").unwrap();
        assert_eq!(s.to_json().expose_secret(), r#"{"a":[1, 2],"b":1e2}"#);
        assert_eq!(parse("{}").unwrap().to_json().expose_secret(), "{}");
    }

    #[test]
    fn duplicate_keys_are_rejected_naming_the_key() {
        assert_eq!(
            parse(r#"{"username":"a","username":"b"}"#).err(),
            Some(SecretError::DuplicateKey("username".into()))
        );
        let e = parse(r#"{"password":"hunter2","host":"h","password":"hunter3"}"#)
            .err()
            .unwrap();
        assert_eq!(e, SecretError::DuplicateKey("password".into()));
        let msg = e.to_string();
        assert!(
            msg.contains("`password`") && !msg.contains("hunter"),
            "{msg}"
        );
        // Keys are compared decoded, and duplicates are found before types are checked.
        assert_eq!(
            parse(r#"{"x":1,"host":2,"\u0078":{}}"#).err(),
            Some(SecretError::DuplicateKey("x".into()))
        );
        // A syntax error after the duplicate still wins.
        assert!(matches!(
            parse(r#"{"x":1,"x":2,}"#),
            Err(SecretError::NotJson { .. })
        ));
    }

    #[test]
    fn decoded_strings_with_lone_surrogates_are_not_json() {
        for src in [
            r#"{"host":"\ud800"}"#,
            r#"{"password":"\udc00"}"#,
            r#"{"k\ud800":1}"#,
        ] {
            assert!(
                matches!(parse(src), Err(SecretError::NotJson { line: 1, .. })),
                "{src}"
            );
        }
        assert_eq!(
            parse("[1, oops]").err(),
            Some(SecretError::NotJson { line: 1, column: 5 })
        );
        assert_eq!(parse(r#" "x" "#).err(), Some(SecretError::NotAnObject));
    }

    #[test]
    fn get_returns_typed_known_keys_and_get_raw_any_but_the_password() {
        let s = parse(r#"{"port":"5432","dbname":null,"ssl":{"x":1},"password":"p","extra":1.50}"#)
            .unwrap();
        assert_eq!(s.get("port"), Some(&Value::String("5432".into())));
        assert_eq!(s.get("dbname"), Some(&Value::Null));
        assert_eq!(s.get("ssl"), None);
        assert_eq!(s.ssl(), SslKey::Unrecognised);
        assert_eq!(s.get("extra"), None);
        assert_eq!(s.get_raw("extra").map(RawValue::get), Some("1.50"));
        assert_eq!(s.get_raw("ssl").map(RawValue::get), Some(r#"{"x":1}"#));
        assert_eq!(s.get("password"), None);
        assert!(s.get_raw("password").is_none());
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["port", "dbname", "ssl", "password", "extra"]
        );
    }

    #[test]
    fn with_field_checks_known_types_and_keeps_positions() {
        let s = parse(r#"{"host":"old","password":"p","big":1e400}"#).unwrap();
        let s = s
            .with_field("host", Value::String("new".into()))
            .and_then(|s| s.with_field("port", Value::from(5433)))
            .and_then(|s| s.with_field("dbname", Value::Null))
            .unwrap();
        assert_eq!(
            s.to_json().expose_secret(),
            r#"{"host":"new","password":"p","big":1e400,"port":5433,"dbname":null}"#
        );
        assert_eq!(s.port(), Some(5433));
        assert!(matches!(
            s.with_field("host", Value::from(1)),
            Err(SecretError::WrongType { key: "host", .. })
        ));
        assert!(s.with_field("port", Value::from(0)).is_err());
        let p = s.with_field("password", Value::String("q".into())).unwrap();
        assert_eq!(p.password().map(ExposeSecret::expose_secret), Some("q"));
        assert_eq!(p.keys().filter(|k| *k == "password").count(), 1);
        assert!(s.with_field("password", Value::from(1)).is_err());
        let unset = s.with_field("password", Value::Null).unwrap();
        assert!(unset.password().is_none());
    }

    #[test]
    fn with_password_appends_when_absent() {
        let s = parse(r#"{"username":"u","n":1E+2}"#).unwrap();
        assert_eq!(
            s.with_password(SecretString::from("a\"b\u{1}"))
                .to_json()
                .expose_secret(),
            r#"{"username":"u","n":1E+2,"password":"a\"b\u0001"}"#
        );
        let null = parse(r#"{"password":null,"x":1}"#).unwrap();
        assert!(null.password().is_none());
        assert_eq!(null.to_json().expose_secret(), r#"{"password":null,"x":1}"#);
    }

    /// Property tests over generated secrets, rendered compactly.
    mod props {
        use std::collections::HashSet;

        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::{Index, select, subsequence};

        use super::*;

        /// One top-level entry: the key decoded, the key's JSON text, the value's JSON text.
        type Item = (String, String, String);

        /// Pieces of a JSON string: its decoded text and its JSON text. Plain characters, the
        /// short escapes, and `\u` escapes of any character (surrogate pairs beyond the BMP).
        fn piece() -> impl Strategy<Value = (String, String)> {
            prop_oneof![
                any::<char>()
                    .prop_filter("needs an escape", |c| !matches!(
                        c,
                        '"' | '\\' | '\0'..='\x1f'
                    ))
                    .prop_map(|c| (c.to_string(), c.to_string())),
                select(vec![
                    ("\"", "\\\""),
                    ("\\", "\\\\"),
                    ("/", "\\/"),
                    ("\u{8}", "\\b"),
                    ("\u{c}", "\\f"),
                    ("\n", "\\n"),
                    ("\r", "\\r"),
                    ("\t", "\\t"),
                ])
                .prop_map(|(d, t)| (d.to_owned(), t.to_owned())),
                (any::<char>(), any::<bool>())
                    .prop_map(|(c, upper)| (c.to_string(), u_escaped(c, upper))),
            ]
        }

        fn u_escaped(c: char, upper: bool) -> String {
            let mut units = [0u16; 2];
            c.encode_utf16(&mut units)
                .iter()
                .map(|u| {
                    if upper {
                        format!("\\u{u:04X}")
                    } else {
                        format!("\\u{u:04x}")
                    }
                })
                .collect()
        }

        fn json_string() -> impl Strategy<Value = (String, String)> {
            vec(piece(), 0..6).prop_map(|pieces| {
                let (decoded, text): (String, String) = pieces.into_iter().unzip();
                (decoded, format!("\"{text}\""))
            })
        }

        /// Integers of any size, decimals and exponents, as text.
        fn json_number() -> impl Strategy<Value = String> {
            "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?"
        }

        /// Any JSON value, compact; nested objects may repeat keys.
        fn json_value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_owned()),
                Just("true".to_owned()),
                Just("false".to_owned()),
                json_number(),
                json_string().prop_map(|(_, text)| text),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
                    vec((json_string(), inner), 0..4).prop_map(|members| {
                        let members: Vec<_> = members
                            .into_iter()
                            .map(|((_, k), v)| format!("{k}:{v}"))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }),
                ]
            })
        }

        /// Valid values of every known key.
        const KNOWN: [(&str, &[&str]); 8] = [
            ("engine", &[r#""postgres""#, r#""aurora-postgresql""#]),
            ("host", &[r#""db.example.com""#, r#""h\/\u0031""#]),
            ("username", &[r#""app""#, r#""\u00e4pp_\"user\"""#, "null"]),
            ("password", &[r#""p\u00e4ss\"w\/rd\n""#, r#""""#, "null"]),
            ("dbname", &["null", r#""d\u0062""#]),
            ("port", &["5432", r#""5432""#, r#"" 65535 ""#, "null"]),
            (
                "ssl",
                &["true", r#""FALSE""#, "1e400", r#"{"x":[],"x":1}"#, "null"],
            ),
            (
                "masterarn",
                &[r#""arn:aws:secretsmanager:eu-west-1:1:secret:m""#, r#""""#],
            ),
        ];

        /// A secret: unknown keys (unique once decoded) and some known keys, in any order.
        fn secret() -> impl Strategy<Value = Vec<Item>> {
            let unknown = vec((json_string(), json_value()), 0..8).prop_map(|entries| {
                let mut seen = HashSet::new();
                entries
                    .into_iter()
                    .filter(|((key, _), _)| !is_decoded(key) && seen.insert(key.clone()))
                    .map(|((key, key_text), value)| (key, key_text, value))
                    .collect::<Vec<_>>()
            });
            let known = (
                subsequence(KNOWN.to_vec(), 0..=KNOWN.len()),
                vec(any::<Index>(), KNOWN.len()),
            )
                .prop_map(|(picked, choices)| {
                    picked
                        .into_iter()
                        .zip(choices)
                        .map(|((key, values), choice)| {
                            let value = values[choice.index(values.len())];
                            (key.to_owned(), format!("\"{key}\""), value.to_owned())
                        })
                        .collect::<Vec<_>>()
                });
            (unknown, known).prop_flat_map(|(mut unknown, known)| {
                unknown.extend(known);
                Just(unknown).prop_shuffle()
            })
        }

        fn render(items: &[Item]) -> String {
            let members: Vec<_> = items.iter().map(|(_, k, v)| format!("{k}:{v}")).collect();
            format!("{{{}}}", members.join(","))
        }

        proptest! {
            #[test]
            fn round_trips_exactly_and_with_password_changes_only_the_password(
                items in secret(),
                new_password in any::<String>(),
            ) {
                let text = render(&items);
                let s = parse(&text).unwrap();
                let json = s.to_json();
                prop_assert_eq!(json.expose_secret(), text.as_str());
                prop_assert!(s.keys().eq(items.iter().map(|(k, _, _)| k.as_str())));

                let changed = s.with_password(SecretString::from(new_password.clone()));
                let mut expected = items.clone();
                let new_text = serde_json::to_string(&new_password).unwrap();
                match expected.iter_mut().find(|(k, _, _)| k == "password") {
                    Some(item) => item.2 = new_text,
                    None => expected.push(("password".into(), "\"password\"".into(), new_text)),
                }
                let out = changed.to_json();
                prop_assert_eq!(out.expose_secret(), render(&expected));
                let reparsed = parse(out.expose_secret()).unwrap();
                prop_assert_eq!(
                    reparsed.password().map(ExposeSecret::expose_secret),
                    Some(new_password.as_str())
                );
            }

            #[test]
            fn a_repeated_key_is_named_however_it_is_escaped(
                items in secret().prop_filter("needs a key", |items| !items.is_empty()),
                pick in any::<Index>(),
                at in any::<Index>(),
                upper in any::<bool>(),
                value in json_value(),
            ) {
                let mut items = items;
                let original = pick.index(items.len());
                let key = items[original].0.clone();
                let escaped = key.chars().map(|c| u_escaped(c, upper)).collect::<String>();
                let position = original + 1 + at.index(items.len() - original);
                items.insert(position, (key.clone(), format!("\"{escaped}\""), value));
                let err = parse(&render(&items)).err();
                prop_assert_eq!(err, Some(SecretError::DuplicateKey(key)));
            }
        }
    }
}
