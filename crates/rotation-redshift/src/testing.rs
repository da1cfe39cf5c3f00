//! Redshift for the promise suites ([`rotation_testkit::TestEngine`]): the stand-in, a
//! PostgreSQL cluster with md5 authentication and a `dev` database (see the crate docs for what
//! it does and does not show of Redshift). Behind the `testing` feature.

use rotation_core::{DatabaseSecret, Engine};
use rotation_postgres::testing::PgServer;
use rotation_testkit::{
    Limits, PgAuth, PgCluster, PgOptions, RightsCheck, ServerOptions, TestEngine, TestServer,
    TestkitError, Wire,
};
use serde_json::{Value, json};

use crate::DIALECT;

/// How an operator makes a user on Redshift (psql variables `u` and `pw`).
const CREATE_USER: &str = "CREATE USER :\"u\" PASSWORD :'pw';";

impl Redshift {
    /// A stand-in, TLS-only with a generated CA when `tls`, logging every statement when
    /// `log_statements` (a cluster of its own even when a variable names one): what only this
    /// engine's own suites ask for.
    pub fn server(tls: bool, log_statements: bool) -> Result<PgServer, TestkitError> {
        let base = if tls {
            PgOptions::tls()
        } else {
            PgOptions::default()
        };
        let pg = PgCluster::start(PgOptions {
            auth: PgAuth::Md5,
            log_statements,
            ..base
        })?;
        pg.psql(&format!("CREATE DATABASE {}", DIALECT.default_dbname))?;
        Ok(PgServer::from_cluster(pg, CREATE_USER))
    }
}

/// Amazon Redshift, on the stand-in.
#[derive(Debug)]
pub struct Redshift;

/// The Redshift test engine.
pub static REDSHIFT: Redshift = Redshift;

impl TestEngine for Redshift {
    fn engine(&self) -> Engine {
        crate::ENGINE
    }

    fn start(&self, options: ServerOptions) -> Result<Box<dyn TestServer>, TestkitError> {
        PgServer::start(
            options,
            PgAuth::Md5,
            Some(DIALECT.default_dbname),
            CREATE_USER,
        )
        .map(|s| Box::new(s) as Box<dyn TestServer>)
    }

    /// A number `port` and no `dbname`, as Redshift's secrets often are.
    fn secret(&self, port: u16, username: &str, password: &str) -> Value {
        json!({
            "engine": "redshift",
            "host": "localhost",
            "port": port,
            "username": username,
            "password": password,
        })
    }

    fn wire(&self) -> Wire {
        Wire::Postgres
    }

    fn clone_statement(&self) -> &'static str {
        "CREATE USER"
    }

    fn password_statement(&self) -> &'static str {
        "ALTER USER"
    }

    fn test_statement(&self) -> &'static str {
        "SELECT 1"
    }

    /// The server quotes the user's name before the change.
    fn statement_before_change(&self) -> Option<&'static str> {
        Some("quote_ident")
    }

    fn login_database(&self, secret: &DatabaseSecret) -> String {
        rotation_postgres::connect::dbname(secret, &DIALECT).to_string()
    }

    fn default_database(&self) -> &'static str {
        DIALECT.default_dbname
    }

    fn login_port(&self, secret: &DatabaseSecret) -> u16 {
        secret.port().unwrap_or(DIALECT.default_port)
    }

    /// Redshift's rules hold for what the function generated (8 to 64 characters, an
    /// upper-case letter, a lower-case letter and a digit, none of `'"\/@` or space), and the
    /// server stored the password as an md5 hash (Redshift's form), never the password.
    fn check_rotated(&self, server: &dyn TestServer, previous: &Value, current: &Value) {
        for v in [previous, current] {
            let p = v["password"].as_str().unwrap_or_default();
            assert!(
                (8..=64).contains(&p.len())
                    && p.chars().any(|c| c.is_ascii_uppercase())
                    && p.chars().any(|c| c.is_ascii_lowercase())
                    && p.chars().any(|c| c.is_ascii_digit())
                    && !p.chars().any(|c| "'\"\\/@ ".contains(c)),
                "a generated password breaks Redshift's rules"
            );
        }
        let pg = server
            .as_any()
            .downcast_ref::<PgServer>()
            .expect("the stand-in")
            .cluster();
        let stored = pg
            .psql_vars(
                "SELECT rolpassword FROM pg_authid WHERE rolname = :'u';",
                &[("u", current["username"].as_str().unwrap_or_default())],
            )
            .expect("read pg_authid");
        assert!(stored.starts_with("md5"), "stored as an md5 hash");
    }

    fn stand_in(&self) -> Option<&'static str> {
        Some("PostgreSQL with md5 authentication and a `dev` database, not a real Redshift")
    }

    /// Redshift users may always change their own password, so the preflight does not ask (the
    /// stand-in's read-only role is not Redshift's); whether a master may change another user's
    /// password it cannot tell without trying.
    fn limits(&self) -> Limits {
        Limits {
            own_password_rights: RightsCheck::AlwaysGranted,
            master_rights: RightsCheck::Unknown,
            ..Limits::NONE
        }
    }
}
