//! The text this engine reads from and sends to the server, as pure functions: the stored
//! form of a password, the plugin an account uses (from `SHOW CREATE USER`), the lines of
//! `SHOW GRANTS` taken apart, and the statements that bring one account's rights in line with
//! another's. Names in statements are always the server's own quoting (`QUOTE()`, or the text
//! `SHOW GRANTS` printed), never quoted here.

use std::collections::{BTreeMap, BTreeSet};

use sha1::{Digest, Sha1};

/// `mysql_native_password`'s stored form of `password`: `*` and the upper-case hex of
/// SHA1(SHA1(password)). The server compares logins against it; it is never the password.
pub fn native_hash(password: &str) -> String {
    let once = Sha1::digest(password.as_bytes());
    let twice = Sha1::digest(once);
    let mut out = String::with_capacity(41);
    out.push('*');
    for b in twice {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// How an account authenticates, as `SHOW CREATE USER` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    /// `mysql_native_password` (MariaDB's `IDENTIFIED BY PASSWORD '*...'`, or no password).
    Native,
    /// Any other plugin, by name (`caching_sha2_password`, `ed25519`, `unix_socket`,
    /// `AWSAuthenticationPlugin`, ...): no stored form this engine computes.
    Other(String),
}

/// The account's plugin and the clauses after its credentials (`REQUIRE ...`, `WITH ...`
/// limits, `PASSWORD EXPIRE ...`, `ACCOUNT LOCK`), from a `SHOW CREATE USER` line. The
/// credentials themselves (the stored hash) are dropped here and never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The plugin.
    pub plugin: Plugin,
    /// The clauses after the credentials, normalised to single spaces (empty when none).
    pub options: String,
}

