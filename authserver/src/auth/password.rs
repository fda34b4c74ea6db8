//! The password policy: length after NFKC, character classes, strength estimate. Pure; the
//! breach check is in `breach`.

use portcullis_crds::realm::PasswordPolicy;
use unicode_normalization::UnicodeNormalization;

use super::Violation;

/// Longest accepted password, in characters after NFKC. Never truncated.
pub const MAX_LENGTH: usize = 128;

/// NFKC normalisation, so the same password typed on different keyboards hashes the same.
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

/// Every rule of `policy` the (normalised) password breaks. `user_inputs` (email, display
/// name) make passwords built from them weaker in the strength estimate.
pub fn check(
    field: &'static str,
    password: &str,
    policy: &PasswordPolicy,
    user_inputs: &[&str],
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let length = password.chars().count();
    let min = policy.min_length as usize;
    if length < min {
        violations.push(Violation::new(
            field,
            "password_too_short",
            format!("use at least {min} characters"),
        ));
    }
    if length > MAX_LENGTH {
        violations.push(Violation::new(
            field,
            "password_too_long",
            format!("use at most {MAX_LENGTH} characters"),
        ));
        // The estimator is slow on very long input and the password is refused anyway.
        return violations;
    }
    let classes = [
        password.chars().any(char::is_lowercase),
        password.chars().any(char::is_uppercase),
        password.chars().any(|c| c.is_numeric()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|present| **present)
    .count();
    let wanted = policy.character_classes as usize;
    if classes < wanted {
        violations.push(Violation::new(
            field,
            "password_missing_character_classes",
            format!("use at least {wanted} of: lowercase, uppercase, digits, symbols"),
        ));
    }
    if length > 0 && policy.min_strength > 0 {
        let score = u8::from(zxcvbn::zxcvbn(password, user_inputs).score());
        if u32::from(score) < policy.min_strength {
            violations.push(Violation::new(
                field,
                "password_too_weak",
                format!(
                    "too easy to guess (strength {score} of 4, {} needed)",
                    policy.min_strength
                ),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(password: &str) -> Vec<&'static str> {
        check(
            "password",
            &normalize(password),
            &PasswordPolicy::default(),
            &["alice@example.com"],
        )
        .into_iter()
        .map(|v| v.code)
        .collect()
    }

    #[test]
    fn a_long_mixed_unusual_password_passes() {
        assert_eq!(codes("Tangerine-Orbit-42-Quiet"), Vec::<&str>::new());
    }

    #[test]
    fn each_rule_has_its_own_code() {
        assert_eq!(codes("Ab1!"), ["password_too_short", "password_too_weak"]);
        assert!(codes(&"Ab1!".repeat(40)).contains(&"password_too_long"));
        assert_eq!(
            codes("tangerineorbitquietly"),
            ["password_missing_character_classes"]
        );
        assert_eq!(codes("Password1234!"), ["password_too_weak"]);
    }

    #[test]
    fn length_counts_characters_after_nfkc_not_bytes() {
        // 12 characters of 3 bytes each; NFKC keeps them 12 characters.
        let policy = PasswordPolicy {
            min_strength: 0,
            character_classes: 0,
            ..PasswordPolicy::default()
        };
        assert!(check("p", &normalize("ありがとうございます。よ"), &policy, &[]).is_empty());
        // The ligature "ﬃ" is one character but NFKC makes it three.
        assert_eq!(normalize("ﬃ").chars().count(), 3);
    }

    #[test]
    fn passwords_built_from_the_email_are_weak() {
        let policy = PasswordPolicy::default();
        let v = check(
            "p",
            "Alice@Example.com1",
            &policy,
            &["alice@example.com", "Alice"],
        );
        assert!(v.iter().any(|v| v.code == "password_too_weak"), "{v:?}");
    }
}
