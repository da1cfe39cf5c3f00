//! The fault sweep of issue "Proof of no lockout": for one engine and strategy, a rotation that
//! fails at its k-th I/O call (every k a rotation makes, each way a call can fail: [`Fault`]),
//! then what comes next in practice ([`FollowUp`]): Secrets Manager retrying the whole rotation
//! with the same token, an operator's `abort` then a new rotation, or an operator removing
//! `AWSPENDING` by hand then a new rotation.
//!
//! The rotation is driven the way Secrets Manager drives a function: `RotateSecret` attaches
//! `AWSPENDING` to a new token, then the four steps are invoked in order, each one a
//! [`Rotation::handle`] with its own deadline. After every step boundary, and at the end, the
//! credentials are checked against the real database without the fault injector:
//!
//! - alternating users: `AWSCURRENT` logs in;
//! - single user: `AWSCURRENT` or `AWSPENDING` logs in (after a hand-removed `AWSPENDING`: a
//!   version recovery finds, labelled or among the newest unlabelled ones, logs in);
//! - at the end: no rotation in flight, `AWSCURRENT` logs in, `AWSPREVIOUS` is on another
//!   version, every other key of the secret is as it was, and the master secret still logs in.
//!
//! Each broken promise is a [`Violation`]; a sweep returns them all with its figures.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_core::AnyRotator;
use rotation_core::testing::{Fault, FaultPlan, FaultyRotator, FaultyStore};
use rotation_core::{
    AbortMode, LocalSecretStore, Options, Rotation, RotationError, RotationEvent, SecretStore,
    Stage, StageMove, Step, Strategy, VersionSelector,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::engines::{Engine, Env};

/// What happens after the failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Secrets Manager's retry: the whole rotation again, same token, from createSecret.
    Retry,
    /// `rotate abort`, then `rotate run` (a new rotation).
    AbortThenRotate,
    /// `AWSPENDING` removed by hand, then a new rotation started by `RotateSecret`.
    UnlabelThenRotate,
}

impl FollowUp {
    /// Every follow-up.
    pub const ALL: [FollowUp; 3] = [
        FollowUp::Retry,
        FollowUp::AbortThenRotate,
        FollowUp::UnlabelThenRotate,
    ];
}

impl fmt::Display for FollowUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FollowUp::Retry => "retry",
            FollowUp::AbortThenRotate => "abort+rotate",
            FollowUp::UnlabelThenRotate => "unlabel+rotate",
        })
    }
}

/// Which scenarios a sweep runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Fault modes, each with the follow-ups to run after it.
    pub cases: Vec<(Fault, Vec<FollowUp>)>,
    /// The deadline of a faulted attempt's steps (a hang lasts this long).
    pub fault_step_timeout: Duration,
    /// Alternating users: also fail each call of a first rotation (the one that creates the
    /// clone), with each mode but a hang, then Secrets Manager's retry; a new user each time.
    pub first_rotations: bool,
    /// Single user: also fail each call of a rotation that must recover the password from an
    /// unlabelled version (after an `ALTER` whose answer was lost and a hand-removed
    /// `AWSPENDING`), before it is sent or after it took effect, then Secrets Manager's retry.
    pub recovery_rotations: bool,
    /// Overrides [`Options::recovery_limit`] (0 turns the recovery of unlabelled versions off,
    /// for a control run that must find lockouts).
    pub recovery_limit: Option<usize>,
}

impl Plan {
    /// Every mode with every follow-up.
    pub fn full() -> Plan {
        Plan {
            cases: Fault::ALL
                .into_iter()
                .map(|f| (f, FollowUp::ALL.to_vec()))
                .collect(),
            fault_step_timeout: Duration::from_millis(1500),
            first_rotations: true,
            recovery_rotations: true,
            recovery_limit: None,
        }
    }

