//! A preflight: what a rotation of a secret would need, checked without changing anything
//! (`rotate plan`, and the Lambda's `{"Step": "plan"}` event). Each check is a line: passed,
//! failed (with the kind of the failure and the fix), or skipped because an earlier one
//! failed. Writes nothing to the store and nothing to the database: it reads, logs in, and
//! asks the engine what the acting user may do.

use std::fmt;

use serde_json::{Value, json};

use crate::deadline::Deadline;
use crate::error::{CredentialSource, RotationError};
use crate::rotation::Rotation;
use crate::rotator::{EngineError, ErrorKind, Rotator, alternate_username};
use crate::secret::{DatabaseSecret, SslKey};
use crate::stage::{Stage, Strategy};
use crate::store::{SecretStore, VersionSelector};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// It holds.
    Pass,
    /// It does not: a rotation would fail (or, for `rotation`, be refused).
    Fail,
    /// Not checked: an earlier check it needs failed, or the engine cannot tell.
    Skip,
}

impl CheckStatus {
    /// `pass`, `fail`, `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Skip => "skip",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable name: `store`, `rotation`, `secret`, `password`, `versions`, `tls`, `login`,
    /// `master`, `master-login`, `rights`.
    pub name: &'static str,
    /// How it ended.
    pub status: CheckStatus,
    /// What was found (names, hosts, kinds; never a secret value).
    pub detail: String,
    /// The error kind of a failure (as the rotation would report it).
    pub kind: Option<String>,
    /// What to do about a failure.
    pub fix: Option<String>,
}

/// Every check of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The secret as named.
    pub secret: String,
    /// The engine's short name.
    pub engine: &'static str,
    /// The strategy checked for.
    pub strategy: Strategy,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Plan {
    /// Whether a rotation is expected to succeed: no check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    /// The plan's last line: a rotation is said to be expected to succeed only when every
    /// check was made and passed; a check that could not be made (the engine cannot tell
    /// without trying) is named, never read as a pass.
    pub fn summary(&self) -> String {
        let named = |status: CheckStatus| -> Vec<&str> {
            self.checks
                .iter()
                .filter(|c| c.status == status)
                .map(|c| c.name)
                .collect()
        };
        let (failed, skipped) = (named(CheckStatus::Fail), named(CheckStatus::Skip));
        match (failed.len(), skipped.len()) {
            (0, 0) => "a rotation is expected to succeed".into(),
            (0, n) => format!(
                "no check failed, but {n} could not be made ({}): a rotation may still fail there",
                skipped.join(", ")
            ),
            (n, _) => format!("a rotation would fail: {n} check(s) failed"),
        }
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The plan as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "secret": self.secret,
            "engine": self.engine,
            "strategy": self.strategy.to_string(),
            "passed": self.passed(),
            "summary": self.summary(),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "status": c.status.as_str(),
                "detail": c.detail,
                "kind": c.kind,
                "fix": c.fix,
            })).collect::<Vec<_>>(),
        })
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: CheckStatus::Pass,
        detail: detail.into(),
        kind: None,
        fix: None,
    }
}

fn fail(
    name: &'static str,
    detail: impl Into<String>,
    kind: &str,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        status: CheckStatus::Fail,
        detail: detail.into(),
        kind: Some(kind.to_string()),
        fix: Some(fix.into()),
    }
}

fn skip(name: &'static str, why: impl Into<String>) -> Check {
    Check {
        name,
        status: CheckStatus::Skip,
        detail: why.into(),
        kind: None,
        fix: None,
    }
}

