//! The rotation error: stable kinds, causes kept, no secret values.

use std::fmt;

use crate::event::EventError;
use crate::policy::{PasswordRuleError, PolicyError};
use crate::secret::SecretError;
use crate::store::StoreError;

/// Which secret version or secret an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `AWSCURRENT`.
    Current,
    /// `AWSPENDING` (the event's token).
    Pending,
    /// `AWSPREVIOUS`.
    Previous,
    /// The master secret named by `masterarn`.
    Master,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::Current => "AWSCURRENT",
            Which::Pending => "AWSPENDING",
            Which::Previous => "AWSPREVIOUS",
            Which::Master => "master",
        })
    }
}

/// Where a failure lies, for exit codes and alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The process's configuration (environment, password policy, command line).
    Configuration,
    /// Refused by the secret's state: rotation disabled, one in flight or none, another
    /// process holds the secret. Nothing was changed.
    Refused,
    /// The secret, its value, or the secret store.
    Secret,
    /// The database: login, TLS, permissions, timeouts.
    Database,
}

impl ErrorCategory {
    /// The `rotate` command's exit code for this category (0 is success, 1 is reserved for
    /// unexpected failures outside these categories).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCategory::Configuration => 2,
            ErrorCategory::Refused => 3,
            ErrorCategory::Secret => 4,
            ErrorCategory::Database => 5,
        }
    }
}

/// Whose credentials a login used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The pending version (this rotation's token).
    Pending,
    /// `AWSCURRENT`.
    Current,
    /// `AWSPREVIOUS`.
    Previous,
    /// A version that no longer carries a label (recovery), by id.
    Recovered(String),
    /// The master secret.
    Master,
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Pending => f.write_str("AWSPENDING"),
            CredentialSource::Current => f.write_str("AWSCURRENT"),
            CredentialSource::Previous => f.write_str("AWSPREVIOUS"),
            CredentialSource::Recovered(v) => write!(f, "unlabelled version {v}"),
            CredentialSource::Master => f.write_str("master"),
        }
    }
}

/// One failed login.
#[derive(Debug)]
pub struct LoginAttempt {
    /// Whose credentials.
    pub source: CredentialSource,
    /// Why it failed.
    pub error: EngineError,
}

/// How many recovered versions' failures an [`Attempts`] message lists before it counts them.
const LISTED_RECOVERIES: usize = 3;

/// The logins a step tried, in order.
#[derive(Debug, Default)]
pub struct Attempts(pub Vec<LoginAttempt>);

impl Attempts {
    /// Records one.
    pub fn push(&mut self, source: CredentialSource, error: EngineError) {
        self.0.push(LoginAttempt { source, error });
    }
    /// The kind that best explains the failure: the current credentials' when tried, else the
    /// first attempt's.
    pub fn main_kind(&self) -> Option<ErrorKind> {
        self.0
            .iter()
            .find(|a| a.source == CredentialSource::Current)
            .or_else(|| self.0.first())
            .map(|a| a.error.kind())
    }
}

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no credentials to try");
        }
        // Recovery may try up to a hundred unlabelled versions: past the first few, they are
        // counted rather than listed, so the message stays readable.
        let mut recovered = 0usize;
        let mut first = true;
        for a in &self.0 {
            if matches!(a.source, CredentialSource::Recovered(_)) {
                recovered += 1;
                if recovered > LISTED_RECOVERIES {
                    continue;
                }
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", a.source, crate::error::error_chain(&a.error))?;
        }
        if recovered > LISTED_RECOVERIES {
            write!(
                f,
                "; and {} more unlabelled versions, none of which logged in",
                recovered - LISTED_RECOVERIES
            )?;
        }
        Ok(())
    }
}

