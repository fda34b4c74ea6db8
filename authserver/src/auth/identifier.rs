//! Email addresses as login identifiers: validation and the canonical form that keys accounts,
//! lockouts and rate limits whether or not the account exists.

use unicode_normalization::UnicodeNormalization;

use super::Violation;

/// The canonical form of an email address: trimmed, NFKC-normalised, lowercased. Fails with a
/// violation of `field` unless it is a plain addr-spec (RFC 5322 dot-atom `local@domain`, with
/// a DNS host name as domain): no display names, quoted strings, comments or address literals,
/// so what is validated is exactly where mail goes.
pub fn canonical_email(field: &'static str, email: &str) -> Result<String, Violation> {
    let canonical: String = email.trim().nfkc().collect::<String>().to_lowercase();
    let invalid = || Violation::new(field, "invalid_email", "not a valid email address");
    if canonical.len() > 254 {
        return Err(invalid());
    }
    let (local, domain) = canonical.split_once('@').ok_or_else(invalid)?;
    if is_dot_atom(local) && local.len() <= 64 && is_host_name(domain) {
        Ok(canonical)
    } else {
        Err(invalid())
    }
}

/// RFC 5322 `atext` outside letters and digits.
const ATEXT_SYMBOLS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Dot-separated runs of `atext`, none empty.
fn is_dot_atom(text: &str) -> bool {
    text.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ATEXT_SYMBOLS.contains(c))
    })
}

/// At least two labels of letters, digits and inner hyphens, at most 63 characters each, and a
/// top-level label that is not all digits (that would be an IP address).
fn is_host_name(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_width_and_spaces_do_not_make_a_new_identifier() {
        assert_eq!(
            canonical_email("email", "  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        // Fullwidth letters normalise under NFKC.
        assert_eq!(
            canonical_email("email", "ａlice@example.com").unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn dot_atom_addresses_are_accepted() {
        for good in [
            "o'brien+tag@sub.example.co.uk",
            "x@a-b.io",
            "first.last@example.com",
            "a!#$%&*=?^_`{|}~-b@example.org",
        ] {
            assert!(canonical_email("email", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn implausible_addresses_are_refused() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@example.com",
            "a@b@example.com",
            "a@-x.com",
            "a<b@evil.com>",
            "Bob <bob@example.com>",
            "\"a\"@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a@example..com",
            "a@exa_mple.com",
            "a@example.123",
            "a(b)@example.com",
            "a,b@example.com",
            "a@[127.0.0.1]",
            "a@example.com.",
        ] {
            let v = canonical_email("email", bad).unwrap_err();
            assert_eq!(v.code, "invalid_email", "{bad}");
        }
    }
}
