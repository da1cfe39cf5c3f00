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

/// The salt's length in `caching_sha2_password`'s stored form.
pub const SHA2_SALT_LEN: usize = 20;

/// `caching_sha2_password`'s stored form of `password` with `salt`: `$A$005$`, the salt, and
/// the SHA-256 crypt (Drepper's, 5000 rounds, "005" in thousands) of the password with the
/// whole 20-byte salt, in crypt's base-64. MySQL 8 compares logins against it.
pub fn caching_sha2_hash(password: &str, salt: &[u8; SHA2_SALT_LEN]) -> String {
    // Each salt byte becomes one character of the result: 7-bit, as MySQL's and ours are.
    debug_assert!(salt.is_ascii(), "a salt byte beyond 7 bits");
    let digest = sha256_crypt(password.as_bytes(), salt, 5000);
    let mut out = String::with_capacity(7 + SHA2_SALT_LEN + 43);
    out.push_str("$A$005$");
    out.extend(salt.iter().map(|&b| char::from(b)));
    out.push_str(&crypt_base64(&digest));
    out
}

/// [`caching_sha2_hash`] with a fresh salt of letters and digits (no quote, backslash or `$`
/// to escape in a statement; MySQL's own salts are any byte but NUL and `$`).
pub fn caching_sha2_stored_form(password: &str) -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut salt = [0u8; SHA2_SALT_LEN];
    let mut random = [0u8; 2 * SHA2_SALT_LEN];
    let mut filled = 0;
    // Rejection sampling: 248 is the largest multiple of 62 below 256, so each letter is
    // equally likely.
    while filled < SHA2_SALT_LEN {
        getrandom::fill(&mut random)?;
        for &b in &random {
            if filled < SHA2_SALT_LEN && b < 248 {
                salt[filled] = ALPHABET[usize::from(b) % ALPHABET.len()];
                filled += 1;
            }
        }
    }
    Ok(caching_sha2_hash(password, &salt))
}

/// Drepper's SHA-256 crypt of `key` with `salt` (any length: crypt's `$5$` caps it at 16
/// bytes before calling this, MySQL does not) over `rounds` rounds: the raw digest.
fn sha256_crypt(key: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    use sha2::Sha256;
    // B = H(key salt key).
    let b: [u8; 32] = Sha256::new()
        .chain_update(key)
        .chain_update(salt)
        .chain_update(key)
        .finalize()
        .into();
    // A = H(key salt, B repeated over key's length, then per bit of key's length B or key).
    let mut a = Sha256::new().chain_update(key).chain_update(salt);
    let mut left = key.len();
    while left > 32 {
        a.update(b);
        left -= 32;
    }
    a.update(&b[..left]);
    let mut n = key.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(b);
        } else {
            a.update(key);
        }
        n >>= 1;
    }
    let a: [u8; 32] = a.finalize().into();
    // P: H(key repeated key.len() times), stretched to key's length.
    let mut dp = Sha256::new();
    for _ in 0..key.len() {
        dp.update(key);
    }
    let p = stretch(&dp.finalize(), key.len());
    // S: H(salt repeated 16 + A[0] times), stretched to salt's length.
    let mut ds = Sha256::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = stretch(&ds.finalize(), salt.len());
    let mut c = a;
    for i in 0..rounds {
        let mut h = Sha256::new();
        if i % 2 == 1 {
            h.update(&p);
        } else {
            h.update(c);
        }
        if i % 3 != 0 {
            h.update(&s);
        }
        if i % 7 != 0 {
            h.update(&p);
        }
        if i % 2 == 1 {
            h.update(c);
        } else {
            h.update(&p);
        }
        c = h.finalize().into();
    }
    c
}

/// `digest` repeated to `len` bytes.
fn stretch(digest: &[u8], len: usize) -> Vec<u8> {
    digest.iter().copied().cycle().take(len).collect()
}

