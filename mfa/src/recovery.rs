//! Single-use recovery codes: generation from caller-provided randomness, normalisation of what
//! the user types, keyed hashes for storage and a constant-time lookup.
//!
//! A code is 10 characters from Crockford's base32 alphabet (`0-9a-z` without `i l o u`),
//! shown as `xxxx-xxxx-xx`: 50 bits of entropy. Typing is forgiving the way Crockford
//! intended: case, spaces and hyphens are ignored, `o` reads as `0` and `i`/`l` as `1`.
//!
//! Stored hashes are HMAC-SHA-256, bound to the realm and the user, under a key derived for
//! this purpose from a versioned server-side key (for example the realm's pepper; see
//! [`RecoveryKeyRing`]), not a slow password hash: a slow hash only helps when the secret is guessable, and a
//! uniformly random 50-bit code is not; an attacker with a dump of the table but not the key
//! cannot test guesses at all, and with the key would still face 2^50 HMACs per code. A fast
//! hash also lets a login check every unspent code of the user without a bcrypt-sized delay.

use std::fmt;

use hmac_0_13::{Hmac, KeyInit, Mac};
use sha2_0_11::Sha256;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

use crate::MfaError;

/// Characters in a code (without the hyphens): 10 × 5 bits = 50 bits of entropy.
pub const RECOVERY_CODE_LEN: usize = 10;

// 50 bits, the design choice the module doc argues from; a regression guard, checked at
// compile time.
const _: () = assert!(RECOVERY_CODE_LEN * 5 >= 50);

/// Random bytes needed per code: one per character, of which the low 5 bits are used (256 is
/// a multiple of 32, so every character is uniform).
pub const RECOVERY_CODE_RANDOM_BYTES: usize = RECOVERY_CODE_LEN;

/// Shortest accepted HMAC key: 128 bits.
pub const MIN_KEY_LEN: usize = 16;

/// Crockford's base32 alphabet, lower case: no `i`, `l`, `o` or `u`, so nothing reads as
/// something else.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The label of the key derived for recovery-code hashes from the caller's key: the same key
/// (the realm pepper) used elsewhere can then never produce a matching value.
const PURPOSE: &[u8] = b"portcullis-recovery-v1";

/// A recovery code in canonical form, shown to the user once. `Debug` does not show it, and it
/// is wiped when dropped. `PartialEq` is not constant-time: compare stored codes with
/// [`RecoveryKeyRing::find`].
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode {
    /// The 10 canonical characters, without hyphens.
    chars: [u8; RECOVERY_CODE_LEN],
    /// `xxxx-xxxx-xx`, as shown.
    display: String,
}

impl Drop for RecoveryCode {
    fn drop(&mut self) {
        self.chars.zeroize();
        self.display.zeroize();
    }
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
    /// `0`, `i` and `l` as `1`. `None` unless exactly 10 alphabet characters remain. The
    /// Unicode dashes that copying from a PDF or iOS smart punctuation put in place of `-`
    /// (U+2010 to U+2015, U+2212) count as hyphens.
    pub fn parse(input: &str) -> Option<Self> {
        let mut chars = [0u8; RECOVERY_CODE_LEN];
        let mut len = 0;
        for c in input.chars() {
            if c.is_whitespace() || matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}') {
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
/// [`MfaError::DuplicateRecoveryCode`] when two codes of the set are equal (about 2^-44 for
/// ten codes from a CSPRNG): the caller draws new bytes, since a duplicate would work twice.
pub fn generate_recovery_codes(count: u32, random: &[u8]) -> Result<Vec<RecoveryCode>, MfaError> {
    let expected = (count as usize).saturating_mul(RECOVERY_CODE_RANDOM_BYTES);
    if random.len() != expected {
        return Err(MfaError::RandomLength {
            expected,
            got: random.len(),
        });
    }
    let codes: Vec<RecoveryCode> = random
        .chunks_exact(RECOVERY_CODE_RANDOM_BYTES)
        .map(|chunk| {
            let mut bytes = [0u8; RECOVERY_CODE_RANDOM_BYTES];
            bytes.copy_from_slice(chunk);
            RecoveryCode::from_random(bytes)
        })
        .collect();
    for (i, code) in codes.iter().enumerate() {
        if codes.iter().take(i).any(|earlier| earlier == code) {
            return Err(MfaError::DuplicateRecoveryCode);
        }
    }
    Ok(codes)
}

/// The stored form of a recovery code: the version of the key that made it and the
/// HMAC-SHA-256 digest (see [`RecoveryKeyRing::hash`]). The auth server stores both, for
/// example as two columns, and spends a code by marking its row, found by value, as used.
///
/// `PartialEq` is not constant-time; that is harmless for keyed digests, but look codes up with
/// [`RecoveryKeyRing::find`], never with `==` or `contains`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecoveryCodeHash {
    version: u32,
    digest: [u8; 32],
}

impl fmt::Debug for RecoveryCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodeHash(v{}, ..)", self.version)
    }
}

