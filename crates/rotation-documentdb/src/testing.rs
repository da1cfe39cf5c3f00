//! DocumentDB for the promise suites ([`rotation_testkit::TestEngine`]): SecantusDB, a
//! MongoDB-wire server with SCRAM, reached through a proxy (`front`) that can hold a password
//! change in the network, as a row lock holds one in PostgreSQL. The operator's side (users,
//! roles, fingerprints) goes through one admin client of the MongoDB driver, kept open for the
//! server's life, rather than a Python process per call. Behind the `testing` feature.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::path::Path;
use std::sync::Arc;

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress, Tls, TlsOptions};
use rotation_core::{BoxFuture, DatabaseSecret, Engine};
use rotation_testkit::{
    HeldChange, Limits, NetworkHold, RightsCheck, Secantus, ServerOptions, TcpProxy, TestEngine,
    TestServer, TestkitError, Wire,
};
use serde_json::{Value, json};

/// A role that lets a user change its own password (mongod and SecantusDB require
/// `changeOwnPassword`; DocumentDB lets every user change its own), created with the first user.
const SELF_SERVICE: &str = "selfService";

/// Amazon DocumentDB, on SecantusDB.
#[derive(Debug)]
pub struct DocumentDb;

/// The DocumentDB test engine.
pub static DOCUMENTDB: DocumentDb = DocumentDb;

impl TestEngine for DocumentDb {
    fn engine(&self) -> Engine {
        crate::ENGINE
    }

    fn start(&self, options: ServerOptions) -> Result<Box<dyn TestServer>, TestkitError> {
        let db = if options.own {
            Secantus::start_own(options.tls)
        } else {
            Secantus::start(options.tls)
        }?;
        let front = TcpProxy::to_port_with(db.port(), Wire::Mongo)?;
        let admin = Admin::connect(&db);
        Ok(Box::new(SecantusServer {
            db,
            front: Arc::new(front),
            admin,
        }))
    }

    /// `engine` `mongo`, a number `port`, no `dbname` (the `admin` database).
    fn secret(&self, port: u16, username: &str, password: &str) -> Value {
        json!({
            "engine": "mongo",
            "host": "localhost",
            "port": port,
            "username": username,
            "password": password,
        })
    }

    fn wire(&self) -> Wire {
        Wire::Mongo
    }

    fn clone_statement(&self) -> &'static str {
        "createUser"
    }

    fn password_statement(&self) -> &'static str {
        "updateUser"
    }

    fn test_statement(&self) -> &'static str {
        "connectionStatus"
    }

    fn login_database(&self, secret: &DatabaseSecret) -> String {
        crate::auth_db(secret).to_string()
    }

    fn default_database(&self) -> &'static str {
        crate::DEFAULT_DBNAME
    }

    fn login_port(&self, secret: &DatabaseSecret) -> u16 {
        secret.port().unwrap_or(crate::DEFAULT_PORT)
    }

    /// DocumentDB's rules hold for what the function generated (8 to 100 printable ASCII
    /// characters without `/`, `@`, `"` or space); alternating users: the clone holds the
    /// original's roles, in the same database.
    fn check_rotated(&self, server: &dyn TestServer, previous: &Value, current: &Value) {
        for v in [previous, current] {
            let p = v["password"].as_str().unwrap_or_default();
            assert!(
                (8..=100).contains(&p.len())
                    && p.chars().all(|c| c.is_ascii_graphic())
                    && !p.chars().any(|c| "/@\"".contains(c)),
                "a generated password breaks DocumentDB's rules"
            );
        }
        let server = server
            .as_any()
            .downcast_ref::<SecantusServer>()
            .expect("SecantusDB");
        let roles = |user: &str| {
            let users = server.admin.users();
            let mut roles = users
                .iter()
                .find(|u| name_of(u) == user)
                .map(roles_of)
                .unwrap_or_default();
            roles.sort();
            roles
        };
        let (a, b) = (
            previous["username"].as_str().unwrap_or_default(),
            current["username"].as_str().unwrap_or_default(),
        );
        if a != b {
            assert_eq!(roles(a), roles(b), "the clone's roles are the original's");
        }
    }

    fn stand_in(&self) -> Option<&'static str> {
        Some(
            "SecantusDB, a MongoDB-wire server written in Python, with SCRAM-SHA-256 (DocumentDB 4.0 speaks SCRAM-SHA-1): its latency is not DocumentDB's, so compare its rows with each other, not with other engines'",
        )
    }

    /// No transaction holds a user's change, and `maxTimeMS` counts from a command's arrival
    /// (RELIABILITY.md); SecantusDB lists no privileges of custom roles; the `dbname` of a
    /// secret is the database that holds the user, so another one refuses the login.
    fn limits(&self) -> Limits {
        Limits {
            late_change_lands_after_abort: true,
            server_lock: false,
            own_password_rights: RightsCheck::Unknown,
            master_rights: RightsCheck::Unknown,
            unknown_database: Some(rotation_core::ErrorKind::AuthFailed),
            ..Limits::NONE
        }
    }
}

