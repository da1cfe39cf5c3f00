//! What a secret asks of TLS, for every engine's connection code: the plan (verified TLS by
//! default, no silent downgrade: W1), the name to connect to and verify (W2), and the advice a
//! TLS failure carries.

use std::future::Future;
use std::time::Duration;

use crate::error::{EngineError, ErrorKind};
use crate::secret::{DatabaseSecret, SslKey, TLS_SERVER_NAME_KEY};

/// What the secret's `ssl` key asks for (spec §2.6, without AWS's silent downgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPlan {
    /// Verified TLS (certificate chain and host name); no fallback.
    Required,
    /// Verified TLS, then plaintext if TLS fails: only with `ALLOW_PLAINTEXT_FALLBACK` and a
    /// secret without an explicit `ssl` key.
    RequiredWithFallback,
    /// `"ssl": false`.
    Disabled,
}

impl TlsPlan {
    /// The plan for `secret`; `allow_plaintext_fallback` is the deployment's
    /// `ALLOW_PLAINTEXT_FALLBACK`.
    pub fn for_secret(secret: &DatabaseSecret, allow_plaintext_fallback: bool) -> TlsPlan {
        match secret.ssl() {
            SslKey::Explicit(true) => TlsPlan::Required,
            SslKey::Explicit(false) => TlsPlan::Disabled,
            SslKey::Absent | SslKey::Unrecognised if allow_plaintext_fallback => {
                TlsPlan::RequiredWithFallback
            }
            SslKey::Absent | SslKey::Unrecognised => TlsPlan::Required,
        }
    }
}

/// Logs in by `secret`'s plan, whatever the driver: `attempt(true)` makes a verified TLS
/// login, `attempt(false)` a plaintext one. With the fallback, plaintext follows a TLS failure;
/// a plaintext failure keeps the TLS failure beside its own, and when the server drops
/// plaintext too (it wants TLS), the TLS failure is the one returned: it is the one to fix.
pub async fn login_by_plan<T, F, Fut>(
    secret: &DatabaseSecret,
    allow_plaintext_fallback: bool,
    attempt: F,
) -> Result<T, crate::EngineError>
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::EngineError>>,
{
    use crate::ErrorKind;
    match TlsPlan::for_secret(secret, allow_plaintext_fallback) {
        TlsPlan::Disabled => {
            tracing::warn!(
                host = secret.host(),
                "connecting without TLS because the secret says \"ssl\": false"
            );
            attempt(false).await
        }
        TlsPlan::Required => attempt(true).await,
        TlsPlan::RequiredWithFallback => {
            match attempt(true).await {
                Err(tls) if tls.kind() == ErrorKind::Tls => {
                    tracing::warn!(host = secret.host(), reason = %tls, "TLS failed; falling back to plaintext because ALLOW_PLAINTEXT_FALLBACK is set");
                    match attempt(false).await {
                        Ok(session) => Ok(session),
                        Err(plain) if plain.kind() == ErrorKind::Tls => Err(tls),
                        Err(plain) => Err(plain
                            .with_note(&format!("verified TLS was tried first and failed: {tls}"))),
                    }
                }
                other => other,
            }
        }
    }
}

/// The name to connect to and verify: `tls_server_name` when the secret has one (a plain
/// string), else `host`.
pub fn server_name(secret: &DatabaseSecret) -> &str {
    secret
        .get_raw(TLS_SERVER_NAME_KEY)
        .and_then(|raw| {
            let text = raw.get();
            // A plain JSON string without escapes: its text between the quotes.
            text.strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|t| !t.is_empty() && !t.contains('\\'))
        })
        .unwrap_or_else(|| secret.host().unwrap_or_default())
}

/// One connection attempt of an engine's driver (`connect`, described by `what`), bounded by
/// `limit`: the driver's error made an [`EngineError`] by `to_engine`, with [`failure_hint`]
/// added to a TLS failure of a TLS attempt; running out of time an error of kind
/// [`ErrorKind::Timeout`].
pub async fn connect_attempt<T, E>(
    secret: &DatabaseSecret,
    tls: bool,
    limit: Duration,
    what: String,
    connect: impl Future<Output = Result<T, E>>,
    to_engine: impl FnOnce(String, E) -> EngineError,
) -> Result<T, EngineError> {
    match tokio::time::timeout(limit, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            let err = to_engine(what, e);
            if tls && err.kind() == ErrorKind::Tls {
                return Err(err.with_note(failure_hint(secret)));
            }
            Err(err)
        }
        Err(_) => Err(EngineError::new(
            ErrorKind::Timeout,
            format!("{what} timed out after {limit:?}"),
        )),
    }
}

/// What to do about a TLS failure, given what the secret asked for.
pub fn failure_hint(secret: &DatabaseSecret) -> &'static str {
    match secret.ssl() {
        SslKey::Explicit(true) => {
            "the secret asks for TLS (\"ssl\": true) and the server's certificate must verify against the trusted CAs and the host name; trust its CA with CA_BUNDLE_PATH"
        }
        SslKey::Absent => {
            "the secret asks for TLS (no \"ssl\" key means verified TLS here, unlike AWS's functions); trust the server's CA with CA_BUNDLE_PATH, or set \"ssl\": false in the secret to connect without TLS"
        }
        _ => {
            "the secret asks for TLS (an \"ssl\" value other than true or false means verified TLS here); trust the server's CA with CA_BUNDLE_PATH, or set \"ssl\": false in the secret to connect without TLS"
        }
    }
}
