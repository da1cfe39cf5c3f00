//! Keeping the pair's privileges equal (W7), within the kinds AWS's function copies once at
//! creation: database CREATE/TEMP, schema USAGE/CREATE, table SELECT, INSERT, UPDATE, DELETE,
//! REFERENCES (views too), plus group memberships.
//!
//! Who follows whom is core's [`Direction::for_pair`] rule: the original is the source of
//! truth, the user in use never loses anything mid-rotation, a user created now copies the
//! current one.
//!
//! Effective privileges are read with `has_*_privilege` (so grants through PUBLIC and groups
//! count), after the group memberships are synchronised in the same transaction. Objects the
//! target owns keep its owner rights. Tables in schemas the acting (admin) user cannot use are
//! left out: it could neither look them up nor grant on them.

use std::collections::BTreeSet;

use rotation_core::{Deadline, Direction, EngineError, ErrorKind};
use rotation_postgres::connect::bounded;
use rotation_postgres::session::exec;
use sqlx::postgres::PgConnection;
use tracing::info;

use crate::sql;

/// One object's privileges: for each privilege kind, whether the source and the target hold
/// it, and whether the target owns the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPrivileges {
    /// The object's name, quoted by the server.
    pub object_q: String,
    /// Whether the source holds each privilege.
    pub source: Vec<bool>,
    /// Whether the target holds each privilege.
    pub target: Vec<bool>,
    /// Whether the target owns the object.
    pub target_owns: bool,
}

/// What changes, as statements, for objects of `kind` with privileges `privileges`.
pub fn plan_objects(
    kind: &str,
    privileges: &[&str],
    objects: &[ObjectPrivileges],
    target_q: &str,
    revoke: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, privilege) in privileges.iter().enumerate() {
        let pick = |grant: bool| -> Vec<String> {
            objects
                .iter()
                .filter(|o| o.source[i] == grant && o.target[i] != grant)
                .filter(|o| grant || !o.target_owns)
                .map(|o| o.object_q.clone())
                .collect()
        };
        out.extend(sql::privilege_statements(
            true,
            privilege,
            kind,
            &pick(true),
            target_q,
        ));
        if revoke {
            out.extend(sql::privilege_statements(
                false,
                privilege,
                kind,
                &pick(false),
                target_q,
            ));
        }
    }
    out
}

/// Group statements: the target joins the source's groups and, with `revoke`, leaves the others.
pub fn plan_groups(rows: &[(String, String)], d: &Direction, target_q: &str) -> Vec<String> {
    let of = |user: &str| -> BTreeSet<&str> {
        rows.iter()
            .filter(|(_, u)| u == user)
            .map(|(g, _)| g.as_str())
            .collect()
    };
    let (want, have) = (of(&d.source), of(&d.target));
    let mut out: Vec<String> = want
        .difference(&have)
        .map(|g| sql::group_membership(g, target_q, true))
        .collect();
    if d.revoke {
        out.extend(
            have.difference(&want)
                .map(|g| sql::group_membership(g, target_q, false)),
        );
    }
    out
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
        .map(|(q, s1, s2, t1, t2, owns)| ObjectPrivileges {
            object_q: q,
            source: vec![s1, s2],
            target: vec![t1, t2],
            target_owns: owns,
        })
        .collect()
}

/// Runs a catalog query about the pair (`$1` the source, `$2` the target).
async fn pair_rows<T>(
    conn: &mut PgConnection,
    deadline: Deadline,
    what: &str,
    query: &'static str,
    d: &Direction,
) -> Result<Vec<T>, EngineError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    bounded(
        deadline,
        what,
        sqlx::query_as(query)
            .bind(&d.source)
            .bind(&d.target)
            .fetch_all(conn),
    )
    .await
}

/// Refuses a pair where one user is a superuser and the other is not: no grant or revoke could
/// make them equal (a superuser source would hand the target an explicit grant on every
/// object), and rotation must not hand out a superuser by accident.
async fn check_superusers(
    conn: &mut PgConnection,
    deadline: Deadline,
    d: &Direction,
) -> Result<(), EngineError> {
    let rows: Vec<(String, bool)> = pair_rows(
        conn,
        deadline,
        "reading user attributes",
        sql::SUPERUSERS,
        d,
    )
    .await?;
    let is_super = |name: &str| rows.iter().any(|(u, s)| u == name && *s);
    let (source, target) = (is_super(&d.source), is_super(&d.target));
    if source != target {
        let (yes, no) = if target {
            (&d.target, &d.source)
        } else {
            (&d.source, &d.target)
        };
        return Err(EngineError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{yes} is a superuser and {no} is not, so grants cannot give the pair the same privileges; make both superusers or neither (ALTER USER ... CREATEUSER / NOCREATEUSER)"
            ),
        ));
    }
    Ok(())
}

