//! Secrets Manager rotation of Redis ACL users on a self-managed Redis 7 or later (the idea of
//! ElastiCache's user rotation; ElastiCache itself manages users through its own API, not
//! `ACL SETUSER`), built only on the toolkit's public API: a [`Rotator`] and its session. Copy
//! it as the starting point of an engine of your own.
//!
//! A command held in the network past its step's deadline cannot lock a secret out: no
//! `ACL SETUSER` here resets a user's passwords. New passwords are added; old ones are removed
//! by their hashes, as `ACL GETUSER` listed them a moment before, in the same atomic command.
//! Delivered late, after a later rotation changed the user's passwords, such a command finds a
//! hash gone and Redis refuses all of it. The clone's commands that change its rights or its
//! password each carry such a removal (one-time passwords no one keeps serve as fences; adding
//! one is harmless late), so a late one never changes them. A `nopass` user is refused (any password would log in). At worst a late *add* leaves one stale password working until that user's
//! next rotation removes it (RELIABILITY.md).
//!
//! # The secret
//!
//! ```json
//! {"engine": "redis", "host": "my-cache.example.com", "port": 6379, "ssl": true,
//!  "username": "app", "password": "...", "masterarn": "arn:aws:secretsmanager:...:secret:redis-admin"}
//! ```
//!
//! The master secret has the same keys (no `masterarn`) for a user allowed to run `ACL SETUSER`.
//! TLS is verified against the shared trust sources unless `"ssl": false`, as for the built-in
//! engines.
//!
//! # The strategies
//!
//! Changing an ACL user's password needs `ACL SETUSER`, an admin command, so both strategies act
//! through the master secret (the profile's [`EngineProfile::single_user_master`]). Redis keeps
//! several passwords per user, which no database engine here offers:
//!
//! - **Single user**: setSecret *adds* the new password (`ACL SETUSER app #<sha256>`), so the
//!   current one keeps working; finishSecret promotes it, then the master drops every other
//!   password by its hash (`ACL SETUSER app !<sha256> ...`, one atomic command), never when the
//!   user does not hold the new one. There is no moment when `AWSCURRENT` fails.
//! - **Alternating users**: setSecret gives the other user of the pair (`app` / `app_clone`) the
//!   new password. The clone is (re)made from the original's rights as `ACL GETUSER` gives
//!   them field by field: a one-time password first (a fence; it makes the clone if missing),
//!   then in one atomic command its keys, channels, selectors and commands reset to the
//!   original's, a second one-time password added and every other password (the fence too)
//!   removed; then it is read back and compared with the original as it is then, and only if
//!   the rights are the same does it get the new password, in place of the one-time one. A
//!   clone whose rights differ keeps no password any secret holds, and the step fails. The original keeps its own rules and only has its passwords replaced (the new
//!   one added, the others removed), so the original is the source of truth.
//!
//! Passwords reach `ACL SETUSER` as SHA-256 hashes (`#<hex>`), never in plain text; only `AUTH`
//! carries one, as every client's login does.

use std::sync::Arc;

use rotation_core::rotator::{BoxError, is_clone_of};
use rotation_core::tls::{TlsPlan, server_name};
use rotation_core::{
    AnyRotator, DatabaseSecret, Deadline, Engine, EngineConfig, EngineEnv, EngineError,
    EngineProfile, ErrorKind, PasswordDefaults, Rotator, Strategy,
};
use rotation_trust::probe::{Handshake, Probe};
use rotation_trust::settings::ConnectConfig;
use rotation_trust::{ConnectSettings, TrustSource};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

pub mod resp;
#[cfg(feature = "testing")]
pub mod testing;

use resp::{Conn, Reply};

/// Redis's default port.
pub const DEFAULT_PORT: u16 = 6379;

