//! `rotate run --all | --prefix P | --tag K=V`: many secrets, a bounded number at a time. A
//! failure in one secret never stops the others: each secret is its own rotation, with its own
//! claim and its own store writes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::{AnyRotator, Engine, Engines};
use rotation_core::{AnyStore, Rotation, RotationError, Stage, Strategy, VersionSelector};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::UsageError;
use crate::output::escape;

/// The tag that names a secret's strategy (`single-user` or `alternating-users`).
pub const STRATEGY_TAG: &str = "rotation-strategy";

/// Which secrets a fleet run takes.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub all: bool,
    pub prefix: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl Selection {
    pub fn is_fleet(&self) -> bool {
        self.all || self.prefix.is_some() || !self.tags.is_empty()
    }

    fn matches(&self, name: &str, tags: &[(String, String)]) -> bool {
        self.prefix.as_deref().is_none_or(|p| name.starts_with(p))
            && self
                .tags
                .iter()
                .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
    }
}

/// One secret the store lists.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    /// Its ARN, when the listing gives it (to find the secrets other secrets name as master).
    pub arn: Option<String>,
    pub tags: Vec<(String, String)>,
    /// The Lambda function Secrets Manager rotates it with, if any.
    pub rotation_lambda: Option<String>,
}

/// What became of one secret.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub engine: Option<Engine>,
    pub strategy: Option<Strategy>,
    pub result: Result<String, Failed>,
    pub duration: Duration,
}

/// A secret that was not rotated.
#[derive(Debug)]
pub enum Failed {
    /// It failed: kind, exit code, message, and the version left pending when the failure
    /// left a rotation in flight (`rotate resume` finishes it, `rotate abort` undoes it).
    Error {
        kind: String,
        code: u8,
        message: String,
        in_flight: Option<String>,
    },
    /// Skipped on purpose (a Lambda rotates it), with the reason.
    Skipped(String),
}

/// The run as a whole failed for some secrets: the highest exit code among them.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} secrets failed to rotate")]
pub struct FleetFailed {
    pub failed: usize,
    pub total: usize,
    pub code: u8,
}

/// Parses `KEY=VALUE` for `--tag`.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The file store's secrets.
async fn list_local(store: &rotation_core::LocalSecretStore) -> anyhow::Result<Vec<Listed>> {
    let summaries = crate::put::summaries(store).await?;
    Ok(summaries
        .into_iter()
        .map(|s| Listed {
            arn: Some(s.arn),
            name: s.name,
            tags: s.tags.into_iter().collect(),
            rotation_lambda: None,
        })
        .collect())
}

/// The Lambda function Secrets Manager rotates `secret` with, if rotation is configured
/// (`DescribeSecret`, with the store's own client).
pub async fn rotation_lambda(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> anyhow::Result<Option<String>> {
    let d = client
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| RotationError::Store {
            context: format!("describing secret {secret}"),
            source: rotation_core::store::store_error("DescribeSecret", e),
        })?;
    Ok(d.rotation_lambda_arn()
        .filter(|a| !a.is_empty())
        .map(str::to_string))
}

