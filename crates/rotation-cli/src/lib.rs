//! `rotate`: Secrets Manager rotations from a shell, for any list of engines. The `rotate`
//! binary is [`main`] with the built-in engines (feature `engines`, on by default); a custom
//! engine's command is the same function with its own list, and every verb (`run`, `plan`,
//! `resume`, `abort`, `rollback`, `status`, `put`, `list`, fleet runs) works for it:
//!
//! ```no_run
//! # fn f(my_engine: rotation_core::Engine) -> std::process::ExitCode {
//! rotation_cli::main(rotation_core::Engines::new([my_engine]).unwrap())
//! # }
//! ```
//!
//! Exit codes: 0 done; 1 unexpected failure; 2 usage or configuration error; 3 refused by the
//! secret's state (rotation in flight, none in flight, rotation disabled); 4 the secret or the
//! secret store is the problem; 5 the database is the problem (login, TLS, permissions).

#[cfg(feature = "demo")]
mod demo;
mod fleet;
mod output;
mod put;

use std::process::ExitCode;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::sync::OnceLock;

use rotation_core::{
    AbortMode, AnyRotator, AnyStore, AwsSecretStore, DatabaseSecret, Deadline, Engine, EngineEnv,
    EngineSettings, Engines, LocalSecretStore, Options, Rotation, RotationError, SecretError,
    SecretStore, Stage, Strategy, VersionSelector, Which,
};

