//! Single-use recovery codes: generation from caller-provided randomness, normalisation of what
//! the user types, keyed hashes for storage and a constant-time lookup.
//!
//! A code is 10 characters from Crockford's base32 alphabet (`0-9a-z` without `i l o u`),
//! shown as `xxxx-xxxx-xx`: 50 bits of entropy. Typing is forgiving the way Crockford
//! intended: case, spaces and hyphens are ignored, `o` reads as `0` and `i`/`l` as `1`.
//!
//! Stored hashes are HMAC-SHA-256 under a server-side key (for example the realm's pepper),
//! not a slow password hash: a slow hash only helps when the secret is guessable, and a
//! uniformly random 50-bit code is not; an attacker with a dump of the table but not the key
//! cannot test guesses at all, and with the key would still face 2^50 HMACs per code. A fast
//! hash also lets a login check every unspent code of the user without a bcrypt-sized delay.

use std::fmt;

use hmac_0_13::{Hmac, KeyInit, Mac};
use sha2_0_11::Sha256;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::MfaError;

/// Characters in a code (without the hyphens): 10 × 5 bits = 50 bits of entropy.
pub const RECOVERY_CODE_LEN: usize = 10;

// The entropy the issue asks for, checked at compile time.
const _: () = assert!(RECOVERY_CODE_LEN * 5 >= 50);

/// Random bytes needed per code: one per character, of which the low 5 bits are used (256 is
/// a multiple of 32, so every character is uniform).
pub const RECOVERY_CODE_RANDOM_BYTES: usize = RECOVERY_CODE_LEN;

/// Shortest accepted HMAC key: 128 bits.
pub const MIN_KEY_LEN: usize = 16;

/// Crockford's base32 alphabet, lower case: no `i`, `l`, `o` or `u`, so nothing reads as
/// something else.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Binds the hashes to their purpose, so the same key (the realm pepper) used elsewhere can
/// never produce a matching value for another kind of secret.
const DOMAIN: &[u8] = b"portcullis-mfa recovery code v1\0";

/// A recovery code in canonical form, shown to the user once. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode {
    /// The 10 canonical characters, without hyphens.
    chars: [u8; RECOVERY_CODE_LEN],
    /// `xxxx-xxxx-xx`, as shown.
    display: String,
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

impl fmt::Display for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl RecoveryCode {
    /// A code from random bytes the caller draws from a CSPRNG.
    pub fn from_random(random: [u8; RECOVERY_CODE_RANDOM_BYTES]) -> Self {
        Self::from_chars(random.map(|byte| ALPHABET[usize::from(byte & 0x1f)]))
    }

    /// Reads what a user typed: ASCII case, whitespace and hyphens are ignored, `o` is read as
    /// `0`, `i` and `l` as `1`. `None` unless exactly 10 alphabet characters remain.
    pub fn parse(input: &str) -> Option<Self> {
        let mut chars = [0u8; RECOVERY_CODE_LEN];
        let mut len = 0;
        for c in input.chars() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            let c = match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || len == RECOVERY_CODE_LEN {
                return None;
            }
            chars[len] = c as u8;
            len += 1;
        }
        (len == RECOVERY_CODE_LEN).then(|| Self::from_chars(chars))
    }

    fn from_chars(chars: [u8; RECOVERY_CODE_LEN]) -> Self {
        let mut display = String::with_capacity(RECOVERY_CODE_LEN + 2);
        for (i, &c) in chars.iter().enumerate() {
            if i == 4 || i == 8 {
                display.push('-');
            }
            display.push(char::from(c));
        }
        Self { chars, display }
    }

    /// The code as shown to the user: `xxxx-xxxx-xx`.
    pub fn as_str(&self) -> &str {
        &self.display
    }
}

/// `count` new codes (the realm's `mfa.recoveryCodes`), from `count ×`
/// [`RECOVERY_CODE_RANDOM_BYTES`] random bytes the caller draws from a CSPRNG.
///
/// # Errors
/// [`MfaError::RandomLength`] when `random` is not exactly that long: too few would repeat
/// bytes, and silently ignoring extra ones would hide a caller's mistake.
pub fn generate_recovery_codes(count: u32, random: &[u8]) -> Result<Vec<RecoveryCode>, MfaError> {
    let expected = (count as usize).saturating_mul(RECOVERY_CODE_RANDOM_BYTES);
    if random.len() != expected {
        return Err(MfaError::RandomLength {
            expected,
            got: random.len(),
        });
    }
    Ok(random
        .chunks_exact(RECOVERY_CODE_RANDOM_BYTES)
        .map(|chunk| {
            let mut bytes = [0u8; RECOVERY_CODE_RANDOM_BYTES];
            bytes.copy_from_slice(chunk);
            RecoveryCode::from_random(bytes)
        })
        .collect())
}