/// The fix for a rotation error found by a check.
fn fix_for(e: &RotationError) -> String {
    use crate::store::StoreError;
    match e {
        RotationError::Store { source, .. } => match source {
            StoreError::NotFound(_) => "check the secret's name or ARN, the region and --store".into(),
            StoreError::AccessDenied(_) => {
                "grant the role this Secrets Manager action on the secret (and kms:Decrypt on its key); see docs/deploy.md".into()
            }
            StoreError::Timeout(_) => {
                "give the function a route to Secrets Manager (a VPC endpoint or NAT), or set SECRETS_MANAGER_ENDPOINT".into()
            }
            _ => "see the message; docs/errors.md lists each kind".into(),
        },
        RotationError::InvalidSecret { .. } => {
            "correct the value (rotate put SECRET KEY=VALUE on the file store); the message names the key".into()
        }
        RotationError::MissingMasterArn { .. } => {
            "add masterarn (the ARN of an admin secret), or rotate with --strategy single-user".into()
        }
        RotationError::UsernameTooLong { .. } => "use a shorter user name".into(),
        RotationError::MasterNotAllowed { .. } => {
            "add the master's ARN to ALLOWED_MASTER_SECRETS".into()
        }
        RotationError::MasterInPair { .. } => "use a separate admin user as the master".into(),
        RotationError::MasterHostMismatch { .. } | RotationError::ServerMismatch { .. } => {
            "the master secret must be for the same server as the secret".into()
        }
        _ => "see docs/errors.md for this kind".into(),
    }
}

/// The fix for a failed login, by the database kind.
fn login_fix(e: &EngineError, secret: &DatabaseSecret) -> String {
    match e.kind() {
        ErrorKind::Unreachable => {
            "check host and port; from where the function runs, the database's security group must admit it (same VPC or a route)".into()
        }
        ErrorKind::Timeout => {
            "the server did not answer in time: check the network path and the security groups; CONNECT_TIMEOUT_SECONDS".into()
        }
        ErrorKind::Tls => crate::tls::failure_hint(secret).into(),
        ErrorKind::AuthFailed => {
            "the password in the secret is not the database's: put the right one in the secret (rotate put SECRET --password-stdin), or reset it in the database".into()
        }
        ErrorKind::UnknownDatabase => "correct dbname: the database must exist".into(),
        ErrorKind::PermissionDenied => "grant the user the right to log in to the database".into(),
        ErrorKind::InvalidInput => "correct the secret's value (the message names the key)".into(),
        _ => "see the message; docs/errors.md lists each kind".into(),
    }
}

/// How the secret connects, for the login line.
fn transport(secret: &DatabaseSecret) -> &'static str {
    match secret.ssl() {
        SslKey::Explicit(false) => "without TLS (\"ssl\": false)",
        _ => "over verified TLS",
    }
}

