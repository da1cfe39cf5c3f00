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
    /// Whether `EXCLUDE_NUMBERS`/`EXCLUDE_UPPERCASE`/`EXCLUDE_LOWERCASE` are honoured. An engine
    /// that requires all three classes turns them off, as AWS's functions for it never send them (checklist 15).
    pub class_switches: bool,
    /// Characters the engine never accepts in a password, whatever `EXCLUDE_CHARACTERS` says:
    /// those a generator can produce are always added to `ExcludeCharacters` (space is never
    /// generated, since `IncludeSpace` is never sent), and [`PasswordDefaults::check`] rejects
    /// them all.
    pub forbidden: &'static str,
    /// Whether every password needs at least one upper-case letter, one lower-case letter and
    /// one digit. `REQUIRE_EACH_INCLUDED_TYPE` is then always sent as true.
    pub required_classes: bool,
    /// Whether the engine accepts only printable ASCII (33 to 126) in a password.
    pub printable_ascii: bool,
}

impl PasswordDefaults {
    /// What AWS's functions use unless an engine says otherwise: `ExcludeCharacters` of
    /// `/ @ " ' \`, 32 characters (4 to 4096), every class switch honoured, no character
    /// forbidden beyond those. An engine's defaults start from it
    /// (`PasswordDefaults { engine: "x", max_length: 64, ..PasswordDefaults::BASE }`).
    pub const BASE: PasswordDefaults = PasswordDefaults {
        engine: "any",
        exclude_characters: "/@\"'\\",
        length: 32,
        min_length: 4,
        max_length: 4096,
        class_switches: true,
        forbidden: "",
        required_classes: false,
        printable_ascii: false,
    };

