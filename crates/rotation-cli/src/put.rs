//! `rotate put` and `rotate list`: secrets into and out of the file store without editing its
//! JSON by hand. Neither ever prints a secret value.

use std::io::{BufRead, Read};
use std::path::Path;

use rotation_core::Engines;
use rotation_core::store::{PutOutcome, SecretSummary};
use rotation_core::{
    DatabaseSecret, LocalSecretStore, RotationError, SecretError, Stage, Strategy,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::UsageError;
use crate::output::escape;

/// The keys `rotate put` takes as `KEY=VALUE` arguments. The password is not among them: an
/// argument is visible to every user of the machine (`ps`), so it comes from standard input or
/// the value file.
pub const KEYS: [&str; 6] = ["engine", "host", "port", "username", "dbname", "masterarn"];

/// The largest value `put` reads (Secrets Manager's limit for a secret value).
const MAX_VALUE_BYTES: u64 = 65_536;

/// What `rotate put` was asked to store.
pub struct PutRequest<'a> {
    pub secret: &'a str,
    pub value_file: Option<&'a Path>,
    pub password_stdin: bool,
    pub pairs: &'a [String],
    /// How long reading the value file or standard input may take (`--timeout`).
    pub timeout: std::time::Duration,
}

/// Runs `read` on a thread of its own and waits for it at most `timeout`: a value file that is a
/// pipe nobody writes to, or a terminal nobody types into, fails the command with a usage error
/// instead of blocking it for ever. (The thread is left behind, blocked; the command exits.)
async fn within<T: Send + 'static>(
    what: &str,
    timeout: std::time::Duration,
    read: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rotate-put-read".into())
        .spawn(move || {
            let _ = tx.send(read());
        })
        .map_err(|e| UsageError(format!("reading {what}: {e}")))?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(UsageError(format!("reading {what}: the reader stopped")).into()),
        Err(_) => Err(UsageError(format!(
            "reading {what}: nothing to read within --timeout ({} s); a pipe with no writer?",
            timeout.as_secs()
        ))
        .into()),
    }
}

/// Reads at most [`MAX_VALUE_BYTES`] from `r`.
fn read_limited(r: impl Read, what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    r.take(MAX_VALUE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| UsageError(format!("reading {what}: {e}")))?;
    if text.len() as u64 > MAX_VALUE_BYTES {
        return Err(UsageError(format!(
            "{what} is larger than {MAX_VALUE_BYTES} bytes, Secrets Manager's limit"
        ))
        .into());
    }
    Ok(text)
}

