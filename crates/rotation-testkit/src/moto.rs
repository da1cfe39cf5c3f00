use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::external::{External, SECRETS_MANAGER_ENDPOINT_ENV, Turn};
use crate::tls::TestCa;
use crate::{TestkitError, free_port, run, venv_dir, wait_for_port, workspace_root};

/// A moto server on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Moto {
    /// None for a server named by `ROTATION_TEST_SECRETS_MANAGER_ENDPOINT`.
    child: Option<Child>,
    /// That server, and this test's turn on it.
    external: Option<(External, Turn)>,
    port: u16,
    log: PathBuf,
    /// The CA of its certificate, when it serves HTTPS ([`Moto::start_tls`]).
    ca: Option<TestCa>,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto. Lambda invocations are forwarded to `lambda_forward_url` when given (see
    /// `scripts/moto_server.py`).
    pub fn start_with(lambda_forward_url: Option<&str>) -> Result<Moto, TestkitError> {
        if lambda_forward_url.is_none()
            && let Some(external) = External::for_this_test(SECRETS_MANAGER_ENDPOINT_ENV)?
        {
            return Moto::external(external);
        }
        Moto::spawn(lambda_forward_url, false)
    }

    /// Starts moto serving HTTPS on 127.0.0.1, with a certificate of a CA of its own
    /// ([`Moto::ca_pem`]), as Secrets Manager is reached on AWS.
    pub fn start_tls() -> Result<Moto, TestkitError> {
        Moto::spawn(None, true)
    }

    fn spawn(lambda_forward_url: Option<&str>, tls: bool) -> Result<Moto, TestkitError> {
        let python = venv_dir().join("bin/python");
        if !python.exists() {
            return Err(TestkitError::Missing {
                what: "moto (Python virtual environment)",
                path: python.display().to_string(),
                hint: "run scripts/setup to create .venv with the pinned moto[server]",
            });
        }
        let script = workspace_root().join("scripts/moto_server.py");
        let dir = tempfile::Builder::new()
            .prefix("rotation-moto-")
            .tempdir()?;
        let log = dir.path().join("moto.log");
        let ca = match tls {
            true => Some(TestCa::generate(dir.path(), &["127.0.0.1"])?),
            false => None,
        };
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log)?)
                .stderr(fs::File::options().append(true).open(&log)?);
            if let Some(ca) = &ca {
                cmd.arg("-c")
                    .arg(&ca.server_pem)
                    .arg("-k")
                    .arg(&ca.server_key);
            }
            match lambda_forward_url {
                Some(url) => cmd.env("LAMBDA_FORWARD_URL", url),
                None => cmd.env_remove("LAMBDA_FORWARD_URL"),
            };
            let mut child = cmd.spawn()?;
            if wait_for_port(port, Duration::from_secs(20)) {
                return Ok(Moto {
                    child: Some(child),
                    external: None,
                    port,
                    log,
                    ca,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last = fs::read_to_string(&log).unwrap_or_default();
        }
        Err(TestkitError::Timeout {
            what: "moto server",
            secs: 20,
            detail: last,
        })
    }

    /// Starts moto with Lambda invocations going nowhere (the simple backend); with
    /// `ROTATION_TEST_SECRETS_MANAGER_ENDPOINT` set, hands out that server instead, reset
    /// (moto's `/moto-api/reset`; see [`Moto::is_external`]).
    pub fn start() -> Result<Moto, TestkitError> {
        Self::start_with(None)
    }

    fn external(external: External) -> Result<Moto, TestkitError> {
        let turn = external.take()?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-moto-")
            .tempdir()?;
        let moto = Moto {
            child: None,
            port: external.port,
            log: dir.path().join("moto.log"),
            ca: None,
            external: Some((external, turn)),
            _dir: dir,
        };
        // Reset, and Lambda without Docker as the testkit's own moto runs it (the moto image
        // would otherwise try to run a rotation function in Docker).
        moto.python(
            "import json, urllib.request\n\
             api = kw['endpoint_url'] + '/moto-api/'\n\
             urllib.request.urlopen(urllib.request.Request(api + 'reset', method='POST'), timeout=30).read()\n\
             body = json.dumps({'lambda': {'use_docker': False}}).encode()\n\
             urllib.request.urlopen(urllib.request.Request(api + 'config', data=body, method='POST', headers={'Content-Type': 'application/json'}), timeout=30).read()",
        )?;
        Ok(moto)
    }

    /// Whether this is a server the tests did not start
    /// (`ROTATION_TEST_SECRETS_MANAGER_ENDPOINT`).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// `http://127.0.0.1:PORT` (an external server's own host; `https` for
    /// [`Moto::start_tls`]).
    pub fn endpoint(&self) -> String {
        let host = crate::external::host_or_local(&self.external);
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.port)
    }

    /// The CA that issued its certificate, when it serves HTTPS.
    pub fn ca_pem(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.ca_pem.as_path())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// AWS SDK configuration for this server: region us-east-1, static test credentials, the
    /// server as endpoint (so no instance-metadata probing).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "testkit",
            ))
            .endpoint_url(self.endpoint())
            .load()
            .await
    }

    /// Environment for an SDK client or a child process to talk to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs a Python snippet with boto3 against this server; `sm`, `lam`, `iam`, `rds` are
    /// ready-made clients. Returns stdout. A call may wait up to 15 minutes for its answer and
    /// is never retried: RotateSecret answers only once the forwarded Lambda invocations are
    /// done; a retried RotateSecret would start a second rotation.
    pub fn python(&self, code: &str) -> Result<String, TestkitError> {
        let prelude = format!(
            "import boto3, json, sys\n\
             from botocore.config import Config\n\
             kw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test', config=Config(read_timeout=900, connect_timeout=10, retries={{'max_attempts': 1, 'mode': 'standard'}}))\n\
             sm = boto3.client('secretsmanager', **kw)\n\
             lam = boto3.client('lambda', **kw)\n\
             iam = boto3.client('iam', **kw)\n\
             rds = boto3.client('rds', **kw)\n",
            self.endpoint()
        );
        let mut python = Command::new(venv_dir().join("bin/python"));
        if let Some(ca) = self.ca_pem() {
            python.env("AWS_CA_BUNDLE", ca);
        }
        run(python.arg("-c").arg(format!("{prelude}{code}")))
    }

    /// Registers a Lambda function in moto (needed before RotateSecret) and returns its ARN.
    pub fn create_function(&self, name: &str) -> Result<String, TestkitError> {
        let out = self.python(&format!(
            "import io, zipfile\n\
             role = iam.create_role(RoleName='rot-{name}', AssumeRolePolicyDocument='{{}}')['Role']['Arn']\n\
             buf = io.BytesIO(); z = zipfile.ZipFile(buf, 'w'); z.writestr('bootstrap', 'x'); z.close()\n\
             fn = lam.create_function(FunctionName='{name}', Runtime='provided.al2023', Role=role, Handler='bootstrap', Code={{'ZipFile': buf.getvalue()}})\n\
             print(fn['FunctionArn'])\n"
        ))?;
        Ok(out.trim().to_string())
    }

    /// What Secrets Manager does before invoking a rotation function: RotateSecret of
    /// `secret_id` with `token` and the function `function_arn` (from
    /// [`create_function`](Self::create_function)), which makes the value-less `AWSPENDING`
    /// stub and, with moto's Lambda forwarding, invokes the function.
    pub async fn rotate_secret(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
        token: &str,
        function_arn: &str,
    ) -> Result<(), aws_sdk_secretsmanager::Error> {
        use aws_sdk_secretsmanager::types::RotationRulesType;
        client
            .rotate_secret()
            .secret_id(secret_id)
            .client_request_token(token)
            .rotation_lambda_arn(function_arn)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(7)
                    .build(),
            )
            .send()
            .await?;
        Ok(())
    }

    /// moto's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
