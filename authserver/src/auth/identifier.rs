//! Email addresses as login identifiers: validation and the canonical form that keys accounts,
//! lockouts and rate limits whether or not the account exists.

use unicode_normalization::UnicodeNormalization;

use super::Violation;

/// The canonical form of an email address: trimmed, NFKC-normalised, lowercased. Fails with a
/// violation of `field` when it is not a plausible address.
pub fn canonical_email(field: &'static str, email: &str) -> Result<String, Violation> {
    let canonical: String = email.trim().nfkc().collect::<String>().to_lowercase();
    let invalid = || Violation::new(field, "invalid_email", "not a valid email address");
    if canonical.is_empty() || canonical.len() > 254 {
        return Err(invalid());
    }
    if canonical
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = canonical.rsplit_once('@').ok_or_else(invalid)?;
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || !domain.contains('.')
        || !labels_ok
    {
        return Err(invalid());
    }
    Ok(canonical)
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
        ] {
            let v = canonical_email("email", bad).unwrap_err();
            assert_eq!(v.code, "invalid_email", "{bad}");
        }
    }
}
