//! Proof of no lockout, part 1: a rotation failing at each of its I/O calls, each way a call can
//! fail, then what comes next in practice, for every engine and strategy, against real servers
//! (`rotation_tests::faults` says what is checked and when). `FAULT_SWEEP=full` runs every
//! fault mode with every follow-up; the default is the CI plan. Figures: RELIABILITY.md.

use rotation_core::Strategy;
use rotation_core::testing::Fault;
use rotation_tests::engines::{self, Engine};
use rotation_tests::faults::{FollowUp, Plan, Sweep};

async fn sweep(engine: Engine, strategy: Strategy) {
    let plan = Plan::from_env();
    let report = Sweep::start(engine, strategy).await.run(&plan).await;
    eprintln!("SWEEP {engine} {strategy}: {report}");
    assert!(report.injection_points >= 8, "{report}");
    assert!(report.scenarios > 0, "{report}");
    assert_eq!(report.not_fired, 0, "every planned fault fires: {report}");
    assert!(
        report.violations.is_empty(),
        "{} violations: {:#?}",
        report.violations.len(),
        report.violations
    );
}

rotation_tests::all_rotators!(sweep);

/// The control: with the recovery of unlabelled versions turned off, an `ALTER` whose answer was
/// lost followed by an operator removing `AWSPENDING` strands the password, and the sweep must
/// say so. (Proves the checks can fail, and that recovery is what keeps the sweep clean.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_without_recovery_the_sweep_finds_the_lockout() {
    let plan = Plan {
        cases: vec![(Fault::Lost, vec![FollowUp::UnlabelThenRotate])],
        first_rotations: false,
        recovery_rotations: false,
        recovery_limit: Some(0),
        ..Plan::ci()
    };
    let report = Sweep::start(engines::POSTGRES, Strategy::SingleUser)
        .await
        .run(&plan)
        .await;
    eprintln!("CONTROL: {report}");
    let set = report
        .calls
        .iter()
        .position(|c| *c == "set_own_password")
        .expect("a single-user rotation sets its own password")
        + 1;
    let first = report
        .violations
        .first()
        .unwrap_or_else(|| panic!("no lockout found without recovery: {report}"));
    assert_eq!(
        first.scenario,
        format!("lost@{set}+unlabel+rotate"),
        "the first lockout is the lost ALTER: {:#?}",
        report.violations
    );
}
