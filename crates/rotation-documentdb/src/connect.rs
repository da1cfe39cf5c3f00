//! Clients built from the secret alone, field by field (no URI, so any password works), TLS
//! secure by default with the shared trust sources, errors classified.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mongodb::Client;
use mongodb::bson::doc;
use mongodb::event::EventHandler;
use mongodb::event::sdam::SdamEvent;
use mongodb::options::{
    ClientOptions, Credential, ServerAddress, ServerMonitoringMode, Tls, TlsOptions,
};
use rotation_core::tls::{failure_hint, server_name};
use rotation_core::{DatabaseSecret, DbName, Deadline, EngineError, ErrorKind};
use rotation_trust::{ConnectSettings, TempPath};
use secrecy::ExposeSecret;

/// DocumentDB's port.
pub const DEFAULT_PORT: u16 = 27017;
/// The authentication database when `dbname` is absent (or null).
pub const DEFAULT_DBNAME: &str = "admin";
/// The secret key that asks for replica-set discovery (its value is the set's name, `rs0` on
/// DocumentDB). Without it the client talks to the secret's host only, as AWS's function does.
pub const REPLICA_SET_KEY: &str = "replicaSet";

/// How long a polite shutdown may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer than the driver's own timeouts the caller waits, so that the driver's
/// typed error, not the caller's timer, reports a timeout the driver saw.
const TIMER_MARGIN: Duration = Duration::from_millis(250);
/// Monitoring: polling, rarely (a step is over long before a second heartbeat matters).
const HEARTBEAT: Duration = Duration::from_secs(60);

/// The authentication database: `dbname`, else `admin`.
pub fn auth_db(secret: &DatabaseSecret) -> &str {
    match secret.dbname() {
        DbName::Name(n) => n,
        DbName::Absent | DbName::Null => DEFAULT_DBNAME,
    }
}

/// Characters a database name may not hold (MongoDB's rules, which DocumentDB follows).
const DB_NAME_FORBIDDEN: &[char] = &[
    '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
];

/// Refuses an authentication database the server would not take as given: empty, longer than
/// 63 bytes, or with a character database names may not hold. (The driver reads an empty one as
/// `admin`, so a login would succeed and the check that the session is the secret's user, in
/// the secret's database, would fail only after the password had changed.)
pub fn check_auth_db(secret: &DatabaseSecret) -> Result<(), EngineError> {
    let db = auth_db(secret);
    let why = if db.is_empty() {
        Some("it is empty")
    } else if db.len() > 63 {
        Some("it is longer than 63 bytes")
    } else if db.contains(DB_NAME_FORBIDDEN) {
        Some("it holds a character database names may not (/ \\ . space \" $ * < > : | ? or NUL)")
    } else {
        None
    };
    match why {
        Some(why) => Err(EngineError::new(
            ErrorKind::InvalidInput,
            format!("the secret's dbname {db:?} cannot be an authentication database: {why}"),
        )),
        None => Ok(()),
    }
}

