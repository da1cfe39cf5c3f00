//! Behaviour switches of a [`crate::Rotation`].

use std::fmt;
use std::time::Duration;

/// How many unlabelled versions recovery tries by default: the number of versions Secrets
/// Manager keeps before it deletes the oldest unlabelled ones (the local store keeps as many).
/// Each costs one read and one failed login only when no labelled credentials log in; the
/// step's deadline bounds the whole search.
pub const RECOVERY_LIMIT: usize = 100;

/// Behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// finishSecret proves the pending credentials log in before promoting them (W23).
    pub verify_before_finish: bool,
    /// The deadline of each step when the caller gives none (the driver, `handle`).
    pub step_timeout: Duration,
    /// How many unlabelled versions, newest first, recovery may try. The default,
    /// [`RECOVERY_LIMIT`], reaches every version Secrets Manager keeps, so no number of
    /// aborted rotations can push the password the database holds out of reach.
    pub recovery_limit: usize,
    /// The master secrets alternating users may use; `None`: any the function can read (W5).
    pub master_allow_list: Option<MasterAllowList>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_before_finish: true,
            step_timeout: Duration::from_secs(60),
            recovery_limit: RECOVERY_LIMIT,
            master_allow_list: None,
        }
    }
}

/// The environment variable that lists the master secrets a deployment may use.
pub const MASTER_ALLOW_LIST_ENV: &str = "ALLOWED_MASTER_SECRETS";

/// Which master secrets (the `masterarn` of a secret under alternating-users rotation) a
/// deployment may use. A secret's author chooses its `masterarn`; without a list, the function
/// would use any admin secret its role can read on their behalf (W5).
///
/// Each entry is a full secret ARN (`arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`),
/// compared with the `masterarn` exactly as the secret holds it, so a `masterarn` that is a name
/// or a partial ARN is refused. In the name, `?` matches any one character, as in IAM: the
/// random suffix Secrets Manager adds to a secret's ARN is `-??????`
/// (`...:secret:prod/db-admin-??????`), and the same string serves the role's `Resource`. A
/// trailing `*` matches any rest, after at least one character of the name.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterAllowList {
    entries: Vec<String>,
}

/// A malformed allow-list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowListError {
    /// Set, but with no entry.
    #[error("{MASTER_ALLOW_LIST_ENV} is set but lists no secret; unset it to allow any master")]
    Empty,
    /// `*` elsewhere than at the end of an entry's name, or before any character of the name.
    #[error(
        "{MASTER_ALLOW_LIST_ENV} entry {entry:?}: `*` may only end an entry, after at least one character of the secret's name"
    )]
    Wildcard {
        /// The entry.
        entry: String,
    },
    /// Not a full secret ARN.
    #[error(
        "{MASTER_ALLOW_LIST_ENV} entry {entry:?} is not a full secret ARN (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)"
    )]
    NotASecretArn {
        /// The entry.
        entry: String,
    },
}

impl MasterAllowList {
    /// Parses a list separated by commas or white space.
    pub fn parse(text: &str) -> Result<MasterAllowList, AllowListError> {
        let entries: Vec<String> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if entries.is_empty() {
            return Err(AllowListError::Empty);
        }
        for entry in &entries {
            let parts: Vec<&str> = entry.splitn(7, ':').collect();
            let arn = matches!(
                parts.as_slice(),
                ["arn", partition, "secretsmanager", region, account, "secret", _]
                    if !partition.is_empty()
                        && !region.is_empty()
                        && account.len() == 12
                        && account.bytes().all(|b| b.is_ascii_digit())
            );
            if !arn {
                return Err(AllowListError::NotASecretArn {
                    entry: entry.clone(),
                });
            }
            if parts[..6].iter().any(|p| p.contains(['?', '*'])) {
                return Err(AllowListError::NotASecretArn {
                    entry: entry.clone(),
                });
            }
            let name = parts[6];
            let body = name.strip_suffix('*').unwrap_or(name);
            // A wildcard only after a literal character of the name: `?*` would be any secret.
            let literal = body.trim_end_matches('?');
            if body.contains('*') || (name.ends_with('*') && literal.is_empty()) || body.is_empty()
            {
                return Err(AllowListError::Wildcard {
                    entry: entry.clone(),
                });
            }
        }
        Ok(MasterAllowList { entries })
    }

