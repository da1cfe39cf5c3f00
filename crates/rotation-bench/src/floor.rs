//! The floor: the store calls and database statements a rotation cannot do without, issued by a
//! plain loop through the same store client and the same connection code as the engine, and
//! login times on their own.
//!
//! Single user: GetSecretValue (current), GetRandomPassword, PutSecretValue (pending), a login
//! as the user with `ALTER ROLE ... PASSWORD '<SCRAM verifier>'` (DocumentDB: `updateUser` with
//! the password), a login with the new password (`SELECT 1`; DocumentDB: `ping`),
//! UpdateSecretVersionStage (AWSCURRENT). Alternating users: the same, plus GetSecretValue of
//! the master secret, and the password change of the other user made as the master.

use std::time::{Duration, Instant};

use anyhow::Context;

use mongodb::bson::doc;
use rotation_core::{
    DatabaseSecret, Deadline, SecretStore, Stage, StageMove, Strategy, VersionSelector,
};
use rotation_documentdb::connect as documentdb;
use rotation_postgres::connect;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Executor;

use crate::lab::{Db, Lab, Logins, ServerKind};

/// One floor iteration.
#[derive(Debug, Clone)]
pub struct FloorSample {
    /// The iteration (ms).
    pub total: f64,
    /// Logins.
    pub logins: Logins,
}

async fn alter_password(
    db: &Db,
    acting: &DatabaseSecret,
    role: &str,
    password: &SecretString,
    target: &DatabaseSecret,
    deadline: Deadline,
) -> anyhow::Result<()> {
    if db.bench.server == ServerKind::Secantus {
        let client = documentdb::connect(acting, &db.connect_settings(), deadline).await?;
        let command = doc! { "updateUser": role, "pwd": password.expose_secret() };
        let done = client
            .database(rotation_documentdb::auth_db(target))
            .run_command(command)
            .await;
        documentdb::close(client, deadline).await;
        done.context("updateUser")?;
        return Ok(());
    }
    let mut conn = connect::connect_until(acting, &db.config, deadline).await?;
    let sql = db.bench.set_password_sql(role, password)?;
    conn.execute(sqlx::raw_sql(&sql)).await?;
    connect::close(conn, deadline).await;
    Ok(())
}

async fn login_and_select(
    db: &Db,
    secret: &DatabaseSecret,
    deadline: Deadline,
) -> anyhow::Result<()> {
    if db.bench.server == ServerKind::Secantus {
        // The driver's connect logs in and pings.
        return db.check(secret).await;
    }
    let mut conn = connect::connect_until(secret, &db.config, deadline).await?;
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut conn)
        .await?;
    connect::close(conn, deadline).await;
    Ok(())
}

/// `n` floor iterations for `strategy` on `db`, after one unmeasured warm-up.
pub async fn run(
    lab: &Lab,
    db: &Db,
    strategy: Strategy,
    n: usize,
) -> anyhow::Result<Vec<FloorSample>> {
    let name = format!(
        "floor_{}_{}",
        match strategy {
            Strategy::SingleUser => "single",
            Strategy::AlternatingUsers => "alt",
        },
        db.label().to_ascii_lowercase()
    );
    let subject = lab.subject(db, &name, strategy).await?;
    if strategy == Strategy::AlternatingUsers {
        db.create_user(&format!("{name}_clone"))?;
    }
    let store = &lab.store;
    let policy = db.settings().policy;
    let arn = subject.arn.as_str();
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let token = uuid::Uuid::new_v4().to_string();
        let logins_before = db.logins();
        let deadline = Deadline::after(Duration::from_secs(30));
        let start = Instant::now();
        let current = store
            .get_value(arn, VersionSelector::stage(Stage::Current))
            .await?;
        let secret = DatabaseSecret::parse(&current.value)?;
        let master = match strategy {
            Strategy::SingleUser => None,
            Strategy::AlternatingUsers => {
                let m = store
                    .get_value(&db.master_arn, VersionSelector::stage(Stage::Current))
                    .await?;
                Some(DatabaseSecret::parse(&m.value)?)
            }
        };
        let password = store.random_password(&policy).await?;
        let user = match strategy {
            Strategy::SingleUser => name.clone(),
            Strategy::AlternatingUsers if secret.username() == Some(name.as_str()) => {
                format!("{name}_clone")
            }
            Strategy::AlternatingUsers => name.clone(),
        };
        let pending = secret
            .with_username(&user)
            .with_password(SecretString::from(password.expose_secret().to_string()));
        store
            .put_value(arn, &token, &pending.to_json(), &[Stage::Pending], None)
            .await?;
        let acting = master.as_ref().unwrap_or(&secret);
        alter_password(db, acting, &user, &password, &pending, deadline).await?;
        login_and_select(db, &pending, deadline).await?;
        store
            .update_stage(
                arn,
                StageMove {
                    stage: Stage::Current,
                    move_to: Some(&token),
                    remove_from: Some(&current.version_id),
                },
            )
            .await?;
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let logins = db.logins() - logins_before;
        if i > 0 {
            samples.push(FloorSample { total, logins });
        }
    }
    Ok(samples)
}

/// The first login of the process on a transport, and `n` more (login, `SELECT 1`, close)
/// through `rotation_postgres::connect::check`; DocumentDB: the driver's client made, logged
/// in and pinged, then shut down; times in ms.
pub async fn logins(lab: &Lab, db: &Db, n: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let name = format!("probe_{}", db.label().to_ascii_lowercase());
    let subject = lab.subject(db, &name, Strategy::SingleUser).await?;
    let secret = lab.current(&subject.arn).await?;
    let mut times = Vec::with_capacity(n + 1);
    for _ in 0..=n {
        let t = Instant::now();
        db.check(&secret).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let first = times.remove(0);
    Ok((first, times))
}

/// `n` DescribeSecret and `n` GetSecretValue calls to moto through the store, after one
/// unmeasured call of each; times in ms. (The same for every engine: a secret on the first
/// cluster.)
pub async fn store_calls(lab: &Lab, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let db = lab.dbs().first().context("no cluster")?;
    let subject = lab.subject(db, "probe_store", Strategy::SingleUser).await?;
    let (mut describe, mut get) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..=n {
        let t = Instant::now();
        lab.store.describe(&subject.arn).await?;
        let d = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        lab.store
            .get_value(&subject.arn, VersionSelector::stage(Stage::Current))
            .await?;
        let g = t.elapsed().as_secs_f64() * 1000.0;
        if i > 0 {
            describe.push(d);
            get.push(g);
        }
    }
    Ok((describe, get))
}
