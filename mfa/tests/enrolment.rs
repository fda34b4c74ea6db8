//! The enrolment flow through the public API only, as the auth server will drive it: a secret
//! from random bytes, the URI an app scans, and the codes the app computes from the secret it
//! read out of that URI. Checking codes is the store's (`tests/store.rs`): the pure check is
//! crate-private, so the server cannot check a code without recording its step.

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
fn the_app_reading_the_enrolment_uri_computes_the_codes_of_the_enrolled_secret() {
    let params = TotpParams::new(Algorithm::Sha1, 6, 30).unwrap();
    let secret = TotpSecret::generate(*b"\x8f\x01random bytes\xff\x00\x10\x20xy");
    let uri = otpauth_uri(&params, &secret, "Acme Corp", "alice@example.com").unwrap();
    assert!(qr_svg(&uri, "Scan with your authenticator app").is_ok());

    let app_secret = secret_from_uri(&uri).unwrap();
    assert_eq!(app_secret.as_bytes(), secret.as_bytes());
    for now in (1_767_225_601..).step_by(30).take(4) {
        assert_eq!(
            *generate(&params, &app_secret, now),
            *generate(&params, &secret, now)
        );
    }
    // The replay rule the store applies to the matched step: forward only.
    let first = params.time_step(1_767_225_601);
    assert!(accept(None, first));
    assert!(!accept(Some(first), first));
    assert!(accept(Some(first), params.time_step(1_767_225_631)));
}

#[test]
fn recovery_codes_stored_as_versioned_rows_each_work_once() {
    let (realm, user) = ("acme", "0b8f3a52-5c1e-4d7a-9f0e-2a6b1c3d4e5f");
    let v1 = RecoveryKey::new(1, b"realm pepper from the secrets dir").unwrap();
    let ring = RecoveryKeyRing::new(vec![v1.clone()]).unwrap();
    let random: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
    let codes = generate_recovery_codes(10, &random).unwrap();
    // Stored as (version, digest) rows and read back, as from a database.
    let rows: Vec<(u32, Vec<u8>)> = codes
        .iter()
        .map(|c| ring.hash(realm, user, c))
        .map(|h| (h.version(), h.digest().to_vec()))
        .collect();
    let read = |rows: &[(u32, Vec<u8>)]| -> Vec<RecoveryCodeHash> {
        rows.iter()
            .map(|(v, d)| RecoveryCodeHash::from_parts(*v, d).unwrap())
            .collect()
    };

    // The pepper rotates between issuing and using the codes.
    let v2 = RecoveryKey::new(2, b"the next realm pepper, 32 bytes!").unwrap();
    let ring = RecoveryKeyRing::new(vec![v2, v1]).unwrap();

    let typed = format!("  {}  ", codes[4].as_str().to_uppercase());
    let spent = ring.find(realm, user, &typed, &read(&rows)).unwrap();
    assert_eq!(spent.version(), 1);
    // The spend: delete the row by value; exactly one row goes.
    let mut rows = rows;
    let before = rows.len();
    rows.retain(|(v, d)| !(*v == spent.version() && d[..] == spent.digest()[..]));
    assert_eq!(before - rows.len(), 1);
    assert_eq!(ring.find(realm, user, &typed, &read(&rows)), None);
}
