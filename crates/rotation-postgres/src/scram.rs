//! SCRAM-SHA-256 verifiers computed on the client (W3): the server stores the verifier it would
//! have computed itself, and the plaintext password never travels in SQL, so it cannot show up
//! in server logs, `pg_stat_statements` or audit trails.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A verifier string `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. It allows
/// offline guessing of the password, so it is kept out of `Debug` output too.
pub struct ScramVerifier(SecretString);

impl ScramVerifier {
    /// The verifier text, for `ALTER ROLE ... PASSWORD '<verifier>'`.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramVerifier([redacted])")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with a 32-byte output (a single block): SCRAM's `Hi()`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// Computes the verifier for `password` with `salt` and `iterations`. Like the server, the
/// password is SASLprep-normalised when that succeeds and used as raw bytes otherwise.
pub fn verifier_with_salt(password: &SecretString, salt: &[u8], iterations: u32) -> ScramVerifier {
    let raw = password.expose_secret();
    let prepared = stringprep::saslprep(raw)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| raw.to_string());
    let salted = hi(prepared.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, b"Server Key");
    ScramVerifier(SecretString::from(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )))
}

/// Computes a verifier with a fresh random 16-byte salt.
pub fn verifier(password: &SecretString) -> Result<ScramVerifier, getrandom::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    Ok(verifier_with_salt(password, &salt, DEFAULT_ITERATIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_from_rfc7677() {
        // RFC 7677's example parameters; keys computed independently with Python's hashlib
        // (pbkdf2_hmac + hmac), and checked against PostgreSQL itself in the integration tests.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = verifier_with_salt(&SecretString::from("pencil"), &salt, 4096);
        let text = v.expose();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        // StoredKey = H(HMAC(SaltedPassword, "Client Key")) for RFC 7677's values.
        assert!(text.ends_with(
            "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        ), "{text}");
        assert!(!format!("{v:?}").contains("SCRAM"));
    }

    #[test]
    fn salts_differ() {
        let p = SecretString::from("x");
        assert_ne!(
            verifier(&p).unwrap().expose(),
            verifier(&p).unwrap().expose()
        );
    }
}