/// The stored form of a recovery code: HMAC-SHA-256 of its canonical characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecoveryCodeHash(pub [u8; 32]);

impl fmt::Debug for RecoveryCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCodeHash(..)")
    }
}

impl RecoveryCodeHash {
    /// The 32 bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A stored hash read back; `None` unless it is 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

/// The server-side key of the recovery-code hashes, for example the realm's pepper.
#[derive(Clone)]
pub struct RecoveryKey(Hmac<Sha256>);

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

impl RecoveryKey {
    /// The key from its bytes.
    ///
    /// # Errors
    /// [`MfaError::KeyTooShort`] under [`MIN_KEY_LEN`] bytes: an empty or tiny key would make
    /// the stored hashes as good as unkeyed.
    pub fn new(key: &[u8]) -> Result<Self, MfaError> {
        if key.len() < MIN_KEY_LEN {
            return Err(MfaError::KeyTooShort);
        }
        // HMAC takes keys of any length, so this never fails; the error is mapped all the same.
        Hmac::<Sha256>::new_from_slice(key)
            .map(Self)
            .map_err(|_| MfaError::KeyTooShort)
    }

    /// The hash to store for `code`.
    pub fn hash(&self, code: &RecoveryCode) -> RecoveryCodeHash {
        let mut mac = self.0.clone();
        mac.update(DOMAIN);
        mac.update(&code.chars);
        RecoveryCodeHash(mac.finalize().into_bytes().into())
    }

    /// Which of the user's unspent codes `input` is, as an index into `stored`: the caller
    /// then deletes (spends) that one, atomically, so it works once. `None` for anything else,
    /// including input that is not a well-formed code.
    ///
    /// Every stored hash is compared in constant time and the loop does not stop at a match,
    /// so timing tells neither how much of a hash matched nor which one did.
    pub fn find(&self, input: &str, stored: &[RecoveryCodeHash]) -> Option<usize> {
        let typed = self.hash(&RecoveryCode::parse(input)?);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, hash) in stored.iter().enumerate() {
            let equal = typed.0.ct_eq(&hash.0);
            index = u64::conditional_select(&index, &(i as u64), equal & !found);
            found |= equal;
        }
        bool::from(found).then_some(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecoveryKey {
        RecoveryKey::new(b"a realm pepper of some 32 bytes!").unwrap()
    }

    /// Bytes 0, 1, 2, ... as a stand-in for a CSPRNG's output.
    fn counting_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }

    #[test]
    fn codes_read_xxxx_xxxx_xx_from_the_unambiguous_alphabet() {
        let code = RecoveryCode::from_random([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(code.as_str(), "0123-4567-89");
        // Only the low 5 bits count: 32 + 31 = 63 is the last letter, z.
        let code = RecoveryCode::from_random([10, 17, 18, 19, 20, 25, 26, 31, 63, 255]);
        assert_eq!(code.as_str(), "ahjk-mstz-zz");
        assert_eq!(code.to_string(), code.as_str());
        for c in ['i', 'l', 'o', 'u'] {
            assert!(!ALPHABET.contains(&(c as u8)));
        }
    }

    #[test]
    fn each_code_carries_50_bits() {
        // 32 symbols (5 bits each, uniform from one random byte) times 10 characters.
        assert_eq!(ALPHABET.len(), 32);
        let mut seen = ALPHABET.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 32, "no repeated symbol");
        // Every byte value maps to a symbol, each symbol from exactly 8 byte values.
        let mut counts = [0u32; 32];
        for byte in 0..=255u8 {
            let code = RecoveryCode::from_random([byte; RECOVERY_CODE_RANDOM_BYTES]);
            let symbol = ALPHABET.iter().position(|&a| a == code.chars[0]).unwrap();
            counts[symbol] += 1;
        }
        assert!(counts.iter().all(|&n| n == 8), "{counts:?}");
    }

    #[test]
    fn the_realms_count_of_codes_is_generated_from_the_given_bytes() {
        let codes = generate_recovery_codes(10, &counting_bytes(100)).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].as_str(), "0123-4567-89");
        let mut distinct: Vec<&str> = codes.iter().map(RecoveryCode::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 10);
        assert_eq!(generate_recovery_codes(0, &[]).unwrap(), Vec::new());
    }

