//! `rotate` for Redis ACL users: the toolkit's command line (every verb: `run`, `plan`,
//! `resume`, `abort`, `rollback`, `status`, `put`, `list`, fleet runs) over this engine alone,
//! e.g. `redis-acl-rotate --store file:secrets.json run app --strategy single-user`.
//! `CA_BUNDLE_PATH` and the other connection variables apply.

use rotation_core::Engines;

fn main() -> std::process::ExitCode {
    let engines = Engines::new([redis_acl_rotation::ENGINE]).expect("one engine");
    rotation_cli::main(engines)
}
