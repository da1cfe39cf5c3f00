//! `rotate` with the built-in engines (PostgreSQL, Redshift, DocumentDB); see the library.

fn main() -> std::process::ExitCode {
    rotation_cli::main(rotation_engines::builtin())
}