#[derive(Debug, Parser)]
#[command(
    name = "rotate",
    version,
    about = "Rotate database credentials kept in AWS Secrets Manager or a local file store"
)]
struct Cli {
    /// Where secrets live: `aws` (Secrets Manager, configured by the usual AWS_* variables and
    /// SECRETS_MANAGER_ENDPOINT) or `file:PATH` (a local JSON store).
    #[arg(
        long,
        global = true,
        default_value = "file:rotation-store.json",
        env = "ROTATE_STORE"
    )]
    store: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each step, in seconds: every database and store call of the step is bounded
    /// by it.
    #[arg(long, global = true, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Log progress to stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rotate a secret now (refused while another rotation is in flight), or many:
    /// `--all`, `--prefix P`, `--tag KEY=VALUE`, `--concurrency N` at a time.
    Run(RunArgs),
    /// Finish the rotation in flight from the step it reached.
    Resume(Target),
    /// Abandon the rotation in flight: only once the AWSCURRENT credentials are proven to log
    /// in (a single-user password already changed is set back first); otherwise nothing changes.
    Abort {
        #[command(flatten)]
        target: Target,
        /// Remove AWSPENDING even when the AWSCURRENT credentials cannot be proven to log in
        /// (a database gone for good); says what it leaves behind.
        #[arg(long)]
        force: bool,
    },
    /// Store a secret in the file store: a new secret, or a new AWSCURRENT version of one
    /// (refused while a rotation is in flight). The value is checked as a rotation checks it.
    /// Prints no value.
    #[command(
        after_help = "Examples:\n  rotate put app engine=postgres host=db.example.com port=5432 username=app --password-stdin < pw.txt\n  rotate put app --value-file secret.json\n  rotate put app host=new-db.example.com   (keeps the other keys and the password)"
    )]
    Put {
        /// Secret name (or the ARN of an existing one).
        secret: String,
        /// Keys of the value, as KEY=VALUE: engine, host, port, username, dbname, masterarn.
        /// On an existing secret without --value-file, they change its current value.
        pairs: Vec<String>,
        /// Read the whole value (a JSON object) from this file; `-` reads standard input.
        #[arg(long)]
        value_file: Option<std::path::PathBuf>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Check the value for this strategy (default: alternating-users when it has a
        /// masterarn, else single-user).
        #[arg(long, value_parser = parse_strategy)]
        strategy: Option<Strategy>,
    },
    /// The file store's secrets: engine, when the current value was stored, rotation in flight.
    List,
    /// Put the previous credentials back after a rotation that clients could not follow:
    /// AWSPREVIOUS becomes AWSCURRENT through a rotation of its own (single user: the database
    /// password is set back first). Stopped half-way, `resume` finishes it and `abort` undoes
    /// it. A second rollback rolls forward.
    Rollback(Target),
    /// Check, changing nothing, what a rotation would need: the secret, the store's
    /// permissions, the network, TLS, the logins, the acting user's rights, a generated
    /// password, a rotation in flight. A line each; exit 0 only when all pass.
    Plan {
        /// Secret name or ARN.
        secret: String,
        /// The strategy to check for (default: alternating-users when the secret has a
        /// masterarn, else single-user).
        #[arg(long, env = rotation_core::STRATEGY_ENV, value_parser = parse_strategy)]
        strategy: Option<Strategy>,
        /// Database engine; by default the one the secret's `engine` key names.
        #[arg(long)]
        engine: Option<String>,
    },
    /// Versions and stages of a secret, and any rotation in flight.
    Status {
        /// Secret name or ARN.
        secret: String,
    },
    /// Start a throwaway PostgreSQL and show a single-user and an alternating-users rotation.
    #[cfg(feature = "demo")]
    Demo {
        /// Keep the demo's store file here instead of a temporary directory.
        #[arg(long)]
        store_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Secret name or ARN; or choose many with --all, --prefix or --tag.
    #[arg(required_unless_present_any = ["all", "prefix", "tag"], conflicts_with_all = ["all", "prefix", "tag"])]
    secret: Option<String>,
    /// `single-user` or `alternating-users`. Required for one secret; for many, each secret's
    /// `rotation-strategy` tag, else alternating-users when it has a masterarn, else single-user.
    #[arg(long, env = rotation_core::STRATEGY_ENV, value_parser = parse_strategy)]
    strategy: Option<Strategy>,
    /// Database engine; by default the one each secret's `engine` key names.
    #[arg(long)]
    engine: Option<String>,
    /// Every secret of the store.
    #[arg(long)]
    all: bool,
    /// The secrets whose name starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// The secrets with this tag (repeatable: all must match).
    #[arg(long, value_parser = fleet::parse_tag)]
    tag: Vec<(String, String)>,
    /// How many secrets rotate at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// With --store aws: rotate secrets that Secrets Manager rotates with a Lambda too (the
    /// two would race).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Secret name or ARN.
    secret: String,
    /// `single-user` or `alternating-users`.
    #[arg(long, env = rotation_core::STRATEGY_ENV, value_parser = parse_strategy)]
    strategy: Strategy,
    /// Database engine; by default the one the secret's `engine` key names (each engine lists
    /// the `engine` values it takes; an unknown value is refused with the list).
    #[arg(long)]
    engine: Option<String>,
}

/// The engine `--engine` names, if given.
fn engine_named(engines: &Engines, name: Option<&str>) -> anyhow::Result<Option<Engine>> {
    name.map(|s| {
        engines.by_name(s).ok_or_else(|| {
            UsageError(format!(
                "unknown engine {s:?}: use one of {}",
                engines.names().join(", ")
            ))
            .into()
        })
    })
    .transpose()
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::parse(s)
        .ok_or_else(|| format!("unknown strategy {s:?}: use single-user or alternating-users"))
}

/// A command line that cannot be acted on (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

async fn open_store(spec: &str) -> anyhow::Result<AnyStore> {
    if spec == "aws" {
        let sdk = aws_config::from_env().load().await;
        return Ok(AnyStore::Aws(AwsSecretStore::from_sdk_config(&sdk)));
    }
    let path = spec
        .strip_prefix("file:")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            UsageError(format!(
                "--store must be `aws` or `file:PATH`, got {spec:?}"
            ))
        })?;
    Ok(AnyStore::Local(LocalSecretStore::new(path)))
}