fn target(secret: &DatabaseSecret, default_port: Option<u16>) -> String {
    let port = secret.port().or(default_port).map(|p| format!(":{p}"));
    format!(
        "{}@{}{}",
        secret.username().unwrap_or_default(),
        secret.host().unwrap_or_default(),
        port.unwrap_or_default()
    )
}

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    /// Checks, without changing anything, what a rotation of `secret_id` would need (see the
    /// module docs). Never fails: every problem is a failed check.
    pub async fn plan(&self, secret_id: &str) -> Plan {
        self.plan_until(secret_id, Deadline::after(self.options.step_timeout))
            .await
    }

    /// [`Rotation::plan`] with every call bounded by `deadline` (a Lambda invocation's).
    pub async fn plan_until(&self, secret_id: &str, deadline: Deadline) -> Plan {
        let profile = self.rotator.profile();
        let strategy = self.rotator.strategy();
        let mut plan = Plan {
            secret: secret_id.to_string(),
            engine: profile.name,
            strategy,
            checks: Vec::new(),
        };
        let description = match self.describe(secret_id, deadline).await {
            Ok(d) => d,
            Err(e) => {
                plan.checks
                    .push(fail("store", crate::error_chain(&e), e.kind(), fix_for(&e)));
                for name in [
                    "rotation", "secret", "password", "versions", "tls", "login", "rights",
                ] {
                    plan.checks
                        .push(skip(name, "needs the secret's description"));
                }
                return plan;
            }
        };
        plan.checks.push(pass(
            "store",
            format!("DescribeSecret of {}", description.arn),
        ));
        let rotation = match (
            description.rotation_enabled,
            description.rotation_in_flight(),
        ) {
            (Some(false), _) => fail(
                "rotation",
                "rotation is disabled on the secret",
                "RotationNotEnabled",
                "enable rotation on the secret",
            ),
            (_, Some(v)) => fail(
                "rotation",
                format!("a rotation is in flight (AWSPENDING on version {v})"),
                "RotationInFlight",
                "rotate resume to finish it, or rotate abort to abandon it",
            ),
            _ => pass("rotation", "enabled, none in flight"),
        };
        plan.checks.push(rotation);

        let ctx = self.context(&description, "", deadline);
        let arn = description.arn.as_str();
        let current = match ctx
            .store_call(
                "GetSecretValue",
                || format!("reading the current value of secret {arn}"),
                self.store
                    .get_value(arn, VersionSelector::stage(Stage::Current)),
            )
            .await
            .and_then(|v| {
                profile
                    .check_secret_with(arn, &v.value, strategy, |s| self.rotator.username_limit(s))
            }) {
            Ok(c) => {
                plan.checks.push(pass(
                    "secret",
                    format!(
                        "a {} secret for {strategy}",
                        c.engine().unwrap_or(profile.name)
                    ),
                ));
                Some(c)
            }
            Err(e) => {
                plan.checks.push(fail(
                    "secret",
                    crate::error_chain(&e),
                    e.kind(),
                    fix_for(&e),
                ));
                None
            }
        };

        let password = match ctx
            .store_call(
                "GetRandomPassword",
                || "generating a password".to_string(),
                self.store.random_password(&self.policy),
            )
            .await
        {
            Ok(p) => match profile
                .password
                .check(secrecy::ExposeSecret::expose_secret(&p))
            {
                Ok(()) => pass(
                    "password",
                    format!(
                        "a generated password meets the {} rules",
                        profile.password.engine
                    ),
                ),
                Err(rule) => fail(
                    "password",
                    format!(
                        "a generated password breaks a {} rule: {rule}",
                        profile.password.engine
                    ),
                    "GeneratedPasswordRejected",
                    "the function's EXCLUDE_CHARACTERS / PASSWORD_LENGTH let such passwords through: use the engine's defaults",
                ),
            },
            Err(e) => fail("password", crate::error_chain(&e), e.kind(), fix_for(&e)),
        };
        plan.checks.push(password);

        let versions = match ctx
            .store_call(
                "ListSecretVersionIds",
                || format!("listing the versions of secret {arn}"),
                self.store.list_versions(arn),
            )
            .await
        {
            Ok(v) => pass(
                "versions",
                format!("ListSecretVersionIds: {} versions kept", v.len()),
            ),
            Err(e) => fail(
                "versions",
                crate::error_chain(&e),
                e.kind(),
                "grant secretsmanager:ListSecretVersionIds: recovery of interrupted rotations needs it",
            ),
        };
        plan.checks.push(versions);

        let Some(current) = current else {
            plan.checks.push(skip("tls", "needs a usable secret"));
            plan.checks.push(skip("login", "needs a usable secret"));
            plan.checks.push(skip("rights", "needs a usable secret"));
            return plan;
        };
        let tls = deadline
            .run(self.rotator.check_tls(&current))
            .await
            .unwrap_or_else(|_| {
                Err(EngineError::new(
                    ErrorKind::Timeout,
                    "the TLS check did not finish in time",
                ))
            });
        plan.checks.push(match tls {
            Ok(Some(detail)) => pass("tls", detail),
            Ok(None) => skip("tls", format!("{} has no TLS check", profile.name)),
            Err(e) => fail(
                "tls",
                crate::error_chain(&e),
                e.kind().as_str(),
                login_fix(&e, &current),
            ),
        });
        let default_port = profile.default_port;
        let mut session = match ctx.login(&CredentialSource::Current, &current).await {
            Ok(s) => {
                // A login proves a password only if a wrong one is refused.
                plan.checks.push(match ctx.passwords_checked(&current).await {
                    Some(false) => fail(
                        "login",
                        format!(
                            "AWSCURRENT logs in as {}, and so does a random password: the database does not check this user's password",
                            target(&current, default_port)
                        ),
                        "PasswordsNotChecked",
                        "make the database require the user's password (no trust authentication, no password-less user) before rotating",
                    ),
                    _ => pass(
                        "login",
                        format!(
                            "AWSCURRENT logs in as {} {}",
                            target(&current, default_port),
                            transport(&current)
                        ),
                    ),
                });
                Some(s)
            }
            Err(e) => {
                let kind = e.kind().as_str();
                plan.checks.push(fail(
                    "login",
                    format!(
                        "AWSCURRENT ({}): {}",
                        target(&current, default_port),
                        crate::error_chain(&e)
                    ),
                    kind,
                    login_fix(&e, &current),
                ));
                None
            }
        };
        let needs_master = profile.needs_master(strategy);
        if needs_master && session.is_none() {
            // As setSecret: the master is used only for a secret whose own credentials work.
            plan.checks.push(skip(
                "master",
                "needs AWSCURRENT to log in first (the master is used only for a secret whose own credentials work; a rotation also takes a version without a label that logs in as the user as that proof)",
            ));
            plan.checks
                .push(skip("master-login", "needs a usable master secret"));
        } else if needs_master {
            if let Some(s) = session.take() {
                self.rotator.close(s).await;
            }
            let user = current.username().unwrap_or_default();
            let pending_user = match strategy {
                Strategy::AlternatingUsers => {
                    alternate_username(user, self.rotator.username_limit(&current))
                        .unwrap_or_default()
                }
                Strategy::SingleUser => user.to_string(),
            };
            match crate::steps::set::resolve_master(&ctx, &current, &pending_user).await {
                Ok((masterarn, master)) => {
                    plan.checks.push(pass(
                        "master",
                        format!("master secret {masterarn} is usable"),
                    ));
                    match ctx.login(&CredentialSource::Master, &master).await {
                        Ok(s) => {
                            plan.checks.push(pass(
                                "master-login",
                                format!(
                                    "the master logs in as {} {}",
                                    target(&master, default_port),
                                    transport(&master)
                                ),
                            ));
                            session = Some(s);
                        }
                        Err(e) => plan.checks.push(fail(
                            "master-login",
                            format!(
                                "master ({}): {}",
                                target(&master, default_port),
                                crate::error_chain(&e)
                            ),
                            e.kind().as_str(),
                            login_fix(&e, &master),
                        )),
                    }
                }
                Err(e) => {
                    plan.checks.push(fail(
                        "master",
                        crate::error_chain(&e),
                        e.kind(),
                        fix_for(&e),
                    ));
                    plan.checks
                        .push(skip("master-login", "needs a usable master secret"));
                }
            }
        }
        let rights = match session {
            None => skip("rights", "needs a session of the acting user"),
            Some(mut s) => {
                let result = deadline
                    .run(self.rotator.check_rights(&mut s, &current))
                    .await
                    .unwrap_or_else(|_| {
                        Err(EngineError::new(
                            ErrorKind::Timeout,
                            "checking the acting user's rights did not finish in time",
                        ))
                    });
                self.rotator.close(s).await;
                match result {
                    Ok(Some(detail)) => pass("rights", detail),
                    Ok(None) => skip(
                        "rights",
                        format!("{} cannot tell without trying the change", profile.name),
                    ),
                    Err(e) => fail(
                        "rights",
                        crate::error_chain(&e),
                        e.kind().as_str(),
                        match strategy {
                            Strategy::SingleUser if !needs_master => profile.advice.own_password,
                            _ => profile.advice.master,
                        },
                    ),
                }
            }
        };
        plan.checks.push(rights);
        plan
    }
}
