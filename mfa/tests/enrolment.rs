//! The enrolment and login flow through the public API only, as the auth server will drive it:
//! a secret from random bytes, the URI an app scans, a code computed from the secret the app
//! read out of that URI, and the step the replay guard records.

use portcullis_mfa::*;

/// What an authenticator app does with the URI: take the `secret` parameter, decode it.
fn secret_from_uri(uri: &str) -> Option<TotpSecret> {
    let query = uri.split_once('?')?.1;
    let secret = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))?;
    TotpSecret::from_base32(secret).ok()
}

#[test]
fn a_code_from_the_enrolment_uri_verifies_and_names_its_step_for_the_replay_guard() {
    let params = TotpParams::new(Algorithm::Sha1, 6, 30).unwrap();
    let secret = TotpSecret::generate(*b"\x8f\x01random bytes\xff\x00\x10\x20xy");
    let uri = otpauth_uri(&params, &secret, "Acme Corp", "alice@example.com").unwrap();
    assert!(qr_svg(&uri, "Scan with your authenticator app").is_ok());

    let app_secret = secret_from_uri(&uri).unwrap();
    let now = 1_767_225_601;
    let code = generate(&params, &app_secret, now);

    let first = verify(&params, &secret, &code, now).unwrap();
    assert_eq!(first, params.time_step(now));
    // The auth server stores `first` as the user's last used step (compare-and-set).
    assert!(accept(None, first));
    let last_used = Some(first);
    // The same code a few seconds later, on another replica: still a match, refused by the rule.
    let again = verify(&params, &secret, &code, now + 20).unwrap();
    assert_eq!(again, first);
    assert!(!accept(last_used, again));
    // The next code is accepted.
    let next = verify(
        &params,
        &secret,
        &generate(&params, &secret, now + 30),
        now + 30,
    )
    .unwrap();
    assert!(accept(last_used, next));
}

#[test]
fn recovery_codes_shown_once_then_each_works_once() {
    let key = RecoveryKey::new(b"realm pepper from the secrets dir").unwrap();
    let random: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
    let codes = generate_recovery_codes(10, &random).unwrap();
    let mut stored: Vec<RecoveryCodeHash> = codes.iter().map(|c| key.hash(c)).collect();
    // Stored as bytes and read back, as from a database row.
    let rows: Vec<Vec<u8>> = stored.iter().map(|h| h.as_bytes().to_vec()).collect();
    let from_rows: Vec<RecoveryCodeHash> = rows
        .iter()
        .map(|row| RecoveryCodeHash::from_slice(row).unwrap())
        .collect();
    assert_eq!(from_rows, stored);

    let typed = format!("  {}  ", codes[4].as_str().to_uppercase());
    let i = key.find(&typed, &stored).unwrap();
    assert_eq!(i, 4);
    stored.remove(i);
    assert_eq!(key.find(&typed, &stored), None);
}