impl RecoveryCodeHash {
    /// A stored hash read back: its key version and its 32 digest bytes; `None` unless the
    /// digest is 32 bytes.
    pub fn from_parts(version: u32, digest: &[u8]) -> Option<Self> {
        let digest = digest.try_into().ok()?;
        Some(Self { version, digest })
    }

    /// The version of the key that made this hash, to be stored with it.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The 32 bytes to store.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// One version of the server-side key of the recovery-code hashes, for example the realm's
/// pepper of that version. Only a key derived from it for this purpose is kept.
///
/// The version is stored with every hash and names the key for as long as any hash made with
/// it exists: it must be an explicit, stable number that the operator gives with the key (for
/// example from a `VERSION:` prefix, or a fixed table from pepper version names to numbers),
/// never a key's position in a list, which shifts when a key is added in front and silently
/// voids every stored code. [`crate::PgMfaStore::unknown_recovery_key_versions`] finds stored
/// versions a ring lacks.
#[derive(Clone)]
pub struct RecoveryKey {
    version: u32,
    mac: Hmac<Sha256>,
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryKey(v{}, ..)", self.version)
    }
}

impl RecoveryKey {
    /// Version `version` of the key, from its bytes. The hashes are keyed with
    /// `HMAC-SHA-256(key, "portcullis-recovery-v1")`, not with `key` itself, so that no other
    /// use of the same key (the password pepper computes `HMAC(pepper, <user input>)`) can ever
    /// produce or reveal a value keyed like these.
    ///
    /// # Errors
    /// [`MfaError::KeyTooShort`] under [`MIN_KEY_LEN`] bytes: an empty or tiny key would make
    /// the stored hashes as good as unkeyed.
    pub fn new(version: u32, key: &[u8]) -> Result<Self, MfaError> {
        if key.len() < MIN_KEY_LEN {
            return Err(MfaError::KeyTooShort);
        }
        // HMAC takes keys of any length, so neither call fails; the error is mapped all the same.
        let mut derive = Hmac::<Sha256>::new_from_slice(key).map_err(|_| MfaError::KeyTooShort)?;
        derive.update(PURPOSE);
        let purpose_key = derive.finalize().into_bytes();
        let mac =
            Hmac::<Sha256>::new_from_slice(&purpose_key).map_err(|_| MfaError::KeyTooShort)?;
        Ok(Self { version, mac })
    }

    /// The version given to [`Self::new`]: the stable name of this key (see [`RecoveryKey`]).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The digest of `code` for this user. Realm and user id are length-prefixed, so no two
    /// different (realm, user) pairs feed the HMAC the same bytes; a hash copied to another
    /// user's or realm's rows does not verify there, and an attacker holding the key and the
    /// table must search the code space once per user, not once for everyone.
    fn digest(&self, realm: &str, user_id: &str, code: &RecoveryCode) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in [realm.as_bytes(), user_id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&code.chars);
        mac.finalize().into_bytes().into()
    }
}

/// The recovery-code keys in use: the first hashes new codes, all of them find stored ones. So
/// the pepper can rotate without voiding anyone's codes (which cannot be rehashed on use: each
/// is used once and its plain text is seen only then). Keep an old version in the ring until
/// no stored hash carries it.
#[derive(Debug, Clone)]
pub struct RecoveryKeyRing {
    /// Hashes new codes and finds stored ones.
    newest: RecoveryKey,
    /// Only find stored ones.
    older: Vec<RecoveryKey>,
}