/// The engine: `engine` key `redis`; ElastiCache's password rules (16 to 128 printable
/// characters, no space), with AWS's usual exclusions.
pub const PROFILE: EngineProfile = EngineProfile {
    name: "redis",
    engines: &["redis"],
    password: PasswordDefaults {
        engine: "redis",
        exclude_characters: "/@\"'\\:",
        length: 32,
        min_length: 16,
        max_length: 128,
        class_switches: true,
        forbidden: " ",
        required_classes: false,
        printable_ascii: true,
    },
    max_username_bytes: None,
    default_port: Some(DEFAULT_PORT),
    single_user_master: true,
    advice: rotation_core::RightsAdvice {
        own_password: "single-user Redis rotations act through the master",
        master: "give the master the ACL command (+acl|setuser and +acl|getuser)",
    },
};

/// The engine as one value, for `rotation_lambda::run` and `rotation_cli::main`: its profile,
/// its function's name, and its settings (the shared connection settings).
pub const ENGINE: Engine = Engine {
    profile: &PROFILE,
    function_name: "redis-acl",
    env: &rotation_trust::settings::ENV,
    configure,
};

fn configure(env: &EngineEnv<'_>) -> Result<Arc<dyn EngineConfig>, BoxError> {
    ConnectConfig::read(env, |strategy, settings| {
        AnyRotator::new(RedisAclRotator::new(strategy, settings))
    })
}

/// The rotator, for one strategy.
#[derive(Debug, Clone)]
pub struct RedisAclRotator {
    strategy: Strategy,
    settings: ConnectSettings,
}

/// A connection that authenticated as `user`; every call on it is bounded by `deadline`.
#[derive(Debug)]
pub struct RedisSession {
    conn: Conn,
    user: String,
    deadline: Deadline,
}

impl RedisAclRotator {
    /// A rotator for `strategy` connecting with `settings` (trust, plaintext fallback, connect
    /// timeout).
    pub fn new(strategy: Strategy, settings: ConnectSettings) -> RedisAclRotator {
        RedisAclRotator { strategy, settings }
    }

    /// Opens a stream to the secret's server, TLS as the secret asks.
    async fn open(&self, secret: &DatabaseSecret) -> Result<Conn, EngineError> {
        // Connect to the name the certificate is verified for (`tls_server_name` when set), as
        // the built-in engines do.
        let host = server_name(secret);
        let port = secret.port().unwrap_or(DEFAULT_PORT);
        let plan = TlsPlan::for_secret(secret, self.settings.allow_plaintext_fallback);
        let tcp = || async {
            TcpStream::connect((host, port)).await.map_err(|e| {
                EngineError::new(
                    ErrorKind::Unreachable,
                    format!("cannot connect to {host}:{port}"),
                )
                .with_source(e)
            })
        };
        if plan == TlsPlan::Disabled {
            return Ok(Conn::new(Box::new(tcp().await?)));
        }
        let tls = async {
            let name = rustls::pki_types::ServerName::try_from(server_name(secret).to_string())
                .map_err(|_| {
                    EngineError::new(
                        ErrorKind::InvalidInput,
                        "the secret's host is not a name a certificate can be checked against",
                    )
                })?;
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| EngineError::new(ErrorKind::Other, "no TLS version").with_source(e))?
            .with_root_certificates(self.settings.trust.root_store())
            .with_no_client_auth();
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp().await?)
                .await
                .map_err(|e| {
                    EngineError::new(ErrorKind::Tls, format!("TLS with {host}:{port} failed"))
                        .with_source(e)
                        .with_note(rotation_core::tls::failure_hint(secret))
                })?;
            Ok::<_, EngineError>(Conn::new(Box::new(stream)))
        }
        .await;
        match tls {
            Err(e) if e.kind() == ErrorKind::Tls && plan == TlsPlan::RequiredWithFallback => {
                tracing::warn!(
                    host,
                    "TLS failed; ALLOW_PLAINTEXT_FALLBACK: connecting without it"
                );
                Ok(Conn::new(Box::new(tcp().await?)))
            }
            other => other,
        }
    }
}

/// A `nopass` user logs in with any password: rotating its password would prove nothing.
fn nopass(user: &str) -> EngineError {
    EngineError::new(
        ErrorKind::InvalidInput,
        format!(
            "Redis user {user} has nopass (any password logs in): give it a password and remove nopass before rotating"
        ),
    )
}