    /// Whether `password` satisfies the engine's rules: its length in characters within
    /// `min_length..=max_length`, none of the [`forbidden`](Self::forbidden) characters,
    /// printable ASCII only and one of each required class when the engine says so. The error
    /// names the rule broken, never the password nor any of its characters.
    pub fn check(&self, password: &str) -> Result<(), PasswordRuleError> {
        let length = password.chars().count();
        if length < self.min_length as usize || length > self.max_length as usize {
            return Err(PasswordRuleError::Length {
                engine: self.engine,
                length,
                min: self.min_length,
                max: self.max_length,
            });
        }
        if password.chars().any(|c| self.forbidden.contains(c)) {
            return Err(PasswordRuleError::Forbidden {
                engine: self.engine,
                forbidden: char_names(self.forbidden),
            });
        }
        if self.printable_ascii && !password.chars().all(|c| c.is_ascii_graphic()) {
            return Err(PasswordRuleError::NotPrintable {
                engine: self.engine,
            });
        }
        if self.required_classes {
            for class in CharClass::REQUIRED {
                if !password.chars().any(|c| class.contains(c)) {
                    return Err(PasswordRuleError::MissingClass {
                        engine: self.engine,
                        class,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A character class an engine may require in every password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CharClass {
    /// `A`-`Z`.
    Upper,
    /// `a`-`z`.
    Lower,
    /// `0`-`9`.
    Digit,
}

impl CharClass {
    /// The classes an engine with `required_classes` needs, in the order they are checked.
    pub const REQUIRED: [CharClass; 3] = [CharClass::Upper, CharClass::Lower, CharClass::Digit];

    /// Whether `c` belongs to the class.
    pub fn contains(self, c: char) -> bool {
        match self {
            CharClass::Upper => c.is_ascii_uppercase(),
            CharClass::Lower => c.is_ascii_lowercase(),
            CharClass::Digit => c.is_ascii_digit(),
        }
    }

    /// The class's index in [`PasswordPolicy::character_classes`].
    fn index(self) -> usize {
        match self {
            CharClass::Upper => 0,
            CharClass::Lower => 1,
            CharClass::Digit => 2,
        }
    }

    /// The `EXCLUDE_*` switch that removes the whole class.
    fn switch(self) -> &'static str {
        match self {
            CharClass::Upper => env::EXCLUDE_UPPERCASE,
            CharClass::Lower => env::EXCLUDE_LOWERCASE,
            CharClass::Digit => env::EXCLUDE_NUMBERS,
        }
    }
}

impl fmt::Display for CharClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CharClass::Upper => "upper-case letter",
            CharClass::Lower => "lower-case letter",
            CharClass::Digit => "digit",
        })
    }
}

/// Names characters in words (`single quote, at sign`), so that a message about a password rule
/// never holds a character a password could contain.
fn char_names(chars: &str) -> String {
    let names: Vec<String> = chars
        .chars()
        .map(|c| match c {
            '\'' => "single quote".to_string(),
            '"' => "double quote".to_string(),
            '\\' => "backslash".to_string(),
            '/' => "slash".to_string(),
            '@' => "at sign".to_string(),
            ' ' => "space".to_string(),
            ':' => "colon".to_string(),
            c => format!("U+{:04X}", u32::from(c)),
        })
        .collect();
    names.join(", ")
}

/// A password that breaks one of its engine's rules ([`PasswordDefaults::check`]). Neither the
/// message nor `Debug` holds the password or any of its characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    /// Too short or too long.
    #[error("the password is {length} characters long; {engine} accepts {min} to {max}")]
    Length {
        /// Engine label.
        engine: &'static str,
        /// The password's length in characters.
        length: usize,
        /// Shortest accepted.
        min: u32,
        /// Longest accepted.
        max: u32,
    },
    /// Holds a character the engine never accepts.
    #[error("the password contains a character {engine} does not accept (forbidden: {forbidden})")]
    Forbidden {
        /// Engine label.
        engine: &'static str,
        /// The forbidden characters, named in words.
        forbidden: String,
    },
    /// Holds a character outside printable ASCII.
    #[error(
        "the password contains a character outside printable ASCII (codes 33 to 126), which {engine} does not accept"
    )]
    NotPrintable {
        /// Engine label.
        engine: &'static str,
    },
    /// Lacks a required class.
    #[error(
        "the password has no {class}; {engine} requires at least one upper-case letter, one lower-case letter and one digit"
    )]
    MissingClass {
        /// Engine label.
        engine: &'static str,
        /// The class missing.
        class: CharClass,
    },
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
    /// The exclusions leave nothing of a class every password of the engine must contain.
    #[error(
        "{variable} leaves no {class} to draw from, but every {engine} password needs one; change {variable} so that at least one {class} remains"
    )]
    RequiredClassExcluded {
        /// Engine label.
        engine: &'static str,
        /// The class emptied.
        class: CharClass,
        /// The variable to change.
        variable: &'static str,
    },
    /// The length cannot hold one character of each class every password must contain.
    #[error(
        "PASSWORD_LENGTH {length} is shorter than the {classes} character types every {engine} password must contain; raise PASSWORD_LENGTH"
    )]
    TooShortForClasses {
        /// Engine label.
        engine: &'static str,
        /// The configured length.
        length: u32,
        /// How many classes each password must contain.
        classes: usize,
    },
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

    /// Reads the policy from the process environment, logging each note of
    /// [`PasswordPolicy::read`] as a warning.
    pub fn from_env(d: &PasswordDefaults) -> Result<Self, PolicyError> {
        Self::from_lookup(d, |k| std::env::var(k).ok())
    }

    /// Reads the policy through `lookup` (an environment, a config map, a test table), logging
    /// each note of [`PasswordPolicy::read`] as a warning.
    pub fn from_lookup(
        d: &PasswordDefaults,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PolicyError> {
        let (policy, notes) = Self::read(d, lookup)?;
        for note in &notes {
            tracing::warn!(engine = d.engine, "password policy: {note}");
        }
        Ok(policy)
    }

    /// Reads the policy through `lookup`, with a note for every variable that is overridden or
    /// ignored because of the engine's rules:
    ///
    /// - the engine's [`forbidden`](PasswordDefaults::forbidden) characters are added to
    ///   `ExcludeCharacters` when `EXCLUDE_CHARACTERS` omits them;
    /// - `REQUIRE_EACH_INCLUDED_TYPE` false becomes true for engines with
    ///   [`required_classes`](PasswordDefaults::required_classes);
    /// - `EXCLUDE_NUMBERS`, `EXCLUDE_UPPERCASE` and `EXCLUDE_LOWERCASE` are ignored (never sent)
    ///   for engines without [`class_switches`](PasswordDefaults::class_switches).
    ///
    /// A combination that cannot give an acceptable password is an error: a length outside the
    /// engine's limits, every character excluded, a required class excluded entirely, or a
    /// length shorter than the number of classes each password must contain. Notes name
    /// variables and characters of the configuration only, never a value of a password.
    pub fn read(
        d: &PasswordDefaults,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(Self, Vec<String>), PolicyError> {
        let mut notes = Vec::new();
        let mut p = Self::defaults(d);
        if let Some(v) = lookup(env::EXCLUDE_CHARACTERS) {
            p.exclude_characters = v;
        }
        // Space is never generated (IncludeSpace is never sent): only the forbidden characters
        // a generator can produce need excluding.
        let missing: String = d
            .forbidden
            .chars()
            .filter(|c| c.is_ascii_graphic() && !p.exclude_characters.contains(*c))
            .collect();
        if !missing.is_empty() {
            notes.push(format!(
                "EXCLUDE_CHARACTERS does not exclude {}, which {} never accepts in a password; they are excluded anyway",
                char_names(&missing),
                d.engine
            ));
            p.exclude_characters.push_str(&missing);
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
        if d.required_classes && !p.require_each_included_type {
            notes.push(format!(
                "REQUIRE_EACH_INCLUDED_TYPE is false but is sent as true: every {} password needs an upper-case letter, a lower-case letter and a digit",
                d.engine
            ));
            p.require_each_included_type = true;
        }
        if d.class_switches {
            p.exclude_numbers = Some(flag(env::EXCLUDE_NUMBERS, false));
            p.exclude_uppercase = Some(flag(env::EXCLUDE_UPPERCASE, false));
            p.exclude_lowercase = Some(flag(env::EXCLUDE_LOWERCASE, false));
        } else {
            for key in [
                env::EXCLUDE_NUMBERS,
                env::EXCLUDE_UPPERCASE,
                env::EXCLUDE_LOWERCASE,
            ] {
                if let Some(v) = lookup(key) {
                    notes.push(format!(
                        "{key} is set ({}) but ignored and never sent for {}{}",
                        parse_env_bool(&v),
                        d.engine,
                        if d.required_classes {
                            ": its passwords need upper-case letters, lower-case letters and digits"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        let classes = p.character_classes();
        if classes.iter().all(|c| c.is_empty()) {
            return Err(PolicyError::NothingLeft);
        }
        if d.required_classes {
            for class in CharClass::REQUIRED {
                if classes[class.index()].is_empty() {
                    let switch_on = match class {
                        CharClass::Upper => p.exclude_uppercase,
                        CharClass::Lower => p.exclude_lowercase,
                        CharClass::Digit => p.exclude_numbers,
                    } == Some(true);
                    return Err(PolicyError::RequiredClassExcluded {
                        engine: d.engine,
                        class,
                        variable: if switch_on {
                            class.switch()
                        } else {
                            env::EXCLUDE_CHARACTERS
                        },
                    });
                }
            }
            let needed = classes.iter().filter(|c| !c.is_empty()).count();
            if (p.length as usize) < needed {
                return Err(PolicyError::TooShortForClasses {
                    engine: d.engine,
                    length: p.length,
                    classes: needed,
                });
            }
        }
        Ok((p, notes))
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

    // Rule sets like the engines' (their crates hold the real ones), to test the rules'
    // mechanics: a permissive one, a strict one with required classes, and one in between.
    /// Permissive: only the characters that break connection strings excluded.
    const PERMISSIVE: PasswordDefaults = PasswordDefaults {
        engine: "permissive",
        exclude_characters: ":/@\"'\\",
        ..PasswordDefaults::BASE
    };
    /// Strict: 8 to 64 characters, at least one upper-case letter, one lower-case letter
    /// and one digit, printable ASCII (33 to 126) only, none of `' " \ / @` nor space.
    const STRICT: PasswordDefaults = PasswordDefaults {
        engine: "strict",
        exclude_characters: "/@\"'\\:",
        length: 32,
        min_length: 8,
        max_length: 64,
        class_switches: false,
        forbidden: "'\"\\/@ ",
        required_classes: true,
        printable_ascii: true,
    };
    /// Printable ASCII: 8 to 100 printable ASCII characters without `/`, `@`, `"` or space
    /// (its documented password rules); AWS's default exclusions.
    const PRINTABLE: PasswordDefaults = PasswordDefaults {
        engine: "printable",
        min_length: 8,
        max_length: 100,
        forbidden: "/@\" ",
        printable_ascii: true,
        ..PasswordDefaults::BASE
    };

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_per_engine() {
        let pg = PasswordPolicy::from_lookup(&PERMISSIVE, lookup(&[])).unwrap();
        assert_eq!(pg.length, 32);
        assert_eq!(pg.exclude_characters, ":/@\"'\\");
        assert_eq!(pg.exclude_numbers, Some(false));
        assert!(pg.require_each_included_type);
        let rs = PasswordPolicy::from_lookup(&STRICT, lookup(&[])).unwrap();
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
            &PERMISSIVE,
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
    fn strict_ignores_class_switches() {
        let p = PasswordPolicy::from_lookup(
            &STRICT,
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
            bad("abc", &PERMISSIVE),
            PolicyError::NotANumber("abc".into())
        );
        assert!(matches!(
            bad("65", &STRICT),
            PolicyError::OutOfRange { max: 64, .. }
        ));
        assert!(matches!(
            bad("3", &PERMISSIVE),
            PolicyError::OutOfRange { .. }
        ));
    }

    #[test]
    fn excluding_everything_is_an_error() {
        let e = PasswordPolicy::from_lookup(
            &PERMISSIVE,
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

    const RS: &PasswordDefaults = &STRICT;

    #[test]
    fn engines_without_rules_read_as_before_and_without_notes() {
        // An engine without rules of its own reads the variables as AWS does.
        #[allow(clippy::single_element_loop)]
        for d in [&PERMISSIVE] {
            assert_eq!(d.forbidden, "");
            assert!(!d.required_classes && !d.printable_ascii);
            let env = [
                ("EXCLUDE_CHARACTERS", ""),
                ("REQUIRE_EACH_INCLUDED_TYPE", "false"),
                ("EXCLUDE_NUMBERS", "true"),
            ];
            let (p, notes) = PasswordPolicy::read(d, lookup(&env)).unwrap();
            assert!(notes.is_empty(), "{notes:?}");
            assert_eq!(p.exclude_characters, "");
            assert!(!p.require_each_included_type);
            assert_eq!(p.exclude_numbers, Some(true));
            assert_eq!(p, PasswordPolicy::from_lookup(d, lookup(&env)).unwrap());
        }
    }

    #[test]
    fn strict_defaults_need_no_override() {
        let (p, notes) = PasswordPolicy::read(RS, lookup(&[])).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(p, PasswordPolicy::defaults(RS));
        for c in RS.forbidden.chars().filter(char::is_ascii_graphic) {
            assert!(p.exclude_characters.contains(c), "{c}");
        }
    }

    #[test]
    fn strict_adds_forbidden_characters_with_a_note() {
        let (p, notes) =
            PasswordPolicy::read(RS, lookup(&[("EXCLUDE_CHARACTERS", "x'@")])).unwrap();
        assert_eq!(p.exclude_characters, "x'@\"\\/");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("EXCLUDE_CHARACTERS"), "{}", notes[0]);
        assert!(
            notes[0].contains("double quote, backslash, slash"),
            "{}",
            notes[0]
        );
        assert!(!notes[0].contains("single quote"), "{}", notes[0]);

        let (p, notes) = PasswordPolicy::read(RS, lookup(&[("EXCLUDE_CHARACTERS", "")])).unwrap();
        assert_eq!(p.exclude_characters, "'\"\\/@");
        assert_eq!(notes.len(), 1);
        // Naming them all in the variable: nothing to say.
        let (p, notes) =
            PasswordPolicy::read(RS, lookup(&[("EXCLUDE_CHARACTERS", "@/\\\"'")])).unwrap();
        assert_eq!(p.exclude_characters, "@/\\\"'");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn strict_forces_each_type_and_ignores_class_switches_with_notes() {
        let (p, notes) = PasswordPolicy::read(
            RS,
            lookup(&[
                ("REQUIRE_EACH_INCLUDED_TYPE", "false"),
                ("EXCLUDE_NUMBERS", "true"),
                ("EXCLUDE_UPPERCASE", "no"),
                ("EXCLUDE_LOWERCASE", "1"),
                ("EXCLUDE_PUNCTUATION", "true"),
            ]),
        )
        .unwrap();
        assert!(p.require_each_included_type);
        assert_eq!(
            (p.exclude_numbers, p.exclude_uppercase, p.exclude_lowercase),
            (None, None, None)
        );
        assert!(p.exclude_punctuation, "EXCLUDE_PUNCTUATION is honoured");
        assert_eq!(notes.len(), 4, "{notes:?}");
        for key in [
            "REQUIRE_EACH_INCLUDED_TYPE",
            "EXCLUDE_NUMBERS",
            "EXCLUDE_UPPERCASE",
            "EXCLUDE_LOWERCASE",
        ] {
            assert!(notes.iter().any(|n| n.starts_with(key)), "{key}: {notes:?}");
        }
        // Asking for what is sent anyway is no override.
        let (p, notes) =
            PasswordPolicy::read(RS, lookup(&[("REQUIRE_EACH_INCLUDED_TYPE", "yes")])).unwrap();
        assert!(p.require_each_included_type);
        assert!(notes.is_empty(), "{notes:?}");
        // from_lookup gives the same policy (and logs the notes).
        assert_eq!(
            PasswordPolicy::from_lookup(RS, lookup(&[("REQUIRE_EACH_INCLUDED_TYPE", "0")]))
                .unwrap(),
            PasswordPolicy::defaults(RS)
        );
    }

    #[test]
    fn strict_refuses_to_exclude_a_required_class() {
        let err = |exclude: String| {
            PasswordPolicy::read(RS, lookup(&[("EXCLUDE_CHARACTERS", exclude.as_str())]))
                .unwrap_err()
        };
        let digits: String = ('0'..='9').collect();
        let e = err(digits.clone());
        assert_eq!(
            e,
            PolicyError::RequiredClassExcluded {
                engine: "strict",
                class: CharClass::Digit,
                variable: "EXCLUDE_CHARACTERS"
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("digit") && msg.contains("EXCLUDE_CHARACTERS"),
            "{msg}"
        );
        assert!(matches!(
            err(('A'..='Z').collect()),
            PolicyError::RequiredClassExcluded {
                class: CharClass::Upper,
                ..
            }
        ));
        assert!(matches!(
            err(('a'..='z').chain('0'..='9').collect()),
            PolicyError::RequiredClassExcluded {
                class: CharClass::Lower,
                ..
            }
        ));
        // One digit left is enough.
        let (p, _) =
            PasswordPolicy::read(RS, lookup(&[("EXCLUDE_CHARACTERS", &digits[1..])])).unwrap();
        assert_eq!(p.character_classes()[2], vec!['0']);
        // Everything excluded stays NothingLeft.
        let all: String = (33u8..=126).map(char::from).collect();
        assert_eq!(err(all), PolicyError::NothingLeft);
    }

    #[test]
    fn lengths_outside_limits_or_below_the_classes_are_errors() {
        for (v, ok) in [("7", false), ("8", true), ("64", true), ("65", false)] {
            let r = PasswordPolicy::read(RS, lookup(&[("PASSWORD_LENGTH", v)]));
            assert_eq!(r.is_ok(), ok, "{v}: {r:?}");
            if !ok {
                assert!(matches!(
                    r.unwrap_err(),
                    PolicyError::OutOfRange {
                        min: 8,
                        max: 64,
                        ..
                    }
                ));
            }
        }
        // An engine whose limits allow a length below its required classes.
        let tiny = PasswordDefaults {
            min_length: 1,
            ..STRICT
        };
        let e = PasswordPolicy::read(&tiny, lookup(&[("PASSWORD_LENGTH", "3")])).unwrap_err();
        assert_eq!(
            e,
            PolicyError::TooShortForClasses {
                engine: "strict",
                length: 3,
                classes: 4
            }
        );
        assert!(e.to_string().contains("PASSWORD_LENGTH 3"), "{e}");
        let no_punct = [("PASSWORD_LENGTH", "3"), ("EXCLUDE_PUNCTUATION", "true")];
        assert!(PasswordPolicy::read(&tiny, lookup(&no_punct)).is_ok());
        let two = [("PASSWORD_LENGTH", "2"), ("EXCLUDE_PUNCTUATION", "true")];
        assert!(matches!(
            PasswordPolicy::read(&tiny, lookup(&two)).unwrap_err(),
            PolicyError::TooShortForClasses { classes: 3, .. }
        ));
    }

    #[test]
    fn class_switch_named_when_it_empties_a_required_class() {
        let d = PasswordDefaults {
            class_switches: true,
            ..STRICT
        };
        let e = PasswordPolicy::read(&d, lookup(&[("EXCLUDE_NUMBERS", "true")])).unwrap_err();
        assert_eq!(
            e,
            PolicyError::RequiredClassExcluded {
                engine: "strict",
                class: CharClass::Digit,
                variable: "EXCLUDE_NUMBERS"
            }
        );
    }

    /// The rule broken is named; the password and its characters are not.
    fn rejected(d: &PasswordDefaults, password: &str) -> PasswordRuleError {
        let e = d.check(password).unwrap_err();
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(
            !shown.contains(password) && !debug.contains(password),
            "{debug}"
        );
        // Letters, digits and spaces occur in any sentence; the password's other characters
        // (those in these tests) must not.
        for c in password
            .chars()
            .filter(|c| !c.is_ascii_alphanumeric() && *c != ' ')
        {
            assert!(!shown.contains(c), "{c:?} in {shown}");
        }
        e
    }

    #[test]
    fn check_names_each_strict_rule() {
        assert_eq!(RS.check("Abcdefg1"), Ok(()));
        assert_eq!(RS.check(&format!("Ab1{}", "x".repeat(61))), Ok(()));
        assert_eq!(RS.check("Zq9#Xw7%Lk:~!"), Ok(()));
        assert!(matches!(
            rejected(RS, "Zq9#Xw7"),
            PasswordRuleError::Length {
                length: 7,
                min: 8,
                max: 64,
                ..
            }
        ));
        assert!(matches!(
            rejected(RS, &format!("Zq9#{}", "w".repeat(61))),
            PasswordRuleError::Length { length: 65, .. }
        ));
        // Length in characters, not bytes: 8 two-byte characters are 8 characters.
        assert!(matches!(
            rejected(RS, "Zq9#ééééé"),
            PasswordRuleError::NotPrintable { .. }
        ));
        for bad in [
            "Zq9#Xw7'Lk",
            "Zq9#Xw7\"Lk",
            "Zq9#Xw7\\Lk",
            "Zq9#Xw7/Lk",
            "Zq9#Xw7@Lk",
        ] {
            let e = rejected(RS, bad);
            assert!(matches!(e, PasswordRuleError::Forbidden { .. }), "{e:?}");
            assert!(e.to_string().contains("single quote, double quote"), "{e}");
        }
        assert!(matches!(
            rejected(RS, "Zq9#Xw7 Lk"),
            PasswordRuleError::Forbidden { .. }
        ));
        for bad in ["Zq9#Xw7\tLk", "Zq9#Xw7\u{7f}Lk", "Zq9#Xw7\u{e9}Lk"] {
            assert!(matches!(
                rejected(RS, bad),
                PasswordRuleError::NotPrintable { .. }
            ));
        }
        for (bad, class) in [
            ("zq9#xw7%lk", CharClass::Upper),
            ("ZQ9#XW7%LK", CharClass::Lower),
            ("Zq#Xw%Lk!~", CharClass::Digit),
        ] {
            let e = rejected(RS, bad);
            assert_eq!(
                e,
                PasswordRuleError::MissingClass {
                    engine: "strict",
                    class
                }
            );
            assert!(e.to_string().contains(&format!("has no {class}")), "{e}");
        }
    }

    #[test]
    fn printable_rules_are_built_into_reading_and_checking() {
        let d = &PRINTABLE;
        // Its defaults already exclude what it forbids: no note.
        let (p, notes) = PasswordPolicy::read(d, lookup(&[])).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(p, PasswordPolicy::defaults(d));
        // An EXCLUDE_CHARACTERS without them gets them back, with a note; the class switches
        // are honoured (this rule set requires no class).
        let (p, notes) = PasswordPolicy::read(
            d,
            lookup(&[("EXCLUDE_CHARACTERS", ""), ("EXCLUDE_NUMBERS", "true")]),
        )
        .unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        for c in ['/', '@', '"'] {
            assert!(p.exclude_characters.contains(c), "{c}");
        }
        assert_eq!(p.exclude_numbers, Some(true));
        // 8 to 100 printable ASCII characters, none of / @ " or space.
        assert!(d.check("Abcdefg1").is_ok());
        assert!(d.check(&"a".repeat(100)).is_ok());
        for bad in [
            "short",
            "with/slash",
            "with@at-sign",
            "with\"quote",
            "with space",
            "ünïcodé-pw",
        ] {
            assert!(d.check(bad).is_err(), "{bad}");
        }
        assert!(d.check(&"a".repeat(101)).is_err());
        assert!(PasswordPolicy::read(d, lookup(&[("PASSWORD_LENGTH", "7")])).is_err());
    }

    #[test]
    fn check_for_engines_without_rules_is_the_length_only() {
        #[allow(clippy::single_element_loop)]
        for d in [&PERMISSIVE] {
            for ok in ["abcd", "'\"\\/@ :", "ÄÖÜß", "1234"] {
                assert_eq!(d.check(ok), Ok(()), "{ok}");
            }
            assert!(matches!(
                rejected(d, "a#c"),
                PasswordRuleError::Length { min: 4, .. }
            ));
            assert!(d.check(&"a".repeat(4096)).is_ok());
            assert!(d.check(&"a".repeat(4097)).is_err());
        }
    }
}