    /// What CI runs: errors and lost answers with every follow-up, hangs with Secrets
    /// Manager's retry (a hang ends as the error before the call would: the deadline).
    pub fn ci() -> Plan {
        Plan {
            cases: vec![
                (Fault::Before, FollowUp::ALL.to_vec()),
                (Fault::Lost, FollowUp::ALL.to_vec()),
                (Fault::Hang, vec![FollowUp::Retry]),
            ],
            // Each hang lasts this long, and hangs are most of the sweep's time; every step of
            // these rotations ends well within it (the sweep fails if a fault point is not
            // reached: `not_fired`).
            fault_step_timeout: Duration::from_millis(1000),
            first_rotations: true,
            recovery_rotations: true,
            recovery_limit: None,
        }
    }

    /// [`Plan::full`] when `FAULT_SWEEP=full`, else [`Plan::ci`].
    pub fn from_env() -> Plan {
        match std::env::var("FAULT_SWEEP").as_deref() {
            Ok("full") => Plan::full(),
            _ => Plan::ci(),
        }
    }
}

/// A broken promise.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The scenario.
    pub scenario: String,
    /// What was broken, and where.
    pub what: String,
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Report {
    /// I/O calls of a clean rotation (the injection points).
    pub injection_points: usize,
    /// Alternating users: I/O calls of a first rotation (creating the clone), 0 if not swept.
    pub first_rotation_points: usize,
    /// Single user: I/O calls of a rotation that recovers an unlabelled version's password, 0
    /// if not swept.
    pub recovery_points: usize,
    /// The calls of a clean rotation, in order.
    pub calls: Vec<&'static str>,
    /// Scenarios run (a fault that fired, then its follow-up).
    pub scenarios: usize,
    /// Scenarios whose fault did not fire (the attempt made fewer calls than k).
    pub not_fired: usize,
    /// Step-boundary checks made.
    pub checks: usize,
    /// Lockouts and other broken promises.
    pub violations: Vec<Violation>,
    /// How long the sweep took.
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} injection points ({}), {} first-rotation points, {} recovery points, {} scenarios, {} faults not fired, {} checks, {} violations, {:.1} s",
            self.injection_points,
            self.calls.join(" "),
            self.first_rotation_points,
            self.recovery_points,
            self.scenarios,
            self.not_fired,
            self.checks,
            self.violations.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

type Faulty = Rotation<FaultyStore<LocalSecretStore>, FaultyRotator<AnyRotator>>;

/// One engine, one strategy, one secret on a real server, and the fault plan.
#[derive(Debug)]
pub struct Sweep {
    env: Env,
    strategy: Strategy,
    plan: Arc<FaultPlan>,
    recovery_limit: usize,
    /// The user and secret of the scenario being run.
    user: String,
    secret: String,
    master: Option<Value>,
    master_arn: Option<String>,
    /// The secret's keys other than those a rotation may change.
    kept: Value,
    report: Report,
}

const USER: &str = "faulted";
const SECRET: &str = "faulted";
const INITIAL: &str = "Initial-pw-1-long-enough";

/// `user`'s secret on `env`'s server, with extra keys a rotation must keep.
fn user_secret(env: &Env, user: &str, master_arn: Option<&str>) -> Value {
    let mut value = env.plain_secret(user, INITIAL);
    value["team"] = json!("payments");
    value["nested"] = json!({"list": [1, 2.5, "ü", null], "flag": true});
    if let Some(arn) = master_arn {
        value["masterarn"] = json!(arn);
    }
    value
}

impl Sweep {
    /// A server for `engine` (plaintext: the sweep is about the algorithm, and TLS only slows
    /// every login) with one user and its secret; alternating users also get the master secret.
    pub async fn start(engine: Engine, strategy: Strategy) -> Sweep {
        let env = Env::plain(engine);
        env.create_user(USER, INITIAL);
        let (master, master_arn) = match strategy {
            Strategy::AlternatingUsers => {
                let master = env.master_secret(Some(json!(false)));
                let arn = env.put("master", &master).await;
                (Some(master), Some(arn))
            }
            Strategy::SingleUser => (None, None),
        };
        let value = user_secret(&env, USER, master_arn.as_deref());
        let secret = env.put(SECRET, &value).await;
        let kept = without_changing_keys(&value);
        Sweep {
            env,
            strategy,
            plan: FaultPlan::new(),
            recovery_limit: Options::default().recovery_limit,
            user: USER.to_string(),
            secret,
            master,
            master_arn,
            kept,
            report: Report::default(),
        }
    }