/// A one-time password no one keeps: 32 random bytes in hex.
fn one_time() -> Result<String, EngineError> {
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| {
            EngineError::new(ErrorKind::Other, "no random bytes for a one-time password")
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The SHA-256 of a password in ACL rule form, `#<64 hex digits>`.
fn hashed(password: &str) -> String {
    let digest = Sha256::digest(password.as_bytes());
    let mut rule = String::with_capacity(65);
    rule.push('#');
    for b in digest {
        rule.push_str(&format!("{b:02x}"));
    }
    rule
}

/// A server's error `text` for a command sent with `args`, safe to show: for `AUTH`, only its
/// first word (`WRONGPASS`, `ERR`: a server may echo the arguments of a command it refuses,
/// the password among them); otherwise with every argument after the command's name (and an
/// `ACL` subcommand) of four characters or more, and every password hash, taken out.
fn redact_arguments(text: &str, args: &[&str]) -> String {
    if args.first().is_some_and(|c| c.eq_ignore_ascii_case("AUTH")) {
        return text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
    }
    let mut out = text.to_string();
    // The command's name (and ACL's subcommand) is not a value: kept.
    let names = if args.first().is_some_and(|c| c.eq_ignore_ascii_case("ACL")) {
        2
    } else {
        1
    };
    let mut sent: Vec<&str> = args
        .iter()
        .skip(names)
        .copied()
        .filter(|a| a.len() >= 4)
        .collect();
    // The longest first, so no argument is left half-replaced by a shorter one inside it.
    sent.sort_by_key(|a| std::cmp::Reverse(a.len()));
    for arg in sent {
        out = out.replace(arg, "<argument>");
    }
    redact_hashes(&out)
}

/// `text` with every run of 64 hex digits (a password hash a server error may echo, as in
/// "Error in ACL SETUSER modifier '!<hash>'") replaced by `<hash>`.
fn redact_hashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() == 64 { "<hash>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// The `ACL SETUSER` rules that remove each of `hashes` (hex, as `ACL GETUSER` lists them)
/// other than `keep` (`#<hex>`). Redis refuses the whole command when one of them is gone, so
/// a command delivered late, after the user's passwords changed, changes nothing.
fn removals(hashes: &Hashes, keep: &str) -> Vec<String> {
    hashes
        .0
        .iter()
        .filter(|h| Some(h.as_str()) != keep.strip_prefix('#'))
        .map(|h| format!("!{h}"))
        .collect()
}

impl RedisSession {
    /// Runs a command within the session's deadline; a server error is an [`EngineError`]
    /// naming `what` (never the arguments: they may hold a password hash).
    async fn call(&mut self, what: &str, args: &[&str]) -> Result<Reply, EngineError> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = self
            .deadline
            .run(self.conn.call(&bytes))
            .await
            .map_err(|_| {
                EngineError::new(ErrorKind::Timeout, format!("{what} did not answer in time"))
            })?
            .map_err(|e| {
                EngineError::new(ErrorKind::Unreachable, format!("{what}: connection failed"))
                    .with_source(e)
            })?;
        match reply {
            Reply::Error(e) => Err(EngineError::new(
                if e.starts_with("NOPERM") {
                    ErrorKind::PermissionDenied
                } else {
                    ErrorKind::Server
                },
                format!("{what}: {}", redact_arguments(&e, args)),
            )),
            other => Ok(other),
        }
    }

    /// The rights of a user that must exist (`ACL SETUSER` would create one).
    async fn existing_acl(&mut self, user: &str) -> Result<Acl, EngineError> {
        self.acl(user).await?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::InvalidInput,
                format!("there is no ACL user {user}"),
            )
        })
    }

    /// [`RedisSession::existing_acl`], refusing a `nopass` user (any password logs in).
    async fn usable_acl(&mut self, user: &str) -> Result<Acl, EngineError> {
        let acl = self.existing_acl(user).await?;
        if acl.flags.iter().any(|f| f == "nopass") {
            return Err(nopass(user));
        }
        Ok(acl)
    }

    /// `user`'s rights as `ACL GETUSER` gives them, field by field (never re-split from the
    /// `ACL LIST` text, where a `)` in a key pattern would end a selector early); `None` when
    /// there is no such user.
    async fn acl(&mut self, user: &str) -> Result<Option<Acl>, EngineError> {
        let reply = self.call("ACL GETUSER", &["ACL", "GETUSER", user]).await?;
        let bad = || EngineError::new(ErrorKind::Server, "ACL GETUSER: an unexpected reply");
        let fields = match reply {
            Reply::Array(Some(fields)) => fields,
            Reply::Array(None) | Reply::Bulk(None) => return Ok(None),
            _ => return Err(bad()),
        };
        let mut acl = Acl::default();
        for pair in fields.chunks(2) {
            let [name, value] = pair else {
                return Err(bad());
            };
            let text = || value.text().ok_or_else(bad);
            match name.text().as_deref() {
                Some("flags") => acl.flags = strings(value).ok_or_else(bad)?,
                Some("passwords") => acl.passwords = Hashes(strings(value).ok_or_else(bad)?),
                Some("commands") => acl.commands = text()?,
                Some("keys") => acl.keys = text()?,
                Some("channels") => acl.channels = text()?,
                Some("selectors") => {
                    let Reply::Array(Some(selectors)) = value else {
                        return Err(bad());
                    };
                    for selector in selectors {
                        let Reply::Array(Some(parts)) = selector else {
                            return Err(bad());
                        };
                        let mut s = Selector::default();
                        for part in parts.chunks(2) {
                            let [name, value] = part else {
                                return Err(bad());
                            };
                            let value = value.text().ok_or_else(bad)?;
                            match name.text().as_deref() {
                                Some("commands") => s.commands = value,
                                Some("keys") => s.keys = value,
                                Some("channels") => s.channels = value,
                                _ => {}
                            }
                        }
                        acl.selectors.push(s);
                    }
                }
                _ => {}
            }
        }
        Ok(Some(acl))
    }
}

