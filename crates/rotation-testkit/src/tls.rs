use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{TestkitError, run};

/// A certificate authority and one server certificate signed by it, made with `openssl`.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM).
    pub ca_pem: PathBuf,
    /// The server certificate (PEM).
    pub server_pem: PathBuf,
    /// The server key (PEM, unencrypted).
    pub server_key: PathBuf,
}

impl TestCa {
    /// Generates a CA and a server certificate for `names` (DNS names or IP addresses) in `dir`.
    pub fn generate(dir: &Path, names: &[&str]) -> Result<TestCa, TestkitError> {
        let ca = TestCa {
            ca_pem: dir.join("ca.pem"),
            server_pem: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let ext = dir.join("ext.cnf");
        let sans: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )?;
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args));
        let p = |p: &Path| p.display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=rotation-test-ca",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca.ca_pem),
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={}", names.first().copied().unwrap_or("localhost")),
            "-keyout",
            &p(&ca.server_key),
            "-out",
            &p(&csr),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca.ca_pem),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&ca.server_pem),
        ])?;
        Ok(ca)
    }
}