    /// A new user with its own secret, made the scenario's.
    async fn fresh_user(&mut self, user: &str) {
        self.env.create_user(user, INITIAL);
        let value = user_secret(&self.env, user, self.master_arn.as_deref());
        self.secret = self.env.put(user, &value).await;
        self.user = user.to_string();
    }

    fn rotation(&self, step_timeout: Duration) -> Faulty {
        let settings = &self.env.settings;
        Rotation::new(
            FaultyStore::new(self.env.store.clone(), self.plan.clone()),
            FaultyRotator::new(settings.rotator(self.strategy), self.plan.clone()),
            settings.policy.clone(),
        )
        .with_options(Options {
            step_timeout,
            recovery_limit: self.recovery_limit,
            ..Options::default()
        })
    }

    /// Runs `plan`'s scenarios; returns what it found.
    pub async fn run(mut self, plan: &Plan) -> Report {
        let started = Instant::now();
        if let Some(limit) = plan.recovery_limit {
            self.recovery_limit = limit;
        }
        let healthy = self.rotation(Duration::from_secs(20));
        let faulted = self.rotation(plan.fault_step_timeout);
        if plan.first_rotations && self.strategy == Strategy::AlternatingUsers {
            self.first_rotations(&faulted, &healthy).await;
        }
        // Alternating users: the first rotation creates the clone and makes more calls than the
        // rest; the injection points are those of a rotation in the steady state.
        for _ in 0..2 {
            self.plan.disarm();
            if let Err(e) = self
                .service_rotation(&healthy, &crate::token(), "baseline", false)
                .await
            {
                panic!("a clean rotation fails: {e}");
            }
        }
        self.report.calls = self.plan.calls();
        self.report.injection_points = self.report.calls.len();
        if plan.recovery_rotations && self.strategy == Strategy::SingleUser {
            self.recovery_rotations(&faulted, &healthy).await;
        }
        for (fault, follow_ups) in &plan.cases {
            for k in 1..=self.report.injection_points {
                for follow_up in follow_ups {
                    let name = format!("{fault}@{k}+{follow_up}");
                    if !self
                        .scenario(&faulted, &healthy, &name, k, *fault, *follow_up)
                        .await
                    {
                        // The secret is stuck: later scenarios would only repeat it.
                        self.report.elapsed = started.elapsed();
                        return self.report;
                    }
                }
            }
        }
        self.report.elapsed = started.elapsed();
        self.report
    }

    /// Each call of a first rotation (creating the clone) failed before it is sent or after it
    /// took effect, then retried; each on a new user, the sweep's own user restored after.
    async fn first_rotations(&mut self, faulted: &Faulty, healthy: &Faulty) {
        let (user, secret) = (self.user.clone(), self.secret.clone());
        self.fresh_user("first0").await;
        self.plan.disarm();
        if let Err(e) = self
            .service_rotation(healthy, &crate::token(), "first rotation", false)
            .await
        {
            panic!("a clean first rotation fails: {e}");
        }
        self.report.first_rotation_points = self.plan.calls().len();
        let mut n = 0;
        for fault in [Fault::Before, Fault::Lost] {
            for k in 1..=self.report.first_rotation_points {
                n += 1;
                self.fresh_user(&format!("first{n}")).await;
                let name = format!("first rotation {fault}@{k}+retry");
                // Each on its own user: a stuck one does not stop the next.
                self.scenario(faulted, healthy, &name, k, fault, FollowUp::Retry)
                    .await;
            }
        }
        (self.user, self.secret) = (user, secret);
    }

