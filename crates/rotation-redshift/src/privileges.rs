//! Keeping the clone's privileges equal to the original's (W7), within the kinds AWS's function
//! copies once at creation: database CREATE/TEMP, schema USAGE/CREATE, table SELECT, INSERT,
//! UPDATE, DELETE, REFERENCES (views too), plus group memberships. Re-checked on every
//! rotation: the clone gains what the original gained and loses what the original lost.
//!
//! Effective privileges are read with `has_*_privilege` (so grants through PUBLIC and groups
//! count), after the group memberships are synchronised in the same transaction. Objects the
//! clone owns keep its owner rights.

use std::collections::BTreeSet;

use rotation_core::{Deadline, EngineError};
use rotation_postgres::connect::bounded;
use rotation_postgres::session::exec;
use sqlx::postgres::PgConnection;
use tracing::info;

use crate::sql;

/// One object's privileges: for each privilege kind, whether the original and the clone hold
/// it, and whether the clone owns the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPrivileges {
    /// The object's name, quoted by the server.
    pub object_q: String,
    /// Whether the original holds each privilege.
    pub original: Vec<bool>,
    /// Whether the clone holds each privilege.
    pub clone: Vec<bool>,
    /// Whether the clone owns the object.
    pub clone_owns: bool,
}

/// What changes, as statements, for objects of `kind` with privileges `privileges`.
pub fn plan_objects(
    kind: &str,
    privileges: &[&str],
    objects: &[ObjectPrivileges],
    clone_q: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, privilege) in privileges.iter().enumerate() {
        let pick = |want_original: bool, want_clone: bool| -> Vec<String> {
            objects
                .iter()
                .filter(|o| o.original[i] == want_original && o.clone[i] == want_clone)
                .filter(|o| want_original || !o.clone_owns)
                .map(|o| o.object_q.clone())
                .collect()
        };
        out.extend(sql::privilege_statements(
            true,
            privilege,
            kind,
            &pick(true, false),
            clone_q,
        ));
        out.extend(sql::privilege_statements(
            false,
            privilege,
            kind,
            &pick(false, true),
            clone_q,
        ));
    }
    out
}

/// Group statements: join the original's groups, leave the others.
pub fn plan_groups(
    rows: &[(String, String)],
    original: &str,
    clone: &str,
    clone_q: &str,
) -> Vec<String> {
    let of = |user: &str| -> BTreeSet<&str> {
        rows.iter()
            .filter(|(_, u)| u == user)
            .map(|(g, _)| g.as_str())
            .collect()
    };
    let (want, have) = (of(original), of(clone));
    want.difference(&have)
        .map(|g| sql::group_membership(g, clone_q, true))
        .chain(
            have.difference(&want)
                .map(|g| sql::group_membership(g, clone_q, false)),
        )
        .collect()
}

type Row6 = (String, bool, bool, bool, bool, bool);
type TableRow = (
    String,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
);

fn two_kinds(rows: Vec<Row6>) -> Vec<ObjectPrivileges> {
    rows.into_iter()
        .map(|(q, o1, o2, c1, c2, owns)| ObjectPrivileges {
            object_q: q,
            original: vec![o1, o2],
            clone: vec![c1, c2],
            clone_owns: owns,
        })
        .collect()
}

/// Runs a catalog query about the pair (`$1` the original, `$2` the clone).
async fn pair_rows<T>(
    conn: &mut PgConnection,
    deadline: Deadline,
    what: &str,
    query: &'static str,
    original: &str,
    clone: &str,
) -> Result<Vec<T>, EngineError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    bounded(
        deadline,
        what,
        sqlx::query_as(query)
            .bind(original)
            .bind(clone)
            .fetch_all(conn),
    )
    .await
}