/// The value to store: the value file (or the current value, when the secret exists and no
/// file is given), with the `KEY=VALUE` arguments and the password from standard input on top,
/// and the version that was `AWSCURRENT` when it was read (`None`: no such secret), which the
/// store's write must still find current. Every key not set here keeps its text exactly
/// (numbers of any precision); a repeated key is refused. Errors name keys, never values.
pub async fn build_value(
    store: &LocalSecretStore,
    req: &PutRequest<'_>,
) -> anyhow::Result<(SecretString, Option<String>)> {
    if req.value_file.is_some_and(|p| p == Path::new("-")) && req.password_stdin {
        return Err(UsageError(
            "--value-file - and --password-stdin both read standard input: use one".into(),
        )
        .into());
    }
    let current = {
        use rotation_core::{SecretStore, VersionSelector};
        match store
            .get_value(req.secret, VersionSelector::stage(Stage::Current))
            .await
        {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(source) => {
                return Err(RotationError::Store {
                    context: format!("reading the current value of secret {}", req.secret),
                    source,
                }
                .into());
            }
        }
    };
    let expected = current.as_ref().map(|v| v.version_id.clone());
    let base: SecretString = match req.value_file {
        Some(p) if p == Path::new("-") => within("standard input", req.timeout, || {
            read_limited(std::io::stdin(), "standard input")
        })
        .await?
        .into(),
        Some(p) => {
            let (path, what) = (p.to_path_buf(), p.display().to_string());
            within(&what.clone(), req.timeout, move || {
                let f = std::fs::File::open(&path)
                    .map_err(|e| UsageError(format!("opening {what}: {e}")))?;
                read_limited(f, &what)
            })
            .await?
            .into()
        }
        None => match current {
            Some(v) => v.value,
            None => SecretString::from("{}".to_string()),
        },
    };
    let mut secret = match DatabaseSecret::parse(&base) {
        Ok(s) => s,
        // Positions only: the value's text is never quoted.
        Err(e @ (SecretError::NotJson { .. } | SecretError::NotAnObject)) => {
            return Err(UsageError(e.to_string()).into());
        }
        Err(source) => {
            return Err(RotationError::InvalidSecret {
                which: rotation_core::Which::Current,
                secret: req.secret.to_string(),
                source,
            }
            .into());
        }
    };
    for pair in req.pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            UsageError(format!(
                "expected KEY=VALUE, got an argument without `=` (keys: {})",
                KEYS.join(", ")
            ))
        })?;
        if key == "password" {
            return Err(UsageError(
                "the password is never an argument (other users of the machine can read arguments): use --password-stdin or --value-file".into(),
            )
            .into());
        }
        if !KEYS.contains(&key) {
            return Err(UsageError(format!(
                "unknown key {:?}: KEY=VALUE takes {}; put other keys in --value-file",
                escape(key),
                KEYS.join(", ")
            ))
            .into());
        }
        let v = if key == "port" {
            let port: u16 = value
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UsageError("port must be a number from 1 to 65535".into()))?;
            json!(port)
        } else {
            json!(value)
        };
        secret = secret
            .with_field(key, v)
            .map_err(|source| RotationError::InvalidSecret {
                which: rotation_core::Which::Current,
                secret: req.secret.to_string(),
                source,
            })?;
    }
    if req.password_stdin {
        let line = within("the password from standard input", req.timeout, || {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .take(MAX_VALUE_BYTES)
                .read_line(&mut line)
                .map_err(|e| {
                    UsageError(format!("reading the password from standard input: {e}"))
                })?;
            Ok(line)
        })
        .await?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(UsageError("--password-stdin read an empty password".into()).into());
        }
        secret = secret.with_password(SecretString::from(password.to_string()));
    }
    Ok((secret.to_json(), expected))
}

/// The engine and strategy the value is checked for: the `engine` key decides the engine; the
/// strategy is `--strategy`, else alternating users when the value names a `masterarn`.
pub fn check(
    secret: &str,
    value: &SecretString,
    strategy: Option<Strategy>,
    engines: &Engines,
) -> anyhow::Result<()> {
    let invalid = |source| RotationError::InvalidSecret {
        which: rotation_core::Which::Current,
        secret: secret.to_string(),
        source,
    };
    // The value as the rotations read it: what is wrong with it (not JSON, a duplicate key,
    // too deeply nested, ...) is said as such, not as a missing engine.
    let parsed = rotation_core::DatabaseSecret::parse(value).map_err(invalid)?;
    let engine_key = parsed.engine();
    let engine = match engine_key {
        Some(name) => engines.for_secret_engine(name).ok_or_else(|| {
            invalid(rotation_core::SecretError::WrongEngine {
                expected: crate::known_engines(engines),
                found: name.to_string(),
            })
        })?,
        // Missing, or not a string: the rotators' own check names it.
        None => return Err(invalid(rotation_core::SecretError::MissingKey("engine")).into()),
    };
    let strategy = strategy.unwrap_or(if parsed.get("masterarn").is_some() {
        Strategy::AlternatingUsers
    } else {
        Strategy::SingleUser
    });
    // The limit on the pair's other user name as the rotation computes it: from the engine's
    // settings (`USERNAME_CHARACTER_LIMIT`) and the value's own `engine` key. Only the engine's
    // own variables are read, not the connection settings it shares with every engine (a
    // trust store, timeouts), which say nothing of the value.
    let own: Vec<&str> = engine
        .env
        .iter()
        .copied()
        .filter(|v| !rotation_trust::settings::ENV.contains(v))
        .collect();
    let lookup = |name: &str| {
        own.contains(&name)
            .then(|| std::env::var(name).ok())
            .flatten()
    };
    let settings = rotation_core::EngineSettings::read(
        engine,
        &rotation_core::EngineEnv {
            lookup: &lookup,
            aws: None,
        },
    )?;
    let rotator = settings.rotator(strategy);
    engine
        .profile
        .check_secret_with(secret, value, strategy, |s| {
            rotation_core::Rotator::username_limit(&rotator, s)
        })?;
    Ok(())
}