/// The file store `spec` names, for the commands that only it offers.
/// The file store `spec` names, for `put` and `list`: a wait for its lock is bounded by
/// `--timeout` (`timeout` seconds), as every other wait of a command is.
fn file_store(spec: &str, command: &str, timeout: u64) -> anyhow::Result<LocalSecretStore> {
    match spec.strip_prefix("file:").filter(|p| !p.is_empty()) {
        Some(path) => {
            Ok(LocalSecretStore::new(path).with_lock_timeout(Duration::from_secs(timeout)))
        }
        None if spec == "aws" => Err(UsageError(format!(
            "rotate {command} works on the file store (--store file:PATH); for Secrets Manager use the AWS CLI (aws secretsmanager create-secret / put-secret-value / list-secrets)"
        ))
        .into()),
        None => Err(UsageError(format!(
            "--store must be `aws` or `file:PATH`, got {spec:?}"
        ))
        .into()),
    }
}

/// Every value of the `engine` key some engine handles, for messages (one list per process).
fn known_engines(engines: &Engines) -> &'static str {
    static KNOWN: OnceLock<String> = OnceLock::new();
    KNOWN.get_or_init(|| format!("one of {}", engines.secret_engines().join(", ")))
}

/// The engine of `secret`: its AWSCURRENT value's `engine` key.
async fn engine_of(
    store: &AnyStore,
    secret: &str,
    timeout: u64,
    engines: &Engines,
) -> anyhow::Result<Engine> {
    let deadline = Deadline::after(Duration::from_secs(timeout));
    let value = deadline
        .store_call(
            "GetSecretValue",
            store.get_value(secret, VersionSelector::stage(Stage::Current)),
        )
        .await
        .map_err(|source| RotationError::Store {
            context: format!("reading the current version of secret {secret} to find its engine"),
            source,
        })?;
    let invalid = |source| RotationError::InvalidSecret {
        which: Which::Current,
        secret: secret.to_string(),
        source,
    };
    let parsed = DatabaseSecret::parse(&value.value).map_err(invalid)?;
    let name = parsed
        .engine()
        .ok_or_else(|| invalid(SecretError::MissingKey("engine")))?;
    engines.for_secret_engine(name).ok_or_else(|| {
        invalid(SecretError::WrongEngine {
            expected: known_engines(engines),
            found: name.to_string(),
        })
        .into()
    })
}

async fn rotation(
    store: AnyStore,
    target: &Target,
    timeout: u64,
    engines: &Engines,
) -> anyhow::Result<Rotation<AnyStore, AnyRotator>> {
    let engine = match engine_named(engines, target.engine.as_deref())? {
        Some(e) => e,
        None => engine_of(&store, &target.secret, timeout, engines).await?,
    };
    // Managed master secrets and replica hosts need the RDS API; only with AWS.
    let sdk = match store {
        AnyStore::Aws(_) => Some(aws_config::from_env().load().await),
        AnyStore::Local(_) => None,
    };
    build_rotation(store, engine, target.strategy, timeout, sdk.as_ref())
}

/// The rotation of `engine` and `strategy` over `store`, its settings read from the
/// environment.
fn build_rotation(
    store: AnyStore,
    engine: Engine,
    strategy: Strategy,
    timeout: u64,
    sdk: Option<&aws_config::SdkConfig>,
) -> anyhow::Result<Rotation<AnyStore, AnyRotator>> {
    let settings = EngineSettings::read(engine, &EngineEnv::process(sdk))?;
    settings.config.log();
    let options = Options {
        step_timeout: Duration::from_secs(timeout),
        ..settings.options()
    };
    Ok(settings.rotation(store, strategy).with_options(options))
}

/// Logs to stderr: text, or with `--json` one JSON object per line carrying the span's fields
/// (secret, version, engine, strategy, step), so each step's and each rotation's event
/// (`step finished`/`step failed`, `rotation complete`/`rotation failed`, with outcome, error
/// kind and duration) is machine-readable. Those events are at info level: `-v`.
fn init_logs(verbose: u8, json: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// The `rotate` command over `engines`: parses the command line, runs it, and returns the
/// exit code (module docs).
pub fn main(engines: Engines) -> ExitCode {
    // Tokio's default blocking pool (512 threads): DNS lookups run there beside the file
    // store's calls, and a cap lets a few slow lookups starve the store (BENCHMARKS.md, "The
    // blocking-thread cap").
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async_main(engines))
}

