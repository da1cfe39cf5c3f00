//! The statements this engine sends, as text built from server-quoted identifiers and password
//! hashes only (never a password), in the subset of SQL that both Amazon Redshift and the
//! PostgreSQL stand-in accept: `||` for concatenation, aliased subqueries, no `lock_timeout`.
//! Redshift-only forms are pinned by the unit tests below; the stand-in cannot check them.

use md5::{Digest, Md5};

/// Most objects named in one GRANT or REVOKE (keeps statements short on large catalogs).
pub const OBJECTS_PER_STATEMENT: usize = 100;

/// Whether user `$1` exists, by its stored name exactly.
pub const USER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_user WHERE usename = $1)";

/// Quoted schema and table names keep their case in this session (Redshift; user names always
/// keep theirs when quoted).
pub const CASE_SENSITIVE_IDENTIFIERS: &str = "SET enable_case_sensitive_identifier TO true";

/// Whether `$1` and `$2` are superusers.
pub const SUPERUSERS: &str = "SELECT usename, usesuper FROM pg_user WHERE usename IN ($1, $2)";

/// The session's login user, as stored (not `current_user`, which `SET ROLE` or a per-user
/// `role` setting can change).
pub const LOGIN_USER: &str = "SELECT session_user";

/// Group memberships of `$1` (the source) and `$2` (the target).
pub const GROUPS: &str = "SELECT quote_ident(g.groname), u.usename \
     FROM pg_group g, pg_user u \
     WHERE u.usename IN ($1, $2) AND u.usesysid = ANY(g.grolist)";

/// Per database: CREATE and TEMP for `$1` and `$2`, and whether `$2` owns it.
pub const DATABASES: &str = "SELECT quote_ident(d.datname), \
     has_database_privilege($1, d.datname, 'CREATE'), has_database_privilege($1, d.datname, 'TEMP'), \
     has_database_privilege($2, d.datname, 'CREATE'), has_database_privilege($2, d.datname, 'TEMP'), \
     COALESCE((SELECT u.usename FROM pg_user u WHERE u.usesysid = d.datdba) = $2, false) \
     FROM pg_database d";

/// Per user schema (not `pg_*`, not `information_schema`): USAGE and CREATE for `$1` and `$2`,
/// and whether `$2` owns it.
pub const SCHEMAS: &str = "SELECT quote_ident(n.nspname), \
     has_schema_privilege($1, n.nspname, 'USAGE'), has_schema_privilege($1, n.nspname, 'CREATE'), \
     has_schema_privilege($2, n.nspname, 'USAGE'), has_schema_privilege($2, n.nspname, 'CREATE'), \
     COALESCE((SELECT u.usename FROM pg_user u WHERE u.usesysid = n.nspowner) = $2, false) \
     FROM pg_namespace n \
     WHERE substring(n.nspname, 1, 3) <> 'pg_' AND n.nspname <> 'information_schema'";

/// Per table and view outside system schemas (so also outside `pg_internal` and `pg_automv`)
/// and in schemas the acting user may use (it could not look the others up by name, nor grant
/// on them): SELECT, INSERT, UPDATE, DELETE, REFERENCES for `$1`, then for `$2`, and whether
/// `$2` owns it.
pub const TABLES: &str = "SELECT t.q, \
     has_table_privilege($1, t.q, 'SELECT'), has_table_privilege($1, t.q, 'INSERT'), \
     has_table_privilege($1, t.q, 'UPDATE'), has_table_privilege($1, t.q, 'DELETE'), \
     has_table_privilege($1, t.q, 'REFERENCES'), \
     has_table_privilege($2, t.q, 'SELECT'), has_table_privilege($2, t.q, 'INSERT'), \
     has_table_privilege($2, t.q, 'UPDATE'), has_table_privilege($2, t.q, 'DELETE'), \
     has_table_privilege($2, t.q, 'REFERENCES'), \
     t.owner = $2 \
     FROM (SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS q, tableowner AS owner \
           FROM pg_tables \
           WHERE substring(schemaname, 1, 3) <> 'pg_' AND schemaname <> 'information_schema' \
             AND has_schema_privilege(schemaname, 'USAGE') \
           UNION ALL \
           SELECT quote_ident(schemaname) || '.' || quote_ident(viewname) AS q, viewowner AS owner \
           FROM pg_views \
           WHERE substring(schemaname, 1, 3) <> 'pg_' AND schemaname <> 'information_schema' \
             AND has_schema_privilege(schemaname, 'USAGE')) AS t";