/// The strings of an array reply.
fn strings(reply: &Reply) -> Option<Vec<String>> {
    match reply {
        Reply::Array(Some(items)) => items.iter().map(Reply::text).collect(),
        _ => None,
    }
}

/// A user's rights, and the hashes of its passwords.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Acl {
    passwords: Hashes,
    flags: Vec<String>,
    commands: String,
    keys: String,
    channels: String,
    selectors: Vec<Selector>,
}

/// The SHA-256 hashes (hex) of a user's passwords; `Debug` gives only how many.
#[derive(Clone, Default, PartialEq, Eq)]
struct Hashes(Vec<String>);

impl std::fmt::Debug for Hashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} password hashes", self.0.len())
    }
}

impl Hashes {
    fn contains(&self, rule: &str) -> bool {
        rule.strip_prefix('#')
            .is_some_and(|h| self.0.iter().any(|x| x == h))
    }
}

/// One selector: commands, key patterns and channel patterns, each space-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Selector {
    commands: String,
    keys: String,
    channels: String,
}

impl Acl {
    /// The `ACL SETUSER` arguments that give a user reset of its keys, channels, selectors
    /// and commands exactly these rights (its passwords untouched): one argument per rule,
    /// each selector one argument (as it was made). Redis refuses spaces in patterns, so
    /// splitting the fields on spaces is exact.
    fn rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = ["resetkeys", "resetchannels", "clearselectors", "-@all"]
            .map(String::from)
            .to_vec();
        rules.extend(
            self.flags
                .iter()
                .filter(|f| matches!(f.as_str(), "on" | "off" | "skip-sanitize-payload"))
                .cloned(),
        );
        if !self.flags.iter().any(|f| f == "skip-sanitize-payload") {
            // Undoes a `skip-sanitize-payload` the other user may have had.
            rules.push("sanitize-payload".into());
        }
        for field in [&self.keys, &self.channels, &self.commands] {
            rules.extend(field.split_whitespace().map(String::from));
        }
        for s in &self.selectors {
            let channels = if s.channels.is_empty() {
                "resetchannels"
            } else {
                &s.channels
            };
            rules.push(format!("({} {channels} {})", s.keys, s.commands));
        }
        rules
    }

    /// Whether `other` has the same rights (flags about payload sanitising aside). Each field
    /// is compared as a set of rules: Redis describes one set of commands with its
    /// subcommands in varying order (seen on a fresh 7.0 server).
    fn same_rights(&self, other: &Acl) -> bool {
        let on = |a: &Acl| a.flags.iter().any(|f| f == "on");
        fn set(field: &str) -> Vec<&str> {
            let mut rules: Vec<&str> = field.split_whitespace().collect();
            rules.sort_unstable();
            rules
        }
        fn fields(a: &Acl) -> Vec<Vec<&str>> {
            let mut all = vec![set(&a.commands), set(&a.keys), set(&a.channels)];
            for s in &a.selectors {
                all.extend([set(&s.commands), set(&s.keys), set(&s.channels)]);
            }
            all
        }
        on(self) == on(other)
            && self.selectors.len() == other.selectors.len()
            && fields(self) == fields(other)
    }
}