/// Skips a quoted string or identifier starting at `i` (`'...'`, `"..."` or `` `...` ``, the
/// quote doubled or backslash-escaped inside); returns the index after it.
fn skip_quoted(s: &[u8], i: usize) -> usize {
    let q = s[i];
    let mut j = i + 1;
    while j < s.len() {
        if s[j] == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        if s[j] == q {
            if j + 1 < s.len() && s[j + 1] == q {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    s.len()
}

/// The words of `s`, a quoted string or identifier being one word (and a parenthesised group
/// too), separated by spaces.
fn words(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != b' ' {
            match b[i] {
                b'\'' | b'"' | b'`' => i = skip_quoted(b, i),
                b'(' => {
                    let mut depth = 0;
                    while i < b.len() {
                        match b[i] {
                            b'\'' | b'"' | b'`' => {
                                i = skip_quoted(b, i);
                                continue;
                            }
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    i += 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                }
                _ => i += 1,
            }
        }
        out.push(&s[start..i]);
    }
    out
}

fn unquote(w: &str) -> String {
    let t = w.trim_matches(|c| c == '\'' || c == '`' || c == '"');
    t.to_string()
}

/// Reads a `SHOW CREATE USER` line: `CREATE USER <account> [IDENTIFIED ...] [options]`.
pub fn parse_create_user(line: &str) -> Account {
    let w = words(line);
    // CREATE USER `name`@`host` ...: the account is the third word.
    let mut i = 3.min(w.len());
    let mut plugin = Plugin::Native;
    if w.get(i)
        .is_some_and(|x| x.eq_ignore_ascii_case("IDENTIFIED"))
    {
        i += 1;
        let kw = w.get(i).copied().unwrap_or_default();
        if kw.eq_ignore_ascii_case("BY") {
            // BY PASSWORD '<hash>' (MariaDB, MySQL 5.7) or BY '<...>': the native plugin.
            i += 1;
            if w.get(i).is_some_and(|x| x.eq_ignore_ascii_case("PASSWORD")) {
                i += 1;
            }
            i += 1;
        } else if kw.eq_ignore_ascii_case("VIA") || kw.eq_ignore_ascii_case("WITH") {
            // VIA|WITH plugin [USING|AS '<string>'] [OR plugin ...]: the first one decides.
            let mut first = None;
            loop {
                i += 1;
                let name = unquote(w.get(i).copied().unwrap_or_default());
                first.get_or_insert(name);
                i += 1;
                if w.get(i).is_some_and(|x| {
                    x.eq_ignore_ascii_case("USING") || x.eq_ignore_ascii_case("AS")
                }) {
                    i += 2;
                }
                if !w.get(i).is_some_and(|x| x.eq_ignore_ascii_case("OR")) {
                    break;
                }
            }
            let name = first.unwrap_or_default();
            if !name.eq_ignore_ascii_case("mysql_native_password") {
                plugin = Plugin::Other(name);
            }
        }
    }
    let options = w.get(i..).unwrap_or_default().join(" ");
    Account { plugin, options }
}

/// One line of `SHOW GRANTS FOR <account>`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantLine {
    /// `GRANT <privileges> ON <object> TO <account> [WITH GRANT OPTION]`; each column
    /// privilege is one entry (`SELECT (`c`)`).
    Privileges {
        /// The privileges, as the server printed them (`USAGE` dropped).
        privileges: BTreeSet<String>,
        /// What they are on (`*.*`, `` `db`.* ``, `PROCEDURE `db`.`p` ``, `''@'%'` for PROXY).
        object: String,
        /// `WITH GRANT OPTION`.
        grant_option: bool,
    },
    /// `GRANT <role> TO <account> [WITH ADMIN OPTION]`.
    Role {
        /// The role, as printed.
        role: String,
        /// `WITH ADMIN OPTION`.
        admin: bool,
    },
    /// `SET DEFAULT ROLE <role> FOR <account>`.
    DefaultRole(String),
}

/// Splits a privilege list at its top-level commas, one entry per column of a column
/// privilege (`SELECT (`a`, `b`)` is `SELECT (`a`)` and `SELECT (`b`)`).
fn privileges(list: &str) -> BTreeSet<String> {
    let b = list.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i, mut depth) = (0, 0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' | b'`' => {
                i = skip_quoted(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(list[start..].trim());
    let mut out = BTreeSet::new();
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        match p.find(" (") {
            Some(open) if p.ends_with(')') => {
                let name = &p[..open];
                let cols = &p[open + 2..p.len() - 1];
                for c in privileges(cols) {
                    out.insert(format!("{name} ({c})"));
                }
            }
            _ if p.eq_ignore_ascii_case("USAGE") => {}
            _ => {
                out.insert(p.to_string());
            }
        }
    }
    out
}

/// Finds `needle` in `s` outside quotes and parentheses.
fn find_top(s: &str, needle: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut depth) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' | b'`' => {
                i = skip_quoted(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ if depth == 0 && s[i..].starts_with(needle) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads one `SHOW GRANTS` line about `account` (as the server prints it, e.g.
/// `` `app`@`%` ``). `None` for a line of another form (kept as is by callers).
pub fn parse_grant(line: &str, account: &str) -> Option<GrantLine> {
    if let Some(rest) = line.strip_prefix("SET DEFAULT ROLE ") {
        let at = find_top(rest, " FOR ")?;
        return Some(GrantLine::DefaultRole(rest[..at].to_string()));
    }
    let rest = line.strip_prefix("GRANT ")?;
    let to = format!(" TO {account}");
    let at = find_top(rest, &to)?;
    let (head, tail) = (&rest[..at], &rest[at + to.len()..]);
    let with = |what: &str| find_top(tail, what).is_some();
    match find_top(head, " ON ") {
        Some(on) => Some(GrantLine::Privileges {
            privileges: privileges(&head[..on]),
            object: head[on + 4..].to_string(),
            grant_option: with("WITH GRANT OPTION"),
        }),
        None => Some(GrantLine::Role {
            role: head.to_string(),
            admin: with("WITH ADMIN OPTION"),
        }),
    }
}

/// An account's rights: privileges and grant option per object, roles, default role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rights {
    /// Per object: privileges and whether they may be granted on.
    pub objects: BTreeMap<String, (BTreeSet<String>, bool)>,
    /// Roles, and whether with ADMIN OPTION.
    pub roles: BTreeMap<String, bool>,
    /// The default role, if any.
    pub default_role: Option<String>,
}

impl Rights {
    /// From the lines of `SHOW GRANTS FOR <account>`.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>, account: &str) -> Rights {
        let mut r = Rights::default();
        for line in lines {
            match parse_grant(line, account) {
                Some(GrantLine::Privileges {
                    privileges,
                    object,
                    grant_option,
                }) => {
                    let e = r.objects.entry(object).or_default();
                    e.0.extend(privileges);
                    e.1 |= grant_option;
                }
                Some(GrantLine::Role { role, admin }) => {
                    *r.roles.entry(role).or_default() |= admin;
                }
                Some(GrantLine::DefaultRole(role)) => r.default_role = Some(role),
                None => {}
            }
        }
        r.objects
            .retain(|_, (privileges, grant)| !privileges.is_empty() || *grant);
        r
    }

    /// The statements that give `target` (quoted as a statement names it) what `self` has
    /// and it lacks.
    pub fn grants_missing_from(&self, target: &Rights, to: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (object, (privs, grant)) in &self.objects {
            let (have, have_grant) = target.objects.get(object).cloned().unwrap_or_default();
            let missing: Vec<&str> = privs.difference(&have).map(String::as_str).collect();
            let option = *grant && !have_grant;
            if missing.is_empty() && !option {
                continue;
            }
            let list = if missing.is_empty() {
                "USAGE".to_string()
            } else {
                missing.join(", ")
            };
            let with = if option { " WITH GRANT OPTION" } else { "" };
            out.push(format!("GRANT {list} ON {object} TO {to}{with}"));
        }
        for (role, admin) in &self.roles {
            let lacks = match target.roles.get(role) {
                None => true,
                Some(has_admin) => *admin && !has_admin,
            };
            if lacks {
                let with = if *admin { " WITH ADMIN OPTION" } else { "" };
                out.push(format!("GRANT {role} TO {to}{with}"));
            }
        }
        if self.default_role != target.default_role
            && let Some(role) = &self.default_role
        {
            out.push(format!("SET DEFAULT ROLE {role} FOR {to}"));
        }
        out
    }

    /// The statements that take from `target` what it has and `self` does not.
    pub fn revokes_extra_in(&self, target: &Rights, from: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (object, (privs, grant)) in &target.objects {
            let (want, want_grant) = self.objects.get(object).cloned().unwrap_or_default();
            let extra: Vec<&str> = privs.difference(&want).map(String::as_str).collect();
            if !extra.is_empty() {
                out.push(format!(
                    "REVOKE {} ON {object} FROM {from}",
                    extra.join(", ")
                ));
            }
            if *grant && !want_grant {
                out.push(format!("REVOKE GRANT OPTION ON {object} FROM {from}"));
            }
        }
        for (role, admin) in &target.roles {
            match self.roles.get(role) {
                None => out.push(format!("REVOKE {role} FROM {from}")),
                Some(false) if *admin => {
                    out.push(format!("REVOKE ADMIN OPTION FOR {role} FROM {from}"))
                }
                Some(_) => {}
            }
        }
        if self.default_role.is_none() && target.default_role.is_some() {
            out.push(format!("SET DEFAULT ROLE NONE FOR {from}"));
        }
        out
    }

    /// Whether the rights let their holder create users and grant what it holds: `CREATE
    /// USER` (or `ALL PRIVILEGES`) on `*.*`, with the grant option.
    pub fn may_manage_users(&self) -> bool {
        self.objects.get("*.*").is_some_and(|(p, grant)| {
            *grant
                && p.iter()
                    .any(|x| x == "ALL PRIVILEGES" || x == "CREATE USER")
        })
    }
}

/// `name` quoted as `SHOW GRANTS` prints identifiers: in backticks, a backtick doubled.
pub fn backticked(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The account as `SHOW GRANTS` prints it.
pub fn printed_account(user: &str, host: &str) -> String {
    format!("{}@{}", backticked(user), backticked(host))
}

/// The statement that changes a password only while the step has time: on the server's clock,
/// before `deadline_epoch` (seconds since the epoch, microseconds), else it signals and
/// changes nothing (MariaDB's compound statements). A statement that arrives late, after the
/// step gave up, cannot land.
pub fn before_deadline(change: &str, deadline_epoch: f64) -> String {
    format!(
        "BEGIN NOT ATOMIC IF UNIX_TIMESTAMP(SYSDATE(6)) < {deadline_epoch:.6} THEN {change}; \
         ELSE SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{DEADLINE_PASSED}'; END IF; END"
    )
}

/// The message of [`before_deadline`]'s refusal.
pub const DEADLINE_PASSED: &str = "rotation step deadline passed before the change arrived";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_hash_is_mysqls_stored_form() {
        // Values MariaDB printed for these passwords (`SELECT PASSWORD('...')`).
        assert_eq!(
            native_hash("New-pw-123"),
            "*51B7AC4078C9F6A7CDF32EFCDB2CD9125DEC7632"
        );
        assert_eq!(
            native_hash("App-pw-1"),
            "*293EB9E59DEB3C6B9932830235C85067BC4BCF9D"
        );
        assert_eq!(
            native_hash("Admin-Passw0rd-1-for-mariadb"),
            rotation_testkit::mariadb::ADMIN_PASSWORD_HASH
        );
    }

    #[test]
    fn the_plugin_and_options_come_from_show_create_user() {
        let a = parse_create_user(
            "CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*293EB9E59DEB3C6B9932830235C85067BC4BCF9D' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10",
        );
        assert_eq!(a.plugin, Plugin::Native);
        assert_eq!(a.options, "REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10");
        assert!(!a.options.contains('*'));
        let a = parse_create_user("CREATE USER `x y`@`%` IDENTIFIED VIA ed25519 USING 'abc'");
        assert_eq!(a.plugin, Plugin::Other("ed25519".into()));
        // MySQL 8's form.
        let a = parse_create_user(
            "CREATE USER `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x' REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK",
        );
        assert_eq!(a.plugin, Plugin::Other("caching_sha2_password".into()));
        assert_eq!(
            a.options,
            "REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK"
        );
        let a = parse_create_user(
            "CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*ABC' REQUIRE NONE",
        );
        assert_eq!(a.plugin, Plugin::Native);
        let a = parse_create_user("CREATE USER `nopw`@`%`");
        assert_eq!((a.plugin, a.options.as_str()), (Plugin::Native, ""));
        let a = parse_create_user(
            "CREATE USER `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket",
        );
        assert_eq!(a.plugin, Plugin::Native);
    }

    #[test]
    fn grants_are_taken_apart_per_object_column_and_role() {
        let acct = printed_account("app", "%");
        let lines = [
            "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*293EB9E59DEB3C6B9932830235C85067BC4BCF9D'",
            "GRANT SELECT, INSERT ON `appdb`.* TO `app`@`%` WITH GRANT OPTION",
            "GRANT SELECT (`a`, `b, c`), UPDATE (`a`) ON `appdb`.`t` TO `app`@`%`",
            "GRANT `reader` TO `app`@`%` WITH ADMIN OPTION",
            "SET DEFAULT ROLE `reader` FOR `app`@`%`",
        ];
        let r = Rights::from_lines(lines, &acct);
        assert!(!r.objects.contains_key("*.*"), "USAGE alone is no right");
        assert_eq!(
            r.objects["`appdb`.*"],
            (
                ["INSERT", "SELECT"].map(String::from).into_iter().collect(),
                true
            )
        );
        assert_eq!(
            r.objects["`appdb`.`t`"].0,
            ["SELECT (`a`)", "SELECT (`b, c`)", "UPDATE (`a`)"]
                .map(String::from)
                .into_iter()
                .collect()
        );
        assert!(r.roles["`reader`"]);
        assert_eq!(r.default_role.as_deref(), Some("`reader`"));

        // The clone lacks INSERT and column b; it has DELETE the original lost.
        let clone_acct = printed_account("app_clone", "%");
        let clone = Rights::from_lines(
            [
                "GRANT USAGE ON *.* TO `app_clone`@`%`",
                "GRANT SELECT, DELETE ON `appdb`.* TO `app_clone`@`%`",
                "GRANT SELECT (`a`) ON `appdb`.`t` TO `app_clone`@`%`",
                "GRANT `old` TO `app_clone`@`%`",
            ],
            &clone_acct,
        );
        let to = "'app_clone'@'%'";
        assert_eq!(
            r.grants_missing_from(&clone, to),
            [
                "GRANT INSERT ON `appdb`.* TO 'app_clone'@'%' WITH GRANT OPTION",
                "GRANT SELECT (`b, c`), UPDATE (`a`) ON `appdb`.`t` TO 'app_clone'@'%'",
                "GRANT `reader` TO 'app_clone'@'%' WITH ADMIN OPTION",
                "SET DEFAULT ROLE `reader` FOR 'app_clone'@'%'",
            ]
        );
        assert_eq!(
            r.revokes_extra_in(&clone, to),
            [
                "REVOKE DELETE ON `appdb`.* FROM 'app_clone'@'%'",
                "REVOKE `old` FROM 'app_clone'@'%'",
            ]
        );
        // In line: nothing to do either way.
        assert!(r.grants_missing_from(&r, to).is_empty());
        assert!(r.revokes_extra_in(&r, to).is_empty());
    }

    #[test]
    fn an_account_printed_inside_a_name_is_not_the_account() {
        // A database named like the grant's tail.
        let acct = printed_account("a", "%");
        let line = "GRANT SELECT ON `x TO ``a``@``%```.* TO `a`@`%`";
        assert_eq!(
            parse_grant(line, &acct),
            Some(GrantLine::Privileges {
                privileges: ["SELECT".to_string()].into_iter().collect(),
                object: "`x TO ``a``@``%```.*".into(),
                grant_option: false,
            })
        );
    }

    #[test]
    fn the_master_may_manage_users_with_create_user_and_grant_option() {
        let acct = printed_account("admin", "%");
        let all = Rights::from_lines(
            ["GRANT ALL PRIVILEGES ON *.* TO `admin`@`%` WITH GRANT OPTION"],
            &acct,
        );
        assert!(all.may_manage_users());
        let no_grant = Rights::from_lines(["GRANT CREATE USER ON *.* TO `admin`@`%`"], &acct);
        assert!(!no_grant.may_manage_users());
    }

    #[test]
    fn the_deadline_statement_names_no_password() {
        let s = before_deadline("SET PASSWORD = '*ABC'", 1_700_000_000.25);
        assert!(s.starts_with("BEGIN NOT ATOMIC IF UNIX_TIMESTAMP(SYSDATE(6)) < 1700000000.250000 THEN SET PASSWORD = '*ABC';"));
    }
}