    /// Leaves the database on a password only an unlabelled version holds: a rotation whose
    /// `ALTER` (call `set_k`) took effect and lost its answer, then `AWSPENDING` removed by hand.
    async fn strand(&mut self, faulted: &Faulty, set_k: usize) {
        let token = crate::token();
        self.env
            .store
            .start_rotation(&self.secret, &token)
            .await
            .expect("RotateSecret");
        self.plan.arm(set_k, Fault::Lost);
        for step in Step::ALL {
            let r = faulted
                .handle(&RotationEvent::new(step, &self.secret, &token))
                .await;
            if r.is_err() {
                break;
            }
        }
        self.plan.disarm();
        self.unlabel_pending().await;
    }

    /// Each call of a rotation that has to recover the password from an unlabelled version,
    /// failed before it is sent or after it took effect, then Secrets Manager's retry.
    async fn recovery_rotations(&mut self, faulted: &Faulty, healthy: &Faulty) {
        let set_k = self
            .report
            .calls
            .iter()
            .position(|c| *c == "set_own_password" || *c == "set_password_as_master")
            .expect("a single-user rotation sets the user's password")
            + 1;
        self.strand(faulted, set_k).await;
        if let Err(e) = self
            .service_rotation(healthy, &crate::token(), "recovery", true)
            .await
        {
            panic!("a clean recovering rotation fails: {e}");
        }
        self.report.recovery_points = self.plan.calls().len();
        for fault in [Fault::Before, Fault::Lost] {
            for k in 1..=self.report.recovery_points {
                let name = format!("recovery {fault}@{k}+retry");
                let were_current = vec![self.current_version().await];
                self.strand(faulted, set_k).await;
                let token = crate::token();
                self.env
                    .store
                    .start_rotation(&self.secret, &token)
                    .await
                    .expect("RotateSecret");
                self.plan.arm(k, fault);
                let mut unlabelled = true;
                for step in Step::ALL {
                    let result = faulted
                        .handle(&RotationEvent::new(step, &self.secret, &token))
                        .await;
                    if step == Step::SetSecret && result.is_ok() {
                        unlabelled = false;
                    }
                    self.check_boundary(&name, &format!("after {step}"), unlabelled)
                        .await;
                    if result.is_err() {
                        break;
                    }
                }
                let fired = self.plan.fired();
                self.plan.disarm();
                if fired.is_none() {
                    self.report.not_fired += 1;
                } else {
                    self.report.scenarios += 1;
                }
                if let Err(e) = self.service_steps(healthy, &token, &name, unlabelled).await {
                    self.violation(&name, format!("the retry failed: {e}"));
                    return;
                }
                self.check_end(&name, &were_current).await;
            }
        }
    }

    async fn scenario(
        &mut self,
        faulted: &Faulty,
        healthy: &Faulty,
        name: &str,
        k: usize,
        fault: Fault,
        follow_up: FollowUp,
    ) -> bool {
        let token = crate::token();
        // AWSPREVIOUS must end on a version that was AWSCURRENT before a rotation of this
        // scenario finished: this one, or the one the follow-up started from.
        let mut were_current = vec![self.current_version().await];
        if let Err(e) = self.env.store.start_rotation(&self.secret, &token).await {
            self.violation(
                name,
                format!("RotateSecret refused: the last scenario left a rotation stuck ({e})"),
            );
            return false;
        }
        self.plan.arm(k, fault);
        let mut failed = false;
        for step in Step::ALL {
            let result = faulted
                .handle(&RotationEvent::new(step, &self.secret, &token))
                .await;
            self.check_boundary(name, &format!("after {step}"), false)
                .await;
            if result.is_err() {
                failed = true;
                break;
            }
        }
        let fired = self.plan.fired();
        self.plan.disarm();
        if fired.is_none() {
            self.report.not_fired += 1;
            if failed {
                self.violation(name, "the attempt failed without a fault".into());
            }
            return true;
        }
        self.report.scenarios += 1;
        were_current.push(self.current_version().await);
        let outcome = match follow_up {
            FollowUp::Retry => self.service_steps(healthy, &token, name, false).await,
            FollowUp::AbortThenRotate => {
                match healthy.abort(&self.secret, AbortMode::Safe).await {
                    Ok(_) | Err(RotationError::NoRotationInFlight { .. }) => {}
                    Err(e) => {
                        self.violation(
                            name,
                            format!("abort failed: {}", rotation_core::error_chain(&e)),
                        );
                    }
                }
                self.check_boundary(name, "after abort", false).await;
                self.service_rotation(healthy, &crate::token(), name, false)
                    .await
            }
            FollowUp::UnlabelThenRotate => {
                self.unlabel_pending().await;
                self.check_boundary(name, "after AWSPENDING was removed", true)
                    .await;
                // Until this rotation's setSecret recovers it, the database may hold the
                // password of the version the operator unlabelled.
                self.service_rotation(healthy, &crate::token(), name, true)
                    .await
            }
        };
        if let Err(e) = outcome {
            self.violation(name, format!("the follow-up failed: {e}"));
            // Leave a clean state for the next scenario if at all possible.
            let _ = healthy.abort(&self.secret, AbortMode::Safe).await;
        }
        self.check_end(name, &were_current).await;
        true
    }

