//! Credentials from Secrets Manager that survive rotation, for an application's database
//! connections. The rule, in [`Credentials::connect`]:
//!
//! 1. log in with the credentials last known to work (at first: `AWSCURRENT`);
//! 2. on an authentication failure, re-read `AWSCURRENT` (a rotation may have finished) and
//!    retry if it changed;
//! 3. still refused: try `AWSPENDING`, which between setSecret and finishSecret of a
//!    single-user rotation holds the only password the database accepts;
//! 4. anything else (the network, a timeout) is returned at once, never retried against
//!    other credentials.
//!
//! Alternating-users rotation never needs step 3: both users keep working throughout.

use std::future::Future;

use aws_sdk_secretsmanager::Client;
use serde::Deserialize;

/// The keys of a database secret an application needs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Secret {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Database.
    pub dbname: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// Why a login failed, as the application's connect function tells it.
#[derive(Debug)]
pub enum LoginError<E> {
    /// The database refused the credentials: worth trying others.
    Refused(E),
    /// Anything else: returned as is.
    Other(E),
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error<E: std::fmt::Debug> {
    /// Secrets Manager could not be read.
    #[error("reading secret {secret} at {stage}: {message}")]
    Read {
        /// The secret.
        secret: String,
        /// The stage read.
        stage: &'static str,
        /// The SDK's message.
        message: String,
    },
    /// The secret's value is not a database secret.
    #[error("secret {secret} at {stage} is not a database secret: {message}")]
    Parse {
        /// The secret.
        secret: String,
        /// The stage read.
        stage: &'static str,
        /// What is wrong (no secret value in it).
        message: String,
    },
    /// Every candidate was refused.
    #[error("the database refused AWSCURRENT (and AWSPENDING, if any) of {secret}: {last:?}")]
    Refused {
        /// The secret.
        secret: String,
        /// The last refusal.
        last: E,
    },
    /// The login failed for another reason.
    #[error("logging in: {0:?}")]
    Login(E),
}

/// One secret's credentials, cached between logins.
#[derive(Debug)]
pub struct Credentials {
    client: Client,
    secret_id: String,
    known: Option<Secret>,
}

impl Credentials {
    /// Credentials of `secret_id`, read on first use.
    pub fn new(client: Client, secret_id: impl Into<String>) -> Credentials {
        Credentials {
            client,
            secret_id: secret_id.into(),
            known: None,
        }
    }

    /// The credentials that worked last (none before the first login).
    pub fn known(&self) -> Option<&Secret> {
        self.known.as_ref()
    }

    /// The secret at `stage` (`AWSCURRENT`, `AWSPENDING`); `None` when no version has it.
    pub async fn read<E: std::fmt::Debug>(
        &self,
        stage: &'static str,
    ) -> Result<Option<Secret>, Error<E>> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(Error::Read {
                    secret: self.secret_id.clone(),
                    stage,
                    message: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                });
            }
        };
        let Some(text) = out.secret_string() else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| Error::Parse {
                secret: self.secret_id.clone(),
                stage,
                // serde's message names the key or position, never the value.
                message: e.to_string(),
            })
    }

    /// Logs in with `login`, following the rule in the crate's documentation; remembers the
    /// credentials that worked.
    pub async fn connect<T, E, F, Fut>(&mut self, mut login: F) -> Result<T, Error<E>>
    where
        E: std::fmt::Debug,
        F: FnMut(Secret) -> Fut,
        Fut: Future<Output = Result<T, LoginError<E>>>,
    {
        let mut tried: Vec<Secret> = Vec::new();
        let mut last = None;
        let first = match self.known.clone() {
            Some(known) => Some(known),
            None => self.read("AWSCURRENT").await?,
        };
        let mut candidates = vec![first];
        let mut next_stage = ["AWSCURRENT", "AWSPENDING"].into_iter();
        loop {
            for candidate in candidates.drain(..).flatten() {
                if tried.contains(&candidate) {
                    continue;
                }
                tried.push(candidate.clone());
                match login(candidate.clone()).await {
                    Ok(conn) => {
                        self.known = Some(candidate);
                        return Ok(conn);
                    }
                    Err(LoginError::Refused(e)) => last = Some(e),
                    Err(LoginError::Other(e)) => return Err(Error::Login(e)),
                }
            }
            match next_stage.next() {
                Some(stage) => candidates.push(self.read(stage).await?),
                None => break,
            }
        }
        self.known = None;
        match last {
            Some(last) => Err(Error::Refused {
                secret: self.secret_id.clone(),
                last,
            }),
            None => Err(Error::Parse {
                secret: self.secret_id.clone(),
                stage: "AWSCURRENT",
                message: "no version holds a value".into(),
            }),
        }
    }
}

/// A PostgreSQL login with `secret`, verified TLS when `tls` (the application decides; the
/// secret's `ssl` key is not read here), classified for [`Credentials::connect`]: SQLSTATE
/// 28P01 / 28000 (bad password, no such role) is a refusal, anything else is not.
pub async fn postgres_login(
    secret: Secret,
    tls: bool,
) -> Result<sqlx::PgConnection, LoginError<sqlx::Error>> {
    use sqlx::ConnectOptions;
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let options = PgConnectOptions::new()
        .host(&secret.host)
        .port(secret.port.unwrap_or(5432))
        .username(&secret.username)
        .password(&secret.password)
        .database(secret.dbname.as_deref().unwrap_or("postgres"))
        .ssl_mode(if tls {
            PgSslMode::VerifyFull
        } else {
            PgSslMode::Disable
        });
    options.connect().await.map_err(|e| {
        let refused = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "28P01" || c == "28000");
        if refused {
            LoginError::Refused(e)
        } else {
            LoginError::Other(e)
        }
    })
}