    #[test]
    fn the_wrong_amount_of_randomness_is_refused() {
        assert_eq!(
            generate_recovery_codes(10, &counting_bytes(99)),
            Err(MfaError::RandomLength {
                expected: 100,
                got: 99
            })
        );
        assert_eq!(
            generate_recovery_codes(1, &counting_bytes(11)),
            Err(MfaError::RandomLength {
                expected: 10,
                got: 11
            })
        );
    }

    #[test]
    fn typed_codes_are_normalised() {
        let code = RecoveryCode::parse("0123-4567-89").unwrap();
        for typed in [
            "0123456789",
            " 0123 4567 89 ",
            "0123-4567-89\n",
            "O123-4567-89", // letter O for zero
            "o123-4567-89",
            "0I23-4567-89", // letter I for one
            "0l23-4567-89", // letter l for one
            "01-23-45-67-89",
        ] {
            assert_eq!(
                RecoveryCode::parse(typed).as_ref(),
                Some(&code),
                "{typed:?}"
            );
        }
        let letters = RecoveryCode::parse("AHJK MSTZ ZZ").unwrap();
        assert_eq!(letters.as_str(), "ahjk-mstz-zz");
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "0123-4567-8",
            "0123-4567-890",
            "0123-4567-8u", // u is not in the alphabet
            "0123_4567_89",
            "0123-4567-8é",
            "０123-4567-89", // full-width zero
        ] {
            assert_eq!(RecoveryCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_code_is_found_by_index_among_the_stored_hashes() {
        let key = key();
        let codes = generate_recovery_codes(10, &counting_bytes(100)).unwrap();
        let stored: Vec<RecoveryCodeHash> = codes.iter().map(|c| key.hash(c)).collect();
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(key.find(code.as_str(), &stored), Some(i));
        }
        let typed = codes[7].as_str().to_uppercase().replace('-', " ");
        assert_eq!(key.find(&typed, &stored), Some(7));
    }

    #[test]
    fn a_spent_code_is_no_longer_found() {
        let key = key();
        let codes = generate_recovery_codes(3, &counting_bytes(30)).unwrap();
        let mut stored: Vec<RecoveryCodeHash> = codes.iter().map(|c| key.hash(c)).collect();
        let i = key.find(codes[1].as_str(), &stored).unwrap();
        stored.remove(i); // what the caller does when the code is used
        assert_eq!(key.find(codes[1].as_str(), &stored), None);
        assert_eq!(key.find(codes[2].as_str(), &stored), Some(1));
    }

    #[test]
    fn unknown_or_malformed_input_and_another_key_find_nothing() {
        let key = key();
        let codes = generate_recovery_codes(2, &counting_bytes(20)).unwrap();
        let stored: Vec<RecoveryCodeHash> = codes.iter().map(|c| key.hash(c)).collect();
        let other = RecoveryCode::from_random([9; RECOVERY_CODE_RANDOM_BYTES]);
        assert_eq!(key.find(other.as_str(), &stored), None);
        assert_eq!(key.find("not a code", &stored), None);
        assert_eq!(key.find(codes[0].as_str(), &[]), None);
        let other_key = RecoveryKey::new(b"another realm's pepper, 32 bytes").unwrap();
        assert_eq!(other_key.find(codes[0].as_str(), &stored), None);
    }

    #[test]
    fn the_hash_is_hmac_sha256_of_the_domain_and_the_canonical_code() {
        // Known answer computed independently:
        // import hmac, hashlib
        // hmac.new(b"a realm pepper of some 32 bytes!",
        //          b"portcullis-mfa recovery code v1\0" + b"0123456789", hashlib.sha256).hexdigest()
        let code = RecoveryCode::parse("0123-4567-89").unwrap();
        let hex: String = key()
            .hash(&code)
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "3c5ac60d857186e937edb98f84bb8d139e415552f7b00568bdc9bc35086cd0f2"
        );
        let stored = key().hash(&code);
        assert_eq!(
            RecoveryCodeHash::from_slice(stored.as_bytes()),
            Some(stored)
        );
        assert_eq!(RecoveryCodeHash::from_slice(&[0; 31]), None);
    }

    #[test]
    fn short_keys_are_refused_and_nothing_secret_is_debug_printed() {
        assert_eq!(
            RecoveryKey::new(&[0; 15]).err(),
            Some(MfaError::KeyTooShort)
        );
        let code = RecoveryCode::from_random([1; RECOVERY_CODE_RANDOM_BYTES]);
        assert_eq!(format!("{code:?}"), "RecoveryCode(..)");
        assert_eq!(format!("{:?}", key()), "RecoveryKey(..)");
        assert_eq!(format!("{:?}", key().hash(&code)), "RecoveryCodeHash(..)");
    }
}