/// A SHA-256 crypt digest in crypt's base-64 (`./0-9A-Za-z`, least significant six bits
/// first), its bytes taken in the algorithm's order: 43 characters.
fn crypt_base64(d: &[u8; 32]) -> String {
    const CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(43);
    let mut put = |b2: u8, b1: u8, b0: u8, n: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..n {
            out.push(char::from(CHARS[(w & 0x3f) as usize]));
            w >>= 6;
        }
    };
    // Ten groups of three bytes, each byte index stepping by 10 modulo 30 and rotating.
    for g in 0..10 {
        let (i, j, k) = (g, g + 10, g + 20);
        match g % 3 {
            0 => put(d[i], d[j], d[k], 4),
            1 => put(d[k], d[i], d[j], 4),
            _ => put(d[j], d[k], d[i], 4),
        }
    }
    put(0, d[31], d[30], 3);
    out
}

/// How an account authenticates, as `SHOW CREATE USER` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    /// `mysql_native_password` (MariaDB's `IDENTIFIED BY PASSWORD '*...'`, or no password).
    Native,
    /// MySQL 8's `caching_sha2_password`.
    CachingSha2,
    /// Any other plugin, by name (`sha256_password`, `ed25519`, `unix_socket`,
    /// `AWSAuthenticationPlugin`, ...): no stored form this engine computes.
    Other(String),
}

impl Plugin {
    /// The plugin's name as statements give it.
    pub fn name(&self) -> &str {
        match self {
            Plugin::Native => "mysql_native_password",
            Plugin::CachingSha2 => "caching_sha2_password",
            Plugin::Other(name) => name,
        }
    }
}

/// The account's plugin and the clauses after its credentials (`REQUIRE ...`, `WITH ...`
/// limits, `PASSWORD EXPIRE ...`, `ACCOUNT LOCK`), from a `SHOW CREATE USER` line. The
/// credentials themselves (the stored hash) are dropped here and never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The plugin (the first, when several are given with `OR`).
    pub plugin: Plugin,
    /// Whether it is the account's only authentication (no `OR` another plugin).
    pub only_plugin: bool,
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
    let mut only_plugin = true;
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
                only_plugin = false;
            }
            // MySQL 8.0.27's multi-factor accounts (`AND IDENTIFIED WITH ...`): a second
            // factor this engine does not set.
            let mut factors = 1;
            let is = |i: usize, k: &str| w.get(i).is_some_and(|x| x.eq_ignore_ascii_case(k));
            while is(i, "AND") {
                // AND IDENTIFIED [WITH plugin] [BY|AS|USING '<string>']
                factors += 1;
                i += 2;
                if is(i, "WITH") || is(i, "VIA") {
                    i += 2;
                }
                if is(i, "BY") || is(i, "AS") || is(i, "USING") {
                    i += 2;
                }
            }
            let name = first.unwrap_or_default();
            if factors > 1 {
                only_plugin = false;
                plugin = Plugin::Other(format!("{name} with a second factor"));
            } else if name.eq_ignore_ascii_case("caching_sha2_password") {
                plugin = Plugin::CachingSha2;
            } else if !name.eq_ignore_ascii_case("mysql_native_password") {
                plugin = Plugin::Other(name);
            }
        }
    }
    let options = w.get(i..).unwrap_or_default().join(" ");
    Account {
        plugin,
        only_plugin,
        options,
    }
}

/// An account's options (after its credentials in `SHOW CREATE USER`), taken apart so that
/// one `ALTER USER` can state every one of them for another account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOptions {
    /// What follows `REQUIRE` (`NONE` when absent): `SSL`, `X509`, `ISSUER '...' AND ...`.
    pub require: String,
    /// Resource limits by name (`MAX_USER_CONNECTIONS`, ...); an absent one is 0.
    pub limits: BTreeMap<String, String>,
    /// What follows `PASSWORD EXPIRE` (`DEFAULT` when absent, `NEVER`, `INTERVAL n DAY`);
    /// `None` for an expiry now, which is not copied (it would expire the password just set).
    pub password_expire: Option<String>,
    /// `ACCOUNT LOCK`.
    pub locked: bool,
    /// MySQL 8's `DEFAULT ROLE ...`, copied with `SET DEFAULT ROLE`.
    pub default_roles: Option<String>,
    /// MySQL 8's other clauses, verbatim (`PASSWORD HISTORY ...`, `FAILED_LOGIN_ATTEMPTS n`,
    /// `COMMENT '...'`, ...).
    pub other: Vec<String>,
}