/// Secrets Manager's secrets (`ListSecrets`, every page).
async fn list_aws(client: &aws_sdk_secretsmanager::Client) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = client
            .list_secrets()
            .max_results(100)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| RotationError::Store {
                context: "listing the secrets".into(),
                source: rotation_core::store::store_error("ListSecrets", e),
            })?;
        for s in page.secret_list() {
            let Some(name) = s.name() else { continue };
            out.push(Listed {
                arn: s.arn().map(str::to_string),
                name: name.to_string(),
                tags: s
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
                rotation_lambda: s
                    .rotation_lambda_arn()
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// The secrets `selection` takes from `store`.
pub async fn select(store: &AnyStore, selection: &Selection) -> anyhow::Result<Vec<Listed>> {
    let listed = match store {
        AnyStore::Local(local) => list_local(local).await?,
        AnyStore::Aws(aws) => list_aws(aws.client()).await?,
    };
    let chosen: Vec<Listed> = listed
        .into_iter()
        .filter(|l| selection.matches(&l.name, &l.tags))
        .collect();
    if chosen.is_empty() {
        return Err(UsageError("no secret in the store matches the selection".into()).into());
    }
    Ok(chosen)
}

/// A rotation as the command builds it.
type CliRotation = Rotation<AnyStore, AnyRotator>;

/// Builds the rotations a run needs, one per engine and strategy, on first use.
pub type Builder =
    dyn Fn(Engine, Strategy) -> anyhow::Result<Rotation<AnyStore, AnyRotator>> + Send + Sync;

struct Shared {
    store: AnyStore,
    engines: Engines,
    build: Box<Builder>,
    rotations: tokio::sync::Mutex<BTreeMap<(&'static str, u8), Arc<CliRotation>>>,
    strategy: Option<Strategy>,
    engine: Option<Engine>,
    force: bool,
    timeout: u64,
    /// The secret that took each database user in this run.
    users: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Secrets that name a database user another selected secret names too, with those
    /// others: refused, all of them, before any is rotated.
    same_user: std::collections::HashMap<String, String>,
}

fn key(engine: Engine, strategy: Strategy) -> (&'static str, u8) {
    (
        engine.name(),
        u8::from(strategy == Strategy::AlternatingUsers),
    )
}

/// The engine and strategy of one secret, for commands without a listing (`plan`): as for a
/// fleet run, with the tags of `DescribeSecret`.
pub async fn engine_and_strategy_of(
    store: &AnyStore,
    engines: &Engines,
    secret: &str,
    strategy: Option<Strategy>,
    engine: Option<Engine>,
    timeout: u64,
) -> anyhow::Result<(Engine, Strategy)> {
    let tags = if strategy.is_none() {
        let deadline = rotation_core::Deadline::after(Duration::from_secs(timeout));
        match deadline
            .run(rotation_core::SecretStore::describe(store, secret))
            .await
        {
            Ok(Ok(d)) => d.tags,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let listed = Listed {
        arn: None,
        name: secret.to_string(),
        tags,
        rotation_lambda: None,
    };
    let (engine, strategy, _) =
        engine_and_strategy(store, engines, timeout, engine, strategy, &listed).await?;
    Ok((engine, strategy))
}

/// The engine and strategy of one secret: `--engine`/`--strategy`, else its tag and value.
async fn engine_and_strategy(
    store: &AnyStore,
    engines: &Engines,
    timeout: u64,
    engine: Option<Engine>,
    strategy: Option<Strategy>,
    listed: &Listed,
) -> anyhow::Result<(Engine, Strategy, String)> {
    let deadline = rotation_core::Deadline::after(Duration::from_secs(timeout));
    let value = deadline
        .store_call(
            "GetSecretValue",
            rotation_core::SecretStore::get_value(
                store,
                &listed.name,
                VersionSelector::stage(Stage::Current),
            ),
        )
        .await
        .map_err(|source| RotationError::Store {
            context: format!("reading the current version of secret {}", listed.name),
            source,
        })?;
    // The value as the rotation reads it: what is wrong with it is said as such.
    let parsed = rotation_core::DatabaseSecret::parse(&value.value).map_err(|source| {
        RotationError::InvalidSecret {
            which: rotation_core::Which::Current,
            secret: listed.name.clone(),
            source,
        }
    })?;
    let engine = match engine {
        Some(e) => e,
        None => {
            let named = parsed.engine();
            named
                .and_then(|n| engines.for_secret_engine(n))
                .ok_or_else(|| {
                    RotationError::InvalidSecret {
                        which: rotation_core::Which::Current,
                        secret: listed.name.clone(),
                        // An engine no rotator handles is named, as a single `run` names it.
                        source: match named {
                            Some(found) => rotation_core::SecretError::WrongEngine {
                                expected: crate::known_engines(engines),
                                found: found.to_string(),
                            },
                            None => rotation_core::SecretError::MissingKey("engine"),
                        },
                    }
                })?
        }
    };
    let tagged = listed
        .tags
        .iter()
        .find(|(k, _)| k == STRATEGY_TAG)
        .map(|(_, v)| {
            Strategy::parse(v).ok_or_else(|| {
                UsageError(format!(
                    "secret {}: tag {STRATEGY_TAG} is {:?}; use single-user or alternating-users",
                    listed.name,
                    escape(v)
                ))
            })
        })
        .transpose()?;
    let strategy =
        strategy
            .or(tagged)
            .unwrap_or(if parsed.get("masterarn").is_some_and(|m| !m.is_null()) {
                Strategy::AlternatingUsers
            } else {
                Strategy::SingleUser
            });
    Ok((engine, strategy, identity(engine, |k| parsed.get(k))))
}

/// The database user a secret's value names (engine, host, port, username), to find two
/// secrets of one user in a fleet run. The port as a number (a string or an absent port, the
/// engine's default, name the same server).
fn identity<'a>(engine: Engine, get: impl Fn(&str) -> Option<&'a Value>) -> String {
    let text = |k: &str| get(k).map(Value::to_string).unwrap_or_default();
    let port = match get("port") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => engine.profile.default_port.map(u64::from),
    };
    format!(
        "{}|{}|{:?}|{}",
        engine.name(),
        text("host"),
        port,
        text("username")
    )
}

async fn rotate_one(shared: Arc<Shared>, listed: Listed) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        name: listed.name.clone(),
        engine: None,
        strategy: None,
        result: Err(Failed::Skipped(String::new())),
        duration: Duration::ZERO,
    };
    if let Some(lambda) = &listed.rotation_lambda
        && !shared.force
    {
        outcome.result = Err(Failed::Skipped(format!(
            "Secrets Manager rotates it with {lambda}; --force to rotate it from here anyway"
        )));
        return outcome;
    }
    let result = async {
        let (engine, strategy, user) = engine_and_strategy(
            &shared.store,
            &shared.engines,
            shared.timeout,
            shared.engine,
            shared.strategy,
            &listed,
        )
        .await?;
        outcome.engine = Some(engine);
        outcome.strategy = Some(strategy);
        // Two secrets of one database user: rotating the second would lock out the first's
        // clients (its AWSCURRENT would no longer be the database's password).
        let first = {
            let mut users = shared.users.lock().unwrap_or_else(|p| p.into_inner());
            users
                .entry(user)
                .or_insert_with(|| listed.name.clone())
                .clone()
        };
        if let Some(others) = shared.same_user.get(&listed.name) {
            return Err(RotationError::InvalidSecret {
                which: rotation_core::Which::Current,
                secret: listed.name.clone(),
                source: rotation_core::SecretError::Shared(others.clone()),
            }
            .into());
        }
        if first != listed.name {
            return Err(RotationError::InvalidSecret {
                which: rotation_core::Which::Current,
                secret: listed.name.clone(),
                source: rotation_core::SecretError::Shared(first),
            }
            .into());
        }
        let rotation = {
            let mut map = shared.rotations.lock().await;
            match map.get(&key(engine, strategy)) {
                Some(r) => r.clone(),
                None => {
                    let r = Arc::new((shared.build)(engine, strategy)?);
                    map.insert(key(engine, strategy), r.clone());
                    r
                }
            }
        };
        let report = rotation.rotate(&listed.name).await?;
        anyhow::Ok(report.token)
    }
    .await;
    outcome.result = result.map_err(|e| failed(&e));
    // Refusals (exit code 3: busy, another rotation in flight) left nothing of this run's.
    if let Err(Failed::Error {
        in_flight, code, ..
    }) = &mut outcome.result
        && *code != 3
    {
        // Say whether the failure left a rotation in flight (the next run, `resume` or `abort`
        // must deal with it); a store that cannot be asked leaves the question open.
        let asked = tokio::time::timeout(
            Duration::from_secs(shared.timeout),
            rotation_core::SecretStore::describe(&shared.store, &listed.name),
        )
        .await;
        if let Ok(Ok(d)) = asked {
            *in_flight = d.rotation_in_flight().map(str::to_owned);
        }
    }
    outcome.duration = started.elapsed();
    outcome
}

fn failed(e: &anyhow::Error) -> Failed {
    match e.downcast_ref::<RotationError>() {
        Some(r) => Failed::Error {
            kind: r.kind().to_string(),
            code: r.category().exit_code(),
            message: rotation_core::error_chain(r),
            in_flight: None,
        },
        None if e.downcast_ref::<UsageError>().is_some()
            || e.downcast_ref::<rotation_core::ConfigError>().is_some() =>
        {
            Failed::Error {
                kind: "Configuration".into(),
                code: 2,
                message: format!("{e:#}"),
                in_flight: None,
            }
        }
        None => Failed::Error {
            kind: "Unexpected".into(),
            code: 1,
            message: format!("{e:#}"),
            in_flight: None,
        },
    }
}

/// How the run reports as it goes.
struct Progress {
    bar: bool,
    json: bool,
    total: usize,
    done: usize,
    failed: usize,
}

impl Progress {
    fn record(&mut self, o: &Outcome) {
        self.done += 1;
        if matches!(o.result, Err(Failed::Error { .. })) {
            self.failed += 1;
        }
        if self.bar {
            let width = 30;
            let filled = self.done * width / self.total.max(1);
            eprint!(
                "\r[{}{}] {}/{} done, {} failed",
                "#".repeat(filled),
                "-".repeat(width - filled),
                self.done,
                self.total,
                self.failed
            );
            let _ = std::io::stderr().flush();
            if self.done == self.total {
                eprintln!();
            }
        } else if !self.json {
            match &o.result {
                Ok(v) => eprintln!(
                    "rotated {} -> version {v} ({} ms)",
                    escape(&o.name),
                    o.duration.as_millis()
                ),
                Err(Failed::Error { kind, message, .. }) => {
                    eprintln!("failed {} [{kind}]: {}", escape(&o.name), escape(message));
                }
                Err(Failed::Skipped(why)) => {
                    eprintln!("skipped {}: {}", escape(&o.name), escape(why));
                }
            }
        }
    }
}

/// The `masterarn` values of the `chosen` secrets' current versions (read `concurrency` at a
/// time; a secret that cannot be read names none here, and fails on its own later).
async fn masters_named(
    store: &AnyStore,
    engines: &Engines,
    engine: Option<Engine>,
    chosen: &[Listed],
    timeout: u64,
    concurrency: usize,
) -> (
    std::collections::HashSet<String>,
    std::collections::HashMap<String, String>,
) {
    let mut masters = std::collections::HashSet::new();
    // Each database user, and the selected secrets naming it.
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut queue = chosen.iter().map(|l| l.name.clone());
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < concurrency {
            let Some(name) = queue.next() else { break };
            let store = store.clone();
            let engines = engines.clone();
            running.spawn(async move {
                let deadline = rotation_core::Deadline::after(Duration::from_secs(timeout));
                let read = rotation_core::SecretStore::get_value(
                    &store,
                    &name,
                    VersionSelector::stage(Stage::Current),
                );
                let value = deadline.run(read).await.ok()?.ok()?;
                let parsed: Value = serde_json::from_str(value.value.expose_secret()).ok()?;
                let master = parsed
                    .get("masterarn")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let engine =
                    engine.or_else(|| engines.for_secret_engine(parsed.get("engine")?.as_str()?));
                let user = engine.map(|e| identity(e, |k| parsed.get(k)));
                Some((name, master, user))
            });
        }
        match running.join_next().await {
            Some(Ok(Some((name, master, user)))) => {
                masters.extend(master);
                if let Some(user) = user {
                    users.entry(user).or_default().push(name);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let mut same_user = std::collections::HashMap::new();
    for names in users.into_values().filter(|n| n.len() > 1) {
        for name in &names {
            let others: Vec<&str> = names
                .iter()
                .filter(|n| *n != name)
                .map(String::as_str)
                .collect();
            same_user.insert(name.clone(), others.join(", "));
        }
    }
    (masters, same_user)
}

/// Rotates every selected secret, `concurrency` at a time, and prints a summary. Secrets that
/// others name as their master rotate after all the others.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: AnyStore,
    engines: &Engines,
    selection: &Selection,
    strategy: Option<Strategy>,
    engine: Option<Engine>,
    concurrency: usize,
    force: bool,
    timeout: u64,
    json_out: bool,
    build: Box<Builder>,
) -> anyhow::Result<()> {
    let chosen = select(&store, selection).await?;
    let total = chosen.len();
    // A master secret rotated while the secrets that use it rotate would fail them (its
    // AWSCURRENT stops logging in at its setSecret): masters go last, once the others are done.
    let (masters, same_user) =
        masters_named(&store, engines, engine, &chosen, timeout, concurrency).await;
    let (last, first): (Vec<Listed>, Vec<Listed>) = chosen.into_iter().partition(|l| {
        masters.contains(&l.name) || l.arn.as_ref().is_some_and(|a| masters.contains(a))
    });
    if !last.is_empty() && !json_out {
        eprintln!(
            "{} master secret(s) of other selected secrets rotate after them",
            last.len()
        );
    }
    let shared = Arc::new(Shared {
        store,
        engines: engines.clone(),
        build,
        rotations: tokio::sync::Mutex::new(BTreeMap::new()),
        strategy,
        engine,
        force,
        timeout,
        users: std::sync::Mutex::new(std::collections::HashMap::new()),
        same_user,
    });
    let mut progress = Progress {
        bar: !json_out && std::io::stderr().is_terminal(),
        json: json_out,
        total,
        done: 0,
        failed: 0,
    };
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    // Which secret each task rotates: a task that panics is that secret's failure only.
    let mut names = std::collections::HashMap::new();
    let mut outcomes = Vec::with_capacity(total);
    for phase in [first, last] {
        let mut queue = phase.into_iter();
        loop {
            while running.len() < concurrency {
                let Some(next) = queue.next() else { break };
                let name = next.name.clone();
                let handle = running.spawn(rotate_one(shared.clone(), next));
                names.insert(handle.id(), name);
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let outcome = match joined {
                Ok((id, outcome)) => {
                    names.remove(&id);
                    outcome
                }
                Err(e) => Outcome {
                    name: names.remove(&e.id()).unwrap_or_default(),
                    engine: None,
                    strategy: None,
                    result: Err(Failed::Error {
                        kind: "Unexpected".into(),
                        code: 1,
                        message: format!("the rotation task failed: {e}"),
                        in_flight: None,
                    }),
                    duration: Duration::ZERO,
                },
            };
            progress.record(&outcome);
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    summary(json_out, &outcomes, started.elapsed(), concurrency);
    let failures: Vec<u8> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            Err(Failed::Error { code, .. }) => Some(*code),
            _ => None,
        })
        .collect();
    match failures.iter().max() {
        None => Ok(()),
        Some(code) => Err(FleetFailed {
            failed: failures.len(),
            total,
            code: *code,
        }
        .into()),
    }
}

fn summary(json_out: bool, outcomes: &[Outcome], elapsed: Duration, concurrency: usize) {
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let rotated = count(|o| o.result.is_ok());
    let failed = count(|o| matches!(o.result, Err(Failed::Error { .. })));
    let skipped = count(|o| matches!(o.result, Err(Failed::Skipped(_))));
    if json_out {
        let rows: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                let mut row = json!({
                    "secret": o.name,
                    "engine": o.engine.as_ref().map(Engine::name),
                    "strategy": o.strategy.map(|s| s.to_string()),
                    "duration_ms": o.duration.as_millis() as u64,
                });
                match &o.result {
                    Ok(v) => {
                        row["result"] = json!("rotated");
                        row["version"] = json!(v);
                    }
                    Err(Failed::Error {
                        kind,
                        message,
                        in_flight,
                        ..
                    }) => {
                        row["result"] = json!("failed");
                        row["kind"] = json!(kind);
                        row["error"] = json!(message);
                        row["in_flight"] = json!(in_flight);
                    }
                    Err(Failed::Skipped(why)) => {
                        row["result"] = json!("skipped");
                        row["reason"] = json!(why);
                    }
                }
                row
            })
            .collect();
        println!(
            "{}",
            json!({
                "rotated": rotated,
                "failed": failed,
                "skipped": skipped,
                "in_flight": count(|o| matches!(o.result, Err(Failed::Error { in_flight: Some(_), .. }))),
                "concurrency": concurrency,
                "elapsed_ms": elapsed.as_millis() as u64,
                "secrets": rows,
            })
        );
        return;
    }
    let width = outcomes
        .iter()
        .map(|o| escape(&o.name).chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<width$}  {:<10}  {:<17}  {:>8}  RESULT",
        "SECRET", "ENGINE", "STRATEGY", "MS"
    );
    for o in outcomes {
        let result = match &o.result {
            Ok(v) => format!("rotated -> {v}"),
            Err(Failed::Error {
                kind,
                in_flight: None,
                ..
            }) => format!("FAILED [{kind}]"),
            Err(Failed::Error {
                kind,
                in_flight: Some(v),
                ..
            }) => format!("FAILED [{kind}], rotation in flight (AWSPENDING {v})"),
            Err(Failed::Skipped(_)) => "skipped (a Lambda rotates it)".to_string(),
        };
        println!(
            "{:<width$}  {:<10}  {:<17}  {:>8}  {result}",
            escape(&o.name),
            o.engine.as_ref().map_or("-", Engine::name),
            o.strategy.map_or("-".to_string(), |s| s.to_string()),
            o.duration.as_millis(),
        );
    }
    println!(
        "{rotated} rotated, {failed} failed, {skipped} skipped, in {:.1} s at concurrency {concurrency}",
        elapsed.as_secs_f64()
    );
    let left = count(|o| {
        matches!(
            o.result,
            Err(Failed::Error {
                in_flight: Some(_),
                ..
            })
        )
    });
    if left > 0 {
        println!(
            "{left} of the failed secrets are left with a rotation in flight: fix the cause, then `rotate resume SECRET` finishes it and `rotate abort SECRET` undoes it (`rotate run` refuses a secret with a rotation in flight)"
        );
    }
}
