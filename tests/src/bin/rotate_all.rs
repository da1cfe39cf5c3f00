//! `rotate` over every engine the suites register (the built-in ones and the Redis example),
//! through the same library function as `rotate` and `redis-acl-rotate`: the binary the kill
//! sweep drives.

fn main() -> std::process::ExitCode {
    rotation_cli::main(rotation_tests::engines::engines())
}
