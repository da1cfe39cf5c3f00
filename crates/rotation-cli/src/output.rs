//! Text and JSON output.

use rotation_core::plan::{CheckStatus, Plan};
use rotation_core::{AbortReport, RotationReport, SecretDescription, Stage};
use serde_json::json;

pub struct Output {
    pub json: bool,
}

pub fn describe_json(d: &SecretDescription) -> serde_json::Value {
    json!({
        "arn": d.arn,
        "name": d.name,
        "rotation_enabled": d.rotation_enabled,
        "versions": d.versions.iter().map(|(v, s)| (v.clone(), json!(s.labels()))).collect::<serde_json::Map<_, _>>(),
        "rotation_in_flight": d.rotation_in_flight(),
    })
}

/// Text safe for a terminal: control characters (escape sequences and line breaks included) are
/// shown escaped, so a secret name cannot move the cursor, recolour the screen or forge a line.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // Control characters, and the invisible ones that reorder or hide text (bidi
        // overrides and isolates, zero-width marks).
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn status_text(d: &SecretDescription) -> String {
    let mut s = format!(
        "secret {}\n  rotation enabled: {}\n",
        escape(&d.arn),
        match d.rotation_enabled {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not set (treated as yes)",
        }
    );
    let mut versions: Vec<_> = d
        .versions
        .iter()
        .filter(|(_, st)| !st.labels().is_empty())
        .collect();
    versions.sort_by_key(|(_, st)| {
        Stage::ALL
            .iter()
            .position(|x| st.has(*x))
            .unwrap_or(Stage::ALL.len())
    });
    for (v, st) in versions {
        s += &format!("  {}  {}\n", escape(v), escape(&st.labels().join(", ")));
    }
    match d.rotation_in_flight() {
        Some(v) => {
            s += &format!(
                "  rotation in flight: {} (rotate resume / rotate abort)\n",
                escape(v)
            )
        }
        None => s += "  no rotation in flight\n",
    }
    s
}

/// A plan with failed checks: the exit code.
#[derive(Debug, thiserror::Error)]
#[error("the plan has failed checks")]
pub struct PlanFailed(pub u8);

/// The exit code of a plan that failed: the worst of its failed checks' categories (3 refused,
/// 4 the secret or the store, 5 the database).
pub fn plan_exit_code(plan: &Plan) -> u8 {
    plan.checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .map(|c| match c.name {
            "rotation" => 3,
            "tls" | "login" | "master-login" | "rights" => 5,
            _ => 4,
        })
        .max()
        .unwrap_or(0)
}

/// The plan of a secret that cannot be read, or whose engine is unknown: one failed line
/// (`store` or `secret`), the rest skipped.
pub fn unreadable_plan(
    secret: &str,
    strategy: Option<rotation_core::Strategy>,
    e: &rotation_core::RotationError,
) -> Plan {
    use rotation_core::plan::Check;
    let name = match e {
        rotation_core::RotationError::Store { .. } => "store",
        _ => "secret",
    };
    let fix = match e.kind() {
        "SecretNotFound" => "check the secret's name or ARN, the region and --store",
        "SecretsManagerAccessDenied" => {
            "grant the role DescribeSecret and GetSecretValue on the secret (and kms:Decrypt on its key)"
        }
        "InvalidSecret" => {
            "correct the value: its engine key names the engine (rotate put SECRET engine=...)"
        }
        _ => "see docs/errors.md for this kind",
    };
    let mut checks = vec![Check {
        name,
        status: CheckStatus::Fail,
        detail: rotation_core::error_chain(e),
        kind: Some(e.kind().to_string()),
        fix: Some(fix.to_string()),
    }];
    for later in ["tls", "login", "rights"] {
        checks.push(Check {
            name: later,
            status: CheckStatus::Skip,
            detail: "needs a readable secret with a known engine".into(),
            kind: None,
            fix: None,
        });
    }
    Plan {
        secret: secret.to_string(),
        engine: "unknown",
        strategy: strategy.unwrap_or(rotation_core::Strategy::SingleUser),
        checks,
    }
}

impl Output {
    pub fn plan(&self, plan: &Plan) {
        if self.json {
            println!("{}", plan.to_json());
            return;
        }
        println!(
            "plan for {} ({}, {})",
            escape(&plan.secret),
            plan.engine,
            plan.strategy
        );
        for c in &plan.checks {
            let status = match c.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skip => "skip",
            };
            let kind = c
                .kind
                .as_ref()
                .map(|k| format!(" [{k}]"))
                .unwrap_or_default();
            println!("  {status}  {:<12} {}{kind}", c.name, escape(&c.detail));
            if let Some(fix) = &c.fix {
                println!("        {:<12} fix: {}", "", escape(fix));
            }
        }
        println!("{}", plan.summary());
    }

    pub fn report(&self, verb: &str, r: &RotationReport) {
        if self.json {
            let steps: Vec<_> = r
                .steps
                .iter()
                .map(|(s, o)| json!({"step": s.as_str(), "outcome": format!("{o:?}")}))
                .collect();
            println!(
                "{}",
                json!({"result": verb, "secret": r.secret, "version": r.token, "steps": steps})
            );
        } else {
            println!(
                "{verb} {} -> version {}",
                escape(&r.secret),
                escape(&r.token)
            );
            for (s, o) in &r.steps {
                println!("  {:<13} {o:?}", s.as_str());
            }
        }
    }

    pub fn abort(&self, r: &AbortReport) {
        if self.json {
            println!(
                "{}",
                json!({
                    "result": "aborted",
                    "secret": r.secret,
                    "version": r.token,
                    "restored_current_password": r.restored_with.is_some(),
                    "restored_with": r.restored_with.map(|c| format!("{c:?}")),
                    "current_verified": r.current_verified,
                    "left_behind": r.left_behind,
                })
            );
        } else {
            println!(
                "aborted rotation {} of {}",
                escape(&r.token),
                escape(&r.secret)
            );
            if let Some(via) = r.restored_with {
                println!(
                    "  the database password was set back to the AWSCURRENT value (logged in with the {via:?} credentials)"
                );
            }
            if r.current_verified {
                println!("  the AWSCURRENT credentials log in");
            }
            if let Some(left) = &r.left_behind {
                println!("  forced: {left}");
            }
        }
    }

    pub fn status(&self, d: &SecretDescription) {
        if self.json {
            println!("{}", describe_json(d));
        } else {
            print!("{}", status_text(d));
        }
    }
}

/// A failure whose result the command has printed already (with `--json`, its own JSON): only
/// its line on standard error follows.
#[derive(Debug)]
pub struct Reported(pub String);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

/// A failed command: `error [KIND]: message` on standard error, and with `--json` its JSON on
/// standard output too (`{"result": "failed", "kind", "error", "exit_code"}`, as a fleet run's
/// failed rows), so a script reading `--json` output always gets a result.
pub fn failure(json_out: bool, kind: &str, message: &str, code: u8) {
    match kind {
        "Usage" | "Error" => eprintln!("error: {}", escape(message)),
        _ => eprintln!("error [{kind}]: {}", escape(message)),
    }
    if json_out {
        println!(
            "{}",
            json!({"result": "failed", "kind": kind, "error": message, "exit_code": code})
        );
    }
}
