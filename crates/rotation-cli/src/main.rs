//! `rotate`: Secrets Manager rotations from a shell.
//!
//! Exit codes: 0 done; 1 unexpected failure; 2 usage or configuration error; 3 refused by the
//! secret's state (rotation in flight, none in flight, rotation disabled); 4 the secret or the
//! secret store is the problem; 5 the database is the problem (login, TLS, permissions).

#[cfg(feature = "demo")]
mod demo;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rotation_core::{
    AnyStore, AwsSecretStore, LocalSecretStore, PasswordPolicy, Rotation, RotationError, Strategy,
};
use rotation_postgres::{PROFILE, PgConfig, PostgresRotator};

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
    /// Abandon the rotation in flight (a single-user password already changed is set back).
    Abort(Target),
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
    /// Database engine.
    #[arg(long, default_value = "postgres", value_parser = ["postgres"])]
    engine: String,
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

async fn rotation(
    store: AnyStore,
    strategy: Strategy,
) -> anyhow::Result<Rotation<AnyStore, PostgresRotator>> {
    let policy = PasswordPolicy::from_env(&PROFILE.password)?;
    let config = PgConfig::from_env()?;
    let mut rotator = PostgresRotator::new(strategy, config);
    if let AnyStore::Aws(_) = store {
        // Managed master secrets and replica hosts need the RDS API; only with AWS.
        let sdk = aws_config::from_env().load().await;
        rotator = rotator.with_rds(rotation_postgres::rds::Rds::from_sdk_config(&sdk));
    }
    Ok(Rotation::new(store, rotator, policy))
}

/// Exit code for a rotation error (see the crate docs).
fn exit_code(e: &RotationError) -> u8 {
    match e.kind() {
        "RotationInFlight" | "NoRotationInFlight" | "RotationNotEnabled" | "TokenNotStaged"
        | "TokenNotPending" => 3,
        "InvalidSecret"
        | "UserMismatch"
        | "HostMismatch"
        | "UsernameTooLong"
        | "MissingMasterArn"
        | "MasterHostMismatch"
        | "SecretNotFound"
        | "SecretsManagerAccessDenied"
        | "SecretsManagerError"
        | "InvalidEvent"
        | "InvalidStep" => 4,
        "InvalidPasswordPolicy" => 2,
        _ => 5,
    }
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
                    eprintln!("error [{}]: {}", r.kind(), rotation_core::error_chain(r));
                    exit_code(r)
                }
                None if e.downcast_ref::<UsageError>().is_some()
                    || e.downcast_ref::<rotation_core::PolicyError>().is_some()
                    || e.downcast_ref::<rotation_postgres::ConfigError>().is_some() =>
                {
                    eprintln!("error: {e:#}");
                    2
                }
                None => {
                    eprintln!("error: {e:#}");
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
            let r = rotation(open_store(&cli.store).await?, t.strategy).await?;
            let report = r.rotate(&t.secret).await?;
            out.report("rotated", &report);
        }
        Command::Resume(t) => {
            let r = rotation(open_store(&cli.store).await?, t.strategy).await?;
            let report = r.resume(&t.secret).await?;
            out.report("resumed", &report);
        }
        Command::Abort(t) => {
            let r = rotation(open_store(&cli.store).await?, t.strategy).await?;
            let report = r.abort(&t.secret).await?;
            out.abort(&report);
        }
        Command::Status { secret } => {
            let store = open_store(&cli.store).await?;
            use rotation_core::SecretStore;
            let d = store
                .describe(&secret)
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