impl Rotator for RedisAclRotator {
    type Session = RedisSession;

    fn profile(&self) -> &EngineProfile {
        &PROFILE
    }

    fn strategy(&self) -> Strategy {
        self.strategy
    }

    async fn login(
        &self,
        secret: &DatabaseSecret,
        deadline: Deadline,
    ) -> Result<RedisSession, EngineError> {
        let user = secret.username().unwrap_or_default().to_string();
        let connect = deadline.cap(self.settings.connect_timeout);
        let conn = tokio::time::timeout(connect, self.open(secret))
            .await
            .map_err(|_| {
                EngineError::new(
                    ErrorKind::Timeout,
                    format!(
                        "connecting to {} did not finish in time",
                        secret.host().unwrap_or_default()
                    ),
                )
            })??;
        let mut session = RedisSession {
            conn,
            user: user.clone(),
            deadline,
        };
        let password = secret
            .password()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        match session.call("AUTH", &["AUTH", &user, &password]).await {
            Ok(_) => Ok(session),
            Err(e) if e.message().contains("WRONGPASS") => Err(EngineError::new(
                ErrorKind::AuthFailed,
                format!("Redis refused the password of user {user} (or the user is off)"),
            )),
            Err(e) => Err(e),
        }
    }

    async fn set_own_password(
        &self,
        _session: &mut RedisSession,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        // Never called: PROFILE.single_user_master routes single user through the master.
        Err(EngineError::new(
            ErrorKind::PermissionDenied,
            format!(
                "Redis user {} cannot change its own password (ACL SETUSER is an admin command): rotate through a master secret",
                target.username().unwrap_or_default()
            ),
        ))
    }

