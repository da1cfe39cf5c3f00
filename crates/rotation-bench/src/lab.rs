//! The servers the bench runs against (all the testkit's, on 127.0.0.1): one moto for Secrets
//! Manager, and per engine two servers, plaintext and TLS-only (verify-full against the
//! testkit's generated CA), each started by the engine's own
//! [`TestEngine`](rotation_testkit::TestEngine), the same seam the promise suites use: an
//! engine the suites register is measured by the same code, with nothing of its own here.
//!
//! Every secret names a counting [`TcpProxy`] in front of its server, so each TCP connection a
//! rotation opens is counted, and the most it holds open at once, the same way for every
//! engine (the proxy adds a little latency to every round trip, to the floor's as much as to the
//! rotation's).

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rotation_core::{
    AwsSecretStore, DatabaseSecret, Deadline, EngineSettings, Rotator, SecretStore, Stage,
    StageMove, Strategy, VersionSelector,
};
use rotation_testkit::{Moto, ServerOptions, TcpProxy, TestServer};
use rotation_tests::engines::{Engine, read_settings};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The initial password of every user the bench makes (it meets every engine's rules).
const INITIAL_PASSWORD: &str = "Initial-pw-1-Long-enough";

/// One server and how the engine connects to it.
#[derive(Debug)]
pub struct Db {
    /// The engine it serves.
    pub engine: Engine,
    /// Its function, registered in moto.
    pub function_arn: String,
    /// The server.
    pub server: Box<dyn TestServer>,
    /// The counting proxy the secrets name.
    proxy: TcpProxy,
    /// TLS-only (`"ssl": true` in its secrets) or plaintext (`"ssl": false`).
    pub tls: bool,
    /// The engine's settings, read as its Lambda binary reads them (the server's CA in
    /// `CA_BUNDLE_PATH`).
    pub settings: EngineSettings,
    /// A master secret (the administrator) in moto, for alternating users, and for single
    /// user on an engine whose single user acts through its master.
    pub master_arn: String,
}

/// TCP connections a rotation opened, counted by the proxy in front of the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// Connections the proxy accepted.
    pub opened: u64,
    /// The most open at once.
    pub peak: u64,
}

impl Db {
    /// Starts a server for `engine`, plaintext or TLS-only, the proxy in front of it, and a
    /// master secret (its administrator) in moto.
    async fn start(
        client: &aws_sdk_secretsmanager::Client,
        engine: Engine,
        function_arn: String,
        tls: bool,
    ) -> anyhow::Result<Db> {
        let server = engine
            .start(ServerOptions { tls, own: true })
            .with_context(|| {
                format!("starting the {engine} test server (scripts/setup installs it)")
            })?;
        let proxy = TcpProxy::to_port_with(server.server_port(), engine.wire())
            .context("starting the counting proxy")?;
        let settings = read_settings(engine, server.ca_pem(), &[]);
        let mut db = Db {
            engine,
            function_arn,
            server,
            proxy,
            tls,
            settings,
            master_arn: String::new(),
        };
        let (admin, password) = db.server.admin();
        let master = db.secret_json(admin, password, None);
        let name = format!("bench/{engine}/master-{}", db.label());
        db.master_arn = create_secret(client, &name, &master).await?;
        Ok(db)
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        self.server.ca_pem().filter(|_| self.tls)
    }

    /// The engine's rotator for `strategy`, as its Lambda binary builds it.
    pub fn rotator(&self, strategy: Strategy) -> rotation_core::AnyRotator {
        self.settings.rotator(strategy)
    }

    /// Logs in with `secret`, runs testSecret's statement and closes the session, as the
    /// engine does.
    pub async fn check(&self, secret: &DatabaseSecret) -> anyhow::Result<()> {
        let rotator = self.rotator(Strategy::SingleUser);
        let deadline = Deadline::after(Duration::from_secs(30));
        let mut session = rotator.login(secret, deadline).await?;
        let tested = rotator.test_session(&mut session, secret, None).await;
        rotator.close(session).await;
        Ok(tested?)
    }

    /// `"postgres plain"`, `"mysql TLS"`, ...: for progress and errors.
    pub fn name(&self) -> String {
        format!("{} {}", self.engine, self.label())
    }

    /// Creates user `name` with the initial password, as an operator makes the engine's
    /// application users.
    pub fn create_user(&self, name: &str) {
        self.server.create_user(name, INITIAL_PASSWORD);
    }

    /// `"plain"` or `"TLS"`.
    pub fn label(&self) -> &'static str {
        if self.tls { "TLS" } else { "plain" }
    }

    /// Whether `strategy`'s rotations log in as the master.
    pub fn needs_master(&self, strategy: Strategy) -> bool {
        self.engine.profile().needs_master(strategy)
    }

    /// A secret for `user`, as the engine's secrets are, naming the proxy.
    pub fn secret_json(&self, user: &str, password: &str, masterarn: Option<&str>) -> Value {
        let mut v = self.engine.secret(self.proxy.port(), user, password);
        v["ssl"] = json!(self.tls);
        if let Some(m) = masterarn {
            v["masterarn"] = json!(m);
        }
        v
    }

    /// Connections so far, and the peak since the last reading (each reading starts a new
    /// peak window).
    pub fn connections(&self) -> Connections {
        let reading = Connections {
            opened: self.proxy.connections_accepted(),
            peak: self.proxy.peak_connections() as u64,
        };
        self.proxy.reset_peak();
        reading
    }

    /// Connections between `before` (an earlier reading) and now.
    pub fn connections_since(&self, before: Connections) -> Connections {
        let now = self.connections();
        Connections {
            opened: now.opened - before.opened,
            peak: now.peak,
        }
    }
}

