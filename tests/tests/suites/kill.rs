//! `rotate` killed with SIGKILL at random points of a rotation, then `resume` or `abort`, for
//! every engine and both strategies over verified TLS: never a lockout; then two `rotate run`s
//! of one secret at once: one rotates, the other is refused (`rotation_tests::kill`). A few
//! runs each here; `scripts/sweep` runs many.

use std::path::Path;

use rotation_tests::engines::Engine;

async fn killed_rotations_never_lock_out(engine: Engine) {
    rotation_tests::kill::never_locks_out(engine, Path::new(env!("CARGO_BIN_EXE_rotate_all"))).await
}

rotation_tests::all_engines!(killed_rotations_never_lock_out);
