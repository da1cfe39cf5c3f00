//! `rotate`: Secrets Manager rotations from a shell.
//!
//! Exit codes: 0 done; 1 unexpected failure; 2 usage or configuration error; 3 refused by the
//! secret's state (rotation in flight, none in flight, rotation disabled); 4 the secret or the
//! secret store is the problem; 5 the database is the problem (login, TLS, permissions).

#[cfg(feature = "demo")]
mod demo;
mod output;

use std::process::ExitCode;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rotation_core::{
    AbortMode, AnyStore, AwsSecretStore, DatabaseSecret, Deadline, LocalSecretStore, Options,
    Rotation, RotationError, SecretError, SecretStore, Stage, StoreError, Strategy,
    VersionSelector, Which,
};
use rotation_engines::{AnyRotator, Engine, Settings};

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
    /// Rotate a secret now (refused while another rotation is in flight).
    Run(Target),
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
struct Target {
    /// Secret name or ARN.
    secret: String,
    /// `single-user` or `alternating-users`.
    #[arg(long, env = "ROTATION_STRATEGY", value_parser = parse_strategy)]
    strategy: Strategy,
    /// Database engine; by default the one the secret's `engine` key names (`postgres`,
    /// `aurora-postgresql`: postgres; `redshift`: redshift; `mongo`: documentdb).
    #[arg(long, value_parser = parse_engine)]
    engine: Option<Engine>,
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    Engine::parse(s).ok_or_else(|| {
        let known: Vec<_> = Engine::ALL.iter().map(|e| e.name()).collect();
        format!("unknown engine {s:?}: use one of {}", known.join(", "))
    })
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

/// Every value of the `engine` key some engine handles, for messages.
const KNOWN_ENGINES: &str = "one of postgres, aurora-postgresql, redshift, mongo";

/// The engine of `secret`: its AWSCURRENT value's `engine` key.
async fn engine_of(store: &AnyStore, secret: &str, timeout: u64) -> anyhow::Result<Engine> {
    let deadline = Deadline::after(Duration::from_secs(timeout));
    let value = match deadline
        .run(store.get_value(secret, VersionSelector::stage(Stage::Current)))
        .await
    {
        Ok(r) => r,
        Err(_) => Err(StoreError::Timeout("GetSecretValue")),
    }
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
    Engine::for_secret_engine(name).ok_or_else(|| {
        invalid(SecretError::WrongEngine {
            expected: KNOWN_ENGINES,
            found: name.to_string(),
        })
        .into()
    })
}

async fn rotation(
    store: AnyStore,
    target: &Target,
    timeout: u64,
) -> anyhow::Result<Rotation<AnyStore, AnyRotator>> {
    let engine = match target.engine {
        Some(e) => e,
        None => engine_of(&store, &target.secret, timeout).await?,
    };
    let settings = Settings::from_env(engine)?;
    settings.postgres.trust.log_sources();
    // Managed master secrets and replica hosts need the RDS API; only with AWS.
    let sdk = match store {
        AnyStore::Aws(_) => Some(aws_config::from_env().load().await),
        AnyStore::Local(_) => None,
    };
    let options = Options {
        step_timeout: Duration::from_secs(timeout),
        ..settings.options()
    };
    Ok(
        rotation_engines::rotation(store, &settings, target.strategy, sdk.as_ref())
            .with_options(options),
    )
}

fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<RotationError>() {
                Some(r) => {
                    eprintln!(
                        "error [{}]: {}",
                        r.kind(),
                        output::escape(&rotation_core::error_chain(r))
                    );
                    r.category().exit_code()
                }
                None if e.downcast_ref::<UsageError>().is_some()
                    || e.downcast_ref::<rotation_engines::ConfigError>().is_some() =>
                {
                    eprintln!("error: {}", output::escape(&format!("{e:#}")));
                    2
                }
                None => {
                    eprintln!("error: {}", output::escape(&format!("{e:#}")));
                    1
                }
            };
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = output::Output { json: cli.json };
    match cli.command {
        Command::Run(t) => {
            let r = rotation(open_store(&cli.store).await?, &t, cli.timeout).await?;
            let report = r.rotate(&t.secret).await?;
            out.report("rotated", &report);
        }
        Command::Resume(t) => {
            let r = rotation(open_store(&cli.store).await?, &t, cli.timeout).await?;
            let report = r.resume(&t.secret).await?;
            out.report("resumed", &report);
        }
        Command::Abort { target, force } => {
            let r = rotation(open_store(&cli.store).await?, &target, cli.timeout).await?;
            let mode = if force {
                AbortMode::Force
            } else {
                AbortMode::Safe
            };
            let report = r.abort(&target.secret, mode).await?;
            out.abort(&report);
        }
        Command::Status { secret } => {
            let store = open_store(&cli.store).await?;
            let deadline = rotation_core::Deadline::after(Duration::from_secs(cli.timeout));
            let d = match deadline.run(store.describe(&secret)).await {
                Ok(r) => r,
                Err(_) => Err(rotation_core::StoreError::Timeout("DescribeSecret")),
            }
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