    /// `RotateSecret` then the four steps, as Secrets Manager does it.
    /// `unlabelled_by_hand`: the database may hold an unlabelled version's password until
    /// setSecret has recovered it.
    async fn service_rotation(
        &mut self,
        r: &Faulty,
        token: &str,
        name: &str,
        unlabelled_by_hand: bool,
    ) -> Result<(), String> {
        self.env
            .store
            .start_rotation(&self.secret, token)
            .await
            .map_err(|e| format!("RotateSecret: {e}"))?;
        self.service_steps(r, token, name, unlabelled_by_hand).await
    }

    async fn service_steps(
        &mut self,
        r: &Faulty,
        token: &str,
        name: &str,
        mut unlabelled_by_hand: bool,
    ) -> Result<(), String> {
        for step in Step::ALL {
            let result = r
                .handle(&RotationEvent::new(step, &self.secret, token))
                .await;
            if step == Step::SetSecret && result.is_ok() {
                unlabelled_by_hand = false;
            }
            self.check_boundary(
                name,
                &format!("after {step} (follow-up)"),
                unlabelled_by_hand,
            )
            .await;
            result.map_err(|e| format!("{step}: {}", rotation_core::error_chain(&e)))?;
        }
        Ok(())
    }

    async fn unlabel_pending(&self) {
        let d = self.env.store.describe(&self.secret).await.unwrap();
        if let Some(v) = d.rotation_in_flight() {
            self.env
                .store
                .update_stage(
                    &self.secret,
                    StageMove {
                        stage: Stage::Pending,
                        move_to: None,
                        remove_from: Some(v),
                    },
                )
                .await
                .unwrap();
        }
    }

    fn violation(&mut self, scenario: &str, what: String) {
        eprintln!("VIOLATION {scenario}: {what}");
        self.report.violations.push(Violation {
            scenario: scenario.to_string(),
            what,
        });
    }

    async fn value_at(&self, stage: Stage) -> Option<Value> {
        let v = self
            .env
            .store
            .get_value(&self.secret, VersionSelector::stage(stage))
            .await
            .ok()?;
        serde_json::from_str(v.value.expose_secret()).ok()
    }

    async fn logs_in_at(&self, stage: Stage) -> bool {
        match self.value_at(stage).await {
            Some(v) => self.env.logs_in(&v).await,
            None => false,
        }
    }

    /// Whether any version recovery would find logs in: the labelled ones, then the newest
    /// unlabelled ones within the recovery limit.
    async fn recoverable(&self) -> bool {
        let versions = self.env.store.list_versions(&self.secret).await.unwrap();
        let limit = Options::default().recovery_limit;
        // What recovery would find with its default limit, even when a control run turns it off.
        let labelled = versions.iter().filter(|v| !v.stages.stages.is_empty());
        let unlabelled = versions
            .iter()
            .filter(|v| v.stages.stages.is_empty())
            .take(limit);
        for v in labelled.chain(unlabelled) {
            let Ok(value) = self
                .env
                .store
                .get_value(
                    &self.secret,
                    VersionSelector {
                        version_id: Some(&v.id),
                        stage: None,
                    },
                )
                .await
            else {
                continue;
            };
            if let Ok(value) = serde_json::from_str::<Value>(value.value.expose_secret())
                && self.env.logs_in(&value).await
            {
                return true;
            }
        }
        false
    }

