//! A local `GetRandomPassword`: the same character classes and rules, from the OS's CSPRNG.

use secrecy::SecretString;

use crate::policy::PasswordPolicy;

/// The OS random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

fn random_below(n: usize) -> Result<usize, RandomError> {
    // Rejection sampling over u32 to avoid modulo bias.
    let n32 = u32::try_from(n).expect("character set fits u32");
    let zone = u32::MAX - (u32::MAX % n32);
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| RandomError(e.to_string()))?;
        let v = u32::from_le_bytes(b);
        if v < zone {
            return Ok((v % n32) as usize);
        }
    }
}

/// Generates a password following `policy` as Secrets Manager does: characters drawn uniformly
/// from the included classes; with `require_each_included_type`, at least one of each non-empty
/// class.
pub fn generate(policy: &PasswordPolicy) -> Result<SecretString, RandomError> {
    let classes = policy.character_classes();
    let classes: Vec<&Vec<char>> = classes.iter().filter(|c| !c.is_empty()).collect();
    let all: Vec<char> = classes.iter().flat_map(|c| c.iter().copied()).collect();
    if all.is_empty() {
        return Err(RandomError("no characters left to draw from".into()));
    }
    let len = policy.length as usize;
    loop {
        let mut out = String::with_capacity(len);
        for _ in 0..len {
            out.push(all[random_below(all.len())?]);
        }
        let complete = !policy.require_each_included_type
            || len < classes.len()
            || classes
                .iter()
                .all(|class| out.chars().any(|ch| class.contains(&ch)));
        if complete {
            return Ok(SecretString::from(out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PasswordDefaults;
    use secrecy::ExposeSecret;

    #[test]
    fn honours_length_exclusions_and_classes() {
        let mut p = PasswordPolicy::defaults(&PasswordDefaults {
            exclude_characters: ":/@\"'\\",
            ..PasswordDefaults::BASE
        });
        p.length = 40;
        for _ in 0..200 {
            let pw = generate(&p).unwrap();
            let s = pw.expose_secret();
            assert_eq!(s.chars().count(), 40);
            assert!(!s.chars().any(|c| ":/@\"'\\".contains(c)), "{s}");
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.chars().any(|c| c.is_ascii_punctuation()));
        }
        p.exclude_punctuation = true;
        p.exclude_numbers = Some(true);
        p.exclude_uppercase = Some(true);
        let s = generate(&p).unwrap();
        assert!(s.expose_secret().chars().all(|c| c.is_ascii_lowercase()));
    }
}
