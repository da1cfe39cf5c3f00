//! What an earlier step of a rotation learnt in this process, which a later step of the same
//! rotation uses instead of learning it again: Secrets Manager invokes the four steps one after
//! the other, and a warm function (or the driver) runs them all in one process.
//!
//! Keyed by secret ARN and version: a version's value never changes, so what was learnt of it
//! stays true of its value. What the database holds can change, so a login stands as proof only
//! for [`PROVEN_FOR`]. Nothing here is needed for correctness: a step that finds nothing does
//! what it would do in a fresh process.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How long testSecret's login with the pending credentials stands as finishSecret's proof
/// that the database knows them (W23).
pub(crate) const PROVEN_FOR: Duration = Duration::from_secs(60);

/// The memo of one [`crate::Rotation`]. Holds ARNs and version ids, never a value.
#[derive(Debug, Default)]
pub(crate) struct Memo(Mutex<Learnt>);

#[derive(Debug, Default)]
struct Learnt {
    /// createSecret stored this version's value here, and no setSecret has run for it since:
    /// its password is new, so no login with it can work before setSecret makes it the
    /// database's.
    created: Option<Version>,
    /// testSecret logged in with this version's credentials at that instant; the version's
    /// creation time, where the store said.
    proven: Option<(Version, Instant, Option<SystemTime>)>,
}

#[derive(Debug, PartialEq, Eq)]
struct Version {
    arn: String,
    token: String,
}

impl Version {
    fn new(arn: &str, token: &str) -> Self {
        Version {
            arn: arn.to_string(),
            token: token.to_string(),
        }
    }

    fn is(&self, arn: &str, token: &str) -> bool {
        self.arn == arn && self.token == token
    }
}

impl Memo {
    fn learnt(&self) -> std::sync::MutexGuard<'_, Learnt> {
        // Only plain assignments happen under the lock: a panic elsewhere leaves it whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// createSecret stored `token`'s value of `arn`.
    pub(crate) fn created(&self, arn: &str, token: &str) {
        self.learnt().created = Some(Version::new(arn, token));
    }

    /// Whether createSecret stored `token`'s value of `arn` in this process and no setSecret
    /// has asked since: only the first setSecret after it is told so (a retry cannot know how
    /// far the first one got).
    pub(crate) fn take_created(&self, arn: &str, token: &str) -> bool {
        let mut learnt = self.learnt();
        let created = learnt.created.as_ref().is_some_and(|v| v.is(arn, token));
        if created {
            learnt.created = None;
        }
        created
    }

    /// testSecret logged in with `token`'s credentials of `arn`, just now.
    pub(crate) fn proven(&self, arn: &str, token: &str, created: Option<SystemTime>) {
        self.learnt().proven = Some((Version::new(arn, token), Instant::now(), created));
    }

    /// testSecret is about to try `token`'s credentials of `arn` again: what an earlier one
    /// proved no longer stands, whatever this one finds.
    pub(crate) fn unprove(&self, arn: &str, token: &str) {
        let mut learnt = self.learnt();
        if learnt
            .proven
            .as_ref()
            .is_some_and(|(v, ..)| v.is(arn, token))
        {
            learnt.proven = None;
        }
    }

    /// When testSecret proved `token`'s credentials of `arn` within [`PROVEN_FOR`]: the
    /// version's creation time, where the store said.
    pub(crate) fn proven_recently(&self, arn: &str, token: &str) -> Option<Option<SystemTime>> {
        match &self.learnt().proven {
            Some((v, at, created)) if v.is(arn, token) && at.elapsed() <= PROVEN_FOR => {
                Some(*created)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_answers_only_for_the_version_it_learnt() {
        let memo = Memo::default();
        assert!(!memo.take_created("arn:a", "t1"));
        memo.created("arn:a", "t1");
        assert!(!memo.take_created("arn:a", "t2"));
        assert!(!memo.take_created("arn:b", "t1"));
        assert!(memo.take_created("arn:a", "t1"));
        // Told once.
        assert!(!memo.take_created("arn:a", "t1"));
        // A later rotation replaces it.
        memo.created("arn:a", "t1");
        memo.created("arn:a", "t2");
        assert!(!memo.take_created("arn:a", "t1"));
        assert!(memo.take_created("arn:a", "t2"));

        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        assert_eq!(memo.proven_recently("arn:a", "t2"), None);
        memo.proven("arn:a", "t2", Some(created));
        assert_eq!(memo.proven_recently("arn:a", "t2"), Some(Some(created)));
        assert_eq!(memo.proven_recently("arn:a", "t1"), None);
        assert_eq!(memo.proven_recently("arn:c", "t2"), None);
        memo.unprove("arn:a", "t1");
        assert!(memo.proven_recently("arn:a", "t2").is_some());
        memo.unprove("arn:a", "t2");
        assert_eq!(memo.proven_recently("arn:a", "t2"), None);
    }

    #[test]
    fn a_login_stands_as_proof_only_for_a_while() {
        let memo = Memo::default();
        memo.proven("arn:a", "t", None);
        memo.learnt().proven.as_mut().unwrap().1 = Instant::now() - PROVEN_FOR * 2;
        assert_eq!(memo.proven_recently("arn:a", "t"), None);
    }
}
