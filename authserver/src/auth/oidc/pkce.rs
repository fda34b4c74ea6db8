//! PKCE (RFC 7636) at the token endpoint: the verifier's syntax is checked before hashing
//! (§4.1), its S256 transform must equal the stored challenge (§4.6), and a verifier sent for a
//! code issued without a challenge is refused (a downgrade, RFC 9700 §4.8.2), as is a missing
//! verifier for a code with one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `verifier` is 43 to 128 unreserved characters (RFC 7636 §4.1).
fn well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether the verifier presented (if any) answers the challenge stored with the code (if
/// any).
pub fn verifies(challenge: Option<&str>, verifier: Option<&str>) -> bool {
    match (challenge, verifier) {
        (None, None) => true,
        (Some(challenge), Some(verifier)) if well_formed(verifier) => {
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            computed.as_bytes().ct_eq(challenge.as_bytes()).into()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies_and_anything_else_does_not() {
        assert!(verifies(Some(CHALLENGE), Some(VERIFIER)));
        assert!(!verifies(
            Some(CHALLENGE),
            Some(&VERIFIER.replace('d', "e"))
        ));
        assert!(!verifies(Some(CHALLENGE), None), "missing verifier");
        assert!(
            !verifies(None, Some(VERIFIER)),
            "downgrade: no challenge stored"
        );
        assert!(verifies(None, None));
    }

    #[test]
    fn a_verifier_of_the_wrong_length_or_alphabet_is_refused_before_hashing() {
        let short = "a".repeat(42);
        let long = "a".repeat(129);
        let spaced = format!("{} ", &VERIFIER[..43]);
        for verifier in [
            short.as_str(),
            long.as_str(),
            spaced.as_str(),
            "é".repeat(43).as_str(),
        ] {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            assert!(!verifies(Some(&challenge), Some(verifier)), "{verifier:?}");
        }
        let longest = "~".repeat(128);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(longest.as_bytes()));
        assert!(verifies(Some(&challenge), Some(&longest)));
    }
}