/// Why a rotation step failed. Every variant is a Lambda failure, so Secrets Manager retries
/// (checklist 50). Messages follow AWS's wording where AWS has one, plus the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The event was malformed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The password policy configuration is unusable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `RotationEnabled` is false.
    #[error("Secret {secret} is not enabled for rotation")]
    NotEnabled {
        /// Secret ARN.
        secret: String,
    },
    /// The token is not a version of the secret.
    #[error("Secret version {token} has no stage for rotation of secret {secret}.")]
    TokenNotStaged {
        /// The token.
        token: String,
        /// Secret ARN.
        secret: String,
    },
    /// The token's version is neither current nor pending.
    #[error("Secret version {token} not set as AWSPENDING for rotation of secret {secret}.")]
    TokenNotPending {
        /// The token.
        token: String,
        /// Secret ARN.
        secret: String,
    },
    /// Unknown step name.
    #[error("Invalid step parameter {step} for secret {secret}")]
    InvalidStep {
        /// The step name sent.
        step: String,
        /// Secret ARN.
        secret: String,
    },
    /// A secret value cannot be used.
    #[error("the {which} value of secret {secret} is unusable: {source}")]
    InvalidSecret {
        /// Which value.
        which: Which,
        /// Secret ARN (the master's ARN for [`Which::Master`]).
        secret: String,
        /// What is wrong.
        #[source]
        source: SecretError,
    },
    /// The pending secret names a user other than the one rotation may change.
    #[error("Attempting to modify user {pending} other than {expected_desc} {expected}")]
    UserMismatch {
        /// Pending username.
        pending: String,
        /// The username allowed.
        expected: String,
        /// "current user", "current user or clone", "previous valid user".
        expected_desc: &'static str,
    },
    /// The pending secret points at another host.
    #[error(
        "Attempting to modify user for host {pending} other than {expected_desc} host {expected}"
    )]
    HostMismatch {
        /// Pending host.
        pending: String,
        /// The host allowed.
        expected: String,
        /// "current" or "previous".
        expected_desc: &'static str,
    },
    /// The pending secret names the same host as another version but another port,
    /// `tls_server_name` or database: a login with it would reach another server (or fail), so
    /// rotation refuses before changing anything.
    #[error(
        "the {which} value's {key} differs from the {expected_desc} value's; rotation changes a password only on the server and database the {expected_desc} value names"
    )]
    ServerMismatch {
        /// The value checked ("AWSPENDING", "master").
        which: &'static str,
        /// The key that differs.
        key: &'static str,
        /// "current" or "previous".
        expected_desc: &'static str,
    },
    /// setSecret found `AWSCURRENT` changed, in keys other than the credentials, since
    /// createSecret built the pending value from it: promoting the pending value would undo
    /// that change (a value put during the rotation).
    #[error(
        "AWSCURRENT of secret {secret} changed after this rotation built its pending value (keys {keys}); promoting it would undo that change, so this step changed nothing in the database: abort this rotation (`rotate abort`, on Secrets Manager too) and rotate again"
    )]
    SecretChanged {
        /// Secret ARN.
        secret: String,
        /// The keys that differ, comma-separated (names only, never values).
        keys: String,
    },
    /// Alternating users would change the master secret's own user.
    #[error(
        "the master secret's user {user} is one of the alternating pair of secret {secret}; alternating users never changes the master's password (use a separate master user)"
    )]
    MasterInPair {
        /// The master's username.
        user: String,
        /// Secret ARN.
        secret: String,
    },
    /// The alternate username would exceed the engine's limit (checked before any write).
    #[error(
        "Unable to clone user, username {username} would be {length} {unit}, over the limit of {limit}"
    )]
    UsernameTooLong {
        /// The would-be username.
        username: String,
        /// Its length, in the limit's unit.
        length: usize,
        /// What the limit counts (`bytes`, `characters`).
        unit: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Single user: no credentials the secret holds log in (pending, current, previous, nor
    /// any recent unlabelled version). Every attempt is kept, with its kind.
    #[error(
        "Unable to log into database with previous, current, or pending secret of secret arn {secret}: {attempts}"
    )]
    NoWorkingCredentials {
        /// Secret ARN.
        secret: String,
        /// Every login tried, in order.
        attempts: Attempts,
    },
    /// The pending credentials logged in, and so did a random password no version holds: the
    /// database does not check this user's password (trust authentication, a Redis `nopass`
    /// user), so a rotation would prove nothing. Nothing was changed.
    #[error(
        "User {username} logs in with any password (a wrong one was accepted too) for secret {secret}: the database does not check its password (trust authentication, a password-less user); make it require one before rotating"
    )]
    PasswordsNotChecked {
        /// Database user.
        username: String,
        /// Secret ARN.
        secret: String,
    },
    /// Alternating users: the current credentials must log in before the master secret is used.
    #[error("Unable to log into database using current credentials for secret {secret}: {source}")]
    CurrentLoginFailed {
        /// Secret ARN.
        secret: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// Alternating users (or an engine whose single user acts through a master): the secret
    /// has no `masterarn`.
    #[error(
        "secret {secret} has no masterarn key; this rotation acts through a master secret (alternating users, or an engine whose users cannot change their own password) and needs its ARN"
    )]
    MissingMasterArn {
        /// Secret ARN.
        secret: String,
    },
    /// The secret's `masterarn` is not in the deployment's allow-list (W5).
    #[error(
        "secret {secret} names master secret {masterarn}, which is not in this function's {env}; add it there (or a prefix ending in `*`) if this secret may use it"
    )]
    MasterNotAllowed {
        /// The `masterarn` as the secret holds it.
        masterarn: String,
        /// Secret ARN.
        secret: String,
        /// The variable that holds the list.
        env: &'static str,
    },
    /// The current host is neither the master's host nor a replica of it.
    #[error(
        "Current database host {current} is not the same host as/rds replica of master {master}"
    )]
    MasterHostMismatch {
        /// Current host.
        current: String,
        /// Master host.
        master: String,
    },
    /// The master credentials do not log in.
    #[error("Unable to log into database using credentials in master secret {masterarn}: {source}")]
    MasterLoginFailed {
        /// Master ARN.
        masterarn: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// Changing the password failed.
    #[error(
        "setSecret: unable to set the password of user {username} for secret {secret}: {source}"
    )]
    SetPasswordFailed {
        /// Target user.
        username: String,
        /// Secret ARN.
        secret: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// testSecret failed.
    #[error("Unable to log into database with pending secret of secret ARN {secret}: {source}")]
    PendingTestFailed {
        /// Secret ARN.
        secret: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// finishSecret refused to promote credentials that do not log in (W23).
    #[error(
        "finishSecret: refusing to promote version {token} of secret {secret}: its credentials do not log in: {source}"
    )]
    PendingNotVerified {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// createSecret: the secret store's generator (`GetRandomPassword`) returned a password the
    /// engine does not accept ([`crate::PasswordDefaults::check`]); nothing was stored. The
    /// message names the rule broken, never the password.
    #[error(
        "createSecret: the password generated for version {token} of secret {secret} breaks a {engine} password rule, so nothing was stored: {source}"
    )]
    PasswordRejected {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
        /// Engine label.
        engine: &'static str,
        /// The rule broken.
        #[source]
        source: PasswordRuleError,
    },
    /// Another rotation is in flight (driver).
    #[error(
        "a rotation of secret {secret} is already in flight (version {version}); resume or abort it first"
    )]
    RotationInFlight {
        /// Secret ARN.
        secret: String,
        /// The in-flight version.
        version: String,
    },
    /// Nothing to resume or abort (driver).
    #[error("no rotation of secret {secret} is in flight")]
    NoRotationInFlight {
        /// Secret ARN.
        secret: String,
    },
    /// Nothing to roll back to: no version carries `AWSPREVIOUS` (driver).
    #[error(
        "secret {secret} has no AWSPREVIOUS version to roll back to (it was never rotated, or its previous version was removed)"
    )]
    NoPreviousVersion {
        /// Secret ARN.
        secret: String,
    },
    /// An abort could not restore the database to the current credentials.
    #[error(
        "abort: version {token} of secret {secret} is already set in the database, and setting the current password back (or proving it logs in afterwards) failed; nothing was removed; resume the rotation instead: {source}"
    )]
    RollbackFailed {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// An abort found a rotation session of the user that could still commit a password change
    /// after its proof, for longer than the abort had time to wait (the store's claim excludes
    /// nothing, so the run that opened it may be alive).
    #[error(
        "abort: refusing to abandon version {token} of secret {secret} now: a password change a rotation run sent could land after the proof; nothing was removed; abort again once that run's step has ended (or with a longer --timeout), or resume the rotation: {source}"
    )]
    SessionsOpen {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
        /// What the engine found.
        #[source]
        source: EngineError,
    },
    /// The claim on the secret is held by another process (driver).
    #[error(
        "another rotate command is working on secret {secret} right now; try again when it has finished"
    )]
    Busy {
        /// Secret ARN.
        secret: String,
    },
    /// `AWSPENDING` left this rotation's version while it ran (another rotation took the
    /// secret); nothing was changed in the database by this step.
    #[error(
        "version {token} of secret {secret} is no longer AWSPENDING (another rotation started); stopping without changing the database"
    )]
    PendingMoved {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
    },
    /// The driver's setSecret changed the database, then another rotation took the secret
    /// before this one finished: the database holds this version's password, which is kept
    /// (without its label) for recovery by the next rotation or `resume`.
    #[error(
        "version {token} of secret {secret} was already set in the database when another rotation took the secret; its password is kept in that version, and the next rotation or resume recovers it: {source}"
    )]
    Superseded {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
        /// Why the later step stopped.
        #[source]
        source: Box<RotationError>,
    },
    /// abort could not prove that the AWSCURRENT credentials log in, so it changed nothing.
    #[error(
        "abort: refusing to abandon version {token} of secret {secret}: the AWSCURRENT credentials do not log in and could not be restored, so removing AWSPENDING could strand the password the database holds; resume the rotation, fix the database, or use --force: {attempts}"
    )]
    AbortUnsafe {
        /// Token.
        token: String,
        /// Secret ARN.
        secret: String,
        /// Every login tried.
        attempts: Attempts,
    },
    /// A Secrets Manager call failed.
    #[error("{context}: {source}")]
    Store {
        /// What was being done (ids only).
        context: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// Another database failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl RotationError {
    /// A stable code for logs, metrics and the Lambda `errorType`.
    pub fn kind(&self) -> &'static str {
        use RotationError::*;
        match self {
            Event(_) => "InvalidEvent",
            Policy(_) => "InvalidPasswordPolicy",
            NotEnabled { .. } => "RotationNotEnabled",
            TokenNotStaged { .. } => "TokenNotStaged",
            TokenNotPending { .. } => "TokenNotPending",
            InvalidStep { .. } => "InvalidStep",
            InvalidSecret { .. } => "InvalidSecret",
            UserMismatch { .. } => "UserMismatch",
            HostMismatch { .. } => "HostMismatch",
            UsernameTooLong { .. } => "UsernameTooLong",
            PasswordRejected { .. } => "GeneratedPasswordRejected",
            ServerMismatch { .. } => "ServerMismatch",
            MasterInPair { .. } => "MasterInPair",
            SecretChanged { .. } => "SecretChanged",
            NoWorkingCredentials { .. } => "NoWorkingCredentials",
            PasswordsNotChecked { .. } => "PasswordsNotChecked",
            Busy { .. } => "RotationBusy",
            Superseded { .. } => "RotationSuperseded",
            PendingMoved { .. } => "PendingMoved",
            AbortUnsafe { .. } => "AbortUnsafe",
            CurrentLoginFailed { .. } => "CurrentLoginFailed",
            MissingMasterArn { .. } => "MissingMasterArn",
            MasterNotAllowed { .. } => "MasterNotAllowed",
            MasterHostMismatch { .. } => "MasterHostMismatch",
            MasterLoginFailed { .. } => "MasterLoginFailed",
            SetPasswordFailed { .. } => "SetPasswordFailed",
            PendingTestFailed { .. } => "PendingTestFailed",
            PendingNotVerified { .. } => "PendingNotVerified",
            RotationInFlight { .. } => "RotationInFlight",
            NoRotationInFlight { .. } => "NoRotationInFlight",
            NoPreviousVersion { .. } => "NoPreviousVersion",
            RollbackFailed { .. } => "RollbackFailed",
            SessionsOpen { .. } => "RotationSessionsOpen",
            Store { source, .. } => match source {
                StoreError::NotFound(_) => "SecretNotFound",
                StoreError::AccessDenied(_) => "SecretsManagerAccessDenied",
                StoreError::Timeout(_) => "SecretsManagerTimeout",
                StoreError::Busy(_) => "RotationBusy",
                StoreError::Conflict(_) => "RotationInFlight",
                StoreError::CurrentMoved { .. } => "SecretChanged",
                _ => "SecretsManagerError",
            },
            Engine(_) => "DatabaseError",
        }
    }

    /// Where the problem lies: drives the CLI's exit codes and groups the Lambda's `errorType`s.
    pub fn category(&self) -> ErrorCategory {
        use RotationError::*;
        match self {
            Policy(_) => ErrorCategory::Configuration,
            NotEnabled { .. }
            | TokenNotStaged { .. }
            | TokenNotPending { .. }
            | RotationInFlight { .. }
            | NoRotationInFlight { .. }
            | NoPreviousVersion { .. }
            | Busy { .. }
            | PendingMoved { .. }
            | SecretChanged { .. }
            | AbortUnsafe { .. }
            | SessionsOpen { .. } => ErrorCategory::Refused,
            Event(_)
            | InvalidStep { .. }
            | InvalidSecret { .. }
            | UserMismatch { .. }
            | HostMismatch { .. }
            | UsernameTooLong { .. }
            | PasswordRejected { .. }
            | ServerMismatch { .. }
            | MasterInPair { .. }
            | MissingMasterArn { .. }
            | MasterNotAllowed { .. }
            | MasterHostMismatch { .. }
            | Superseded { .. } => ErrorCategory::Secret,
            Store { source, .. } => match source {
                StoreError::Busy(_) | StoreError::Conflict(_) | StoreError::CurrentMoved { .. } => {
                    ErrorCategory::Refused
                }
                _ => ErrorCategory::Secret,
            },
            NoWorkingCredentials { .. }
            | PasswordsNotChecked { .. }
            | CurrentLoginFailed { .. }
            | MasterLoginFailed { .. }
            | SetPasswordFailed { .. }
            | PendingTestFailed { .. }
            | PendingNotVerified { .. }
            | RollbackFailed { .. } => ErrorCategory::Database,
            Engine(e) if e.kind() == ErrorKind::InvalidInput => ErrorCategory::Secret,
            Engine(_) => ErrorCategory::Database,
        }
    }

    /// The database failure kind underneath, if any.
    pub fn engine_kind(&self) -> Option<ErrorKind> {
        use RotationError::*;
        match self {
            NoWorkingCredentials { attempts, .. } | AbortUnsafe { attempts, .. } => {
                attempts.main_kind()
            }
            CurrentLoginFailed { source, .. }
            | MasterLoginFailed { source, .. }
            | SetPasswordFailed { source, .. }
            | PendingTestFailed { source, .. }
            | PendingNotVerified { source, .. }
            | RollbackFailed { source, .. }
            | SessionsOpen { source, .. }
            | Engine(source) => Some(source.kind()),
            _ => None,
        }
    }

    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> RotationError {
        let context = context.into();
        move |source| RotationError::Store { context, source }
    }
}