/// A secret under rotation and the role it holds.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The secret's ARN.
    pub arn: String,
    /// The strategy it is rotated with.
    pub strategy: Strategy,
}

/// moto, the servers, and the fake functions RotateSecret needs.
#[derive(Debug)]
pub struct Lab {
    /// moto.
    pub moto: Moto,
    /// A raw client (the service side: RotateSecret, CreateSecret).
    pub client: aws_sdk_secretsmanager::Client,
    /// The uncounted store (setup and verification).
    pub store: AwsSecretStore,
    /// Per engine, a plaintext and a TLS-only server: plaintext ones first, each transport in
    /// the order of the engines.
    dbs: Vec<Db>,
}

impl Lab {
    /// Starts moto and both servers of each of `engines`.
    pub async fn start(engines: &[Engine]) -> anyhow::Result<Lab> {
        let moto = Moto::start().context("starting moto (scripts/setup installs it)")?;
        let sdk = moto.sdk_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let store = AwsSecretStore::new(client.clone());
        let mut functions = Vec::new();
        for engine in engines {
            let name = engine.engine().function_name;
            let arn = moto
                .create_function(name)
                .with_context(|| format!("registering {name} in moto"))?;
            functions.push(arn);
        }
        let mut dbs = Vec::new();
        for tls in [false, true] {
            for (engine, arn) in engines.iter().zip(&functions) {
                dbs.push(Db::start(&client, *engine, arn.clone(), tls).await?);
            }
        }
        Ok(Lab {
            moto,
            client,
            store,
            dbs,
        })
    }

    /// Every server: plaintext ones first, each transport in the order of the engines.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// A new user with a password and its secret, named `name`.
    pub async fn subject(
        &self,
        db: &Db,
        name: &str,
        strategy: Strategy,
    ) -> anyhow::Result<Subject> {
        db.create_user(name);
        let master = db.needs_master(strategy).then_some(db.master_arn.as_str());
        let value = db.secret_json(name, INITIAL_PASSWORD, master);
        let secret_name = format!("bench/{}/{}/{name}", db.engine, db.label());
        let arn = create_secret(&self.client, &secret_name, &value).await?;
        Ok(Subject { arn, strategy })
    }

    /// The `AWSCURRENT` value of `arn`.
    pub async fn current(&self, arn: &str) -> anyhow::Result<DatabaseSecret> {
        let v = self
            .store
            .get_value(arn, VersionSelector::stage(Stage::Current))
            .await?;
        Ok(DatabaseSecret::parse(&v.value)?)
    }

    /// What RotateSecret does before invoking the function: a value-less `AWSPENDING` version
    /// `token` (moto's RotateSecret, with the registered function, as the workspace tests do).
    pub async fn start_rotation(&self, db: &Db, arn: &str, token: &str) -> anyhow::Result<()> {
        // moto refuses RotateSecret while AWSPENDING shares a version with AWSCURRENT (AWS does
        // not): detach it first, as the tests do.
        let d = self.store.describe(arn).await?;
        for (v, s) in &d.versions {
            if s.has(Stage::Pending) && s.has(Stage::Current) {
                self.store
                    .update_stage(
                        arn,
                        StageMove {
                            stage: Stage::Pending,
                            move_to: None,
                            remove_from: Some(v),
                        },
                    )
                    .await?;
            }
        }
        Moto::rotate_secret(&self.client, arn, token, &db.function_arn)
            .await
            .context("RotateSecret in moto")?;
        Ok(())
    }

    /// Proves the rotation to `token` happened: `AWSCURRENT` is on it, its credentials log in,
    /// and the old ones behave as the strategy promises (single user: the old password is
    /// refused; alternating users: the user changed).
    pub async fn verify(
        &self,
        db: &Db,
        subject: &Subject,
        token: &str,
        before: &DatabaseSecret,
    ) -> anyhow::Result<()> {
        let d = self.store.describe(&subject.arn).await?;
        ensure!(
            d.version_with(Stage::Current) == Some(token),
            "rotation of {} did not move AWSCURRENT to {token}: {:?}",
            subject.arn,
            d.versions
        );
        let now = self.current(&subject.arn).await?;
        db.check(&now)
            .await
            .with_context(|| format!("the new AWSCURRENT of {} does not log in", subject.arn))?;
        match subject.strategy {
            Strategy::SingleUser => {
                if db.check(before).await.is_ok() {
                    bail!(
                        "single-user rotation of {}: the old password still logs in",
                        subject.arn
                    );
                }
            }
            Strategy::AlternatingUsers => ensure!(
                now.username() != before.username(),
                "alternating-users rotation of {} kept user {:?}",
                subject.arn,
                now.username()
            ),
        }
        Ok(())
    }
}

/// CreateSecret; returns the ARN.
pub async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &Value,
) -> anyhow::Result<String> {
    let value = SecretString::from(value.to_string());
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value.expose_secret())
        .send()
        .await
        .with_context(|| format!("CreateSecret {name} in moto"))?;
    out.arn()
        .map(str::to_string)
        .context("CreateSecret returned no ARN")
}