async fn async_main(engines: Engines) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    init_logs(cli.verbose, cli.json);
    let json = cli.json;
    match run(cli, &engines).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A fleet run has reported each failure already.
            if let Some(f) = e.downcast_ref::<fleet::FleetFailed>() {
                eprintln!("error: {f}");
                return ExitCode::from(f.code);
            }
            // So has a plan.
            if let Some(output::PlanFailed(code)) = e.downcast_ref::<output::PlanFailed>() {
                return ExitCode::from(*code);
            }
            // And the demo, its JSON included.
            if let Some(r) = e.downcast_ref::<output::Reported>() {
                eprintln!("error: {}", output::escape(&r.0));
                return ExitCode::from(1);
            }
            let (kind, message, code) = match e.downcast_ref::<RotationError>() {
                Some(r) => (
                    r.kind(),
                    rotation_core::error_chain(r),
                    r.category().exit_code(),
                ),
                None if e.downcast_ref::<UsageError>().is_some()
                    || e.downcast_ref::<rotation_core::ConfigError>().is_some() =>
                {
                    ("Usage", format!("{e:#}"), 2)
                }
                None => ("Error", format!("{e:#}"), 1),
            };
            output::failure(json, kind, &message, code);
            ExitCode::from(code)
        }
    }
}

/// A command line the parser refused (or `--help`, `--version`): the parser's own output, and
/// with `--json` among the arguments (before `--`) the JSON failure line too, as for every
/// other failure.
fn parse_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    let _ = e.print();
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
        return ExitCode::SUCCESS;
    }
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json {
        let rendered = e.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        println!(
            "{}",
            serde_json::json!({"result": "failed", "kind": "Usage", "error": message, "exit_code": 2})
        );
    }
    ExitCode::from(2)
}