/// Reads the pair's privileges and brings the clone's in line with the original's, on `conn`
/// (inside the caller's transaction). `original` and `clone` are stored names. Returns how many
/// statements it ran.
pub async fn synchronise(
    conn: &mut PgConnection,
    deadline: Deadline,
    original: &str,
    clone: &str,
    clone_q: &str,
) -> Result<usize, EngineError> {
    let groups: Vec<(String, String)> = pair_rows(
        conn,
        deadline,
        "reading group memberships",
        sql::GROUPS,
        original,
        clone,
    )
    .await?;
    let mut statements = plan_groups(&groups, original, clone, clone_q);
    run(conn, deadline, &statements).await?;

    let databases: Vec<Row6> = pair_rows(
        conn,
        deadline,
        "reading database privileges",
        sql::DATABASES,
        original,
        clone,
    )
    .await?;
    let schemas: Vec<Row6> = pair_rows(
        conn,
        deadline,
        "reading schema privileges",
        sql::SCHEMAS,
        original,
        clone,
    )
    .await?;
    let tables: Vec<TableRow> = pair_rows(
        conn,
        deadline,
        "reading table privileges",
        sql::TABLES,
        original,
        clone,
    )
    .await?;
    let tables: Vec<ObjectPrivileges> = tables
        .into_iter()
        .map(|r| ObjectPrivileges {
            object_q: r.0,
            original: vec![r.1, r.2, r.3, r.4, r.5],
            clone: vec![r.6, r.7, r.8, r.9, r.10],
            clone_owns: r.11,
        })
        .collect();
    let more: Vec<String> = [
        plan_objects(
            "DATABASE",
            &["CREATE", "TEMP"],
            &two_kinds(databases),
            clone_q,
        ),
        plan_objects("SCHEMA", &["USAGE", "CREATE"], &two_kinds(schemas), clone_q),
        plan_objects(
            "TABLE",
            &["SELECT", "INSERT", "UPDATE", "DELETE", "REFERENCES"],
            &tables,
            clone_q,
        ),
    ]
    .concat();
    run(conn, deadline, &more).await?;
    statements.extend(more);
    if !statements.is_empty() {
        info!(
            original,
            clone,
            statements = statements.len(),
            "brought the clone's privileges in line with the original's"
        );
    }
    Ok(statements.len())
}

async fn run(
    conn: &mut PgConnection,
    deadline: Deadline,
    statements: &[String],
) -> Result<(), EngineError> {
    for s in statements {
        // The statement names objects and users only; it is safe to say which one failed.
        let what = format!("running `{s}`");
        exec(conn, deadline, &what, s).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(q: &str, original: &[bool], clone: &[bool], owns: bool) -> ObjectPrivileges {
        ObjectPrivileges {
            object_q: q.into(),
            original: original.to_vec(),
            clone: clone.to_vec(),
            clone_owns: owns,
        }
    }

    #[test]
    fn grants_what_is_missing_and_revokes_what_the_original_lost() {
        let objects = [
            obj("s.a", &[true, true], &[false, true], false),
            obj("s.b", &[false, false], &[true, false], false),
            // Owned by the clone: never revoked.
            obj("s.c", &[false, false], &[true, true], true),
            obj("s.d", &[true, false], &[true, false], false),
        ];
        assert_eq!(
            plan_objects("TABLE", &["SELECT", "INSERT"], &objects, "app_clone"),
            vec![
                "GRANT SELECT ON TABLE s.a TO app_clone",
                "REVOKE SELECT ON TABLE s.b FROM app_clone",
            ]
        );
    }

    #[test]
    fn groups_follow_the_original() {
        let rows = vec![
            ("g1".to_string(), "app".to_string()),
            ("g2".to_string(), "app".to_string()),
            ("g2".to_string(), "app_clone".to_string()),
            ("old".to_string(), "app_clone".to_string()),
        ];
        assert_eq!(
            plan_groups(&rows, "app", "app_clone", "app_clone"),
            vec![
                "ALTER GROUP g1 ADD USER app_clone",
                "ALTER GROUP old DROP USER app_clone",
            ]
        );
        assert!(plan_groups(&rows[1..3], "app", "app_clone", "app_clone").is_empty());
    }
}
