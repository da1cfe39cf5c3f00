//! `rotate` with the built-in engines (`rotation_engines::builtin`); see the library.

fn main() -> std::process::ExitCode {
    rotation_cli::main(rotation_engines::builtin())
}
