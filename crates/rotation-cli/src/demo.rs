//! `rotate demo`: a real rotation, end to end, on this machine. Starts a throwaway PostgreSQL
//! (TLS with a generated CA, SCRAM, 127.0.0.1, random port), keeps secrets in a local file store,
//! and performs a single-user and two alternating-users rotations, proving after each that the
//! new credentials log in and the old ones behave as the strategy promises.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use rotation_core::{
    DatabaseSecret, LocalSecretStore, SecretStore, Stage, Strategy, VersionSelector,
};
use rotation_core::{EngineEnv, EngineSettings};
use rotation_postgres::{PgConfig, connect};
use rotation_testkit::{PgCluster, PgOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::output::{describe_json, status_text};

struct Demo {
    store: LocalSecretStore,
    config: PgConfig,
    json: bool,
    proofs: Vec<Value>,
    failed: bool,
}

impl Demo {
    fn say(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    async fn value(&self, secret: &str, stage: Stage) -> anyhow::Result<Value> {
        let v = self
            .store
            .get_value(secret, VersionSelector::stage(stage))
            .await?;
        Ok(serde_json::from_str(v.value.expose_secret())?)
    }

    async fn logs_in(&self, v: &Value) -> bool {
        let s =
            DatabaseSecret::parse(&SecretString::from(v.to_string())).expect("demo secret parses");
        connect::check(&s, &self.config).await.is_ok()
    }

    /// Checks that `v`'s credentials log in (or not) as expected, and records the proof.
    async fn prove(&mut self, what: &str, v: &Value, expect: bool) {
        let ok = self.logs_in(v).await == expect;
        self.failed |= !ok;
        let user = v["username"].as_str().unwrap_or_default();
        let verdict = if expect { "logs in" } else { "is refused" };
        self.say(&format!(
            "    [{}] {what} ({user}) {verdict}",
            if ok { "ok" } else { "FAILED" }
        ));
        self.proofs
            .push(json!({"check": what, "user": user, "expected_login": expect, "ok": ok}));
    }

    async fn status(&self, secret: &str) -> anyhow::Result<()> {
        let d = self.store.describe(secret).await?;
        if !self.json {
            for line in status_text(&d).lines() {
                println!("    {line}");
            }
        }
        Ok(())
    }
}

pub async fn run(store_file: Option<PathBuf>, json_out: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("rotate-demo-").tempdir()?;
    let path = store_file.unwrap_or_else(|| dir.path().join("secrets.json"));
    let pg = PgCluster::start(PgOptions::tls())
        .context("starting a throwaway PostgreSQL (scripts/setup installs the server binaries)")?;
    let mut demo = Demo {
        store: LocalSecretStore::new(&path),
        config: PgConfig::with_ca_bundle(pg.ca_pem().context("the demo cluster has a CA")?)?,
        json: json_out,
        proofs: vec![],
        failed: false,
    };
    demo.say(&format!(
        "Throwaway PostgreSQL on 127.0.0.1:{} (TLS with a generated CA, SCRAM passwords); secrets in {}",
        pg.port(),
        path.display()
    ));
    pg.psql(
        "CREATE ROLE reporting LOGIN PASSWORD 'Reporting-initial-1';
         CREATE ROLE app LOGIN PASSWORD 'App-initial-1';
         CREATE TABLE orders (id int); ALTER TABLE orders OWNER TO app; INSERT INTO orders VALUES (1), (2);",
    )?;
    let demo_store = demo.store.clone();
    let base = |user: &str, pw: &str| {
        json!({"engine": "postgres", "host": "localhost", "port": pg.port(), "username": user,
               "password": pw, "dbname": "postgres", "ssl": true})
    };
    let put = |name: &str, v: Value| {
        let store = demo_store.clone();
        let name = name.to_string();
        async move {
            store
                .create_secret(&name, &SecretString::from(v.to_string()))
                .await
        }
    };
    let master = put("demo/master", base("postgres", pg.superuser_password())).await?;
    put("demo/reporting", base("reporting", "Reporting-initial-1")).await?;
    let mut app = base("app", "App-initial-1");
    app["masterarn"] = json!(master);
    put("demo/app", app).await?;
    // The same wiring as the Lambda binaries and `rotate run`, with the throwaway CA trusted.
    let settings = EngineSettings {
        config: std::sync::Arc::new(rotation_postgres::PostgresConfig {
            config: demo.config.clone(),
            rds: None,
        }),
        ..EngineSettings::read(rotation_engines::POSTGRES, &EngineEnv::process(None))?
    };
    let store = demo.store.clone();
    let rotation = |strategy| settings.rotation(store.clone(), strategy);

    // Single user: the user changes its own password; the old one stops working.
    demo.say("\n1. Single-user rotation of demo/reporting");
    demo.status("demo/reporting").await?;
    let before = demo.value("demo/reporting", Stage::Current).await?;
    let t = Instant::now();
    let report = rotation(Strategy::SingleUser)
        .rotate("demo/reporting")
        .await?;
    demo.say(&format!(
        "    rotated to version {} in {} ms:",
        report.token,
        t.elapsed().as_millis()
    ));
    for (step, outcome) in &report.steps {
        demo.say(&format!("      {:<13} {outcome:?}", step.as_str()));
    }
    demo.status("demo/reporting").await?;
    let after = demo.value("demo/reporting", Stage::Current).await?;
    demo.prove("new AWSCURRENT password", &after, true).await;
    demo.prove("old password", &before, false).await;

    // Alternating users: the master sets up app_clone; both users keep working.
    for round in 1..=2 {
        demo.say(&format!(
            "\n{}. Alternating-users rotation of demo/app (round {round})",
            round + 1
        ));
        let before = demo.value("demo/app", Stage::Current).await?;
        let previous = demo.value("demo/app", Stage::Previous).await.ok();
        let t = Instant::now();
        let report = rotation(Strategy::AlternatingUsers)
            .rotate("demo/app")
            .await?;
        demo.say(&format!(
            "    rotated to version {} in {} ms",
            report.token,
            t.elapsed().as_millis()
        ));
        demo.status("demo/app").await?;
        let after = demo.value("demo/app", Stage::Current).await?;
        demo.prove("new AWSCURRENT user", &after, true).await;
        demo.prove("previous user, unchanged, still", &before, true)
            .await;
        if let Some(previous) = previous {
            demo.prove(
                "the user rotated two rotations ago, old password,",
                &previous,
                false,
            )
            .await;
        }
        let s = DatabaseSecret::parse(&SecretString::from(after.to_string()))?;
        let mut conn = connect::connect(&s, &demo.config).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut conn)
            .await?;
        connect::close(conn).await;
        let ok = n == 2;
        demo.failed |= !ok;
        demo.say(&format!(
            "    [{}] {} reads app's table through role membership ({n} rows)",
            if ok { "ok" } else { "FAILED" },
            after["username"].as_str().unwrap_or_default()
        ));
    }
    demo.say(&format!("\nDone in {} ms.", started.elapsed().as_millis()));
    if json_out {
        let mut statuses = serde_json::Map::new();
        for s in ["demo/reporting", "demo/app"] {
            statuses.insert(s.into(), describe_json(&demo.store.describe(s).await?));
        }
        println!(
            "{}",
            json!({"ok": !demo.failed, "proofs": demo.proofs, "secrets": statuses, "elapsed_ms": started.elapsed().as_millis() as u64})
        );
    }
    if demo.failed {
        // Its JSON (with `--json`) is printed above: the failure is not printed again.
        return Err(crate::output::Reported("a proof failed; see above".into()).into());
    }
    Ok(())
}