/// SecantusDB behind its front proxy, with an admin client.
pub struct SecantusServer {
    // Dropped in this order: the admin's connections close before the server goes (or, for an
    // external server, before the next test resets it).
    admin: Admin,
    front: Arc<TcpProxy>,
    db: Secantus,
}

impl fmt::Debug for SecantusServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecantusServer")
            .field("port", &self.db.port())
            .field("front", &self.front.port())
            .finish_non_exhaustive()
    }
}

impl SecantusServer {
    /// The server itself (its own port, not the front proxy's).
    pub fn secantus(&self) -> &Secantus {
        &self.db
    }
}

/// The admin's client, on a runtime of its own so that the operator's calls stay plain
/// function calls inside any test's runtime.
struct Admin {
    runtime: Option<tokio::runtime::Runtime>,
    client: Option<mongodb::Client>,
}

impl Admin {
    fn connect(db: &Secantus) -> Admin {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the admin client's runtime");
        let credential = Credential::builder()
            .username(db.admin().to_string())
            .password(db.admin_password().to_string())
            .source("admin".to_string())
            .build();
        let tls = match db.ca_pem() {
            Some(ca) => Tls::Enabled(TlsOptions::builder().ca_file_path(ca.to_path_buf()).build()),
            None => Tls::Disabled,
        };
        let options = ClientOptions::builder()
            .hosts(vec![ServerAddress::Tcp {
                host: if db.ca_pem().is_some() {
                    db.tls_host().to_string()
                } else {
                    db.host().to_string()
                },
                port: Some(db.port()),
            }])
            .direct_connection(true)
            .credential(credential)
            .tls(tls)
            .build();
        let client = {
            let _entered = runtime.enter();
            mongodb::Client::with_options(options).expect("the admin client")
        };
        Admin {
            runtime: Some(runtime),
            client: Some(client),
        }
    }

    fn client(&self) -> &mongodb::Client {
        self.client.as_ref().expect("open until dropped")
    }

    /// Runs `f` on the admin runtime, from a thread of its own (the caller may be inside
    /// another runtime).
    fn run<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        let runtime = self.runtime.as_ref().expect("open until dropped");
        std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(f))
                .join()
                .expect("an admin call panicked")
        })
    }

    /// Runs `command` in `admin`.
    fn command(&self, command: Document) -> Result<Document, mongodb::error::Error> {
        self.run(
            self.client()
                .database("admin")
                .run_command(command)
                .into_future(),
        )
    }

    /// Every user of the server.
    fn users(&self) -> Vec<Document> {
        self.run(async {
            let mut cursor = self
                .client()
                .database("admin")
                .collection::<Document>("system.users")
                .find(doc! {})
                .await?;
            let mut users = Vec::new();
            while cursor.advance().await? {
                users.push(cursor.deserialize_current()?);
            }
            Ok::<_, mongodb::error::Error>(users)
        })
        .expect("read admin.system.users")
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            let client = self.client.take();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _entered = runtime.enter();
                    drop(client);
                });
            });
            runtime.shutdown_background();
        }
    }
}

fn name_of(user: &Document) -> &str {
    user.get_str("user").unwrap_or_default()
}

