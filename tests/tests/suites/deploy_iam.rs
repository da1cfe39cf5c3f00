//! The IAM of the SAM template (`deploy/sam/template.yaml`) and of the Terraform module
//! (`deploy/terraform`) grants exactly what the code calls: the
//! Secrets Manager, RDS and Redshift operations are derived from the code's SDK calls (the
//! store's client, the RDS client, the Redshift and Redshift Serverless clients), and the test
//! fails when the policy lacks one or grants more. It also holds the policy's shape: no `*`
//! action, the rotated secrets conditioned on `AllowRotationLambdaArn`, master access only for
//! alternating users and only on the master secret, the ENI and KMS actions only when
//! configured, and only Secrets Manager of this account allowed to invoke the function.
//!
//! The template is read with cfn-lint's decoder (the intrinsic-function tags become
//! `Fn::...` keys), the module with python-hcl2, both from `.venv` (scripts/setup installs
//! them); the same rules are checked on both.

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

/// Runs Python from `.venv` with `arg`; its standard output is JSON.
fn python_json(code: &str, arg: &Path) -> Value {
    let python = root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg("-c")
        .arg(code)
        .arg(arg)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} not runnable ({e}): run scripts/setup, which installs cfn-lint and python-hcl2 in .venv",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "reading {}: {}",
        arg.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn template() -> Value {
    python_json(
        "import json, sys\nfrom cfnlint.decode import decode\n\
         t, errors = decode(sys.argv[1])\n\
         assert not errors, errors\n\
         print(json.dumps(t, default=str))",
        &root().join("deploy/sam/template.yaml"),
    )
}

/// The Terraform module's policy statements, each with the `for_each` of its dynamic block
/// (none for a plain one), and its Lambda permission; strings unquoted.
fn terraform() -> Value {
    python_json(
        r#"import json, sys, hcl2
def u(x):
    if isinstance(x, str):
        return x[1:-1] if len(x) >= 2 and x[0] == '"' and x[-1] == '"' else x
    if isinstance(x, list):
        return [u(i) for i in x]
    if isinstance(x, dict):
        return {u(k): u(v) for k, v in x.items() if k != '__is_block__'}
    return x
d = u(hcl2.load(open(sys.argv[1] + '/main.tf')))
doc = [b['aws_iam_policy_document']['rotation'] for b in d['data'] if 'aws_iam_policy_document' in b and 'rotation' in b['aws_iam_policy_document']][0]
statements = [dict(guard=None, **st) for st in doc.get('statement', [])]
for dyn in doc.get('dynamic', []):
    body = dyn['statement']
    statements.append(dict(guard=body['for_each'], **body['content'][0]))
permission = [r['aws_lambda_permission']['secrets_manager'] for r in d['resource'] if 'aws_lambda_permission' in r][0]
print(json.dumps(dict(statements=statements, permission=permission, locals=d['locals'][0])))
"#,
        &root().join("deploy/terraform"),
    )
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
    let sites = call_sites(file, field, service);
    assert!(!sites.is_empty(), "no SDK call found in {file}");
    sites.into_iter().collect()
}

/// Every call site of [`calls`], repeated operations included.
fn call_sites(file: &str, field: &str, service: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut ops = vec![];
    for pair in lines.windows(2) {
        if pair[0].ends_with(&format!(".{field}"))
            && let Some(op) = pair[1].strip_prefix('.').and_then(|l| l.strip_suffix("()"))
        {
            ops.push(format!("{service}:{}", iam_action(op)));
        }
    }
    ops
}

/// Every request `file` sends is one the scan above found: as many call sites through
/// `fields` as `.send()`s (a call written in another style would be missed otherwise).
fn every_send_is_seen(file: &str, fields: &[&str]) {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let sends = text.matches(".send()").count();
    let seen: usize = fields.iter().map(|f| call_sites(file, f, "x").len()).sum();
    assert_eq!(
        seen, sends,
        "{file}: {sends} requests sent, {seen} SDK calls found by the scan"
    );
}

