//! Behaviour switches of a [`crate::Rotation`].

use std::fmt;
use std::time::Duration;

/// Behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// finishSecret proves the pending credentials log in before promoting them (W23).
    pub verify_before_finish: bool,
    /// The deadline of each step when the caller gives none (the driver, `handle`).
    pub step_timeout: Duration,
    /// How many unlabelled versions, newest first, recovery may try.
    pub recovery_limit: usize,
    /// The master secrets alternating users may use; `None`: any the function can read (W5).
    pub master_allow_list: Option<MasterAllowList>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_before_finish: true,
            step_timeout: Duration::from_secs(60),
            recovery_limit: 10,
            master_allow_list: None,
        }
    }
}

/// The environment variable that lists the master secrets a deployment may use.
pub const MASTER_ALLOW_LIST_ENV: &str = "ALLOWED_MASTER_SECRETS";

/// Which master secrets (the `masterarn` of a secret under alternating-users rotation) a
/// deployment may use. A secret's author chooses its `masterarn`; without a list, the function
/// would use any admin secret its role can read on their behalf (W5). Entries are compared
/// with the `masterarn` exactly as the secret holds it (an ARN or a name); an entry ending in
/// `*` matches every value that starts with what precedes it (for example
/// `arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-admin-*`, which also covers
/// the random suffix Secrets Manager adds to ARNs).
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
    /// `*` elsewhere than at the end of an entry, or an entry that is only `*`.
    #[error("{MASTER_ALLOW_LIST_ENV} entry {entry:?}: `*` may only end an entry that has a prefix")]
    Wildcard {
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
            let body = entry.strip_suffix('*').unwrap_or(entry);
            if body.is_empty() || body.contains('*') {
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
        self.entries.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => masterarn.starts_with(prefix),
            None => masterarn == e,
        })
    }

    /// The entries, as given.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }
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
    fn exact_and_prefix_entries() {
        let l = MasterAllowList::parse(&format!(
            " {ARN} ,\n arn:aws:secretsmanager:us-east-1:123456789012:secret:team/*"
        ))
        .unwrap();
        assert_eq!(l.entries().len(), 2);
        assert!(l.allows(ARN));
        assert!(!l.allows(&format!("{ARN}x")));
        assert!(!l.allows("prod/admin"), "a name is not its ARN");
        assert!(l.allows("arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db-x1y2z3"));
        assert!(!l.allows("arn:aws:secretsmanager:us-east-1:123456789012:secret:other"));
        assert!(!l.allows(""));
    }

    #[test]
    fn malformed_lists_are_refused() {
        assert_eq!(MasterAllowList::parse(" , "), Err(AllowListError::Empty));
        for bad in ["*", "a*b", "**", "arn:*:x"] {
            assert!(
                matches!(
                    MasterAllowList::parse(bad),
                    Err(AllowListError::Wildcard { .. })
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