async fn run(cli: Cli, engines: &Engines) -> anyhow::Result<()> {
    let out = output::Output { json: cli.json };
    // `--engine` names one of the engines: checked before anything is read (exit 2).
    let named = match &cli.command {
        Command::Run(a) => a.engine.as_deref(),
        Command::Resume(t) | Command::Rollback(t) => t.engine.as_deref(),
        Command::Abort { target, .. } => target.engine.as_deref(),
        Command::Plan { engine, .. } => engine.as_deref(),
        _ => None,
    };
    engine_named(engines, named)?;
    match cli.command {
        Command::Run(a) => {
            let store = open_store(&cli.store).await?;
            let selection = fleet::Selection {
                all: a.all,
                prefix: a.prefix.clone(),
                tags: a.tag.clone(),
            };
            if selection.is_fleet() {
                let sdk = match store {
                    AnyStore::Aws(_) => Some(aws_config::from_env().load().await),
                    AnyStore::Local(_) => None,
                };
                let (builder_store, timeout) = (store.clone(), cli.timeout);
                let build = move |engine: Engine, strategy: Strategy| {
                    build_rotation(
                        builder_store.clone(),
                        engine,
                        strategy,
                        timeout,
                        sdk.as_ref(),
                    )
                };
                fleet::run(
                    store,
                    engines,
                    &selection,
                    a.strategy,
                    engine_named(engines, a.engine.as_deref())?,
                    usize::from(a.concurrency),
                    a.force,
                    cli.timeout,
                    cli.json,
                    Box::new(build),
                )
                .await?;
                return Ok(());
            }
            let secret = a.secret.clone().unwrap_or_default();
            let strategy = a.strategy.ok_or_else(|| {
                UsageError(
                    "--strategy is required for one secret (single-user or alternating-users; or ROTATION_STRATEGY)".into(),
                )
            })?;
            if let AnyStore::Aws(aws) = &store
                && !a.force
                && let Some(lambda) = fleet::rotation_lambda(aws.client(), &secret).await?
            {
                return Err(UsageError(format!(
                    "Secrets Manager rotates secret {secret} with {lambda}: a rotation from here would race it; use `aws secretsmanager rotate-secret`, or --force"
                ))
                .into());
            }
            let t = Target {
                secret,
                strategy,
                engine: a.engine,
            };
            let r = rotation(store, &t, cli.timeout, engines).await?;
            let report = r.rotate(&t.secret).await?;
            out.report("rotated", &report);
        }
        Command::Resume(t) => {
            let r = rotation(open_store(&cli.store).await?, &t, cli.timeout, engines).await?;
            let report = r.resume(&t.secret).await?;
            out.report("resumed", &report);
        }
        Command::Rollback(t) => {
            let r = rotation(open_store(&cli.store).await?, &t, cli.timeout, engines).await?;
            let report = r.rollback(&t.secret).await?;
            out.report("rolled back", &report);
        }
        Command::Abort { target, force } => {
            let r = rotation(open_store(&cli.store).await?, &target, cli.timeout, engines).await?;
            let mode = if force {
                AbortMode::Force
            } else {
                AbortMode::Safe
            };
            let report = r.abort(&target.secret, mode).await?;
            out.abort(&report);
        }
        Command::Put {
            secret,
            pairs,
            value_file,
            password_stdin,
            strategy,
        } => {
            let store = file_store(&cli.store, "put", cli.timeout)?;
            let req = put::PutRequest {
                secret: &secret,
                value_file: value_file.as_deref(),
                password_stdin,
                pairs: &pairs,
                timeout: Duration::from_secs(cli.timeout),
            };
            let (value, expected) = put::build_value(&store, &req).await?;
            put::check(&secret, &value, strategy, engines)?;
            put::check_master_is_another(&store, &secret, &value).await?;
            let written = store
                .put_current(&secret, &value, expected.as_deref())
                .await;
            let outcome = written.map_err(|source| RotationError::Store {
                context: format!("storing secret {secret}"),
                source,
            })?;
            put::print_put(cli.json, &secret, &outcome);
        }
        Command::List => {
            let store = file_store(&cli.store, "list", cli.timeout)?;
            put::print_list(cli.json, &put::summaries(&store).await?);
        }
        Command::Plan {
            secret,
            strategy,
            engine,
        } => {
            let store = open_store(&cli.store).await?;
            let engine = engine_named(engines, engine.as_deref())?;
            let found = fleet::engine_and_strategy_of(
                &store,
                engines,
                &secret,
                strategy,
                engine,
                cli.timeout,
            )
            .await;
            let (engine, strategy) = match found {
                Ok(found) => found,
                // The secret cannot be read or names no engine: that is the plan's answer.
                Err(e) => match e.downcast::<RotationError>() {
                    Ok(r) => {
                        let plan = output::unreadable_plan(&secret, strategy, &r);
                        out.plan(&plan);
                        return Err(output::PlanFailed(output::plan_exit_code(&plan)).into());
                    }
                    Err(e) => return Err(e),
                },
            };
            let t = Target {
                secret: secret.clone(),
                strategy,
                engine: Some(engine.name().to_string()),
            };
            let r = rotation(store, &t, cli.timeout, engines).await?;
            let plan = r.plan(&secret).await;
            out.plan(&plan);
            if !plan.passed() {
                return Err(output::PlanFailed(output::plan_exit_code(&plan)).into());
            }
        }
        Command::Status { secret } => {
            let store = open_store(&cli.store).await?;
            let deadline = rotation_core::Deadline::after(Duration::from_secs(cli.timeout));
            let d = deadline
                .store_call("DescribeSecret", store.describe(&secret))
                .await
                .map_err(|source| RotationError::Store {
                    context: format!("describing secret {secret}"),
                    source,
                })?;
            out.status(&d);
        }
        #[cfg(feature = "demo")]
        Command::Demo { store_file } => demo::run(store_file, cli.json).await?,
    }
    Ok(())
}