/// The crates the Lambda binaries are built from: `rotation-lambda` and, through the
/// `[dependencies]` of each `Cargo.toml`, every workspace crate it depends on (the built-in
/// engines through `rotation-engines`), so that a new engine's crate is scanned unasked.
fn function_crates() -> BTreeSet<String> {
    let mut todo = vec!["rotation-lambda".to_string()];
    let mut crates = BTreeSet::new();
    while let Some(krate) = todo.pop() {
        if !crates.insert(krate.clone()) {
            continue;
        }
        let manifest =
            std::fs::read_to_string(root().join("crates").join(&krate).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{krate}'s Cargo.toml: {e}"));
        let mut in_dependencies = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                // Dependencies written any other way would be missed: refused here.
                let other_table = line.starts_with("[dependencies.")
                    || (line.starts_with("[target.") && line.contains("dependencies"));
                assert!(
                    !other_table,
                    "{krate}'s Cargo.toml: {line}: this scan reads only [dependencies]"
                );
                in_dependencies = line == "[dependencies]";
            } else if in_dependencies
                // Optional dependencies are followed from rotation-lambda only (its `engines`
                // feature is the binaries'); elsewhere they serve features the binaries do not
                // enable (an engine's `testing`).
                && (krate == "rotation-lambda" || !line.contains("optional = true"))
                && let Some(name) = line.split(['.', ' ', '=']).next()
                && name.starts_with("rotation-")
                && root().join("crates").join(name).is_dir()
            {
                todo.push(name.to_string());
            }
        }
    }
    for krate in ["rotation-core", "rotation-trust", "rotation-rds"] {
        assert!(
            crates.contains(krate),
            "{krate} not found from rotation-lambda: {crates:?}"
        );
    }
    for engine in rotation_engines::BUILTIN {
        let krate = format!("rotation-{}", engine.name());
        assert!(
            crates.contains(&krate),
            "{krate} not found from rotation-lambda: {crates:?}"
        );
    }
    crates
}

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
        "crates/rotation-rds/src/lib.rs",
        "crates/rotation-redshift/src/api.rs",
    ];
    for krate in function_crates() {
        for file in source_files(&root().join("crates").join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            let rel = file.strip_prefix(root()).unwrap().display().to_string();
            assert!(
                known.contains(&rel.as_str()) || !text.contains(".send()"),
                "{rel} sends AWS requests: add its calls to this test and the template"
            );
        }
    }
    every_send_is_seen("crates/rotation-core/src/store/aws.rs", &["client"]);
    every_send_is_seen("crates/rotation-rds/src/lib.rs", &["client"]);
    every_send_is_seen(
        "crates/rotation-redshift/src/api.rs",
        &["redshift", "serverless"],
    );
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
        rds: calls("crates/rotation-rds/src/lib.rs", "client", "rds"),
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

/// The Terraform module's statements, their `for_each` named as the template's conditions.
fn terraform_statements(tf: &Value) -> Vec<Statement> {
    let guard = |g: &Value| -> Option<String> {
        let g = g.as_str()?;
        let name = match g {
            "${local.alternating ? [1] : []}" => "Alternating",
            r#"${local.alternating && contains(["rds-postgres", "rds-mysql"], var.engine) ? [1] : []}"# => {
                "AlternatingRds"
            }
            r#"${local.alternating && var.engine == "redshift" ? [1] : []}"# => {
                "AlternatingRedshift"
            }
            "${length(var.kms_key_arns) > 0 ? [1] : []}" => "HasKmsKey",
            "${length(var.subnet_ids) > 0 ? [1] : []}" => "HasVpc",
            other => panic!("unknown for_each {other}"),
        };
        Some(name.to_string())
    };
    tf["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            let resources = strings(&st["resources"]);
            assert_eq!(resources.len(), 1, "{st}");
            Statement {
                guard: guard(&st["guard"]),
                sid: st["sid"].as_str().unwrap().to_string(),
                actions: strings(&st["actions"]),
                resource: Value::String(resources.into_iter().next().unwrap()),
                condition: st.get("condition").cloned().unwrap_or(Value::Null),
            }
        })
        .collect()
}

