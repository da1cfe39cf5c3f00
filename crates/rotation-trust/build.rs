//! Decodes the embedded RDS CA bundle (`data/rds-global-bundle.pem`) once, at build time, into
//! its certificates' DER one after another (`$OUT_DIR/rds-global-bundle.der`), so that a
//! function does not decode 165 KB of base64 at every start. A certificate section that is not
//! base64 fails the build; a test checks the result against the PEM read at run time.

use std::path::PathBuf;

const BUNDLE: &str = "data/rds-global-bundle.pem";

fn main() {
    println!("cargo:rerun-if-changed={BUNDLE}");
    let pem = std::fs::read_to_string(BUNDLE).expect("read the RDS bundle");
    let mut der = Vec::with_capacity(pem.len() * 3 / 4);
    let mut rest = pem.as_str();
    let mut count = 0;
    while let Some(at) = rest.find("-----BEGIN CERTIFICATE-----") {
        rest = &rest[at + "-----BEGIN CERTIFICATE-----".len()..];
        let end = rest
            .find("-----END CERTIFICATE-----")
            .expect("every certificate of the RDS bundle ends");
        decode(&rest[..end], &mut der);
        rest = &rest[end..];
        count += 1;
    }
    assert!(count > 0, "{BUNDLE} holds no certificate");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("rds-global-bundle.der"), der).expect("write the decoded bundle");
}

/// Standard base64 with padding, whitespace ignored.
fn decode(text: &str, out: &mut Vec<u8>) {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("{BUNDLE}: {:?} is not base64", c as char),
        }
    };
    let symbols: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        symbols.len().is_multiple_of(4),
        "{BUNDLE}: a certificate's base64 is cut short"
    );
    let quads = symbols.len() / 4;
    for (n, quad) in symbols.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        assert!(
            pad == 0 || (pad <= 2 && n + 1 == quads),
            "{BUNDLE}: padding inside a certificate's base64"
        );
        let bits = quad[..4 - pad]
            .iter()
            .fold(0u32, |acc, &c| (acc << 6) | value(c))
            << (6 * pad);
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
}