    async fn set_password_as_master(
        &self,
        session: &mut RedisSession,
        current: &DatabaseSecret,
        target: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = hashed(PROFILE.password_to_set(target)?);
        let user = target.username().unwrap_or_default();
        let current_user = current.username().unwrap_or_default();
        match self.strategy {
            Strategy::SingleUser => {
                session.usable_acl(user).await?;
                // Added beside the current password, which applications still use.
                session
                    .call(
                        "ACL SETUSER (add a password)",
                        &["ACL", "SETUSER", user, &password],
                    )
                    .await?;
            }
            Strategy::AlternatingUsers if is_clone_of(user, current_user) => {
                // The clone: made again from the original's rights, checked against them, and
                // only then given the new password, so no secret's password ever opens a clone
                // with other rights (a retry that finds the pending password working skips
                // setSecret). Each command must change nothing if the network delivers it
                // late, after a newer attempt: each removes a one-time password (no one keeps
                // it) that a newer attempt removes first, and Redis refuses all of a command
                // one of whose removals finds nothing to remove.
                // 1. A fence (makes the clone if missing; delivered late, it adds a password
                //    no one knows).
                let fence = hashed(&one_time()?);
                session
                    .call(
                        "ACL SETUSER (the clone's fence)",
                        &["ACL", "SETUSER", user, &fence],
                    )
                    .await?;
                // 2. The original's rights and a second one-time password; every other
                //    password removed, the fence and any earlier attempt's among them.
                let original = session.existing_acl(current_user).await?;
                let old = session.existing_acl(user).await?.passwords;
                if !old.contains(&fence) {
                    // Another attempt ran meanwhile (its remake removed this fence): this
                    // remake would carry no removal that a newer one is sure to undo.
                    return Err(EngineError::new(
                        ErrorKind::Server,
                        format!(
                            "{user} changed while it was being remade (another rotation at once?): try again"
                        ),
                    ));
                }
                let check = hashed(&one_time()?);
                let rules = original.rules();
                let removed = removals(&old, &check);
                let mut args = vec!["ACL", "SETUSER", user];
                args.extend(rules.iter().map(String::as_str));
                args.push(&check);
                args.extend(removed.iter().map(String::as_str));
                session.call("ACL SETUSER (the clone)", &args).await?;
                // 3. Read back, against the original as it is now (a right revoked meanwhile
                //    is not given back).
                let made = session.existing_acl(user).await?;
                let original = session.existing_acl(current_user).await?;
                let unchecked = format!("!{}", &check[1..]);
                if !made.same_rights(&original) {
                    // No password a secret holds opens it; the one-time one goes too.
                    let _ = session
                        .call(
                            "ACL SETUSER (the clone's one-time password)",
                            &["ACL", "SETUSER", user, &unchecked],
                        )
                        .await;
                    return Err(EngineError::new(
                        ErrorKind::Server,
                        format!(
                            "{user} did not get exactly {current_user}'s rights (it has no password of a secret): {made:?} against {original:?}"
                        ),
                    ));
                }
                // 4. The new password, in place of the one-time one.
                session
                    .call(
                        "ACL SETUSER (the clone's password)",
                        &["ACL", "SETUSER", user, &password, &unchecked],
                    )
                    .await?;
            }
            Strategy::AlternatingUsers => {
                // The original keeps its own rules; its passwords are replaced.
                let old = session.usable_acl(user).await?.passwords;
                let mut args = vec!["ACL", "SETUSER", user, &password];
                let removed = removals(&old, &password);
                args.extend(removed.iter().map(String::as_str));
                session
                    .call("ACL SETUSER (replace the passwords)", &args)
                    .await?;
            }
        }
        Ok(())
    }

    async fn test_session(
        &self,
        session: &mut RedisSession,
        _pending: &DatabaseSecret,
        _partner: Option<&str>,
    ) -> Result<(), EngineError> {
        // Application users usually may not read ACLs, so the pair's rules are not compared
        // here: setSecret compared them when it gave the clone the new password (a right
        // revoked from the original after that reaches the clone at its next remake).
        // The login itself is the proof; PING shows the session works. A user without even
        // PING's right answers NOPERM, which is still a session of that user.
        match session.call("PING", &["PING"]).await {
            Ok(Reply::Simple(s)) if s == "PONG" => Ok(()),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(()),
            Ok(other) => Err(EngineError::new(
                ErrorKind::Server,
                format!("PING answered {other:?}"),
            )),
            Err(e) => Err(e),
        }
    }

    async fn close(&self, mut session: RedisSession) {
        let quit = async {
            let _ = session.conn.call(&[b"QUIT"]).await;
            session.conn.shutdown().await;
        };
        let _ = tokio::time::timeout(
            session.deadline.cap(std::time::Duration::from_secs(1)),
            quit,
        )
        .await;
    }

    async fn drop_other_passwords(
        &self,
        session: &mut RedisSession,
        current: &DatabaseSecret,
    ) -> Result<(), EngineError> {
        let password = hashed(PROFILE.password_to_set(current)?);
        let user = current.username().unwrap_or_default();
        let old = session.usable_acl(user).await?.passwords;
        if !old.contains(&password) {
            // Dropping the others would leave the user no password that a secret holds.
            return Err(EngineError::new(
                ErrorKind::Server,
                format!("{user} does not hold the current password: its others are kept"),
            ));
        }
        let removed = removals(&old, &password);
        if removed.is_empty() {
            return Ok(());
        }
        let mut args = vec!["ACL", "SETUSER", user];
        args.extend(removed.iter().map(String::as_str));
        session
            .call("ACL SETUSER (drop the other passwords)", &args)
            .await
            .map(drop)
    }