/// The replica set the secret asks to discover, if any.
fn replica_set(secret: &DatabaseSecret) -> Option<String> {
    // Keys the secret model does not type are read from their JSON text.
    let raw = secret.get_raw(REPLICA_SET_KEY)?;
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn target(secret: &DatabaseSecret) -> String {
    let host = secret.host().unwrap_or_default();
    let name = server_name(secret);
    let via = if name != host {
        format!(" (as {name})")
    } else {
        String::new()
    };
    format!(
        "user {} at {host}{via}:{} database {}",
        secret.username().unwrap_or_default(),
        secret.port().unwrap_or(DEFAULT_PORT),
        auth_db(secret)
    )
}

/// The client options for `secret`: one server (or the set it names), one connection at most,
/// no retries, no streaming monitor, timeouts within `limit`; with TLS, the CA file they name,
/// to keep until the client is made (the driver reads it then).
fn options(
    secret: &DatabaseSecret,
    tls: bool,
    settings: &ConnectSettings,
    limit: Duration,
) -> Result<(ClientOptions, Option<TempPath>), EngineError> {
    let credential = Credential::builder()
        .username(secret.username().unwrap_or_default().to_string())
        .password(
            secret
                .password()
                .map(|p| p.expose_secret().to_string())
                .unwrap_or_default(),
        )
        .source(auth_db(secret).to_string())
        .build();
    let (tls, ca_file) = if tls {
        let ca = settings
            .trust
            .pem_file_for_host(server_name(secret))
            .map_err(|e| {
                EngineError::new(ErrorKind::Other, "preparing the trusted CAs").with_source(e)
            })?;
        let options = TlsOptions::builder().ca_file_path(ca.to_path_buf()).build();
        (Tls::Enabled(options), Some(ca))
    } else {
        (Tls::Disabled, None)
    };
    let set = replica_set(secret);
    let options = ClientOptions::builder()
        .hosts(vec![ServerAddress::Tcp {
            host: server_name(secret).to_string(),
            port: Some(secret.port().unwrap_or(DEFAULT_PORT)),
        }])
        .direct_connection(set.is_none())
        .repl_set_name(set)
        .credential(credential)
        .tls(tls)
        .app_name("rotation".to_string())
        .retry_writes(false)
        .retry_reads(false)
        .max_pool_size(1)
        .min_pool_size(0)
        .server_monitoring_mode(ServerMonitoringMode::Poll)
        .heartbeat_freq(HEARTBEAT)
        .connect_timeout(limit)
        .server_selection_timeout(limit)
        .build();
    Ok((options, ca_file))
}

/// Classifies a driver error by its kind and server code, never by password-bearing text.
pub fn classify(err: &mongodb::error::Error) -> ErrorKind {
    use mongodb::error::ErrorKind as K;
    match err.kind.as_ref() {
        K::Authentication { .. } => ErrorKind::AuthFailed,
        K::Command(c) => match c.code {
            18 => ErrorKind::AuthFailed,
            13 => ErrorKind::PermissionDenied,
            50 | 262 => ErrorKind::Timeout,
            _ => ErrorKind::Server,
        },
        K::InvalidTlsConfig { .. } => ErrorKind::Tls,
        K::DnsResolve { .. } => ErrorKind::Unreachable,
        K::Io(e) => match e.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            // rustls reports a refused certificate or a garbled handshake as invalid data.
            std::io::ErrorKind::InvalidData => ErrorKind::Tls,
            _ => ErrorKind::Unreachable,
        },
        // No server answered in time. The cause, when the monitor saw one, comes from its
        // heartbeat failure (see `attempt`), typed; the message is never searched, since it
        // names the host, whose name could contain any word.
        K::ServerSelection { .. } => ErrorKind::Timeout,
        K::InvalidArgument { .. } => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    }
}

/// Wraps a driver error with what was being done (no secrets: user, host, port, database).
pub fn engine_error(what: impl Into<String>, err: mongodb::error::Error) -> EngineError {
    EngineError::new(classify(&err), what).with_source(DriverError::from(&err))
}

/// A driver error as this engine reports it: each kind's own message, the error's then its
/// causes', without what the driver's `Display` adds (a `Debug` dump of its source and of the
/// server's response, and its retry labels: a refused connection reads
/// `SystemOverloadedError`).
#[derive(Debug)]
pub struct DriverError(String);

