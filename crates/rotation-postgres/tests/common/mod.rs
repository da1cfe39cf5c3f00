//! This crate's suites on the one test environment ([`rotation_testkit::Env`]) with the
//! PostgreSQL engine's server, and what only PostgreSQL needs of it: the cluster itself and
//! the engine's typed settings.

#![allow(dead_code)]

use rotation_core::{LocalSecretStore, Rotation};
use rotation_postgres::testing::{POSTGRES, PgServer, Postgres};
use rotation_postgres::{PgConfig, PostgresRotator};
#[allow(unused_imports)]
pub use rotation_testkit::env::{Env, parse};
use rotation_testkit::{PgCluster, PgOptions};

/// A cluster started with `options`.
pub fn start(options: PgOptions) -> Env {
    let server = Postgres::server(options).expect("start PostgreSQL (scripts/setup installs it)");
    Env::with_server(&POSTGRES, Box::new(server))
}

/// Without TLS.
pub fn plain() -> Env {
    Env::plain(&POSTGRES)
}

/// TLS-only, with a generated CA the engine's settings trust.
pub fn tls() -> Env {
    Env::tls(&POSTGRES)
}

/// What this crate's suites need of the environment beyond every engine's.
pub trait PgEnv {
    /// The cluster.
    fn pg(&self) -> &PgCluster;
    /// The engine's settings, trusting the cluster's CA.
    fn config(&self) -> PgConfig;
    /// A rotation by `rotator`.
    fn rotation(&self, rotator: PostgresRotator) -> Rotation<LocalSecretStore, PostgresRotator>;
}

impl PgEnv for Env {
    fn pg(&self) -> &PgCluster {
        self.server_as::<PgServer>().cluster()
    }

    fn config(&self) -> PgConfig {
        self.server_as::<PgServer>().config()
    }

    fn rotation(&self, rotator: PostgresRotator) -> Rotation<LocalSecretStore, PostgresRotator> {
        self.rotation_with(rotator)
    }
}
