//! Password policy: the `GetRandomPassword` parameters, read from the same environment variables
//! as AWS's functions (spec §2.5), with per-engine defaults and limits.

use std::fmt;

/// Per-engine defaults and limits for generated passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordDefaults {
    /// Engine label used in messages.
    pub engine: &'static str,
    /// Default `ExcludeCharacters`.
    pub exclude_characters: &'static str,
    /// Default length.
    pub length: u32,
    /// Shortest length the engine accepts (and GetRandomPassword's minimum of 4).
    pub min_length: u32,
    /// Longest length the engine accepts.
    pub max_length: u32,
    /// Whether `EXCLUDE_NUMBERS`/`EXCLUDE_UPPERCASE`/`EXCLUDE_LOWERCASE` are honoured. Redshift
    /// requires all three classes, so AWS's Redshift functions never send them (checklist 15).
    pub class_switches: bool,
}

impl PasswordDefaults {
    /// RDS / Aurora PostgreSQL: colon excluded too (connection strings).
    pub const POSTGRES: PasswordDefaults = PasswordDefaults {
        engine: "postgres",
        exclude_characters: ":/@\"'\\",
        length: 32,
        min_length: 4,
        max_length: 4096,
        class_switches: true,
    };
    /// Amazon Redshift: 8 to 64 characters, upper, lower and digit required.
    pub const REDSHIFT: PasswordDefaults = PasswordDefaults {
        engine: "redshift",
        exclude_characters: "/@\"'\\:",
        length: 32,
        min_length: 8,
        max_length: 64,
        class_switches: false,
    };
    /// Amazon DocumentDB (MongoDB wire protocol).
    pub const DOCUMENTDB: PasswordDefaults = PasswordDefaults {
        engine: "mongo",
        exclude_characters: "/@\"'\\",
        length: 32,
        min_length: 4,
        max_length: 4096,
        class_switches: true,
    };
}

/// The parameters of one `GetRandomPassword` call.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// `PasswordLength`.
    pub length: u32,
    /// `ExcludeCharacters` (used verbatim).
    pub exclude_characters: String,
    /// `ExcludeNumbers`; `None` means "not sent".
    pub exclude_numbers: Option<bool>,
    /// `ExcludePunctuation`.
    pub exclude_punctuation: bool,
    /// `ExcludeUppercase`; `None` means "not sent".
    pub exclude_uppercase: Option<bool>,
    /// `ExcludeLowercase`; `None` means "not sent".
    pub exclude_lowercase: Option<bool>,
    /// `RequireEachIncludedType`.
    pub require_each_included_type: bool,
}

impl fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordPolicy")
            .field("length", &self.length)
            .field("exclude_characters", &self.exclude_characters)
            .field("exclude_numbers", &self.exclude_numbers)
            .field("exclude_punctuation", &self.exclude_punctuation)
            .field("exclude_uppercase", &self.exclude_uppercase)
            .field("exclude_lowercase", &self.exclude_lowercase)
            .field(
                "require_each_included_type",
                &self.require_each_included_type,
            )
            .finish()
    }
}

/// A policy that cannot be used. Raised when the configuration is read, before any rotation work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `PASSWORD_LENGTH` is not an integer.
    #[error("PASSWORD_LENGTH must be an integer, got {0:?}")]
    NotANumber(String),
    /// `PASSWORD_LENGTH` is outside the engine's limits.
    #[error("PASSWORD_LENGTH {value} is outside the {engine} limits {min}..={max}")]
    OutOfRange {
        /// The configured length.
        value: i64,
        /// Engine label.
        engine: &'static str,
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// Every character class is excluded.
    #[error("the password policy excludes every character")]
    NothingLeft,
}

/// Environment variable names, as AWS's functions read them.
pub mod env {
    /// Characters never to use.
    pub const EXCLUDE_CHARACTERS: &str = "EXCLUDE_CHARACTERS";
    /// Length.
    pub const PASSWORD_LENGTH: &str = "PASSWORD_LENGTH";
    /// No digits.
    pub const EXCLUDE_NUMBERS: &str = "EXCLUDE_NUMBERS";
    /// No punctuation.
    pub const EXCLUDE_PUNCTUATION: &str = "EXCLUDE_PUNCTUATION";
    /// No upper case.
    pub const EXCLUDE_UPPERCASE: &str = "EXCLUDE_UPPERCASE";
    /// No lower case.
    pub const EXCLUDE_LOWERCASE: &str = "EXCLUDE_LOWERCASE";
    /// At least one of each included class.
    pub const REQUIRE_EACH_INCLUDED_TYPE: &str = "REQUIRE_EACH_INCLUDED_TYPE";
}

/// AWS's `get_environment_bool`: true iff the lower-cased value is `true`, `1`, `y` or `yes`.
pub fn parse_env_bool(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "1" | "y" | "yes"
    )
}

/// Punctuation as GetRandomPassword defines it.
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

impl PasswordPolicy {
    /// The engine's defaults with nothing overridden.
    pub fn defaults(d: &PasswordDefaults) -> Self {
        PasswordPolicy {
            length: d.length,
            exclude_characters: d.exclude_characters.to_string(),
            exclude_numbers: d.class_switches.then_some(false),
            exclude_punctuation: false,
            exclude_uppercase: d.class_switches.then_some(false),
            exclude_lowercase: d.class_switches.then_some(false),
            require_each_included_type: true,
        }
    }

    /// Reads the policy from the process environment.
    pub fn from_env(d: &PasswordDefaults) -> Result<Self, PolicyError> {
        Self::from_lookup(d, |k| std::env::var(k).ok())
    }

