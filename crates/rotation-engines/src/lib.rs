//! The built-in engines, registered in one place: `rotate` and the fleet take this list
//! ([`builtin`]), each Lambda binary one of its engines. A custom engine's binaries pass their own list instead (see
//! `examples/redis-acl`).
//!
//! Each engine crate exports its [`Engine`] (`ENGINE`): its profile, its Lambda function's
//! name, and how it reads its settings. Adding an engine adds its line here.

use rotation_core::{Engine, Engines};

/// Amazon RDS / Aurora PostgreSQL.
pub const POSTGRES: Engine = rotation_postgres::ENGINE;
/// Amazon Redshift (provisioned and Serverless).
pub const REDSHIFT: Engine = rotation_redshift::ENGINE;
/// Amazon DocumentDB (MongoDB wire protocol).
pub const DOCUMENTDB: Engine = rotation_documentdb::ENGINE;
/// Amazon RDS / Aurora MySQL and MariaDB.
pub const MYSQL: Engine = rotation_mysql::ENGINE;

/// The built-in engines, in the order `rotate` lists them.
pub const BUILTIN: [Engine; 4] = [POSTGRES, REDSHIFT, DOCUMENTDB, MYSQL];

/// The built-in engines as a list.
pub fn builtin() -> Engines {
    Engines::new(BUILTIN).expect("the built-in engines claim distinct names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_by_name_and_secret_key() {
        let list = builtin();
        assert_eq!(list.by_name("postgres"), Some(POSTGRES));
        assert_eq!(list.by_name("rds-postgres"), Some(POSTGRES));
        assert_eq!(list.by_name("redshift"), Some(REDSHIFT));
        assert_eq!(list.by_name("mysql"), Some(MYSQL));
        assert_eq!(list.by_name("rds-mysql"), Some(MYSQL));
        assert_eq!(list.for_secret_engine("mariadb"), Some(MYSQL));
        assert_eq!(list.for_secret_engine("aurora-mysql"), Some(MYSQL));
        assert_eq!(list.by_name("oracle"), None);
        assert_eq!(list.for_secret_engine("aurora-postgresql"), Some(POSTGRES));
        assert_eq!(list.for_secret_engine("redshift"), Some(REDSHIFT));
        assert_eq!(list.for_secret_engine("mongo"), Some(DOCUMENTDB));
        assert_eq!(list.for_secret_engine("Redshift"), None);
        assert_eq!(POSTGRES.to_string(), "postgres");
        assert_eq!(DOCUMENTDB.function_name, "documentdb");
    }
}