/// The resource limits an `ALTER USER` states (MariaDB adds `MAX_STATEMENT_TIME`).
const LIMITS: [&str; 4] = [
    "MAX_QUERIES_PER_HOUR",
    "MAX_UPDATES_PER_HOUR",
    "MAX_CONNECTIONS_PER_HOUR",
    "MAX_USER_CONNECTIONS",
];

fn is_clause_start(w: &str) -> bool {
    [
        "REQUIRE",
        "WITH",
        "PASSWORD",
        "ACCOUNT",
        "DEFAULT",
        "FAILED_LOGIN_ATTEMPTS",
        "PASSWORD_LOCK_TIME",
        "COMMENT",
        "ATTRIBUTE",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

impl AccountOptions {
    /// Reads [`Account::options`].
    pub fn parse(options: &str) -> AccountOptions {
        let w = words(options);
        let mut o = AccountOptions {
            require: "NONE".into(),
            limits: BTreeMap::new(),
            password_expire: Some("DEFAULT".into()),
            locked: false,
            default_roles: None,
            other: Vec::new(),
        };
        let up = |i: usize| w.get(i).map(|x| x.to_ascii_uppercase()).unwrap_or_default();
        let mut i = 0;
        while i < w.len() {
            let start = i;
            i += 1;
            let until_next = |i: &mut usize| {
                let from = *i;
                while *i < w.len() && !is_clause_start(w[*i]) {
                    *i += 1;
                }
                w[from..*i].join(" ")
            };
            match up(start).as_str() {
                "REQUIRE" => o.require = until_next(&mut i),
                "WITH" => {
                    while i + 1 < w.len() && up(i).starts_with("MAX_") {
                        o.limits.insert(up(i), w[i + 1].to_string());
                        i += 2;
                    }
                }
                "ACCOUNT" => {
                    o.locked = up(i) == "LOCK";
                    i += 1;
                }
                "PASSWORD" if up(i) == "EXPIRE" => {
                    i += 1;
                    o.password_expire = match up(i).as_str() {
                        "NEVER" | "DEFAULT" => {
                            i += 1;
                            Some(up(i - 1))
                        }
                        "INTERVAL" => {
                            i += 3;
                            Some(w[i - 3..i.min(w.len())].join(" "))
                        }
                        _ => None,
                    };
                }
                "DEFAULT" if up(i) == "ROLE" => {
                    i += 1;
                    o.default_roles = Some(until_next(&mut i));
                }
                _ => {
                    // MySQL 8's other clauses, kept verbatim, each by its own grammar.
                    let len = match (up(start).as_str(), up(start + 1).as_str()) {
                        ("PASSWORD", "HISTORY") => 3,
                        ("PASSWORD", "REUSE") if up(start + 3) == "DEFAULT" => 4,
                        ("PASSWORD", "REUSE") => 5,
                        ("PASSWORD", "REQUIRE")
                            if matches!(up(start + 3).as_str(), "DEFAULT" | "OPTIONAL") =>
                        {
                            4
                        }
                        ("PASSWORD", "REQUIRE") => 3,
                        _ => 2,
                    };
                    let end = (start + len).min(w.len());
                    o.other.push(w[start..end].join(" "));
                    i = end;
                }
            }
        }
        o
    }

    /// The `ALTER USER <account> ...` that gives an account exactly these options (every
    /// limit stated, 0 where absent; `MAX_STATEMENT_TIME` on MariaDB).
    pub fn alter(&self, account: &str, mariadb: bool) -> String {
        let mut names: Vec<&str> = LIMITS.to_vec();
        if mariadb {
            names.push("MAX_STATEMENT_TIME");
        }
        let limits: Vec<String> = names
            .iter()
            .map(|n| {
                let v = self.limits.get(*n).map(String::as_str).unwrap_or("0");
                format!("{n} {v}")
            })
            .collect();
        let mut s = format!(
            "ALTER USER {account} REQUIRE {} WITH {} ACCOUNT {}",
            self.require,
            limits.join(" "),
            if self.locked { "LOCK" } else { "UNLOCK" }
        );
        if let Some(expire) = &self.password_expire {
            s.push_str(&format!(" PASSWORD EXPIRE {expire}"));
        }
        for clause in &self.other {
            s.push(' ');
            s.push_str(clause);
        }
        s
    }

    /// Whether `other` states the same options (an expiry now on either side is not compared).
    pub fn same_as(&self, other: &AccountOptions) -> bool {
        let strip = |o: &AccountOptions| {
            let mut o = o.clone();
            o.limits.retain(|_, v| v != "0");
            o.default_roles = None;
            o
        };
        let (a, b) = (strip(self), strip(other));
        a.require == b.require
            && a.limits == b.limits
            && a.locked == b.locked
            && a.other == b.other
            && (a.password_expire.is_none()
                || b.password_expire.is_none()
                || a.password_expire == b.password_expire)
    }
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
    /// `GRANT <role>[, <role>...] TO <account> [WITH ADMIN OPTION]` (MySQL 8 prints several
    /// roles on one line).
    Roles {
        /// The roles, as printed.
        roles: Vec<String>,
        /// `WITH ADMIN OPTION`.
        admin: bool,
    },
    /// `SET DEFAULT ROLE <role> FOR <account>`.
    DefaultRole(String),
}

/// `list` split at its top-level commas (outside quotes and parentheses), trimmed.
fn split_top(list: &str) -> Vec<&str> {
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
    parts.retain(|p| !p.is_empty());
    parts
}

/// Splits a privilege list at its top-level commas, one entry per column of a column
/// privilege (`SELECT (`a`, `b`)` is `SELECT (`a`)` and `SELECT (`b`)`).
fn privileges(list: &str) -> BTreeSet<String> {
    let parts = split_top(list);
    let mut out = BTreeSet::new();
    for p in parts {
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

/// Reads one `SHOW GRANTS` line about the account printed as one of `accounts` (the server's
/// spellings of it, [`printed_account`]). `None` for a line of another form, or about another
/// account.
pub fn parse_grant(line: &str, accounts: &[String]) -> Option<GrantLine> {
    if let Some(rest) = line.strip_prefix("SET DEFAULT ROLE ") {
        let at = find_top(rest, " FOR ")?;
        return Some(GrantLine::DefaultRole(rest[..at].to_string()));
    }
    let rest = line.strip_prefix("GRANT ")?;
    let (at, to) = accounts.iter().find_map(|account| {
        let to = format!(" TO {account}");
        let at = find_top(rest, &to)?;
        // The account ends there: the line ends, or a clause follows.
        let after = &rest[at + to.len()..];
        (after.is_empty() || after.starts_with(' ')).then_some((at, to))
    })?;
    let (head, tail) = (&rest[..at], &rest[at + to.len()..]);
    let with = |what: &str| find_top(tail, what).is_some();
    match find_top(head, " ON ") {
        Some(on) => Some(GrantLine::Privileges {
            privileges: privileges(&head[..on]),
            object: head[on + 4..].to_string(),
            grant_option: with("WITH GRANT OPTION"),
        }),
        None => Some(GrantLine::Roles {
            roles: split_top(head).into_iter().map(str::to_string).collect(),
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
    /// From the lines of `SHOW GRANTS FOR <account>` (`accounts`: its printed spellings). A
    /// line this engine does not read (MySQL 8's partial revokes, a form it does not know) is
    /// an error naming it (its stored password cut off), never skipped: rights it did not read
    /// would be lost on the clone.
    pub fn from_lines<'a>(
        lines: impl IntoIterator<Item = &'a str>,
        accounts: &[String],
    ) -> Result<Rights, String> {
        let mut r = Rights::default();
        for line in lines {
            match parse_grant(line, accounts) {
                Some(GrantLine::Privileges {
                    privileges,
                    object,
                    grant_option,
                }) => {
                    let e = r.objects.entry(object).or_default();
                    e.0.extend(privileges);
                    e.1 |= grant_option;
                }
                Some(GrantLine::Roles { roles, admin }) => {
                    for role in roles {
                        *r.roles.entry(role).or_default() |= admin;
                    }
                }
                Some(GrantLine::DefaultRole(role)) => r.default_role = Some(role),
                None => {
                    let shown = line.split(" IDENTIFIED ").next().unwrap_or_default();
                    return Err(shown.to_string());
                }
            }
        }
        r.objects
            .retain(|_, (privileges, grant)| !privileges.is_empty() || *grant);
        Ok(r)
    }

    /// Whether `self` holds everything `source` holds (and exactly that, when `exact`).
    pub fn in_line_with(&self, source: &Rights, exact: bool) -> bool {
        if exact {
            return self == source;
        }
        source.grants_missing_from(self, "").is_empty()
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

    /// Whether the rights let their holder set any account's authentication by its stored
    /// form on MySQL: `CREATE USER` (or `ALL PRIVILEGES`) on `*.*`, or `UPDATE` on `mysql`.
    pub fn may_set_stored_forms(&self) -> bool {
        let has = |object: &str, any: &[&str]| {
            self.objects
                .get(object)
                .is_some_and(|(p, _)| p.iter().any(|x| any.contains(&x.as_str())))
        };
        has("*.*", &["ALL PRIVILEGES", "CREATE USER", "UPDATE"])
            || has("`mysql`.*", &["ALL PRIVILEGES", "UPDATE"])
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

/// The account as `SHOW GRANTS` prints it: in backticks (MariaDB, MySQL 8), or in single
/// quotes (MySQL 5.7).
pub fn printed_account(user: &str, host: &str) -> Vec<String> {
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    vec![
        format!("{}@{}", backticked(user), backticked(host)),
        format!("{}@{}", quoted(user), quoted(host)),
    ]
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

/// How the password changes this engine makes start, as the server shows a running one
/// (`information_schema.PROCESSLIST.INFO` shows a compound statement's inner change, without
/// comments, while it waits).
pub const PASSWORD_CHANGES: [&str; 2] = ["SET PASSWORD", "ALTER USER"];

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
    fn the_sha256_crypt_is_drepper_s() {
        // The specification's own vector (SHA-crypt.txt): "$5$saltstring", "Hello world!".
        assert_eq!(
            crypt_base64(&sha256_crypt(b"Hello world!", b"saltstring", 5000)),
            "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
        );
        // Keys of 32 bytes (a block of B exactly, AWS's default password length) and of more
        // (two blocks), as OpenSSL computes them (`openssl passwd -5 -salt ...`).
        assert_eq!(
            crypt_base64(&sha256_crypt(
                b"0123456789abcdef0123456789abcdef",
                b"MySQLsaltMySQLs",
                5000
            )),
            "Xbgw7OQPEhJT59cXBFBgDaMrU2E0JbeI8I5l5qRlXA5"
        );
        assert_eq!(
            crypt_base64(&sha256_crypt(
                b"This password is longer than thirty-two bytes, on purpose!",
                b"saltstring",
                5000
            )),
            "6VUFQ9P5EbPy6T4gagIP3Puze0R2ruk8HjrENckooF5"
        );
        // Its 10000-round vector, the salt cut to 16 bytes as `$5$` does.
        assert_eq!(
            crypt_base64(&sha256_crypt(b"Hello world!", b"saltstringsaltst", 10000)),
            "3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"
        );
    }

    #[test]
    fn the_caching_sha2_form_is_mysqls_stored_form() {
        // A stored form MySQL 8 wrote for the password "CMunq1PrKH" (its salt holds control
        // characters and a quote, as MySQL's own salts may).
        let salt: &[u8; SHA2_SALT_LEN] = b"&M\x15\x06UEK\rS#{: d}\x1a\x1ak'P";
        assert_eq!(
            caching_sha2_hash("CMunq1PrKH", salt),
            "$A$005$&M\u{15}\u{6}UEK\rS#{: d}\u{1a}\u{1a}k'Pmqo1L9Dlfn03ogl4DiNubgaRsN4FYJjhE57s08Z39s2"
        );
        // A fresh one: 70 bytes, a new salt each time, nothing a statement must escape.
        let (a, b) = (
            caching_sha2_stored_form("New-pw-123").unwrap(),
            caching_sha2_stored_form("New-pw-123").unwrap(),
        );
        assert_eq!(a.len(), 70);
        assert_ne!(a, b);
        assert!(
            a[7..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
        );
        let salt: [u8; SHA2_SALT_LEN] = a.as_bytes()[7..27].try_into().unwrap();
        assert_eq!(caching_sha2_hash("New-pw-123", &salt), a);
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
        assert_eq!(a.plugin, Plugin::CachingSha2);
        assert_eq!(
            a.options,
            "REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK"
        );
        let a = parse_create_user(
            "CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*ABC' REQUIRE NONE",
        );
        assert_eq!(a.plugin, Plugin::Native);
        // MySQL 8.0.27's multi-factor form: refused as another plugin.
        let a = parse_create_user(
            "CREATE USER `mf`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x' AND IDENTIFIED WITH 'authentication_fido' REQUIRE NONE",
        );
        assert_eq!(
            a.plugin,
            Plugin::Other("caching_sha2_password with a second factor".into())
        );
        assert_eq!(a.options, "REQUIRE NONE");
        let a = parse_create_user("CREATE USER `nopw`@`%`");
        assert_eq!((a.plugin, a.options.as_str()), (Plugin::Native, ""));
        let a = parse_create_user(
            "CREATE USER `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket",
        );
        assert_eq!(a.plugin, Plugin::Native);
        assert!(!a.only_plugin, "another plugin beside it");
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
        let r = Rights::from_lines(lines, &acct).unwrap();
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
        )
        .unwrap();
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
        )
        .unwrap();
        assert!(all.may_manage_users());
        let no_grant =
            Rights::from_lines(["GRANT CREATE USER ON *.* TO `admin`@`%`"], &acct).unwrap();
        assert!(!no_grant.may_manage_users());
    }

    #[test]
    fn the_starts_of_password_changes_are_plain_literals() {
        for start in PASSWORD_CHANGES {
            assert!(start.chars().all(|c| c.is_ascii_uppercase() || c == ' '));
        }
    }

    #[test]
    fn the_deadline_statement_changes_only_before_the_deadline_on_the_servers_clock() {
        let s = before_deadline("SET PASSWORD = '*ABC'", 1_700_000_000.25);
        assert!(s.starts_with(
            "BEGIN NOT ATOMIC IF UNIX_TIMESTAMP(SYSDATE(6)) < 1700000000.250000 THEN SET PASSWORD = '*ABC';"
        ));
        assert!(s.contains(&format!(
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{DEADLINE_PASSED}'"
        )));
    }

    #[test]
    fn mysql_grant_forms_are_read_too() {
        // MySQL 5.7 prints accounts in single quotes; MySQL 8 several roles on one line.
        let acct = printed_account("app", "%");
        let r = Rights::from_lines(
            [
                "GRANT USAGE ON *.* TO 'app'@'%'",
                "GRANT SELECT ON `db`.* TO 'app'@'%' WITH GRANT OPTION",
                "GRANT `r1`@`%`,`r2`@`%` TO `app`@`%`",
            ],
            &acct,
        )
        .unwrap();
        assert!(r.objects["`db`.*"].1);
        assert_eq!(
            r.roles.keys().cloned().collect::<Vec<_>>(),
            ["`r1`@`%`", "`r2`@`%`"]
        );
        // A line it does not read (MySQL 8's partial revokes) is an error naming it, with the
        // stored password cut off.
        let e = Rights::from_lines(
            [
                "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*ABC'",
                "REVOKE INSERT ON `mysql`.* FROM `app`@`%`",
            ],
            &acct,
        )
        .unwrap_err();
        assert_eq!(e, "REVOKE INSERT ON `mysql`.* FROM `app`@`%`");
        // Another account's line is not this one's.
        let e = Rights::from_lines(["GRANT SELECT ON *.* TO `app2`@`%`"], &acct).unwrap_err();
        assert!(e.contains("app2"), "{e}");
    }

    #[test]
    fn account_options_are_stated_whole_for_the_other_account() {
        let maria = AccountOptions::parse(
            "REQUIRE SSL WITH MAX_USER_CONNECTIONS 5 MAX_STATEMENT_TIME 0.5 PASSWORD EXPIRE INTERVAL 30 DAY ACCOUNT LOCK",
        );
        assert_eq!(maria.require, "SSL");
        assert_eq!(maria.password_expire.as_deref(), Some("INTERVAL 30 DAY"));
        assert!(maria.locked);
        assert_eq!(
            maria.alter("'x'@'%'", true),
            "ALTER USER 'x'@'%' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 0 MAX_UPDATES_PER_HOUR 0 \
             MAX_CONNECTIONS_PER_HOUR 0 MAX_USER_CONNECTIONS 5 MAX_STATEMENT_TIME 0.5 ACCOUNT LOCK \
             PASSWORD EXPIRE INTERVAL 30 DAY"
        );
        // Nothing stated: every option back to its default.
        let none = AccountOptions::parse("");
        assert_eq!(
            none.alter("'x'@'%'", true),
            "ALTER USER 'x'@'%' REQUIRE NONE WITH MAX_QUERIES_PER_HOUR 0 MAX_UPDATES_PER_HOUR 0 \
             MAX_CONNECTIONS_PER_HOUR 0 MAX_USER_CONNECTIONS 0 MAX_STATEMENT_TIME 0 ACCOUNT UNLOCK \
             PASSWORD EXPIRE DEFAULT"
        );
        assert!(!none.same_as(&maria));
        // MySQL 8's form: the default role apart, its other clauses kept, an expiry now not
        // copied.
        let mysql = AccountOptions::parse(
            "DEFAULT ROLE `r1`@`%`,`r2`@`%` REQUIRE X509 PASSWORD EXPIRE PASSWORD HISTORY DEFAULT PASSWORD REUSE INTERVAL DEFAULT PASSWORD REQUIRE CURRENT DEFAULT ACCOUNT UNLOCK FAILED_LOGIN_ATTEMPTS 3 PASSWORD_LOCK_TIME 2",
        );
        assert_eq!(mysql.default_roles.as_deref(), Some("`r1`@`%`,`r2`@`%`"));
        assert_eq!(mysql.require, "X509");
        assert_eq!(mysql.password_expire, None);
        assert_eq!(
            mysql.other,
            [
                "PASSWORD HISTORY DEFAULT",
                "PASSWORD REUSE INTERVAL DEFAULT",
                "PASSWORD REQUIRE CURRENT DEFAULT",
                "FAILED_LOGIN_ATTEMPTS 3",
                "PASSWORD_LOCK_TIME 2"
            ]
        );
        assert!(!mysql.alter("'x'@'%'", false).contains("DEFAULT ROLE"));
    }
}
