//! The Lambda binaries refuse bad starts with a clear message and no panic.

use std::process::Command;

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    run_bin(env!("CARGO_BIN_EXE_rds-postgres"), env)
}

fn run_bin(bin: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the Lambda binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn outside_lambda_it_says_so_without_panicking() {
    // Failure 10: valid configuration, no Lambda runtime: it used to log "ready" and panic.
    let (code, text) = run(&[("ROTATION_STRATEGY", "single-user")]);
    assert_ne!(code, Some(101), "panicked: {text}");
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("AWS_LAMBDA_RUNTIME_API"), "{text}");
    assert!(
        !text.contains("panicked") && !text.contains("ready"),
        "{text}"
    );
}

const LAMBDA: [(&str, &str); 4] = [
    ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
    ("AWS_LAMBDA_FUNCTION_NAME", "rotation"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
];

#[test]
fn a_partial_lambda_environment_is_refused_before_the_runtime_panics() {
    // The runtime client panics when any of its variables is missing: each is checked first.
    for (missing, (name, _)) in LAMBDA.iter().enumerate() {
        let mut env: Vec<(&str, &str)> = LAMBDA
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, kv)| *kv)
            .collect();
        env.push(("ROTATION_STRATEGY", "single-user"));
        let (code, text) = run(&env);
        assert_ne!(code, Some(101), "panicked: {text}");
        assert_ne!(code, Some(0), "{text}");
        assert!(text.contains(name), "{text}");
        assert!(!text.contains("ready"), "{text}");
    }
}

#[test]
fn a_ca_bundle_without_certificates_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.pem");
    std::fs::write(&path, "this is not a certificate\n").unwrap();
    let mut env = LAMBDA.to_vec();
    env.extend([
        ("ROTATION_STRATEGY", "single-user"),
        ("CA_BUNDLE_PATH", path.to_str().unwrap()),
    ]);
    let (code, text) = run(&env);
    assert_ne!(code, Some(101), "panicked: {text}");
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("CA_BUNDLE_PATH") || text.contains("bundle.pem"),
        "{text}"
    );
    assert!(!text.contains("ready"), "{text}");
}

#[test]
fn an_unknown_strategy_fails_at_start() {
    let mut env = LAMBDA.to_vec();
    env.push(("ROTATION_STRATEGY", "both"));
    let (code, text) = run(&env);
    assert_ne!(code, Some(101), "panicked: {text}");
    assert_ne!(code, Some(0));
    assert!(text.contains("ROTATION_STRATEGY"), "{text}");
}

#[test]
fn a_malformed_master_allow_list_fails_at_start() {
    for bad in ["", " , ", "*", "arn:aws:secretsmanager:*:secret:x"] {
        let mut env = LAMBDA.to_vec();
        env.push(("ROTATION_STRATEGY", "alternating-users"));
        env.push(("ALLOWED_MASTER_SECRETS", bad));
        let (code, text) = run(&env);
        assert_ne!(code, Some(101), "panicked: {text}");
        assert_ne!(code, Some(0), "{bad:?}: {text}");
        assert!(text.contains("ALLOWED_MASTER_SECRETS"), "{bad:?}: {text}");
    }
}

/// The built binary of `engine`'s function (every binary of the package is built beside the
/// one Cargo names).
fn binary(engine: rotation_core::Engine) -> String {
    std::path::Path::new(env!("CARGO_BIN_EXE_rds-postgres"))
        .with_file_name(engine.function_name)
        .display()
        .to_string()
}