/// Reads the pair's privileges and brings the target's in line with the source's as `d` says,
/// on `conn` (inside the caller's transaction). Returns how many statements it ran.
pub async fn synchronise(
    conn: &mut PgConnection,
    deadline: Deadline,
    d: &Direction,
    target_q: &str,
) -> Result<usize, EngineError> {
    check_superusers(conn, deadline, d).await?;
    let groups: Vec<(String, String)> =
        pair_rows(conn, deadline, "reading group memberships", sql::GROUPS, d).await?;
    let mut statements = plan_groups(&groups, d, target_q);
    run(conn, deadline, &statements).await?;

    let databases: Vec<Row6> = pair_rows(
        conn,
        deadline,
        "reading database privileges",
        sql::DATABASES,
        d,
    )
    .await?;
    let schemas: Vec<Row6> =
        pair_rows(conn, deadline, "reading schema privileges", sql::SCHEMAS, d).await?;
    let tables: Vec<TableRow> =
        pair_rows(conn, deadline, "reading table privileges", sql::TABLES, d).await?;
    let tables: Vec<ObjectPrivileges> = tables
        .into_iter()
        .map(|r| ObjectPrivileges {
            object_q: r.0,
            source: vec![r.1, r.2, r.3, r.4, r.5],
            target: vec![r.6, r.7, r.8, r.9, r.10],
            target_owns: r.11,
        })
        .collect();
    let more: Vec<String> = [
        plan_objects(
            "DATABASE",
            &["CREATE", "TEMP"],
            &two_kinds(databases),
            target_q,
            d.revoke,
        ),
        plan_objects(
            "SCHEMA",
            &["USAGE", "CREATE"],
            &two_kinds(schemas),
            target_q,
            d.revoke,
        ),
        plan_objects(
            "TABLE",
            &["SELECT", "INSERT", "UPDATE", "DELETE", "REFERENCES"],
            &tables,
            target_q,
            d.revoke,
        ),
    ]
    .concat();
    run(conn, deadline, &more).await?;
    statements.extend(more);
    if !statements.is_empty() {
        info!(
            source = %d.source,
            target = %d.target,
            revoke = d.revoke,
            statements = statements.len(),
            "brought the pair's privileges in line"
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

    fn obj(q: &str, source: &[bool], target: &[bool], owns: bool) -> ObjectPrivileges {
        ObjectPrivileges {
            object_q: q.into(),
            source: source.to_vec(),
            target: target.to_vec(),
            target_owns: owns,
        }
    }

    #[test]
    fn grants_what_is_missing_and_revokes_only_when_allowed() {
        let objects = [
            obj("s.a", &[true, true], &[false, true], false),
            obj("s.b", &[false, false], &[true, false], false),
            // Owned by the target: never revoked.
            obj("s.c", &[false, false], &[true, true], true),
            obj("s.d", &[true, false], &[true, false], false),
        ];
        assert_eq!(
            plan_objects("TABLE", &["SELECT", "INSERT"], &objects, "app_clone", true),
            vec![
                "GRANT SELECT ON TABLE s.a TO app_clone",
                "REVOKE SELECT ON TABLE s.b FROM app_clone",
            ]
        );
        assert_eq!(
            plan_objects("TABLE", &["SELECT", "INSERT"], &objects, "app_clone", false),
            vec!["GRANT SELECT ON TABLE s.a TO app_clone"]
        );
    }

    #[test]
    fn groups_follow_the_source() {
        let rows = vec![
            ("g1".to_string(), "app".to_string()),
            ("g2".to_string(), "app".to_string()),
            ("g2".to_string(), "app_clone".to_string()),
            ("old".to_string(), "app_clone".to_string()),
        ];
        let mut d = Direction::for_pair("app", "app_clone", false);
        assert_eq!(
            plan_groups(&rows, &d, "app_clone"),
            vec![
                "ALTER GROUP g1 ADD USER app_clone",
                "ALTER GROUP old DROP USER app_clone",
            ]
        );
        d.revoke = false;
        assert_eq!(
            plan_groups(&rows, &d, "app_clone"),
            vec!["ALTER GROUP g1 ADD USER app_clone"]
        );
    }
}