/// The rules both forms follow; `master`, `key` and `log_group` are how each names the master
/// secrets, the KMS keys and the function's log group.
fn check_role(all: &[Statement], master: &Value, key: &Value, log_group: &Value) {
    let code = derived();
    for s in all {
        for a in &s.actions {
            assert!(!a.contains('*'), "{}: wildcard action {a}", s.sid);
        }
    }
    let rotated = by_sid(all, "RotatedSecrets");
    assert_eq!(rotated.guard, None);
    assert_eq!(rotated.resource, "*");
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
    assert!(
        rotated
            .condition
            .to_string()
            .contains("secretsmanager:resource/AllowRotationLambdaArn"),
        "the rotated secrets are those whose rotation names this function: {}",
        rotated.condition
    );

    let random = by_sid(all, "RandomPassword");
    assert_eq!(random.guard, None);
    assert_eq!(
        random.actions,
        ["secretsmanager:GetRandomPassword".to_string()].into()
    );
    assert_eq!(random.resource, "*");

    let m = by_sid(all, "MasterSecret");
    assert_eq!(m.guard.as_deref(), Some("Alternating"));
    assert_eq!(&m.resource, master);
    assert_eq!(
        m.actions,
        [
            "secretsmanager:DescribeSecret".to_string(),
            "secretsmanager:GetSecretValue".to_string()
        ]
        .into()
    );

    let rds = by_sid(all, "RdsManagedMasterAndReplicas");
    assert_eq!(rds.guard.as_deref(), Some("AlternatingRds"));
    assert_eq!(
        rds.actions, code.rds,
        "RDS actions vs the RDS client's calls"
    );
    let redshift = by_sid(all, "RedshiftManagedAdmin");
    assert_eq!(redshift.guard.as_deref(), Some("AlternatingRedshift"));
    assert_eq!(
        redshift.actions, code.redshift,
        "Redshift actions vs the Redshift clients' calls"
    );
    let kms = by_sid(all, "SecretsKey");
    assert_eq!(kms.guard.as_deref(), Some("HasKmsKey"));
    assert_eq!(
        kms.actions,
        ["kms:Decrypt".to_string(), "kms:GenerateDataKey".to_string()].into()
    );
    assert_eq!(&kms.resource, key);
    assert!(
        kms.condition.to_string().contains("kms:ViaService"),
        "the keys only through Secrets Manager: {}",
        kms.condition
    );
    let vpc = by_sid(all, "VpcNetworkInterfaces");
    assert_eq!(vpc.guard.as_deref(), Some("HasVpc"));
    // What AWSLambdaVPCAccessExecutionRole grants for a function's network interfaces.
    assert_eq!(
        vpc.actions,
        [
            "ec2:AssignPrivateIpAddresses",
            "ec2:CreateNetworkInterface",
            "ec2:DeleteNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSubnets",
            "ec2:UnassignPrivateIpAddresses",
        ]
        .map(String::from)
        .into()
    );
    let logs = by_sid(all, "Logs");
    assert_eq!(
        &logs.resource, log_group,
        "logs of this function's group only"
    );
    assert_eq!(
        logs.actions,
        [
            "logs:CreateLogStream".to_string(),
            "logs:PutLogEvents".to_string()
        ]
        .into(),
        "no CreateLogGroup: the deployment creates the group with its retention"
    );
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
        .into(),
        "nothing else is granted"
    );
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
    check_role(
        &all,
        &serde_json::json!({"Ref": "MasterSecretArns"}),
        &serde_json::json!({"Ref": "KmsKeyArns"}),
        &serde_json::json!({"Fn::Sub": "${LogGroup.Arn}"}),
    );
    let group = &t["Resources"]["LogGroup"]["Properties"];
    assert_eq!(
        group["LogGroupName"],
        serde_json::json!({"Fn::Sub": "/aws/lambda/${FunctionName}"})
    );
    assert_eq!(
        group["RetentionInDays"],
        serde_json::json!({"Ref": "LogRetentionDays"})
    );
    let arn = &by_sid(&all, "RotatedSecrets").condition["StringEquals"]["secretsmanager:resource/AllowRotationLambdaArn"];
    assert!(
        arn["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.ends_with(":function:${FunctionName}")),
        "AllowRotationLambdaArn names this function: {arn}"
    );
}