    async fn check_tls(&self, current: &DatabaseSecret) -> Result<Option<String>, EngineError> {
        let probe = Probe {
            trust: &self.settings.trust,
            // The connections above use the whole store.
            sources: &[
                TrustSource::RdsBundle,
                TrustSource::CaBundle,
                TrustSource::System,
                TrustSource::Mozilla,
            ],
            pem_for_host: false,
            handshake: Handshake::Direct,
            default_port: DEFAULT_PORT,
            allow_plaintext_fallback: self.settings.allow_plaintext_fallback,
            timeout: self.settings.connect_timeout,
        };
        rotation_trust::probe::check(probe, current).await.map(Some)
    }

    async fn check_rights(
        &self,
        session: &mut RedisSession,
        current: &DatabaseSecret,
    ) -> Result<Option<String>, EngineError> {
        // The session is the master's (both strategies act through it): may it run ACL
        // SETUSER on the secret's user? ACL DRYRUN answers without running it.
        let me = session.user.clone();
        let user = current.username().unwrap_or_default();
        session.usable_acl(user).await?;
        match session
            .call(
                "ACL DRYRUN",
                &["ACL", "DRYRUN", &me, "ACL", "SETUSER", user],
            )
            .await?
        {
            Reply::Simple(s) if s == "OK" => Ok(Some(format!(
                "the master {me} may run ACL SETUSER on {user}"
            ))),
            other => Err(EngineError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the master {me} may not run ACL SETUSER: {}",
                    other.text().unwrap_or_default()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_keep_selectors_whole_and_copy_every_field() {
        let acl = Acl {
            passwords: Hashes(vec!["ab".repeat(32)]),
            flags: vec!["on".into()],
            commands: "-@all +@read +ping".into(),
            keys: "~o4:* %R~r:*".into(),
            channels: String::new(),
            selectors: vec![Selector {
                commands: "-@all +del".into(),
                keys: "~tmp:)".into(),
                channels: String::new(),
            }],
        };
        let rules = acl.rules();
        assert!(!rules.iter().any(|r| r.contains("pass")), "{rules:?}");
        assert_eq!(
            rules[4..],
            [
                "on",
                "sanitize-payload",
                "~o4:*",
                "%R~r:*",
                "-@all",
                "+@read",
                "+ping",
                "(~tmp:) resetchannels -@all +del)"
            ]
        );
    }

    #[test]
    fn removals_name_every_other_hash_and_hashes_stay_out_of_messages() {
        let keep = hashed("new");
        let old = hashed("old");
        let hashes = Hashes(vec![keep[1..].to_string(), old[1..].to_string()]);
        assert_eq!(removals(&hashes, &keep), [format!("!{}", &old[1..])]);
        assert!(hashes.contains(&keep) && !hashes.contains(&hashed("other")));
        assert_eq!(format!("{hashes:?}"), "2 password hashes");
        let e = format!(
            "ERR Error in ACL SETUSER modifier '!{}': The password you are trying to remove from the user does not exist",
            &old[1..]
        );
        assert_eq!(
            redact_hashes(&e),
            "ERR Error in ACL SETUSER modifier '!<hash>': The password you are trying to remove from the user does not exist"
        );
        assert_eq!(redact_hashes("short abc12 text"), "short abc12 text");
        let pw = "MJ3ghp+Rq?ZZff7t";
        let refused = format!("ERR unknown command 'AUTH', with args beginning with: 'app' '{pw}'");
        assert_eq!(redact_arguments(&refused, &["AUTH", "app", pw]), "ERR");
        let echoed = format!("ERR Error in ACL SETUSER modifier '>{pw}': Syntax error");
        let shown = redact_arguments(&echoed, &["ACL", "SETUSER", "app", &format!(">{pw}")]);
        assert!(!shown.contains(pw), "{shown}");
    }

    #[test]
    fn passwords_are_hashed_as_acl_rules() {
        // echo -n "password" | sha256sum
        assert_eq!(
            hashed("password"),
            "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