/// Redshift's `md5` password form: `md5` and the hex MD5 of the password followed by the user
/// name as the server stores it. The server keeps it as the password's hash, so the password
/// itself never reaches the server.
pub fn md5_password(password: &str, stored_user: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(stored_user.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(35);
    out.push_str("md5");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `ALTER USER <user> PASSWORD '<md5 form>'`.
pub fn alter_password(user_q: &str, md5_form: &str) -> String {
    format!("ALTER USER {user_q} PASSWORD '{md5_form}'")
}

/// `CREATE USER <user> PASSWORD '<md5 form>'`.
pub fn create_user(user_q: &str, md5_form: &str) -> String {
    format!("CREATE USER {user_q} PASSWORD '{md5_form}'")
}

/// Adds or drops a user from a group.
pub fn group_membership(group_q: &str, user_q: &str, add: bool) -> String {
    let verb = if add { "ADD" } else { "DROP" };
    format!("ALTER GROUP {group_q} {verb} USER {user_q}")
}

/// A grant or revoke of `privilege` on `kind` objects (`DATABASE`, `SCHEMA`, `TABLE`). One
/// statement per database (Redshift refuses datashare and local databases in one statement);
/// schemas and tables in lists of at most [`OBJECTS_PER_STATEMENT`].
pub fn privilege_statements(
    grant: bool,
    privilege: &str,
    kind: &str,
    objects_q: &[String],
    user_q: &str,
) -> Vec<String> {
    let per = if kind == "DATABASE" {
        1
    } else {
        OBJECTS_PER_STATEMENT
    };
    objects_q
        .chunks(per)
        .map(|chunk| {
            let list = chunk.join(", ");
            if grant {
                format!("GRANT {privilege} ON {kind} {list} TO {user_q}")
            } else {
                format!("REVOKE {privilege} ON {kind} {list} FROM {user_q}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_form_matches_the_documented_recipe() {
        // md5("ez" || "user1"), the example of Redshift's CREATE USER page.
        assert_eq!(
            md5_password("ez", "user1"),
            "md5153c434b4b77c89e6b94f12c5393af5b"
        );
        assert_eq!(md5_password("ez", "user1").len(), 35);
        // The salt is the stored (folded) name: a different case is a different hash.
        assert_ne!(md5_password("ez", "User1"), md5_password("ez", "user1"));
    }

    #[test]
    fn password_statements_carry_only_the_hash() {
        let h = md5_password("Secret-Passw0rd", "app");
        assert_eq!(
            alter_password("\"App User\"", &h),
            format!("ALTER USER \"App User\" PASSWORD '{h}'")
        );
        assert_eq!(
            create_user("app_clone", &h),
            format!("CREATE USER app_clone PASSWORD '{h}'")
        );
        assert!(!alter_password("app", &h).contains("Secret-Passw0rd"));
    }

    #[test]
    fn group_and_privilege_statements() {
        assert_eq!(
            group_membership("analysts", "app_clone", true),
            "ALTER GROUP analysts ADD USER app_clone"
        );
        assert_eq!(
            group_membership("\"Grp\"", "app_clone", false),
            "ALTER GROUP \"Grp\" DROP USER app_clone"
        );
        let dbs = vec!["dev".to_string(), "\"Shared DB\"".to_string()];
        assert_eq!(
            privilege_statements(true, "TEMP", "DATABASE", &dbs, "app_clone"),
            vec![
                "GRANT TEMP ON DATABASE dev TO app_clone",
                "GRANT TEMP ON DATABASE \"Shared DB\" TO app_clone",
            ]
        );
        let tables: Vec<String> = (0..250).map(|i| format!("s.t{i}")).collect();
        let stmts = privilege_statements(false, "SELECT", "TABLE", &tables, "app_clone");
        assert_eq!(stmts.len(), 3);
        assert!(stmts[0].starts_with("REVOKE SELECT ON TABLE s.t0, s.t1, "));
        assert!(stmts[0].ends_with("s.t99 FROM app_clone"));
        assert_eq!(stmts[2], {
            let rest: Vec<String> = (200..250).map(|i| format!("s.t{i}")).collect();
            format!("REVOKE SELECT ON TABLE {} FROM app_clone", rest.join(", "))
        });
        assert_eq!(
            privilege_statements(true, "USAGE", "SCHEMA", &["a".into(), "b".into()], "u"),
            vec!["GRANT USAGE ON SCHEMA a, b TO u"]
        );
    }

    #[test]
    fn catalog_queries_stay_in_the_common_subset() {
        for q in [
            USER_EXISTS,
            GROUPS,
            DATABASES,
            SCHEMAS,
            TABLES,
            LOGIN_USER,
            SUPERUSERS,
        ] {
            // No `+` concatenation (Redshift's templates use it; PostgreSQL rejects it on text).
            assert!(!q.contains("' + "), "{q}");
            assert!(!q.contains(") + "), "{q}");
            // No PostgreSQL-only settings.
            assert!(!q.contains("lock_timeout"), "{q}");
        }
        // Every subquery in FROM has an alias (PostgreSQL 15 requires one).
        assert!(TABLES.contains(") AS t"));
        // System schemas, including Redshift's pg_internal and pg_automv, are skipped.
        assert!(TABLES.contains("substring(schemaname, 1, 3) <> 'pg_'"));
    }
}