    async fn check_boundary(&mut self, name: &str, at: &str, unlabelled_by_hand: bool) {
        self.report.checks += 1;
        let ok = match self.strategy {
            Strategy::AlternatingUsers => self.logs_in_at(Stage::Current).await,
            Strategy::SingleUser if unlabelled_by_hand => self.recoverable().await,
            Strategy::SingleUser => {
                self.logs_in_at(Stage::Current).await || self.logs_in_at(Stage::Pending).await
            }
        };
        if !ok {
            let what = match self.strategy {
                Strategy::AlternatingUsers => "AWSCURRENT does not log in",
                Strategy::SingleUser if unlabelled_by_hand => {
                    "no version recovery would find logs in"
                }
                Strategy::SingleUser => "neither AWSCURRENT nor AWSPENDING logs in",
            };
            self.violation(name, format!("{at}: {what}"));
        }
    }

    async fn current_version(&self) -> Option<String> {
        let d = self.env.store.describe(&self.secret).await.ok()?;
        d.versions
            .iter()
            .find(|(_, s)| s.has(Stage::Current))
            .map(|(v, _)| v.clone())
    }

    /// `were_current`: the versions that were `AWSCURRENT` when a rotation of the scenario began.
    async fn check_end(&mut self, name: &str, were_current: &[Option<String>]) {
        self.report.checks += 1;
        let d = self.env.store.describe(&self.secret).await.unwrap();
        if let Some(v) = d.rotation_in_flight() {
            self.violation(name, format!("at the end: a rotation is in flight ({v})"));
        }
        let holders = |stage: Stage| -> Vec<String> {
            d.versions
                .iter()
                .filter(|(_, s)| s.has(stage))
                .map(|(v, _)| v.clone())
                .collect()
        };
        let current = holders(Stage::Current);
        let previous = holders(Stage::Previous);
        let previous_was_current = previous
            .first()
            .is_some_and(|p| were_current.contains(&Some(p.clone())));
        if current.len() != 1 || previous.len() != 1 || current == previous || !previous_was_current
        {
            self.violation(
                name,
                format!("at the end: stages inconsistent (AWSCURRENT on {current:?}, AWSPREVIOUS on {previous:?}, AWSCURRENT before: {were_current:?})"),
            );
        }
        match self.value_at(Stage::Current).await {
            Some(v) => {
                if !self.env.logs_in(&v).await {
                    self.violation(name, "at the end: AWSCURRENT does not log in".into());
                }
                if without_changing_keys(&v) != self.kept {
                    self.violation(
                        name,
                        "at the end: the secret's other keys changed".to_string(),
                    );
                }
                let user = v["username"].as_str().unwrap_or_default();
                let expected = [self.user.clone(), format!("{}_clone", self.user)];
                if !expected.contains(&user.to_string())
                    || (self.strategy == Strategy::SingleUser && user != self.user)
                {
                    self.violation(name, format!("at the end: username is {user:?}"));
                }
            }
            None => self.violation(name, "at the end: AWSCURRENT is unreadable".into()),
        }
        if self.strategy == Strategy::AlternatingUsers && !self.logs_in_at(Stage::Previous).await {
            self.violation(
                name,
                "at the end: AWSPREVIOUS does not log in (alternating users keep the previous user working)".into(),
            );
        }
        if let Some(master) = &self.master
            && !self.env.logs_in(master).await
        {
            self.violation(name, "at the end: the master does not log in".into());
        }
    }
}

/// The secret without the keys a rotation changes (password; username of alternating users).
pub fn without_changing_keys(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("password");
        o.remove("username");
    }
    v
}
