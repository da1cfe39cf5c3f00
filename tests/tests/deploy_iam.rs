//! The SAM template's IAM (`deploy/sam/template.yaml`) grants exactly what the code calls: the
//! Secrets Manager, RDS and Redshift operations are derived from the code's SDK calls (the
//! store's client, the RDS client, the Redshift and Redshift Serverless clients), and the test
//! fails when the policy lacks one or grants more. It also holds the policy's shape: no `*`
//! action, the rotated secrets conditioned on `AllowRotationLambdaArn`, master access only for
//! alternating users and only on the master secret, the ENI and KMS actions only when
//! configured, and only Secrets Manager of this account allowed to invoke the function.
//!
//! The template is read with cfn-lint's decoder (the intrinsic-function tags become
//! `Fn::...` keys), from `.venv` (scripts/setup installs it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn template() -> Value {
    let python = root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg("-c")
        .arg(
            "import json, sys\nfrom cfnlint.decode import decode\n\
             t, errors = decode(sys.argv[1])\n\
             assert not errors, errors\n\
             print(json.dumps(t, default=str))",
        )
        .arg(root().join("deploy/sam/template.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} not runnable ({e}): run scripts/setup, which installs cfn-lint in .venv",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "decoding the template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `describe_db_clusters` -> `DescribeDBClusters` (IAM spells `DB` in capitals).
fn iam_action(op: &str) -> String {
    op.split('_')
        .map(|w| match w {
            "db" => "DB".to_string(),
            w => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// The operations `file` calls on the SDK client held in `field` (`self.<field>` then
/// `.<operation>()` on the next line, the code's one style of SDK call), as IAM actions of
/// `service`.
fn calls(file: &str, field: &str, service: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut ops = BTreeSet::new();
    for pair in lines.windows(2) {
        if pair[0].ends_with(&format!(".{field}"))
            && let Some(op) = pair[1].strip_prefix('.').and_then(|l| l.strip_suffix("()"))
        {
            ops.insert(format!("{service}:{}", iam_action(op)));
        }
    }
    assert!(!ops.is_empty(), "no SDK call found in {file}");
    ops
}

/// The crates the Lambda binaries are built from (`rotation-lambda` and what it depends on in
/// the workspace).
const FUNCTION_CRATES: [&str; 7] = [
    "rotation-core",
    "rotation-trust",
    "rotation-postgres",
    "rotation-redshift",
    "rotation-documentdb",
    "rotation-engines",
    "rotation-lambda",
];

/// Every SDK call the code makes, by the client that makes it.
struct Derived {
    store: BTreeSet<String>,
    rds: BTreeSet<String>,
    redshift: BTreeSet<String>,
}

fn derived() -> Derived {
    // No other source file of the functions' crates builds an SDK request (`.send()`).
    let known = [
        "crates/rotation-core/src/store/aws.rs",
        "crates/rotation-postgres/src/rds.rs",
        "crates/rotation-redshift/src/api.rs",
    ];
    for krate in FUNCTION_CRATES {
        for file in source_files(&root().join("crates").join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            let rel = file.strip_prefix(root()).unwrap().display().to_string();
            assert!(
                known.contains(&rel.as_str()) || !text.contains(".send()"),
                "{rel} sends AWS requests: add its calls to this test and the template"
            );
        }
    }
    let mut redshift = calls(
        "crates/rotation-redshift/src/api.rs",
        "redshift",
        "redshift",
    );
    redshift.extend(calls(
        "crates/rotation-redshift/src/api.rs",
        "serverless",
        "redshift-serverless",
    ));
    Derived {
        store: calls(
            "crates/rotation-core/src/store/aws.rs",
            "client",
            "secretsmanager",
        ),
        rds: calls("crates/rotation-postgres/src/rds.rs", "client", "rds"),
        redshift,
    }
}

fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(source_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// A role statement and the condition it exists under (`Fn::If`), if any.
#[derive(Debug)]
struct Statement {
    guard: Option<String>,
    sid: String,
    actions: BTreeSet<String>,
    resource: Value,
    condition: Value,
}

fn strings(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => [s.clone()].into(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn statements(t: &Value) -> Vec<Statement> {
    let policies = t["Resources"]["Role"]["Properties"]["Policies"]
        .as_array()
        .unwrap();
    assert_eq!(policies.len(), 1, "one inline policy");
    let mut out = vec![];
    for s in policies[0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
    {
        let (guard, body) = match s.get("Fn::If") {
            Some(branches) => {
                assert_eq!(
                    branches[2],
                    serde_json::json!({"Ref": "AWS::NoValue"}),
                    "a conditional statement has no other branch"
                );
                (
                    Some(branches[0].as_str().unwrap().to_string()),
                    &branches[1],
                )
            }
            None => (None, s),
        };
        assert_eq!(body["Effect"], "Allow");
        out.push(Statement {
            guard,
            sid: body["Sid"].as_str().unwrap().to_string(),
            actions: strings(&body["Action"]),
            resource: body["Resource"].clone(),
            condition: body.get("Condition").cloned().unwrap_or(Value::Null),
        });
    }
    out
}

fn by_sid<'a>(all: &'a [Statement], sid: &str) -> &'a Statement {
    all.iter()
        .find(|s| s.sid == sid)
        .unwrap_or_else(|| panic!("no statement {sid}"))
}

#[test]
fn the_role_grants_exactly_the_calls_the_code_makes() {
    let t = template();
    let all = statements(&t);
    let code = derived();

    for s in &all {
        for a in &s.actions {
            assert!(!a.contains('*'), "{}: wildcard action {a}", s.sid);
        }
    }

    // The rotated secrets: every store operation but GetRandomPassword, only on secrets whose
    // rotation names this function.
    let rotated = by_sid(&all, "RotatedSecrets");
    assert_eq!(rotated.guard, None);
    let mut store = code.store.clone();
    assert!(store.remove("secretsmanager:GetRandomPassword"));
    assert_eq!(
        rotated.actions, store,
        "rotated-secret actions vs the store's calls"
    );
    assert!(
        store.contains("secretsmanager:ListSecretVersionIds"),
        "recovery's listing"
    );
    let arn = &rotated.condition["StringEquals"]["secretsmanager:resource/AllowRotationLambdaArn"];
    assert!(
        arn["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.ends_with(":function:${FunctionName}")),
        "AllowRotationLambdaArn names this function: {arn}"
    );

    let random = by_sid(&all, "RandomPassword");
    assert_eq!(
        random.actions,
        ["secretsmanager:GetRandomPassword".to_string()].into()
    );
    assert_eq!(random.resource, "*");

    // The master: alternating users only, that secret only, read (and described, for managed
    // masters' tags).
    let master = by_sid(&all, "MasterSecret");
    assert_eq!(master.guard.as_deref(), Some("Alternating"));
    assert_eq!(
        master.resource,
        serde_json::json!({"Ref": "MasterSecretArn"})
    );
    assert_eq!(
        master.actions,
        [
            "secretsmanager:DescribeSecret".to_string(),
            "secretsmanager:GetSecretValue".to_string()
        ]
        .into()
    );

    // The engines' own APIs, only for the strategy that uses them.
    let rds = by_sid(&all, "RdsManagedMasterAndReplicas");
    assert_eq!(rds.guard.as_deref(), Some("AlternatingPostgres"));
    assert_eq!(
        rds.actions, code.rds,
        "RDS actions vs the RDS client's calls"
    );
    let redshift = by_sid(&all, "RedshiftManagedAdmin");
    assert_eq!(redshift.guard.as_deref(), Some("AlternatingRedshift"));
    assert_eq!(
        redshift.actions, code.redshift,
        "Redshift actions vs the Redshift clients' calls"
    );

    // KMS and ENIs only when configured; logs only for this function's group.
    assert_eq!(
        by_sid(&all, "SecretsKey").guard.as_deref(),
        Some("HasKmsKey")
    );
    assert_eq!(
        by_sid(&all, "VpcNetworkInterfaces").guard.as_deref(),
        Some("HasVpc")
    );
    let logs = by_sid(&all, "Logs");
    assert!(
        logs.resource["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.contains("/aws/lambda/${FunctionName}")),
        "{:?}",
        logs.resource
    );

    // Nothing else: every statement is one of the above.
    let sids: BTreeSet<&str> = all.iter().map(|s| s.sid.as_str()).collect();
    assert_eq!(
        sids,
        [
            "Logs",
            "RotatedSecrets",
            "RandomPassword",
            "MasterSecret",
            "RdsManagedMasterAndReplicas",
            "RedshiftManagedAdmin",
            "SecretsKey",
            "VpcNetworkInterfaces"
        ]
        .into()
    );
}

#[test]
fn only_secrets_manager_of_this_account_may_invoke_the_function() {
    let t = template();
    let p = &t["Resources"]["InvokePermission"]["Properties"];
    assert_eq!(p["Principal"], "secretsmanager.amazonaws.com");
    assert_eq!(p["Action"], "lambda:InvokeFunction");
    assert_eq!(
        p["SourceAccount"],
        serde_json::json!({"Ref": "AWS::AccountId"})
    );
    assert_eq!(
        p["SourceArn"],
        serde_json::json!({"Fn::If": ["HasSecret", {"Ref": "SecretArn"}, {"Ref": "AWS::NoValue"}]})
    );
    // The function refuses masters outside the one the role may read.
    let env = &t["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env[rotation_core::MASTER_ALLOW_LIST_ENV],
        serde_json::json!({"Fn::If": ["Alternating", {"Ref": "MasterSecretArn"}, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(
        env["ROTATION_STRATEGY"],
        serde_json::json!({"Ref": "Strategy"})
    );
}

#[test]
fn the_template_offers_every_lambda_binary() {
    let t = template();
    let offered = strings(&t["Parameters"]["Engine"]["AllowedValues"]);
    let bins: BTreeSet<String> = std::fs::read_dir(root().join("crates/rotation-lambda/src/bin"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(offered, bins);
}