    /// The list from `lookup` (the process environment, a config map); `None` when unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<MasterAllowList>, AllowListError> {
        lookup(MASTER_ALLOW_LIST_ENV)
            .map(|text| MasterAllowList::parse(&text))
            .transpose()
    }

    /// Whether `masterarn` may be used.
    pub fn allows(&self, masterarn: &str) -> bool {
        self.entries.iter().any(|e| matches(e, masterarn))
    }

    /// The entries, as given.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

/// `pattern` against `value`: `?` is any one character, a trailing `*` any rest.
fn matches(pattern: &str, value: &str) -> bool {
    let (body, rest) = match pattern.strip_suffix('*') {
        Some(body) => (body, true),
        None => (pattern, false),
    };
    let (p, v): (Vec<char>, Vec<char>) = (body.chars().collect(), value.chars().collect());
    let length_ok = if rest {
        v.len() >= p.len()
    } else {
        v.len() == p.len()
    };
    length_ok && p.iter().zip(&v).all(|(p, v)| *p == '?' || p == v)
}

impl fmt::Debug for MasterAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/admin-AbCdEf";

    #[test]
    fn exact_suffix_and_prefix_entries() {
        let l = MasterAllowList::parse(&format!(
            " {ARN} ,\n arn:aws:secretsmanager:us-east-1:123456789012:secret:team/* \
             arn:aws:secretsmanager:us-east-1:123456789012:secret:ops/db-admin-??????"
        ))
        .unwrap();
        assert_eq!(l.entries().len(), 3);
        assert!(l.allows(ARN));
        assert!(!l.allows(&format!("{ARN}x")));
        assert!(!l.allows("prod/admin"), "a name is not its ARN");
        assert!(
            !l.allows("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/admin"),
            "a partial ARN is not the ARN"
        );
        assert!(l.allows("arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db-x1y2z3"));
        // `-??????`: the random suffix, and nothing longer (no namesake with a longer name).
        assert!(
            l.allows("arn:aws:secretsmanager:us-east-1:123456789012:secret:ops/db-admin-Ab12Cd")
        );
        assert!(!l.allows(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ops/db-admin-billing-Ab12Cd"
        ));
        assert!(!l.allows("arn:aws:secretsmanager:us-east-1:123456789012:secret:other"));
        assert!(!l.allows(""));
    }

    #[test]
    fn malformed_or_overbroad_lists_are_refused() {
        assert_eq!(MasterAllowList::parse(" , "), Err(AllowListError::Empty));
        for bad in [
            "*",
            "arn:*",
            "arn:aws:secretsmanager:*",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:*",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:a*b",
            // `?*` would allow every secret; `?` belongs in the name only.
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:?*",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:???*",
            "arn:aws:secretsmanager:us-eas?-1:123456789012:secret:x",
            "arn:aw?:secretsmanager:us-east-1:123456789012:secret:x",
            "arn:aws:secretsmanager:us-east-1:*:secret:x",
            "arn:aws:secretsmanager:us-east-1:12345:secret:x",
            "arn:aws:rds:us-east-1:123456789012:db:x",
            "prod/admin",
        ] {
            assert!(
                matches!(
                    MasterAllowList::parse(bad),
                    Err(AllowListError::Wildcard { .. } | AllowListError::NotASecretArn { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(MasterAllowList::from_lookup(|_| None), Ok(None));
        assert!(
            MasterAllowList::from_lookup(|k| (k == MASTER_ALLOW_LIST_ENV).then(|| ARN.into()))
                .unwrap()
                .unwrap()
                .allows(ARN)
        );
    }
}
