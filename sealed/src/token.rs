//! Sealing a secret into a Fernet token bound to its owner and purpose, opening it, and
//! re-encrypting it under the ring's first (active) key.

use std::fmt;

use zeroize::Zeroizing;

use crate::binding::{Binding, frame, unframe};
use crate::keyring::KeyRing;

/// The "current time" handed to the fernet crate when opening. At rest a token's timestamp
/// means nothing (see the crate docs: no TTL), but the crate always refuses a token stamped
/// more than 60 s after the time it is given. So it is given a time far beyond any real
/// timestamp, and small enough that the crate's `time + 60` cannot overflow: like Python's
/// `Fernet.decrypt(token)` without a ttl, the timestamp is not checked at all, and a token
/// written by a replica whose clock ran ahead (or by a test's fake clock) still opens.
const AT_REST_NOW: u64 = u64::MAX / 2;

/// Why a token does not open. Says which check failed; never a key or plaintext byte. The
/// bindings of a moved ciphertext are fields for the server's logs, and are not in the
/// `Display` text: the found one names another user. Map every variant to one generic error
/// at the HTTP boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    /// No key of the ring authenticates the token: a key missing from the ring, a tampered or
    /// truncated token, or no Fernet token at all.
    #[error("no key of the ring decrypts the ciphertext (wrong or missing key, or tampered)")]
    NoKeyDecrypts,
    /// A key authenticates the token but its plaintext is not this crate's framing (for
    /// example a token written by something else under the same key).
    #[error("the ciphertext decrypts but its plaintext is not sealed-secret framing: {reason}")]
    BadFraming {
        /// What is wrong with the framing.
        reason: &'static str,
    },
    /// The token is genuine but bound to another owner or purpose: it was copied or moved
    /// there. Refused, so one user's secret never opens as another's.
    #[error(
        "the ciphertext is sealed for another owner or purpose than the {expected}: moved or copied"
    )]
    MovedCiphertext {
        /// The binding the caller read it for.
        expected: Binding,
        /// The binding sealed inside it.
        found: Binding,
    },
}

impl SealedError {
    /// A stable snake_case reason for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            SealedError::NoKeyDecrypts => "no_key_decrypts",
            SealedError::BadFraming { .. } => "bad_framing",
            SealedError::MovedCiphertext { .. } => "moved_ciphertext",
        }
    }
}

/// An opened secret.
pub struct Opened {
    /// The secret, wiped from memory when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The position in the ring of the key that decrypted it (0: the encrypting key).
    pub key_index: usize,
    /// True when an older key decrypted it: [`reencrypt`] would write a new token.
    pub needs_reencrypt: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field(
                "plaintext",
                &format_args!("<{} bytes>", self.plaintext.len()),
            )
            .field("key_index", &self.key_index)
            .field("needs_reencrypt", &self.needs_reencrypt)
            .finish()
    }
}

/// Encrypts `secret` for `binding` under the ring's first key: a standard Fernet token
/// (base64url text) stamped `now_unix`, whose plaintext is the framing of
/// [`frame`]. The IV comes from the operating system's CSPRNG inside the fernet
/// crate, which offers no way to pass one in (and a reused CBC IV would leak equal prefixes).
pub fn seal(ring: &KeyRing, binding: Binding, secret: &[u8], now_unix: u64) -> String {
    let framed = frame(binding, secret);
    ring.current().encrypt_at_time(&framed, now_unix)
}

/// Decrypts `token` with each key of the ring in turn and checks that it was sealed for
/// `expected`. The token's timestamp is not checked (no TTL at rest).
pub fn open(ring: &KeyRing, expected: Binding, token: &str) -> Result<Opened, SealedError> {
    let (key_index, framed) = ring
        .fernets()
        .iter()
        .enumerate()
        .find_map(|(index, fernet)| {
            fernet
                .decrypt_at_time(token, None, AT_REST_NOW)
                .ok()
                .map(|plain| (index, Zeroizing::new(plain)))
        })
        .ok_or(SealedError::NoKeyDecrypts)?;
    let (found, secret) =
        unframe(&framed).map_err(|e| SealedError::BadFraming { reason: e.reason() })?;
    if found != expected {
        return Err(SealedError::MovedCiphertext { expected, found });
    }
    Ok(Opened {
        plaintext: Zeroizing::new(secret.to_vec()),
        key_index,
        needs_reencrypt: key_index != 0,
    })
}