    /// Reads the policy through `lookup` (an environment, a config map, a test table).
    pub fn from_lookup(
        d: &PasswordDefaults,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PolicyError> {
        let mut p = Self::defaults(d);
        if let Some(v) = lookup(env::EXCLUDE_CHARACTERS) {
            p.exclude_characters = v;
        }
        if let Some(v) = lookup(env::PASSWORD_LENGTH) {
            // Python's int() accepts surrounding whitespace.
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| PolicyError::NotANumber(v.clone()))?;
            if n < i64::from(d.min_length) || n > i64::from(d.max_length) {
                return Err(PolicyError::OutOfRange {
                    value: n,
                    engine: d.engine,
                    min: d.min_length,
                    max: d.max_length,
                });
            }
            p.length = n as u32;
        }
        let flag = |key: &str, default: bool| lookup(key).map_or(default, |v| parse_env_bool(&v));
        p.exclude_punctuation = flag(env::EXCLUDE_PUNCTUATION, false);
        p.require_each_included_type = flag(env::REQUIRE_EACH_INCLUDED_TYPE, true);
        if d.class_switches {
            p.exclude_numbers = Some(flag(env::EXCLUDE_NUMBERS, false));
            p.exclude_uppercase = Some(flag(env::EXCLUDE_UPPERCASE, false));
            p.exclude_lowercase = Some(flag(env::EXCLUDE_LOWERCASE, false));
        }
        if p.character_classes().iter().all(|c| c.is_empty()) {
            return Err(PolicyError::NothingLeft);
        }
        Ok(p)
    }

    /// The included character classes (upper, lower, digits, punctuation) after exclusions; a
    /// class may be empty.
    pub fn character_classes(&self) -> [Vec<char>; 4] {
        let keep = |chars: &mut dyn Iterator<Item = char>, excluded: bool| -> Vec<char> {
            if excluded {
                return Vec::new();
            }
            chars
                .filter(|c| !self.exclude_characters.contains(*c))
                .collect()
        };
        [
            keep(&mut ('A'..='Z'), self.exclude_uppercase.unwrap_or(false)),
            keep(&mut ('a'..='z'), self.exclude_lowercase.unwrap_or(false)),
            keep(&mut ('0'..='9'), self.exclude_numbers.unwrap_or(false)),
            keep(&mut PUNCTUATION.chars(), self.exclude_punctuation),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_per_engine() {
        let pg = PasswordPolicy::from_lookup(&PasswordDefaults::POSTGRES, lookup(&[])).unwrap();
        assert_eq!(pg.length, 32);
        assert_eq!(pg.exclude_characters, ":/@\"'\\");
        assert_eq!(pg.exclude_numbers, Some(false));
        assert!(pg.require_each_included_type);
        let rs = PasswordPolicy::from_lookup(&PasswordDefaults::REDSHIFT, lookup(&[])).unwrap();
        assert_eq!(rs.exclude_characters, "/@\"'\\:");
        assert_eq!(rs.exclude_numbers, None);
        assert_eq!(rs.exclude_uppercase, None);
        assert_eq!(rs.exclude_lowercase, None);
    }

    #[test]
    fn booleans_are_true_only_for_aws_spellings() {
        for v in ["true", "TRUE", "1", "y", "Yes"] {
            assert!(parse_env_bool(v), "{v}");
        }
        for v in ["on", "TRUE ", "0", "", "no", "t"] {
            assert!(!parse_env_bool(v), "{v}");
        }
        let p = PasswordPolicy::from_lookup(
            &PasswordDefaults::POSTGRES,
            lookup(&[
                ("EXCLUDE_NUMBERS", "yes"),
                ("EXCLUDE_PUNCTUATION", "on"),
                ("REQUIRE_EACH_INCLUDED_TYPE", "false"),
                ("EXCLUDE_CHARACTERS", "abc"),
                ("PASSWORD_LENGTH", " 20 "),
            ]),
        )
        .unwrap();
        assert_eq!(p.exclude_numbers, Some(true));
        assert!(!p.exclude_punctuation);
        assert!(!p.require_each_included_type);
        assert_eq!(p.exclude_characters, "abc");
        assert_eq!(p.length, 20);
    }

    #[test]
    fn redshift_ignores_class_switches() {
        let p = PasswordPolicy::from_lookup(
            &PasswordDefaults::REDSHIFT,
            lookup(&[("EXCLUDE_NUMBERS", "true"), ("EXCLUDE_UPPERCASE", "true")]),
        )
        .unwrap();
        assert_eq!(p.exclude_numbers, None);
        assert_eq!(p.exclude_uppercase, None);
    }

    #[test]
    fn length_is_validated_against_engine_limits() {
        let bad = |v: &str, d: &PasswordDefaults| {
            PasswordPolicy::from_lookup(d, lookup(&[("PASSWORD_LENGTH", v)])).unwrap_err()
        };
        assert_eq!(
            bad("abc", &PasswordDefaults::POSTGRES),
            PolicyError::NotANumber("abc".into())
        );
        assert!(matches!(
            bad("65", &PasswordDefaults::REDSHIFT),
            PolicyError::OutOfRange { max: 64, .. }
        ));
        assert!(matches!(
            bad("3", &PasswordDefaults::POSTGRES),
            PolicyError::OutOfRange { .. }
        ));
    }

    #[test]
    fn excluding_everything_is_an_error() {
        let e = PasswordPolicy::from_lookup(
            &PasswordDefaults::POSTGRES,
            lookup(&[
                ("EXCLUDE_NUMBERS", "1"),
                ("EXCLUDE_PUNCTUATION", "1"),
                ("EXCLUDE_UPPERCASE", "1"),
                ("EXCLUDE_LOWERCASE", "1"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e, PolicyError::NothingLeft);
    }
}
