//! Warm rotations: many in one process through the library, with every Secrets Manager call
//! counted by [`RecordingStore`] and every TCP connection by the proxy in front of the server.
//!
//! Two paths: the Lambda contract (the service's RotateSecret makes the pending stub, then
//! `Rotation::handle` runs each step's event, as the function does per invocation) and the
//! in-process driver `Rotation::rotate` (the `rotate` command's path).

use std::time::Instant;

use anyhow::{bail, ensure};
use rotation_core::{RotationEvent, Step, StepOutcome};

use crate::counting::{Counts, RecordingStore, take};
use crate::lab::{Connections, Db, Lab, Subject};

/// The steps, in order.
pub const STEPS: [Step; 4] = [
    Step::CreateSecret,
    Step::SetSecret,
    Step::TestSecret,
    Step::FinishSecret,
];

/// One warm rotation.
#[derive(Debug, Clone)]
pub struct WarmSample {
    /// The whole rotation (ms): the four steps (Lambda path) or `rotate` (driver).
    pub total: f64,
    /// Each step (ms); Lambda path only.
    pub steps: Option<[f64; 4]>,
    /// Secrets Manager calls by operation.
    pub calls: Counts,
    /// TCP connections.
    pub connections: Connections,
}

fn expected(step: Step, outcome: StepOutcome) -> bool {
    matches!(
        (step, outcome),
        (Step::CreateSecret, StepOutcome::PendingCreated)
            | (Step::SetSecret, StepOutcome::PasswordSet(_))
            | (Step::TestSecret, StepOutcome::Tested)
            | (Step::FinishSecret, StepOutcome::Promoted)
    )
}

/// `n` rotations through `Rotation::handle`, after one unmeasured warm-up rotation.
pub async fn lambda_path(
    lab: &Lab,
    db: &Db,
    subject: &Subject,
    n: usize,
) -> anyhow::Result<Vec<WarmSample>> {
    let store = RecordingStore::new(lab.store.clone());
    let rotation = db.settings.rotation(store.clone(), subject.strategy);
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let before = lab.current(&subject.arn).await?;
        let token = uuid::Uuid::new_v4().to_string();
        lab.start_rotation(db, &subject.arn, &token).await?;
        take(&store);
        let opened_before = db.connections();
        let mut steps = [0.0; 4];
        let start = Instant::now();
        for (k, step) in STEPS.into_iter().enumerate() {
            let t = Instant::now();
            let outcome = rotation
                .handle(&RotationEvent::new(step, &subject.arn, &token))
                .await?;
            steps[k] = t.elapsed().as_secs_f64() * 1000.0;
            if !expected(step, outcome) {
                bail!("{step:?} ended with {outcome:?}: not a fresh rotation");
            }
        }
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let calls = take(&store);
        let connections = db.connections_since(opened_before);
        lab.verify(db, subject, &token, &before).await?;
        if i > 0 {
            samples.push(WarmSample {
                total,
                steps: Some(steps),
                calls,
                connections,
            });
        }
    }
    Ok(samples)
}

/// `n` rotations through the driver `Rotation::rotate`, after one unmeasured warm-up.
pub async fn driver_path(
    lab: &Lab,
    db: &Db,
    subject: &Subject,
    n: usize,
) -> anyhow::Result<Vec<WarmSample>> {
    let store = RecordingStore::new(lab.store.clone());
    let rotation = db.settings.rotation(store.clone(), subject.strategy);
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let before = lab.current(&subject.arn).await?;
        take(&store);
        let opened_before = db.connections();
        let start = Instant::now();
        let report = rotation.rotate(&subject.arn).await?;
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let calls = take(&store);
        let connections = db.connections_since(opened_before);
        ensure!(
            report
                .steps
                .iter()
                .all(|(step, outcome)| expected(*step, *outcome)),
            "not a fresh rotation: {:?}",
            report.steps
        );
        lab.verify(db, subject, &report.token, &before).await?;
        if i > 0 {
            samples.push(WarmSample {
                total,
                steps: None,
                calls,
                connections,
            });
        }
    }
    Ok(samples)
}