/// Refuses a `masterarn` that names the secret itself (by name or ARN): its rotation would then
/// act on its own user through itself, and fail in flight (`MasterInPair`).
pub async fn check_master_is_another(
    store: &LocalSecretStore,
    secret: &str,
    value: &SecretString,
) -> anyhow::Result<()> {
    let parsed = rotation_core::DatabaseSecret::parse(value)?;
    let Some(master) = parsed.masterarn() else {
        return Ok(());
    };
    let arn_of = |name: &str| {
        use rotation_core::SecretStore;
        let name = name.to_string();
        async move { store.describe(&name).await.ok().map(|d| d.arn) }
    };
    let itself = master == secret || {
        let (m, s) = (arn_of(master).await, arn_of(secret).await);
        m.is_some() && m == s
    };
    if itself {
        return Err(RotationError::MasterInPair {
            user: parsed.username().unwrap_or_default().to_string(),
            secret: secret.to_string(),
        }
        .into());
    }
    Ok(())
}

/// Prints what `put` did.
pub fn print_put(json_out: bool, secret: &str, outcome: &PutOutcome) {
    let (created, arn, version) = match outcome {
        PutOutcome::Created { arn, version } => (true, arn, version),
        PutOutcome::NewVersion { arn, version } => (false, arn, version),
    };
    if json_out {
        println!(
            "{}",
            json!({"result": if created { "created" } else { "updated" }, "secret": secret, "arn": arn, "version": version})
        );
    } else if created {
        println!(
            "created secret {} ({}), version {version} AWSCURRENT",
            escape(secret),
            escape(arn)
        );
    } else {
        println!(
            "stored a new AWSCURRENT version {version} of {} (the previous one is AWSPREVIOUS)",
            escape(arn)
        );
    }
}

/// `YYYY-MM-DD HH:MM` UTC of a Unix time (days to civil date, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

/// The file store's secrets, without values.
pub async fn summaries(store: &LocalSecretStore) -> Result<Vec<SecretSummary>, RotationError> {
    store
        .summaries()
        .await
        .map_err(|source| RotationError::Store {
            context: "listing the store's secrets".into(),
            source,
        })
}

/// Prints the store's secrets, a line each (or a JSON array).
pub fn print_list(json_out: bool, secrets: &[SecretSummary]) {
    if json_out {
        let rows: Vec<Value> = secrets
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "arn": s.arn,
                    "engine": s.engine,
                    "current_since": s.current_since,
                    "rotation_in_flight": s.rotation_in_flight,
                    "rotation_enabled": s.rotation_enabled,
                    "tags": s.tags,
                    "versions": s.versions,
                })
            })
            .collect();
        println!("{}", Value::Array(rows));
        return;
    }
    if secrets.is_empty() {
        println!("no secrets in this store (add one with `rotate put`)");
        return;
    }
    let width = secrets
        .iter()
        .map(|s| escape(&s.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:<width$}  {:<17}  {:<16}  ROTATION IN FLIGHT",
        "NAME", "ENGINE", "CURRENT SINCE"
    );
    for s in secrets {
        let since = match s.current_since {
            Some(t) if t > 0 => utc(t),
            _ => "-".into(),
        };
        let flight = match (&s.rotation_in_flight, s.rotation_enabled) {
            (Some(v), _) => format!("version {}", escape(v)),
            (None, Some(false)) => "no (rotation disabled)".into(),
            (None, _) => "no".into(),
        };
        println!(
            "{:<width$}  {:<17}  {:<16}  {flight}",
            escape(&s.name),
            escape(s.engine.as_deref().unwrap_or("-")),
            since
        );
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc(1_798_761_540), "2026-12-31 23:59");
    }
}
