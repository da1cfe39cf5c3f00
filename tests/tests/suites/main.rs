//! The workspace suites, one test binary: the promises every engine is held to (against real
//! servers of each registered engine) and the engine-independent ones (the state machine, the
//! stores, the deployment's IAM, the documented errors).

#![recursion_limit = "256"]

mod checklist_calls;
mod cli_engine;
mod cold_instructions;
mod deadline;
mod deploy_iam;
mod docs_errors;
mod end_to_end;
mod faults;
mod hostile;
mod kill;
mod late_change;
mod local_store;
mod local_store_concurrency;
mod no_secret_leaks;
mod plan;
mod races;
mod real_engine_leaks;
mod recovery;
mod rollback;
mod state_machine;
mod stranded;
mod stray_change;
