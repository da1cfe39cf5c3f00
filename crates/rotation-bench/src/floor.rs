//! The floor: the store calls and engine operations that any correct rotation driven by
//! Secrets Manager's four invocations must make, issued by a plain loop through the same
//! store client and the engine's own rotator operations (so the same for every engine), warm
//! (in the bench's process) and cold (a fresh process per rotation, as a function starts:
//! [`cold`]); and login times on their own.
//!
//! Each invocation is a new call of the function, which keeps nothing between them but its
//! clients, so each re-reads what it needs and checks the event against the secret:
//! - createSecret: DescribeSecret (the entry check: rotation on, the token a pending version),
//!   GetSecretValue (AWSCURRENT), GetRandomPassword, PutSecretValue (AWSPENDING);
//! - setSecret: DescribeSecret, GetSecretValue (the pending version, by its token),
//!   GetSecretValue (AWSCURRENT), and where the change is made by the master (alternating
//!   users; single user on an engine whose single user acts through its master)
//!   GetSecretValue of the master secret; one login (the user, or the master) and the change;
//! - testSecret: DescribeSecret, GetSecretValue (the pending version), a login with it and
//!   testSecret's statement;
//! - finishSecret: DescribeSecret (which names the AWSCURRENT version), UpdateSecretVersionStage;
//!   an engine whose single user keeps the old password until then: GetSecretValue of the
//!   master, a login as the master and the drop.
//!
//! Not in it, and so overhead in the figures: the pending version read at createSecret (for a
//! retried createSecret), setSecret's login with the pending credentials first (for a retried
//! setSecret) and its re-read of the stages before the change, the rotation's own login as the
//! current user before it uses the master (the confused-deputy guard), and finishSecret's
//! login with the pending credentials before it promotes them (W23).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rotation_core::{
    AnyRotator, DatabaseSecret, Deadline, PasswordPolicy, Rotator, SecretStore, Stage, StageMove,
    Strategy, VersionSelector,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::runtime::Runtime;

use crate::lab::{Connections, Db, Lab, Subject};

/// One floor iteration.
#[derive(Debug, Clone)]
pub struct FloorSample {
    /// The iteration (ms): warm, the calls; cold, the process from start to exit.
    pub total: f64,
    /// Connections.
    pub connections: Connections,
    /// CPU user + system time of the process (ms; cold only).
    pub cpu: f64,
}

/// The floor's Secrets Manager calls for `strategy` on `db`'s engine.
pub fn store_calls(db: &Db, strategy: Strategy) -> u64 {
    let master = u64::from(db.needs_master(strategy));
    let drop = u64::from(strategy == Strategy::SingleUser && db.needs_master(strategy));
    11 + master + drop
}

/// What one floor rotation works on.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The secret.
    pub arn: String,
    /// The master secret, where the change is made by the master.
    pub master_arn: Option<String>,
    /// The strategy.
    pub strategy: Strategy,
    /// The user of the secret as it was made, and its clone (alternating users).
    pub user: String,
    /// The clone.
    pub clone: String,
}

/// The master secret's AWSCURRENT value, where the change is made by the master.
async fn read_master(
    store: &impl SecretStore,
    c: &Contract,
) -> anyhow::Result<Option<DatabaseSecret>> {
    let Some(m) = &c.master_arn else {
        return Ok(None);
    };
    let v = store
        .get_value(m, VersionSelector::stage(Stage::Current))
        .await?;
    Ok(Some(DatabaseSecret::parse(&v.value)?))
}