#[test]
fn each_engine_checks_its_password_settings_at_start() {
    for engine in rotation_engines::BUILTIN {
        let rules = engine.profile.password;
        let bin = binary(engine);
        let start = |extra: &[(&str, &str)]| {
            let mut env = LAMBDA.to_vec();
            env.extend_from_slice(extra);
            run_bin(&bin, &env)
        };
        // Not in Lambda: said so, no panic.
        let (code, text) = run_bin(&bin, &[("ROTATION_STRATEGY", "single-user")]);
        assert_ne!(code, Some(101), "{engine}: panicked: {text}");
        assert_ne!(code, Some(0), "{engine}: {text}");
        assert!(text.contains("AWS_LAMBDA_RUNTIME_API"), "{engine}: {text}");
        assert!(!text.contains("ready"), "{engine}: {text}");
        // Outside the engine's lengths (W10), or no strategy: refused at start, naming the
        // variable.
        let (short, long) = (
            (rules.min_length - 1).to_string(),
            (rules.max_length + 1).to_string(),
        );
        let mut bad = vec![
            [
                ("PASSWORD_LENGTH", short.as_str()),
                ("ROTATION_STRATEGY", "single-user"),
            ],
            [
                ("PASSWORD_LENGTH", long.as_str()),
                ("ROTATION_STRATEGY", "single-user"),
            ],
            [("ROTATION_STRATEGY", "both"), ("PASSWORD_LENGTH", "32")],
        ];
        // No digit left to satisfy rules that require each class.
        if rules.required_classes {
            bad.push([
                ("EXCLUDE_CHARACTERS", "0123456789"),
                ("ROTATION_STRATEGY", "single-user"),
            ]);
        }
        for bad in bad {
            let (code, text) = start(&bad);
            assert_ne!(code, Some(101), "{engine}: panicked: {text}");
            assert_ne!(code, Some(0), "{engine}: {text}");
            assert!(text.contains(bad[0].0), "{engine} {bad:?}: {text}");
            assert!(!text.contains("ready"), "{engine}: {text}");
        }
        // Its limits themselves start (and then fail only to reach the runtime at 127.0.0.1:9).
        for good in [rules.min_length.to_string(), rules.max_length.to_string()] {
            let (code, text) = start(&[
                ("PASSWORD_LENGTH", good.as_str()),
                ("ROTATION_STRATEGY", "alternating-users"),
            ]);
            assert_ne!(code, Some(101), "{engine}: panicked: {text}");
            assert!(
                text.contains("ready") && text.contains(engine.name()),
                "{engine} PASSWORD_LENGTH={good}: {text}"
            );
            assert!(!text.contains("PASSWORD_LENGTH"), "{engine}: {text}");
        }
        // Class switches that the engine's rules ignore (as AWS's function for it does) are
        // ignored too, but said so at start.
        if !rules.class_switches {
            let (code, text) = start(&[
                ("ROTATION_STRATEGY", "single-user"),
                ("EXCLUDE_NUMBERS", "true"),
                ("EXCLUDE_CHARACTERS", "x"),
            ]);
            assert_ne!(code, Some(101), "{engine}: panicked: {text}");
            assert!(text.contains("EXCLUDE_NUMBERS"), "{engine}: {text}");
            assert!(text.contains("ready"), "{engine}: it starts: {text}");
        }
    }
}

#[test]
fn code_of_another_engine_than_the_deployment_names_fails_at_start() {
    // The templates set ROTATION_ENGINE to their Engine parameter; the role grants that
    // engine's calls, so the wrong zip must not start.
    let engines = rotation_engines::BUILTIN;
    for (i, engine) in engines.iter().enumerate() {
        let other = engines[(i + 1) % engines.len()];
        let mut env = LAMBDA.to_vec();
        env.extend([
            ("ROTATION_STRATEGY", "single-user"),
            ("ROTATION_ENGINE", other.function_name),
        ]);
        let (code, text) = run_bin(&binary(*engine), &env);
        assert_ne!(code, Some(101), "panicked: {text}");
        assert_ne!(code, Some(0), "{text}");
        assert!(
            text.contains("ROTATION_ENGINE") && text.contains(engine.function_name),
            "{engine}: {text}"
        );
        assert!(!text.contains("ready"), "{text}");
        // Its own engine starts.
        let mut env = LAMBDA.to_vec();
        env.extend([
            ("ROTATION_STRATEGY", "single-user"),
            ("ROTATION_ENGINE", engine.function_name),
        ]);
        let (code, text) = run_bin(&binary(*engine), &env);
        assert_ne!(code, Some(101), "panicked: {text}");
        assert!(text.contains("ready"), "{engine}: {text}");
    }
}

#[test]
fn alternating_users_without_an_allow_list_are_warned_at_start() {
    let mut env = LAMBDA.to_vec();
    env.push(("ROTATION_STRATEGY", "alternating-users"));
    let (code, text) = run(&env);
    assert_ne!(code, Some(101), "panicked: {text}");
    assert!(text.contains("ready"), "it starts: {text}");
    assert!(text.contains("ALLOWED_MASTER_SECRETS is not set"), "{text}");
    // Not for single users, who read no master.
    let mut env = LAMBDA.to_vec();
    env.push(("ROTATION_STRATEGY", "single-user"));
    let (_, text) = run(&env);
    assert!(!text.contains("ALLOWED_MASTER_SECRETS"), "{text}");
}