impl RecoveryKeyRing {
    /// A ring from its keys, newest first.
    ///
    /// # Errors
    /// [`MfaError::EmptyKeyRing`] without keys, [`MfaError::DuplicateKeyVersion`] when two
    /// keys have the same version (a hash would not say which one made it).
    pub fn new(keys: Vec<RecoveryKey>) -> Result<Self, MfaError> {
        for (i, key) in keys.iter().enumerate() {
            if keys.iter().take(i).any(|k| k.version == key.version) {
                return Err(MfaError::DuplicateKeyVersion(key.version));
            }
        }
        let mut keys = keys.into_iter();
        let newest = keys.next().ok_or(MfaError::EmptyKeyRing)?;
        Ok(Self {
            newest,
            older: keys.collect(),
        })
    }

    /// Whether a key of this version is in the ring, so hashes of that version can be found.
    pub fn contains(&self, version: u32) -> bool {
        std::iter::once(&self.newest)
            .chain(&self.older)
            .any(|key| key.version == version)
    }

    /// The hash to store for `code`, issued to user `user_id` of realm `realm`, under the
    /// newest key.
    pub fn hash(&self, realm: &str, user_id: &str, code: &RecoveryCode) -> RecoveryCodeHash {
        RecoveryCodeHash {
            version: self.newest.version,
            digest: self.newest.digest(realm, user_id, code),
        }
    }