/// The calls of one rotation to the pending version `token` (already made, without a value,
/// as RotateSecret makes it), in the four invocations' order.
pub async fn contract_rotation(
    store: &impl SecretStore,
    rotator: &AnyRotator,
    policy: &PasswordPolicy,
    c: &Contract,
    token: &str,
) -> anyhow::Result<()> {
    let deadline = Deadline::after(Duration::from_secs(30));
    let arn = c.arn.as_str();
    let by_token = VersionSelector {
        version_id: Some(token),
        stage: Some(Stage::Pending),
    };

    // createSecret
    store.describe(arn).await?;
    let current = store
        .get_value(arn, VersionSelector::stage(Stage::Current))
        .await?;
    let secret = DatabaseSecret::parse(&current.value)?;
    let password = store.random_password(policy).await?;
    let user = match c.strategy {
        Strategy::AlternatingUsers if secret.username() == Some(c.user.as_str()) => &c.clone,
        _ => &c.user,
    };
    let pending = secret
        .with_username(user)
        .with_password(SecretString::from(password.expose_secret().to_string()));
    store
        .put_value(arn, token, &pending.to_json(), &[Stage::Pending], None)
        .await?;

    // setSecret
    store.describe(arn).await?;
    let pending = DatabaseSecret::parse(&store.get_value(arn, by_token).await?.value)?;
    let current = store
        .get_value(arn, VersionSelector::stage(Stage::Current))
        .await?;
    let current = DatabaseSecret::parse(&current.value)?;
    let acting = read_master(store, c).await?;
    let mut session = rotator
        .login(acting.as_ref().unwrap_or(&current), deadline)
        .await?;
    let set = match &acting {
        Some(_) => {
            rotator
                .set_password_as_master(&mut session, &current, &pending)
                .await
        }
        None => rotator.set_own_password(&mut session, &pending).await,
    };
    rotator.close(session).await;
    set?;

    // testSecret
    store.describe(arn).await?;
    let pending = DatabaseSecret::parse(&store.get_value(arn, by_token).await?.value)?;
    let mut session = rotator.login(&pending, deadline).await?;
    let tested = rotator.test_session(&mut session, &pending, None).await;
    rotator.close(session).await;
    tested?;

    // finishSecret
    let d = store.describe(arn).await?;
    let from = d
        .version_with(Stage::Current)
        .context("no AWSCURRENT version")?
        .to_string();
    store
        .update_stage(
            arn,
            StageMove {
                stage: Stage::Current,
                move_to: Some(token),
                remove_from: Some(&from),
            },
        )
        .await?;
    if c.strategy == Strategy::SingleUser
        && let Some(master) = read_master(store, c).await?
    {
        // An engine whose single user keeps the old password beside the new one until
        // finishSecret drops it.
        let mut session = rotator.login(&master, deadline).await?;
        let dropped = rotator.drop_other_passwords(&mut session, &pending).await;
        rotator.close(session).await;
        dropped?;
    }
    Ok(())
}

/// The contract for a new subject of `db` named `name`.
async fn subject(
    lab: &Lab,
    db: &Db,
    name: &str,
    strategy: Strategy,
) -> anyhow::Result<(Subject, Contract)> {
    let clone = format!("{name}_clone");
    let subject = lab.subject(db, name, strategy).await?;
    if strategy == Strategy::AlternatingUsers {
        db.create_user(&clone);
    }
    let contract = Contract {
        arn: subject.arn.clone(),
        master_arn: db.needs_master(strategy).then(|| db.master_arn.clone()),
        strategy,
        user: name.to_string(),
        clone,
    };
    Ok((subject, contract))
}

fn floor_name(db: &Db, strategy: Strategy, temperature: &str) -> String {
    format!(
        "floor_{temperature}_{}_{}",
        match strategy {
            Strategy::SingleUser => "single",
            Strategy::AlternatingUsers => "alt",
        },
        db.label().to_ascii_lowercase()
    )
}

/// `n` warm floor iterations for `strategy` on `db`, after one unmeasured warm-up.
pub async fn run(
    lab: &Lab,
    db: &Db,
    strategy: Strategy,
    n: usize,
) -> anyhow::Result<Vec<FloorSample>> {
    let (subject, contract) = subject(lab, db, &floor_name(db, strategy, "warm"), strategy).await?;
    let rotator = db.rotator(strategy);
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let token = uuid::Uuid::new_v4().to_string();
        let before_value = lab.current(&subject.arn).await?;
        lab.start_rotation(db, &subject.arn, &token).await?;
        let before = db.connections();
        let start = Instant::now();
        contract_rotation(&lab.store, &rotator, &db.settings.policy, &contract, &token).await?;
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let connections = db.connections_since(before);
        lab.verify(db, &subject, &token, &before_value).await?;
        if i > 0 {
            samples.push(FloorSample {
                total,
                connections,
                cpu: f64::NAN,
            });
        }
    }
    Ok(samples)
}

/// The variable a cold floor process reads its work from.
pub const CHILD_ENV: &str = "ROTATION_BENCH_FLOOR";