/// The error with its whole cause chain, one line: for logs and the Lambda error message.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Why a database operation failed, in terms an operator can act on (W18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// DNS failure, connection refused, network unreachable.
    Unreachable,
    /// Connect or statement timeout.
    Timeout,
    /// TLS handshake or certificate verification failed, or TLS was required and refused.
    Tls,
    /// The server refused the credentials.
    AuthFailed,
    /// The database named in the secret does not exist.
    UnknownDatabase,
    /// The user may not do what rotation needs.
    PermissionDenied,
    /// Something else the server reported.
    Server,
    /// The input cannot be used (e.g. an identifier the engine cannot hold).
    InvalidInput,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "Unreachable",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Tls => "TlsFailed",
            ErrorKind::AuthFailed => "AuthenticationFailed",
            ErrorKind::UnknownDatabase => "UnknownDatabase",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::Server => "ServerError",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::Other => "Other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A database failure as core sees it: a kind, a message without secrets, and the driver's
/// error as the source. Engine crates convert their own error types into this.
#[derive(Debug)]
pub struct EngineError {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl EngineError {
    /// A new error. `message` must not contain secret values.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EngineError {
            kind,
            message: message.into(),
            source: None,
        }
    }
    /// `what` (a database call, no secret values) did not answer before the step's deadline:
    /// kind [`ErrorKind::Timeout`], worded alike for every engine.
    pub fn past_deadline(what: &str) -> Self {
        EngineError::new(
            ErrorKind::Timeout,
            format!("{what}: no answer before the step's deadline"),
        )
    }
    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
    /// Adds advice to the message (what to change). Must not contain secret values.
    pub fn with_note(mut self, note: &str) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }
    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_recovered_attempts_are_counted_not_listed() {
        let mut a = Attempts::default();
        a.push(
            CredentialSource::Current,
            EngineError::new(ErrorKind::AuthFailed, "refused"),
        );
        for i in 0..40 {
            a.push(
                CredentialSource::Recovered(format!("v{i}")),
                EngineError::new(ErrorKind::AuthFailed, "refused"),
            );
        }
        let text = a.to_string();
        assert!(text.starts_with(
            "AWSCURRENT: refused (AuthenticationFailed); unlabelled version v0: refused (AuthenticationFailed)"
        ));
        assert!(text.contains("unlabelled version v2: refused"));
        assert!(!text.contains("v3"), "{text}");
        assert!(text.ends_with("; and 37 more unlabelled versions, none of which logged in"));
        assert_eq!(a.main_kind(), Some(ErrorKind::AuthFailed));
    }
}
