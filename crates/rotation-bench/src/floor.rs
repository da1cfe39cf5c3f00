//! The floor: the store calls and engine operations a rotation cannot do without, issued by a
//! plain loop through the same store client and the engine's own rotator operations (so the
//! same for every engine), and login times on their own.
//!
//! Single user: GetSecretValue (current), GetRandomPassword, PutSecretValue (pending), a login
//! as the user and the password change (`Rotator::set_own_password`), a login with the new
//! password and testSecret's statement (`Rotator::test_session`), UpdateSecretVersionStage
//! (AWSCURRENT). Alternating users, and single user on an engine whose single user acts through
//! its master: GetSecretValue of the master secret too, and the change made logged in as the
//! master instead of the user (`Rotator::set_password_as_master`, which also keeps the pair's
//! rights in line). The rotation's own login as the current user before it uses the master (the
//! confused-deputy guard) is a choice of ours, not the contract's: it counts as overhead.

use std::time::{Duration, Instant};

use rotation_core::{
    DatabaseSecret, Deadline, Rotator, SecretStore, Stage, StageMove, Strategy, VersionSelector,
};
use secrecy::{ExposeSecret, SecretString};

use crate::lab::{Connections, Db, Lab};

/// One floor iteration.
#[derive(Debug, Clone)]
pub struct FloorSample {
    /// The iteration (ms).
    pub total: f64,
    /// Connections.
    pub connections: Connections,
}

/// The floor's Secrets Manager calls for `strategy` on `db`'s engine.
pub fn store_calls(db: &Db, strategy: Strategy) -> u64 {
    if db.needs_master(strategy) { 5 } else { 4 }
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
    let clone = format!("{name}_clone");
    let subject = lab.subject(db, &name, strategy).await?;
    if strategy == Strategy::AlternatingUsers {
        db.create_user(&clone);
    }
    let rotator = db.rotator(strategy);
    let store = &lab.store;
    let arn = subject.arn.as_str();
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let token = uuid::Uuid::new_v4().to_string();
        let before = db.connections();
        let deadline = Deadline::after(Duration::from_secs(30));
        let start = Instant::now();
        let current = store
            .get_value(arn, VersionSelector::stage(Stage::Current))
            .await?;
        let secret = DatabaseSecret::parse(&current.value)?;
        let master = if db.needs_master(strategy) {
            let m = store
                .get_value(&db.master_arn, VersionSelector::stage(Stage::Current))
                .await?;
            Some(DatabaseSecret::parse(&m.value)?)
        } else {
            None
        };
        let password = store.random_password(&db.settings.policy).await?;
        let user = match strategy {
            Strategy::AlternatingUsers if secret.username() == Some(name.as_str()) => &clone,
            _ => &name,
        };
        let pending = secret
            .with_username(user)
            .with_password(SecretString::from(password.expose_secret().to_string()));
        store
            .put_value(arn, &token, &pending.to_json(), &[Stage::Pending], None)
            .await?;
        let acting = master.as_ref().unwrap_or(&secret);
        let mut session = rotator.login(acting, deadline).await?;
        let set = match &master {
            Some(_) => {
                rotator
                    .set_password_as_master(&mut session, &secret, &pending)
                    .await
            }
            None => rotator.set_own_password(&mut session, &pending).await,
        };
        rotator.close(session).await;
        set?;
        let mut session = rotator.login(&pending, deadline).await?;
        let tested = rotator.test_session(&mut session, &pending, None).await;
        rotator.close(session).await;
        tested?;
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
        if let Some(master) = &master
            && strategy == Strategy::SingleUser
        {
            // An engine whose single user acts through its master keeps the old password
            // beside the new one until finishSecret drops it (timed: a rotation must).
            let mut session = rotator.login(master, deadline).await?;
            let dropped = rotator.drop_other_passwords(&mut session, &pending).await;
            rotator.close(session).await;
            dropped?;
        }
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let connections = db.connections_since(before);
        if i > 0 {
            samples.push(FloorSample { total, connections });
        }
    }
    Ok(samples)
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