/// `n` cold floor rotations for `strategy` on `db`: each a fresh process of the bench's own
/// binary ([`child`]), given the function's environment, timed from its start to its exit.
pub fn cold(
    rt: &Runtime,
    lab: &Lab,
    db: &Db,
    strategy: Strategy,
    n: usize,
) -> anyhow::Result<Vec<FloorSample>> {
    let (subject, contract) = rt.block_on(subject(
        lab,
        db,
        &floor_name(db, strategy, "cold"),
        strategy,
    ))?;
    let exe = std::env::current_exe()?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let token = uuid::Uuid::new_v4().to_string();
        let before_value = rt.block_on(lab.current(&subject.arn))?;
        rt.block_on(lab.start_rotation(db, &subject.arn, &token))?;
        let spec = [
            db.engine.name(),
            match strategy {
                Strategy::SingleUser => "single-user",
                Strategy::AlternatingUsers => "alternating-users",
            },
            &contract.arn,
            contract.master_arn.as_deref().unwrap_or(""),
            &token,
            &contract.user,
            &contract.clone,
        ]
        .join("\t");
        let mut cmd = Command::new(&exe);
        cmd.env_clear()
            .envs(crate::cold::environment(lab, db, strategy, "", false))
            .env(CHILD_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let before = db.connections();
        let cpu_before = crate::cold::children_cpu()?;
        let start = Instant::now();
        let out = cmd.output().context("starting the floor process")?;
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let cpu_after = crate::cold::children_cpu()?;
        if !out.status.success() {
            bail!(
                "the floor process failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let connections = db.connections_since(before);
        rt.block_on(lab.verify(db, &subject, &token, &before_value))?;
        samples.push(FloorSample {
            total,
            connections,
            cpu: (cpu_after.0 - cpu_before.0) + (cpu_after.1 - cpu_before.1),
        });
    }
    Ok(samples)
}

/// A cold floor process: reads its work from [`CHILD_ENV`] and the engine's settings from the
/// environment as the engine's function does, builds the same clients as the function
/// (`rotation_lambda::sdk_config`), makes the contract's calls once and exits.
pub fn child(spec: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = spec.split('\t').collect();
    let [engine, strategy, arn, master, token, user, clone] = parts[..] else {
        bail!("{CHILD_ENV}: seven tab-separated fields expected");
    };
    let engine = rotation_tests::engines::ALL
        .iter()
        .find(|e| e.name() == engine)
        .with_context(|| format!("no engine {engine}"))?;
    let strategy = match strategy {
        "single-user" => Strategy::SingleUser,
        "alternating-users" => Strategy::AlternatingUsers,
        other => bail!("{CHILD_ENV}: no strategy {other}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sdk = rotation_lambda::sdk_config().await;
        let settings = rotation_core::EngineSettings::read(
            engine.engine(),
            &rotation_core::EngineEnv::process(Some(&sdk)),
        )?;
        let store = rotation_core::AwsSecretStore::from_sdk_config(&sdk);
        let rotator = settings.rotator(strategy);
        let contract = Contract {
            arn: arn.to_string(),
            master_arn: (!master.is_empty()).then(|| master.to_string()),
            strategy,
            user: user.to_string(),
            clone: clone.to_string(),
        };
        contract_rotation(&store, &rotator, &settings.policy, &contract, token).await
    })
}

/// Login times on one transport.
#[derive(Debug, Clone)]
pub struct LoginTimes {
    /// The process's first login (ms).
    pub first: f64,
    /// The `n` after it (ms).
    pub rest: Vec<f64>,
    /// TCP connections one login opens (the mean).
    pub connections: f64,
}

/// The first login of the process on a transport, and `n` more, each the engine's login,
/// testSecret's statement and close ([`Db::check`]).
pub async fn logins(lab: &Lab, db: &Db, n: usize) -> anyhow::Result<LoginTimes> {
    let name = format!("probe_{}", db.label().to_ascii_lowercase());
    let subject = lab.subject(db, &name, Strategy::SingleUser).await?;
    let secret = lab.current(&subject.arn).await?;
    let mut rest = Vec::with_capacity(n + 1);
    let before = db.connections();
    for _ in 0..=n {
        let t = Instant::now();
        db.check(&secret).await?;
        rest.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let opened = db.connections_since(before).opened;
    let first = rest.remove(0);
    Ok(LoginTimes {
        first,
        rest,
        connections: opened as f64 / (n + 1) as f64,
    })
}

/// `n` DescribeSecret and `n` GetSecretValue calls to moto through the store, after one
/// unmeasured call of each; times in ms. (The same for every engine: a secret on the first
/// server.)
pub async fn store_times(lab: &Lab, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let db = lab
        .dbs()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no server"))?;
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
