//! Staging labels and rotation strategies.

use std::fmt;

/// A Secrets Manager staging label that rotation cares about.
///
/// Strings exist only at the edges: [`Stage::as_str`] for SDK calls and [`Stage::parse`] when
/// reading labels back. Custom labels a user attached are kept as plain strings by the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// `AWSCURRENT`: the version clients use.
    Current,
    /// `AWSPENDING`: the version a rotation is preparing.
    Pending,
    /// `AWSPREVIOUS`: the version that was current before the last promotion.
    Previous,
}

impl Stage {
    /// All stages, in a stable order.
    pub const ALL: [Stage; 3] = [Stage::Current, Stage::Pending, Stage::Previous];

    /// The label as Secrets Manager spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "AWSCURRENT",
            Stage::Pending => "AWSPENDING",
            Stage::Previous => "AWSPREVIOUS",
        }
    }

    /// Parses a label; `None` for custom labels.
    pub fn parse(label: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == label)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a database credential is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The user in the secret changes its own password.
    SingleUser,
    /// A master secret sets the password of the other user of a `name` / `name_clone` pair.
    AlternatingUsers,
}

impl Strategy {
    /// The configuration spelling (`ROTATION_STRATEGY`, `--strategy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SingleUser => "single-user",
            Strategy::AlternatingUsers => "alternating-users",
        }
    }

    /// Parses `single-user` / `alternating-users` (also AWS's `single`/`multi` template names).
    pub fn parse(value: &str) -> Option<Strategy> {
        match value.trim().to_ascii_lowercase().as_str() {
            "single-user" | "single_user" | "single" | "singleuser" => Some(Strategy::SingleUser),
            "alternating-users" | "alternating_users" | "alternating" | "multi-user" | "multi"
            | "multiuser" => Some(Strategy::AlternatingUsers),
            _ => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_round_trips() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
        }
        assert_eq!(Stage::parse("awscurrent"), None);
        assert_eq!(Stage::parse("custom"), None);
    }

    #[test]
    fn strategy_parses_config_spellings() {
        assert_eq!(Strategy::parse("single-user"), Some(Strategy::SingleUser));
        assert_eq!(
            Strategy::parse(" Alternating-Users "),
            Some(Strategy::AlternatingUsers)
        );
        assert_eq!(Strategy::parse("multi"), Some(Strategy::AlternatingUsers));
        assert_eq!(Strategy::parse("both"), None);
    }
}