#[test]
fn the_terraform_module_grants_the_same() {
    let tf = terraform();
    let all = terraform_statements(&tf);
    check_role(
        &all,
        &Value::String("${var.master_secret_arns}".into()),
        &Value::String("${var.kms_key_arns}".into()),
        &Value::String("${aws_cloudwatch_log_group.rotation.arn}:*".into()),
    );
    let rotated = &by_sid(&all, "RotatedSecrets").condition;
    assert_eq!(rotated[0]["test"], "StringEquals", "{rotated}");
    assert_eq!(
        rotated[0]["values"],
        serde_json::json!(["${local.function_arn}"])
    );
    assert!(
        tf["locals"]["function_arn"]
            .as_str()
            .is_some_and(|s| s.ends_with(":function:${var.function_name}")),
        "{}",
        tf["locals"]
    );
    let p = &tf["permission"];
    assert_eq!(p["principal"], "secretsmanager.amazonaws.com");
    assert_eq!(p["action"], "lambda:InvokeFunction");
    assert_eq!(
        p["source_account"],
        "${data.aws_caller_identity.current.account_id}"
    );
    assert_eq!(
        p["source_arn"],
        r#"${var.invoke_source_arn != "" ? var.invoke_source_arn : (var.secret_arn != "" ? var.secret_arn : null)}"#
    );
    let env = tf["locals"]["environment"].as_str().unwrap();
    let env: String = env.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        env.contains(
            r#"ALLOWED_MASTER_SECRETS = local.alternating ? join(",", var.master_secret_arns)"#
        ),
        "the function refuses masters outside those the role may read: {env}"
    );
    assert!(env.contains("ROTATION_ENGINE = var.engine"), "{env}");
    for var in settings_env() {
        assert!(
            env.contains(&format!("{var} = ")),
            "the module offers {var}: {env}"
        );
    }
}

/// Every variable a built-in engine's function reads, besides the runtime's.
fn settings_env() -> BTreeSet<&'static str> {
    rotation_engines::BUILTIN
        .iter()
        .flat_map(|e| e.settings_env())
        .collect()
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
        serde_json::json!({"Fn::If": ["HasSourcePattern", {"Ref": "InvokeSourceArn"},
            {"Fn::If": ["HasSecret", {"Ref": "SecretArn"}, {"Ref": "AWS::NoValue"}]}]})
    );
    // The function refuses masters outside those the role may read.
    let env = &t["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env[rotation_core::MASTER_ALLOW_LIST_ENV],
        serde_json::json!({"Fn::If": ["Alternating", {"Fn::Join": [",", {"Ref": "MasterSecretArns"}]}, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(
        env["ROTATION_STRATEGY"],
        serde_json::json!({"Ref": "Strategy"})
    );
    assert_eq!(env["ROTATION_ENGINE"], serde_json::json!({"Ref": "Engine"}));
    let offered: BTreeSet<&str> = env
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let read: BTreeSet<&str> = settings_env();
    assert_eq!(
        offered, read,
        "the template offers every setting the functions read"
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
    let functions: BTreeSet<String> = rotation_engines::BUILTIN
        .into_iter()
        .map(|e| e.function_name.to_string())
        .collect();
    assert_eq!(
        offered, functions,
        "ROTATION_ENGINE takes the template's Engine"
    );
}
