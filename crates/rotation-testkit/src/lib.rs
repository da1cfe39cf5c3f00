//! Throwaway real servers for tests, all on 127.0.0.1 with random ports, stopped on drop (or
//! servers the tests did not start, named by environment variables: see below):
//!
//! - [`Moto`]: moto's Secrets Manager (and Lambda/RDS control-plane) API, from the project's
//!   `.venv` (installed by `scripts/setup`);
//! - [`PgCluster`]: a PostgreSQL cluster in a temporary directory with password authentication
//!   over TCP (SCRAM or md5), optionally TLS-only with a certificate from a generated CA;
//! - [`Secantus`]: SecantusDB, a MongoDB-wire server with SCRAM authentication, standing in
//!   for Amazon DocumentDB (an admin created before it accepts clients, replica-set name `rs0`,
//!   optionally TLS-only), from the project's `.venv`;
//! - [`RedisServer`]: `redis-server` with ACLs on (the `default` user off, an `admin` with a
//!   password), optionally TLS-only, for the custom-engine example (`examples/redis-acl`);
//! - [`TcpProxy`]: a fault-injection TCP proxy in front of any of them (stall, reset, refuse
//!   connections; hold a PostgreSQL statement or a MongoDB command, see [`Wire`]), to show that
//!   code whose connection stalls times out instead of hanging.
//!
//! A server that cannot start is an error that says how to install what is missing; tests
//! `expect` it, so they fail rather than skip.
//!
//! Environment variables can name servers the tests did not start (containers, or the ones
//! `scripts/test-external` starts): PostgreSQL (SCRAM or md5, with or without TLS), a
//! MongoDB-wire server, Redis and moto; see [`external`] for the variables and CONTRIBUTING.md's
//! "External targets" for what each serves. The handles are the same types.

#![allow(clippy::print_stderr)]

pub mod engine;
pub mod env;
pub mod external;
mod lambda;
pub mod mariadb;
mod moto;
mod net;
mod postgres;
mod proxy;
mod python;
mod redis;
pub mod runtime_api;
mod secantus;
mod tls;

pub use engine::{
    HeldChange, Limits, NetworkHold, RightsCheck, ServerOptions, TestEngine, TestServer,
};
pub use env::Env;
pub use lambda::LambdaService;
pub use moto::Moto;
pub use net::{free_port, wait_for_port};
pub use postgres::{PgAuth, PgCluster, PgOptions, pg_bin};
pub use proxy::{TcpProxy, Wire};
pub use redis::RedisServer;
pub use secantus::Secantus;
pub use tls::TestCa;

use std::path::PathBuf;

/// Why a test server could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A program or file the server needs is missing.
    #[error("{what} not found at {path}: {hint}")]
    Missing {
        /// What.
        what: &'static str,
        /// Where it was looked for.
        path: String,
        /// How to install it.
        hint: &'static str,
    },
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command.
        command: String,
        /// Its output or error.
        detail: String,
    },
    /// The server did not come up in time.
    #[error("{what} did not start within {secs} s: {detail}")]
    Timeout {
        /// What.
        what: &'static str,
        /// Seconds waited.
        secs: u64,
        /// Log excerpt.
        detail: String,
    },
    /// I/O.
    #[error("testkit I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// The project's Python virtual environment: `$ROTATION_VENV` or `<root>/.venv`.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("ROTATION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

pub(crate) fn run(cmd: &mut std::process::Command) -> Result<String, TestkitError> {
    let out = cmd.output().map_err(|e| TestkitError::Command {
        command: format!("{cmd:?}"),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(TestkitError::Command {
            command: format!("{:?}", cmd.get_program()),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