fn roles_of(user: &Document) -> Vec<String> {
    match user.get("roles") {
        Some(Bson::Array(roles)) => roles
            .iter()
            .filter_map(|r| r.as_document())
            .map(|r| {
                format!(
                    "{}@{}",
                    r.get_str("role").unwrap_or_default(),
                    r.get_str("db").unwrap_or_default()
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl TestServer for SecantusServer {
    fn version(&self) -> String {
        let v = self
            .db
            .python("import importlib.metadata as m; print(m.version('secantusdb'))")
            .unwrap_or_else(|e| panic!("SecantusDB's version: {e}"));
        format!("SecantusDB {}", v.trim())
    }

    fn port(&self) -> u16 {
        self.front.port()
    }

    fn server_port(&self) -> u16 {
        self.db.port()
    }

    fn ca_pem(&self) -> Option<&Path> {
        self.db.ca_pem()
    }

    fn admin(&self) -> (&str, &str) {
        (self.db.admin(), self.db.admin_password())
    }

    /// In `admin`, with `readWrite` on `appdb` and the role granting `changeOwnPassword`.
    fn create_user(&self, name: &str, password: &str) {
        let role = self.admin.command(doc! {
            "createRole": SELF_SERVICE,
            "privileges": [
                {"resource": {"cluster": true}, "actions": ["changeOwnPassword"]},
                {"resource": {"db": "", "collection": ""}, "actions": ["changeOwnPassword"]},
            ],
            "roles": [],
        });
        if let Err(e) = role {
            // 51002: the role exists already.
            assert!(
                matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 51002),
                "createRole: {e}"
            );
        }
        self.admin
            .command(doc! {
                "createUser": name,
                "pwd": password,
                "roles": [
                    {"role": "readWrite", "db": "appdb"},
                    {"role": SELF_SERVICE, "db": "admin"},
                ],
            })
            .unwrap_or_else(|e| panic!("createUser: {e}"));
    }

    fn set_password(&self, user: &str, password: &str) {
        self.admin
            .command(doc! {"updateUser": user, "pwd": password})
            .unwrap_or_else(|e| panic!("updateUser: {e}"));
    }

    /// Without `changeOwnPassword`.
    fn forbid_own_password_change(&self, user: &str) {
        self.admin
            .command(doc! {
                "revokeRolesFromUser": user,
                "roles": [{"role": SELF_SERVICE, "db": "admin"}],
            })
            .unwrap_or_else(|e| panic!("revokeRolesFromUser: {e}"));
    }

    /// In every database.
    fn users_named(&self, prefix: &str) -> String {
        let mut names: Vec<String> = self
            .admin
            .users()
            .iter()
            .map(name_of)
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect();
        names.sort();
        names.join(",")
    }

    /// Each user's credentials and roles (`admin.system.users`).
    fn fingerprint(&self) -> String {
        let mut users: Vec<String> = self
            .admin
            .users()
            .iter()
            .map(|u| {
                format!(
                    "{}:{}:{:?}:{:?}",
                    name_of(u),
                    u.get_str("db").unwrap_or_default(),
                    u.get("credentials"),
                    u.get("roles")
                )
            })
            .collect();
        users.sort();
        users.join("\n")
    }

    /// Users with a role other than those the suites grant application users.
    fn privileged(&self) -> String {
        let mut names: Vec<String> = self
            .admin
            .users()
            .iter()
            .filter(|u| {
                roles_of(u)
                    .iter()
                    .any(|r| r != "readWrite@appdb" && r != &format!("{SELF_SERVICE}@admin"))
            })
            .map(|u| name_of(u).to_string())
            .collect();
        names.sort();
        names.join(",")
    }

    /// In the network, at the front proxy (secrets without TLS only): the first message
    /// carrying `updateUser`.
    fn hold_password_change<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Box<dyn HeldChange>> {
        Box::pin(async move {
            Box::new(NetworkHold::arm(
                self.front.clone(),
                DOCUMENTDB.password_statement(),
            )) as Box<dyn HeldChange>
        })
    }

    fn log(&self) -> String {
        self.db.log()
    }

    fn logs_in_with_own_client(&self, user: &str, password: &str) -> bool {
        self.db
            .logs_in(user, password, crate::DEFAULT_DBNAME)
            .unwrap_or_else(|e| panic!("the login check failed: {e}"))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