impl From<&mongodb::error::Error> for DriverError {
    fn from(err: &mongodb::error::Error) -> Self {
        let mut text = err.kind.to_string();
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            let said = match c.downcast_ref::<mongodb::error::Error>() {
                Some(inner) => inner.kind.to_string(),
                None => c.to_string(),
            };
            if !text.contains(&said) {
                text = format!("{text}: {said}");
            }
            cause = c.source();
        }
        DriverError(text)
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DriverError {}

/// Runs a driver call within `deadline`.
pub async fn bounded<T>(
    deadline: Deadline,
    what: &str,
    fut: impl std::future::Future<Output = mongodb::error::Result<T>>,
) -> Result<T, EngineError> {
    deadline.driver_call(what, fut, engine_error).await
}

/// Runs a driver call within `deadline`, leaving the driver's own error to the caller (to
/// look at before it is classified); only running out of time is an [`EngineError`].
pub async fn bounded_raw<T>(
    deadline: Deadline,
    what: &str,
    fut: impl std::future::Future<Output = mongodb::error::Result<T>>,
) -> Result<mongodb::error::Result<T>, EngineError> {
    deadline
        .run(fut)
        .await
        .map_err(|_| EngineError::past_deadline(what))
}

async fn attempt(
    secret: &DatabaseSecret,
    tls: bool,
    settings: &ConnectSettings,
    deadline: Deadline,
) -> Result<Client, EngineError> {
    let what = || {
        format!(
            "connecting as {} ({})",
            target(secret),
            if tls { "TLS verified" } else { "no TLS" }
        )
    };
    let limit = deadline.cap(settings.connect_timeout);
    let (mut options, ca_file) = options(secret, tls, settings, limit)?;
    // With one server (direct connection), the monitor's first failed heartbeat is the answer:
    // left alone, the driver would keep selecting until its timeout, seconds for a refused
    // connection or an untrusted certificate. With discovery, another member may still answer.
    // Whether the server has answered a heartbeat: once it has spoken this protocol (TLS or
    // not), a connection it closes later is a network failure, never a TLS mismatch.
    let answered = Arc::new(AtomicBool::new(false));
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel();
    {
        let answered = Arc::clone(&answered);
        let direct = options.direct_connection == Some(true);
        options.sdam_event_handler = Some(EventHandler::callback(
            move |event: SdamEvent| match event {
                SdamEvent::ServerHeartbeatSucceeded(_) => answered.store(true, Ordering::SeqCst),
                SdamEvent::ServerHeartbeatFailed(e) if direct => {
                    let _ = failed_tx.send(e.failure);
                }
                _ => {}
            },
        ));
    }
    let client = Client::with_options(options).map_err(|e| engine_error(what(), e))?;
    // The driver has read the CA file.
    drop(ca_file);
    // The client connects lazily: a ping on the authentication database logs in.
    let db = client.database(auth_db(secret));
    let ping = db.run_command(doc! { "ping": 1 }).into_future();
    // The driver's timeouts are `limit`; the timer waits a little longer, so that a timeout
    // the driver saw comes back as its typed error.
    let timer = deadline.cap(limit + TIMER_MARGIN);
    let outcome = tokio::select! {
        r = tokio::time::timeout(timer, ping) => match r {
            Ok(r) => r.map(drop).map_err(Some),
            Err(_) => Err(None),
        },
        Some(failure) = failed.recv() => Err(Some(failure)),
    };
    match outcome {
        Ok(()) => Ok(client),
        Err(Some(e)) => {
            close(client, deadline).await;
            // Closed before the server ever answered: most likely the other side of a TLS
            // mismatch (a server without TLS drops a handshake; a TLS-only one drops a
            // plaintext hello). Also what a forwarder with nothing behind it looks like.
            let closed = closed_by_peer(&e) && !answered.load(Ordering::SeqCst);
            let mut err = engine_error(what(), e);
            if tls && (err.kind() == ErrorKind::Tls || closed) {
                // A server without TLS drops the handshake; a refused certificate is
                // invalid data: both are TLS failures (so ALLOW_PLAINTEXT_FALLBACK applies).
                if err.kind() != ErrorKind::Tls {
                    err = EngineError::new(
                        ErrorKind::Tls,
                        format!(
                            "{}: the server closed the connection during the TLS handshake",
                            what()
                        ),
                    )
                    .with_source(err);
                }
                err = err.with_note(failure_hint(secret));
            } else if !tls && closed {
                // A TLS-only server (DocumentDB's default) drops a plaintext client.
                err = EngineError::new(
                    ErrorKind::Tls,
                    format!("{}: the server closed the connection", what()),
                )
                .with_note("it may require TLS: remove \"ssl\": false from the secret")
                .with_source(err);
            }
            Err(err)
        }
        Err(None) => {
            close(client, deadline).await;
            Err(EngineError::new(
                ErrorKind::Timeout,
                format!("{} timed out after {limit:?}", what()),
            ))
        }
    }
}

/// Whether the server closed or reset the connection (typed, never from the message).
fn closed_by_peer(err: &mongodb::error::Error) -> bool {
    use std::io::ErrorKind as Io;
    match err.kind.as_ref() {
        mongodb::error::ErrorKind::Io(e) => matches!(
            e.kind(),
            Io::ConnectionReset | Io::ConnectionAborted | Io::UnexpectedEof | Io::BrokenPipe
        ),
        _ => false,
    }
}

/// Logs in with `secret` following its TLS plan, within `deadline`.
pub async fn connect(
    secret: &DatabaseSecret,
    settings: &ConnectSettings,
    deadline: Deadline,
) -> Result<Client, EngineError> {
    check_auth_db(secret)?;
    rotation_core::tls::login_by_plan(secret, settings.allow_plaintext_fallback, |tls| {
        attempt(secret, tls, settings, deadline)
    })
    .await
}

/// Shuts the client down (its connection and monitor), bounded by `deadline` and two seconds.
pub async fn close(client: Client, deadline: Deadline) {
    let _ = tokio::time::timeout(
        deadline.cap(CLOSE_TIMEOUT),
        client.shutdown().immediate(true),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn secret(json: &str) -> DatabaseSecret {
        DatabaseSecret::parse(&SecretString::from(json.to_string())).unwrap()
    }

    const LIMIT: Duration = Duration::from_millis(1500);

    #[test]
    fn an_unusable_authentication_database_is_refused_before_connecting() {
        for ok in [
            r#"{}"#,
            r#"{"dbname":null}"#,
            r#"{"dbname":"appdb"}"#,
            r#"{"dbname":"a-b_c"}"#,
        ] {
            assert!(check_auth_db(&secret(ok)).is_ok(), "{ok}");
        }
        let long = format!(r#"{{"dbname":"{}"}}"#, "d".repeat(64));
        for bad in [
            r#"{"dbname":""}"#,
            r#"{"dbname":"$cmd"}"#,
            r#"{"dbname":"a.b"}"#,
            r#"{"dbname":"a b"}"#,
            long.as_str(),
        ] {
            let e = check_auth_db(&secret(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn options_are_built_field_by_field_from_the_secret() {
        let s = secret(
            r#"{"engine":"mongo","host":"db.example.com","port":27018,"username":"app@x:/%","password":"p@ss:/%?#&=w0rd","dbname":"appdb"}"#,
        );
        let (o, _) = options(&s, false, &ConnectSettings::default(), LIMIT).unwrap();
        match o.hosts.as_slice() {
            [ServerAddress::Tcp { host, port }] => {
                assert_eq!(host, "db.example.com");
                assert_eq!(*port, Some(27018));
            }
            other => panic!("hosts {other:?}"),
        }
        let c = o.credential.as_ref().unwrap();
        assert_eq!(c.username.as_deref(), Some("app@x:/%"));
        assert_eq!(c.password.as_deref(), Some("p@ss:/%?#&=w0rd"));
        // The secret's dbname is the authentication database; no mechanism is forced, so
        // the driver negotiates (SCRAM-SHA-1 on DocumentDB 4.0, SHA-256 where offered).
        assert_eq!(c.source.as_deref(), Some("appdb"));
        assert_eq!(c.mechanism, None);
        assert_eq!(o.direct_connection, Some(true));
        assert_eq!(o.repl_set_name, None);
        assert_eq!(o.retry_writes, Some(false));
        assert_eq!(o.retry_reads, Some(false));
        assert_eq!(o.max_pool_size, Some(1));
        assert_eq!(o.min_pool_size, Some(0));
        assert!(matches!(
            o.server_monitoring_mode,
            Some(ServerMonitoringMode::Poll)
        ));
        assert_eq!(o.connect_timeout, Some(LIMIT));
        assert_eq!(o.server_selection_timeout, Some(LIMIT));
        assert!(matches!(o.tls, Some(Tls::Disabled)));
        // The password never shows in the options' Debug output.
        assert!(!format!("{o:?}").contains("p@ss"));
    }

    #[test]
    fn defaults_and_discovery() {
        let s = secret(
            r#"{"engine":"mongo","host":"h","username":"u","password":"Passw0rd-x","replicaSet":"rs0"}"#,
        );
        let (o, ca_file) = options(&s, true, &ConnectSettings::default(), LIMIT).unwrap();
        assert_eq!(o.hosts.len(), 1);
        assert!(matches!(
            &o.hosts[0],
            ServerAddress::Tcp {
                port: Some(DEFAULT_PORT),
                ..
            }
        ));
        assert_eq!(
            o.credential.unwrap().source.as_deref(),
            Some(DEFAULT_DBNAME)
        );
        assert_eq!(o.direct_connection, Some(false));
        assert_eq!(o.repl_set_name.as_deref(), Some("rs0"));
        // TLS names a CA file (the shared trust sources), there while its path is kept.
        match o.tls {
            Some(Tls::Enabled(t)) => {
                let path = t.ca_file_path.expect("a CA file");
                assert!(path.is_file());
                drop(ca_file);
                assert!(!path.exists());
            }
            other => panic!("tls {other:?}"),
        }
    }
}