/// A re-encrypted token and the token it replaces: the pair of a compare-and-swap.
///
/// Write it only where the column still holds `old`, in one statement:
///
/// ```sql
/// UPDATE mfa_totp SET secret = $new, secret_key_id = $active WHERE user_id = $owner AND secret = $old
/// ```
///
/// and skip the row when that updates 0 rows. Between the read and the write, a login may
/// have stored a rotated refresh token or the user re-enrolled TOTP; an unconditional
/// `UPDATE` would put the re-sealed *old* secret back over the new one.
#[derive(Clone, PartialEq, Eq)]
pub struct Reencrypted {
    /// The token as read; the `WHERE … = old` condition.
    pub old: String,
    /// The same secret sealed under the active key.
    pub new: String,
}

impl fmt::Debug for Reencrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are ciphertexts, but still nothing a log needs: their lengths suffice.
        f.debug_struct("Reencrypted")
            .field("old", &format_args!("<{} chars>", self.old.len()))
            .field("new", &format_args!("<{} chars>", self.new.len()))
            .finish()
    }
}

/// The token re-sealed under the ring's first (active) key when `token` is under another
/// key, `None` when it is already current. The token must open for `binding`: a moved
/// ciphertext is refused, not re-sealed in its new place. One row per call; the batching is
/// the caller's, and so is the compare-and-swap write described at [`Reencrypted`].
pub fn reencrypt(
    ring: &KeyRing,
    binding: Binding,
    token: &str,
    now_unix: u64,
) -> Result<Option<Reencrypted>, SealedError> {
    let opened = open(ring, binding, token)?;
    if !opened.needs_reencrypt {
        return Ok(None);
    }
    Ok(Some(Reencrypted {
        old: token.to_owned(),
        new: seal(ring, binding, &opened.plaintext, now_unix),
    }))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE;
    use uuid::Uuid;

    use super::*;
    use crate::binding::{FRAMING_HEADER_LEN, Purpose};

    const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const ALICE: Uuid = Uuid::from_u128(0x0192_e3a4_5b6c_7d8e_9fa0_b1c2_d3e4_f506);
    const BOB: Uuid = Uuid::from_u128(0x0192_e3a4_5b6c_7d8e_9fa0_b1c2_d3e4_f507);
    const SECRET: &[u8] = b"JBSWY3DPEHPK3PXP";

    /// Made by Python's `cryptography` (`Fernet._encrypt_from_parts`) with key bytes 0..=31,
    /// time `NOW`, IV bytes 0..=15, over the framing of (TOTP secret, `ALICE`, `SECRET`).
    /// Stored rows must keep opening: if this stops opening, the framing changed.
    const GOLDEN: &str = "gAAAAABpVbkAAAECAwQFBgcICQoLDA0ODxHxLjbu9q8lNI84C6lgJaPh07DYH3qy-RAr95actjdz\
                          6_U0TQSTX26NjmktYkbcl8YolxYEj7ys65P8wxjCDB4T-n7pN6RGQGJCJWKBQPIY";

    fn key(first: u8) -> Vec<u8> {
        (first..first + 32).collect()
    }

    fn ring(keys: &[Vec<u8>]) -> KeyRing {
        KeyRing::new(keys).unwrap()
    }

    fn totp(row: Uuid) -> Binding {
        Binding::new(Purpose::TotpSecret, row)
    }

    #[test]
    fn a_sealed_secret_opens_for_its_binding() {
        let ring = ring(&[key(0)]);
        for purpose in Purpose::ALL {
            for secret in [&b""[..], SECRET, &[0xFF; 300]] {
                let binding = Binding::new(purpose, ALICE);
                let token = seal(&ring, binding, secret, NOW);
                let opened = open(&ring, binding, &token).unwrap();
                assert_eq!(opened.plaintext.as_slice(), secret);
                assert_eq!(opened.key_index, 0);
                assert!(!opened.needs_reencrypt);
            }
        }
    }

    #[test]
    fn a_token_is_standard_fernet_stamped_now_with_a_fresh_iv() {
        let ring = ring(&[key(0)]);
        let token = seal(&ring, totp(ALICE), SECRET, NOW);
        let raw = URL_SAFE.decode(&token).unwrap();
        assert_eq!(raw[0], 0x80, "Fernet version byte");
        assert_eq!(raw[1..9], NOW.to_be_bytes());
        // AES-CBC with PKCS#7: the framing padded up to whole 16-byte blocks, then the MAC.
        let padded = (FRAMING_HEADER_LEN + SECRET.len()) / 16 * 16 + 16;
        assert_eq!(raw.len(), 1 + 8 + 16 + padded + 32);
        let again = seal(&ring, totp(ALICE), SECRET, NOW);
        let raw_again = URL_SAFE.decode(&again).unwrap();
        assert_ne!(raw[9..25], raw_again[9..25], "the IV is drawn afresh");
        assert_ne!(token, again);
    }

    #[test]
    fn a_ciphertext_swapped_between_two_users_is_refused() {
        let ring = ring(&[key(0)]);
        let alices = seal(&ring, totp(ALICE), b"alice's secret", NOW);
        let bobs = seal(&ring, totp(BOB), b"bob's secret", NOW);
        // Each row now holds the other's ciphertext.
        let err = open(&ring, totp(BOB), &alices).unwrap_err();
        assert_eq!(
            err,
            SealedError::MovedCiphertext {
                expected: totp(BOB),
                found: totp(ALICE)
            }
        );
        assert_eq!(err.reason(), "moved_ciphertext");
        assert!(matches!(
            open(&ring, totp(ALICE), &bobs),
            Err(SealedError::MovedCiphertext { .. })
        ));
        // The message names neither the secret nor the other user (it may reach a response);
        // the other user's id stays in the `found` field, for the server's logs.
        let text = err.to_string();
        assert!(
            !text.contains(&ALICE.to_string()) && !text.contains("alice's"),
            "{text}"
        );
        assert!(text.contains(&BOB.to_string()), "{text}");
    }

    #[test]
    fn a_totp_row_re_pointed_at_another_user_does_not_open_for_them() {
        // The attack of review S1: the attacker's own TOTP row gets `user_id = victim`. Opened
        // with the owner read from that row (the victim), the attacker's secret is refused.
        let ring = ring(&[key(0)]);
        let attackers_row = seal(&ring, totp(BOB), b"attacker's authenticator", NOW);
        let victim = ALICE;
        assert!(matches!(
            open(
                &ring,
                Binding::new(Purpose::TotpSecret, victim),
                &attackers_row
            ),
            Err(SealedError::MovedCiphertext { .. })
        ));
    }

    #[test]
    fn a_ciphertext_moved_to_another_column_of_the_same_row_is_refused() {
        let ring = ring(&[key(0)]);
        let access = Binding::new(Purpose::UpstreamAccessToken, ALICE);
        let refresh = Binding::new(Purpose::UpstreamRefreshToken, ALICE);
        let token = seal(&ring, access, b"gho_access", NOW);
        assert_eq!(
            open(&ring, refresh, &token).unwrap_err(),
            SealedError::MovedCiphertext {
                expected: refresh,
                found: access
            }
        );
        assert!(open(&ring, totp(ALICE), &token).is_err());
    }

    #[test]
    fn after_rotation_an_old_token_opens_and_reencrypts_under_the_new_key() {
        let old_ring = ring(&[key(32)]);
        let token = seal(&old_ring, totp(ALICE), SECRET, NOW);

        // The new key has been promoted to first (active); the old one stays to decrypt.
        let rotated = ring(&[key(0), key(32)]);
        let opened = open(&rotated, totp(ALICE), &token).unwrap();
        assert_eq!(opened.plaintext.as_slice(), SECRET);
        assert_eq!(opened.key_index, 1);
        assert!(opened.needs_reencrypt);

        let swap = reencrypt(&rotated, totp(ALICE), &token, NOW + 60)
            .unwrap()
            .expect("an old-key token is re-encrypted");
        // The compare-and-swap pair: the token read, and its replacement.
        assert_eq!(swap.old, token);
        assert_ne!(swap.new, token);
        assert_eq!(format!("{swap:?}").matches("chars>").count(), 2);
        let fresh = swap.new;
        let reopened = open(&rotated, totp(ALICE), &fresh).unwrap();
        assert_eq!(reopened.plaintext.as_slice(), SECRET);
        assert_eq!(reopened.key_index, 0);
        assert!(!reopened.needs_reencrypt);
        // The re-sealed token no longer needs the old key (the old token still does; keys are
        // never dropped: see the crate docs on rotation).
        let new_only = ring(&[key(0)]);
        assert_eq!(open(&new_only, totp(ALICE), &fresh).unwrap().key_index, 0);
        assert_eq!(
            open(&new_only, totp(ALICE), &token).unwrap_err(),
            SealedError::NoKeyDecrypts
        );
        // Already current: nothing to write.
        assert_eq!(reencrypt(&rotated, totp(ALICE), &fresh, NOW).unwrap(), None);
    }

    #[test]
    fn reencrypt_refuses_a_moved_ciphertext_instead_of_resealing_it_in_its_new_place() {
        let old_ring = ring(&[key(32)]);
        let alices = seal(&old_ring, totp(ALICE), SECRET, NOW);
        let rotated = ring(&[key(0), key(32)]);
        assert!(matches!(
            reencrypt(&rotated, totp(BOB), &alices, NOW),
            Err(SealedError::MovedCiphertext { .. })
        ));
    }

    #[test]
    fn a_token_under_keys_outside_the_ring_is_refused() {
        let token = seal(&ring(&[key(0)]), totp(ALICE), SECRET, NOW);
        let others = ring(&[key(64), key(96)]);
        let err = open(&others, totp(ALICE), &token).unwrap_err();
        assert_eq!(err, SealedError::NoKeyDecrypts);
        assert_eq!(err.reason(), "no_key_decrypts");
        assert_eq!(
            reencrypt(&others, totp(ALICE), &token, NOW).unwrap_err(),
            SealedError::NoKeyDecrypts
        );
    }

    #[test]
    fn a_tampered_truncated_or_garbage_token_is_refused() {
        let ring = ring(&[key(0)]);
        let token = seal(&ring, totp(ALICE), SECRET, NOW);
        let mut raw = URL_SAFE.decode(&token).unwrap();
        raw[30] ^= 0x01; // a ciphertext bit
        let tampered = URL_SAFE.encode(&raw);
        for bad in [
            &tampered[..],
            &token[..token.len() - 4],
            "",
            "not a token",
            "gAAAAA",
        ] {
            assert_eq!(
                open(&ring, totp(ALICE), bad).unwrap_err(),
                SealedError::NoKeyDecrypts,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_fernet_token_that_is_not_our_framing_is_bad_framing() {
        let ring = ring(&[key(0)]);
        // Genuine tokens under the ring's key, with plaintexts of the wrong shape.
        let short = ring.current().encrypt_at_time(b"hello", NOW);
        let mut v2 = frame(totp(ALICE), SECRET).to_vec();
        v2[0] = 0x02;
        let v2 = ring.current().encrypt_at_time(&v2, NOW);
        let mut unknown = frame(totp(ALICE), SECRET).to_vec();
        unknown[1] = 0x7F;
        let unknown = ring.current().encrypt_at_time(&unknown, NOW);
        for token in [short, v2, unknown] {
            let err = open(&ring, totp(ALICE), &token).unwrap_err();
            assert!(matches!(err, SealedError::BadFraming { .. }), "{err:?}");
            assert_eq!(err.reason(), "bad_framing");
        }
    }

    #[test]
    fn the_token_timestamp_is_not_checked_at_rest() {
        let ring = ring(&[key(0)]);
        // Long ago, and far ahead of this machine's clock (a skewed replica, a fake clock).
        for stamped in [0, NOW - 10 * 365 * 86_400, NOW + 50 * 365 * 86_400] {
            let token = seal(&ring, totp(ALICE), SECRET, stamped);
            assert_eq!(
                open(&ring, totp(ALICE), &token)
                    .unwrap()
                    .plaintext
                    .as_slice(),
                SECRET
            );
        }
    }

    #[test]
    fn the_golden_token_opens_to_the_documented_framing() {
        let ring = ring(&[key(0)]);
        let opened = open(&ring, totp(ALICE), GOLDEN).unwrap();
        assert_eq!(opened.plaintext.as_slice(), SECRET);
        // And through the fernet crate alone, the exact framed bytes.
        let framed = ring.current().decrypt_at_time(GOLDEN, None, NOW).unwrap();
        let expected =
            "01010192e3a45b6c7d8e9fa0b1c2d3e4f506".to_owned() + "4a425357593344504548504b33505850";
        let hex: String = framed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert!(open(&ring, totp(BOB), GOLDEN).is_err());
    }

    #[test]
    fn opened_debug_hides_the_plaintext() {
        let ring = ring(&[key(0)]);
        let token = seal(&ring, totp(ALICE), SECRET, NOW);
        let debug = format!("{:?}", open(&ring, totp(ALICE), &token).unwrap());
        assert_eq!(
            debug,
            "Opened { plaintext: <16 bytes>, key_index: 0, needs_reencrypt: false }"
        );
    }
}