    /// Which of this user's unspent codes `input` is: the stored hash it matched, as stored.
    /// `None` for anything else, including input that is not a well-formed code and hashes
    /// under a version no longer in the ring.
    ///
    /// The caller spends the code by marking (or deleting) exactly that value and accepts the
    /// login only if that changed a row: [`crate::PgMfaStore::spend_recovery_code`] does
    /// `UPDATE mfa_recovery_codes SET used_at = $now WHERE user_id = $1 AND key_version = $2
    /// AND digest = $3 AND used_at IS NULL RETURNING 1`. Of two concurrent logins with the
    /// same code only one can spend it, whatever else happened to the user's set meanwhile.
    ///
    /// Every stored hash is compared in constant time and the loop does not stop at a match,
    /// so timing tells neither how much of a hash matched nor which one did; only the versions,
    /// which are not secret, steer it.
    pub fn find(
        &self,
        realm: &str,
        user_id: &str,
        input: &str,
        stored: &[RecoveryCodeHash],
    ) -> Option<RecoveryCodeHash> {
        let code = RecoveryCode::parse(input)?;
        let typed: Vec<(u32, [u8; 32])> = std::iter::once(&self.newest)
            .chain(&self.older)
            .map(|key| (key.version, key.digest(realm, user_id, &code)))
            .collect();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, hash) in stored.iter().enumerate() {
            for (version, digest) in &typed {
                if *version != hash.version {
                    continue;
                }
                let equal = digest.ct_eq(&hash.digest);
                index = u64::conditional_select(&index, &(i as u64), equal & !found);
                found |= equal;
            }
        }
        if !bool::from(found) {
            return None;
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| stored.get(i))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> RecoveryKeyRing {
        RecoveryKeyRing::new(vec![
            RecoveryKey::new(1, b"a realm pepper of some 32 bytes!").unwrap(),
        ])
        .unwrap()
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
    fn a_set_with_a_repeated_code_is_refused() {
        let mut random = counting_bytes(30);
        // The third code repeats the first (only the low 5 bits count: 32 + i reads as i).
        for i in 0..RECOVERY_CODE_RANDOM_BYTES {
            random[20 + i] = 32 + i as u8;
        }
        assert_eq!(
            generate_recovery_codes(3, &random),
            Err(MfaError::DuplicateRecoveryCode)
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
            "0123\u{2010}4567\u{2011}89", // hyphen, non-breaking hyphen
            "0123\u{2013}4567\u{2014}89", // en and em dash (smart punctuation)
            "0123\u{2212}4567\u{2012}89", // minus sign, figure dash
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

    const REALM: &str = "acme";
    const ALICE: &str = "0b8f3a52-5c1e-4d7a-9f0e-2a6b1c3d4e5f";
    const BOB: &str = "7c2d1e4f-0a9b-4c8d-8e7f-6a5b4c3d2e1f";

    fn hashes(ring: &RecoveryKeyRing, user: &str, codes: &[RecoveryCode]) -> Vec<RecoveryCodeHash> {
        codes.iter().map(|c| ring.hash(REALM, user, c)).collect()
    }

    #[test]
    fn a_code_is_found_as_its_stored_hash() {
        let ring = ring();
        let codes = generate_recovery_codes(10, &counting_bytes(100)).unwrap();
        let stored = hashes(&ring, ALICE, &codes);
        for (code, hash) in codes.iter().zip(&stored) {
            assert_eq!(ring.find(REALM, ALICE, code.as_str(), &stored), Some(*hash));
        }
        let typed = codes[7].as_str().to_uppercase().replace('-', " ");
        assert_eq!(ring.find(REALM, ALICE, &typed, &stored), Some(stored[7]));
    }

    #[test]
    fn a_spent_code_is_no_longer_found_and_only_one_spend_deletes_it() {
        let ring = ring();
        let codes = generate_recovery_codes(3, &counting_bytes(30)).unwrap();
        let mut stored = hashes(&ring, ALICE, &codes);
        // Two concurrent logins with the same code both find the same value ...
        let first = ring.find(REALM, ALICE, codes[1].as_str(), &stored).unwrap();
        let second = ring.find(REALM, ALICE, codes[1].as_str(), &stored).unwrap();
        assert_eq!(first, second);
        // ... and delete by value, as `DELETE ... WHERE digest = $1`: only one removes a row,
        // even though another code was spent in between and shifted every index.
        let mut delete = |hash: RecoveryCodeHash| {
            let before = stored.len();
            stored.retain(|h| *h != hash);
            before - stored.len()
        };
        assert_eq!(delete(stored_at(&codes, &ring, 0)), 1);
        assert_eq!(delete(first), 1);
        assert_eq!(delete(second), 0);
        assert_eq!(ring.find(REALM, ALICE, codes[1].as_str(), &stored), None);
        assert_eq!(
            ring.find(REALM, ALICE, codes[2].as_str(), &stored),
            Some(ring.hash(REALM, ALICE, &codes[2]))
        );
    }

    fn stored_at(codes: &[RecoveryCode], ring: &RecoveryKeyRing, i: usize) -> RecoveryCodeHash {
        ring.hash(REALM, ALICE, &codes[i])
    }

    #[test]
    fn a_code_hashed_for_one_user_or_realm_does_not_verify_for_another() {
        let ring = ring();
        let codes = generate_recovery_codes(2, &counting_bytes(20)).unwrap();
        let alices = hashes(&ring, ALICE, &codes);
        // Bob's rows with Alice's hashes copied in: her code does not work as Bob.
        assert_eq!(ring.find(REALM, BOB, codes[0].as_str(), &alices), None);
        assert_eq!(ring.find("other", ALICE, codes[0].as_str(), &alices), None);
        assert_ne!(ring.hash(REALM, BOB, &codes[0]), alices[0]);
        // Length prefixes: moving bytes between realm and user id changes the input.
        assert_ne!(
            ring.hash("ab", "c", &codes[0]),
            ring.hash("a", "bc", &codes[0])
        );
        assert!(
            ring.find(REALM, ALICE, codes[0].as_str(), &alices)
                .is_some()
        );
    }

    #[test]
    fn after_a_key_rotation_old_codes_verify_with_their_version_and_new_ones_use_the_newest() {
        let v1 = RecoveryKey::new(1, b"a realm pepper of some 32 bytes!").unwrap();
        let v2 = RecoveryKey::new(2, b"the rotated pepper, also 32 bytes").unwrap();
        let before = RecoveryKeyRing::new(vec![v1.clone()]).unwrap();
        let codes = generate_recovery_codes(2, &counting_bytes(20)).unwrap();
        let mut stored = hashes(&before, ALICE, &codes[..1]);
        assert_eq!(stored[0].version(), 1);

        let after = RecoveryKeyRing::new(vec![v2.clone(), v1]).unwrap();
        stored.push(after.hash(REALM, ALICE, &codes[1]));
        assert_eq!(stored[1].version(), 2);
        let old = after
            .find(REALM, ALICE, codes[0].as_str(), &stored)
            .unwrap();
        assert_eq!((old.version(), old), (1, stored[0]));
        let new = after
            .find(REALM, ALICE, codes[1].as_str(), &stored)
            .unwrap();
        assert_eq!((new.version(), new), (2, stored[1]));

        // Once version 1 leaves the ring, its hashes no longer verify; the digest alone never
        // matches under another version's key.
        let only_v2 = RecoveryKeyRing::new(vec![v2]).unwrap();
        assert_eq!(only_v2.find(REALM, ALICE, codes[0].as_str(), &stored), None);
        let relabelled = RecoveryCodeHash::from_parts(2, stored[0].digest()).unwrap();
        assert_eq!(
            after.find(REALM, ALICE, codes[0].as_str(), &[relabelled]),
            None
        );
    }

    #[test]
    fn key_rings_need_a_key_and_distinct_versions() {
        let key = |v| RecoveryKey::new(v, b"a realm pepper of some 32 bytes!").unwrap();
        assert_eq!(
            RecoveryKeyRing::new(Vec::new()).err(),
            Some(MfaError::EmptyKeyRing)
        );
        assert_eq!(
            RecoveryKeyRing::new(vec![key(3), key(1), key(3)]).err(),
            Some(MfaError::DuplicateKeyVersion(3))
        );
        assert!(RecoveryKeyRing::new(vec![key(3), key(1)]).is_ok());
    }

    #[test]
    fn a_ring_contains_exactly_the_versions_it_was_given() {
        let key = |v| RecoveryKey::new(v, b"a realm pepper of some 32 bytes!").unwrap();
        let ring = RecoveryKeyRing::new(vec![key(7), key(3)]).unwrap();
        assert!(ring.contains(7) && ring.contains(3));
        assert!(!ring.contains(0) && !ring.contains(1) && !ring.contains(4));
    }

    #[test]
    fn unknown_or_malformed_input_and_another_key_find_nothing() {
        let ring = ring();
        let codes = generate_recovery_codes(2, &counting_bytes(20)).unwrap();
        let stored = hashes(&ring, ALICE, &codes);
        let other = RecoveryCode::from_random([9; RECOVERY_CODE_RANDOM_BYTES]);
        assert_eq!(ring.find(REALM, ALICE, other.as_str(), &stored), None);
        assert_eq!(ring.find(REALM, ALICE, "not a code", &stored), None);
        assert_eq!(ring.find(REALM, ALICE, codes[0].as_str(), &[]), None);
        let other_key = RecoveryKey::new(1, b"another realm's pepper, 32 bytes").unwrap();
        let other_ring = RecoveryKeyRing::new(vec![other_key]).unwrap();
        assert_eq!(
            other_ring.find(REALM, ALICE, codes[0].as_str(), &stored),
            None
        );
    }

    #[test]
    fn the_hash_is_hmac_sha256_under_a_purpose_key_of_realm_user_and_code() {
        // Known answer computed independently:
        // import hmac, hashlib, struct
        // k = hmac.new(b"a realm pepper of some 32 bytes!", b"portcullis-recovery-v1",
        //              hashlib.sha256).digest()
        // r, u = b"acme", b"0b8f3a52-5c1e-4d7a-9f0e-2a6b1c3d4e5f"
        // hmac.new(k, struct.pack(">Q", len(r)) + r + struct.pack(">Q", len(u)) + u
        //          + b"0123456789", hashlib.sha256).hexdigest()
        let code = RecoveryCode::parse("0123-4567-89").unwrap();
        let stored = ring().hash(REALM, ALICE, &code);
        let hex: String = stored.digest().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "638978fb02121429d5395895fa8986095694d00372314f344fef73f95e40ac79"
        );
        assert_eq!(stored.version(), 1);
        assert_eq!(
            RecoveryCodeHash::from_parts(1, stored.digest()),
            Some(stored)
        );
        assert_eq!(RecoveryCodeHash::from_parts(1, &[0; 31]), None);
    }

    #[test]
    fn short_keys_are_refused_and_nothing_secret_is_debug_printed() {
        assert_eq!(
            RecoveryKey::new(1, &[0; 15]).err(),
            Some(MfaError::KeyTooShort)
        );
        let code = RecoveryCode::from_random([1; RECOVERY_CODE_RANDOM_BYTES]);
        assert_eq!(format!("{code:?}"), "RecoveryCode(..)");
        assert_eq!(
            format!("{:?}", ring()),
            "RecoveryKeyRing { newest: RecoveryKey(v1, ..), older: [] }"
        );
        assert_eq!(
            format!("{:?}", ring().hash(REALM, ALICE, &code)),
            "RecoveryCodeHash(v1, ..)"
        );
    }
}
