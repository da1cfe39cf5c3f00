//! A real database for every engine, for the suites that hold every engine to the same promise
//! ("No stranded password"). An engine takes part by implementing
//! [`rotation_testkit::TestEngine`] beside its code (each engine crate's `testing` feature); a
//! scenario is one `async fn scenario(engine: Engine)` and the suites' `all_engines!` makes a
//! test of it per registered engine.
//!
//! Rotations are built the way the CLI and the Lambda functions build them (the engine's
//! settings read from variables, [`rotation_core::EngineSettings::rotation`]), so one scenario
//! drives any engine through `Rotation<_, AnyRotator>`. What a scenario does to the database
//! itself (create a user, hold or forbid a password change, list users, change a password
//! behind the rotation's back) goes through the engine's [`TestServer`].

pub use rotation_core::AnyRotator;
pub use rotation_testkit::env::{Engine, EngineRotation, Env, parse, read_settings};
pub use rotation_testkit::{HeldChange, ServerOptions, TestEngine, TestServer};

/// Amazon RDS / Aurora PostgreSQL.
pub const POSTGRES: Engine = &rotation_postgres::testing::Postgres;
/// Amazon Redshift, on its stand-in.
pub const REDSHIFT: Engine = &rotation_redshift::testing::Redshift;
/// Amazon DocumentDB, on SecantusDB.
pub const DOCUMENTDB: Engine = &rotation_documentdb::testing::DocumentDb;
/// Amazon RDS / Aurora MySQL and MariaDB, on MariaDB.
pub const MYSQL: Engine = &rotation_mysql::testing::Mysql;
/// The custom-engine example: Redis ACL users (`examples/redis-acl`).
pub const REDIS: Engine = &redis_acl_rotation::testing::Redis;

/// Every engine the suites run against, as [`registered_engines!`](crate::registered_engines)
/// lists them.
pub const ALL: [Engine; 5] = crate::registered_engines!(engine_list {});

/// The registered engines as a list the binaries take (`rotation_cli::main`).
pub fn engines() -> rotation_core::Engines {
    rotation_core::Engines::new(ALL.map(|e| e.engine())).expect("registered engines are distinct")
}

/// The registered engine named `name`.
pub fn by_name(name: &str) -> Option<Engine> {
    ALL.into_iter().find(|e| e.engine().is_named(name))
}

/// The engines the suites run against, the one list: for each, the module its tests go in and
/// its constant in [`crate::engines`]. `registered_engines!(m { args })` calls
/// `m! { @engines [module CONST, ...]; args }`. Adding an engine adds its constant above and
/// its entry here.
#[macro_export]
macro_rules! registered_engines {
    ($m:ident { $($args:tt)* }) => {
        $crate::$m! {
            @engines [postgres POSTGRES, redshift REDSHIFT, documentdb DOCUMENTDB, mysql MYSQL, redis REDIS];
            $($args)*
        }
    };
}

/// The registered engines as an array (for [`ALL`]).
#[doc(hidden)]
#[macro_export]
macro_rules! engine_list {
    (@engines [$($module:ident $engine:ident),*];) => {
        [$($crate::engines::$engine),*]
    };
}

/// One test per rotator (engine and strategy): `all_rotators!(scenario)` makes
/// `postgres::single_user`, `postgres::alternating_users`, ... for every registered engine,
/// each calling `async fn scenario(engine: Engine, strategy: Strategy)` of the including module.
#[macro_export]
macro_rules! all_rotators {
    (@engines [$($module:ident $engine:ident),*]; $scenario:ident) => {$(
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_user() {
                super::$scenario(
                    $crate::engines::$engine,
                    rotation_core::Strategy::SingleUser,
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn alternating_users() {
                super::$scenario(
                    $crate::engines::$engine,
                    rotation_core::Strategy::AlternatingUsers,
                )
                .await
            }
        }
    )*};
    ($scenario:ident) => {
        $crate::registered_engines!(all_rotators { $scenario });
    };
}

/// One test per scenario and engine: `all_engines!(a, b)` makes `postgres::a`, `redshift::a`,
/// ... (and the same for `b`) for every registered engine, each calling
/// `async fn a(engine: Engine)` of the including module. A scenario an engine cannot take part
/// in asserts what its [`Limits`](rotation_testkit::Limits) say instead.
#[macro_export]
macro_rules! all_engines {
    (@engines [$($module:ident $engine:ident),*]; $names:tt) => {
        $( $crate::all_engines!(@one $module $engine $names); )*
    };
    (@one $module:ident $engine:ident [$($name:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::engines::$engine).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::registered_engines!(all_engines { [$($name),*] });
    };
}
