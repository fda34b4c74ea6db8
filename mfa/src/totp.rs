//! Time-based one-time passwords (RFC 6238) over `totp-rs`, with each enrolment's settings.
//!
//! `totp-rs` computes the HMACs; this module owns the rest: truncation and formatting without
//! secret-dependent timing, which inputs count as a code, the skew window, a comparison that
//! does not stop at the first match, the matched [`TimeStep`], and [`accept`], the replay rule
//! the caller applies to it atomically (shared by the replicas) so that a step is accepted at
//! most once per user.
//!
//! The code check itself is crate-private: a code checked without recording its step could be
//! checked again (a phished login code replayed to remove the factor, within its window), so
//! every check, a login's or a fresh second factor's, goes through
//! [`crate::PgMfaStore::verify`], which records the step by compare-and-set.
//!
//! ```compile_fail
//! // Not reachable from outside the crate: use PgMfaStore::verify.
//! let _ = portcullis_mfa::totp::verify;
//! ```

use std::fmt;

use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::MfaError;

/// RFC 4226 section 4: a shared secret has at least 128 bits.
pub const MIN_SECRET_LEN: usize = 16;

/// Length of a generated secret: 160 bits, RFC 4226's recommendation and SHA-1's output size,
/// what authenticator apps expect.
pub const SECRET_LEN: usize = 20;

/// The HMAC hash of the codes. Authenticator apps differ in what they support beyond SHA-1
/// (some silently use SHA-1 whatever the URI says), so SHA-1 is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA-1, RFC 6238's default and every app's.
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs: `SHA1`, `SHA256` or `SHA512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Self::Sha1 => totp_rs::Algorithm::SHA1,
            Self::Sha256 => totp_rs::Algorithm::SHA256,
            Self::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// The largest accepted skew: RFC 6238 section 5.2 recommends one step, issue 12 asks for ±1;
/// two leaves room for a badly set phone clock. Each step of skew costs two more HMACs per
/// check and doubles an online guesser's odds, so 255 (what a bare `u8` allowed) is refused.
pub const MAX_SKEW_STEPS: u8 = 2;

/// Accepted step lengths in seconds, the CRD's `mfa.totp.period` range. This crate is the last
/// check before the value reaches totp-rs unchecked; a huge period would make one step last for
/// years, so after one login the replay rule would refuse that user until it ends.
pub const PERIOD_RANGE: std::ops::RangeInclusive<u32> = 15..=120;

/// A realm's TOTP settings (`mfa.totp.digits` and `mfa.totp.period`, the hash and the skew
/// window), checked. The skew lives here and nowhere else, so the check and anything derived
/// from the window cannot disagree about it.
///
/// Per enrolment, not per realm: an authenticator app keeps the algorithm, digits and period it
/// read from the QR code for ever. So the auth server stores these params with each enrolled
/// secret, in their compact form (`Display`/`FromStr`: `SHA1:6:30:1`, that is algorithm,
/// digits, period and skew), and verifies that user's codes with the stored params, never with
/// the realm's current ones. The realm's settings apply only to new enrolments; changing them
/// must not lock out anyone already enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    algorithm: Algorithm,
    digits: u8,
    period: u32,
    skew: u8,
}

impl Default for TotpParams {
    /// SHA-1, 6 digits, 30 seconds, one step of skew: what every authenticator app supports.
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            skew: 1,
        }
    }
}

impl TotpParams {
    /// Settings from the realm's values, with one step of skew (see [`Self::with_skew`]);
    /// `digits` and `period` have the CRD's types and ranges.
    ///
    /// App support: every authenticator app handles SHA-1, 6 digits and 30 seconds. FreeOTP
    /// refuses 7 digits (it takes only 6 or 8), and Google Authenticator has historically
    /// ignored `algorithm`, `digits` and `period` and shown SHA-1/6/30 codes whatever the URI
    /// said. Anything else limits which apps can enrol; the confirmation code catches a
    /// mismatch, so it blocks enrolment rather than locking anyone out.
    ///
    /// # Errors
    /// [`MfaError::InvalidDigits`] outside 6..=8 (RFC 4226 section 5.3),
    /// [`MfaError::InvalidPeriod`] outside [`PERIOD_RANGE`] (the CRD's range).
    pub fn new(algorithm: Algorithm, digits: u32, period: u32) -> Result<Self, MfaError> {
        let digits = match digits {
            6..=8 => digits as u8,
            _ => return Err(MfaError::InvalidDigits(digits)),
        };
        if !PERIOD_RANGE.contains(&period) {
            return Err(MfaError::InvalidPeriod(period));
        }
        Ok(Self {
            algorithm,
            digits,
            period,
            skew: 1,
        })
    }

    /// The same settings with `skew_steps` steps accepted on either side of the current one.
    ///
    /// # Errors
    /// [`MfaError::InvalidSkew`] above [`MAX_SKEW_STEPS`].
    pub fn with_skew(self, skew_steps: u8) -> Result<Self, MfaError> {
        if skew_steps > MAX_SKEW_STEPS {
            return Err(MfaError::InvalidSkew(skew_steps));
        }
        Ok(Self {
            skew: skew_steps,
            ..self
        })
    }

    /// The HMAC hash.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Digits per code.
    pub fn digits(&self) -> u32 {
        u32::from(self.digits)
    }

    /// Seconds per time step.
    pub fn period(&self) -> u32 {
        self.period
    }

    /// Steps accepted on either side of the current one.
    pub fn skew(&self) -> u8 {
        self.skew
    }

    /// The time step that `now_unix` falls in (RFC 6238's `T`, with `T0 = 0`).
    pub fn time_step(&self, now_unix: u64) -> TimeStep {
        TimeStep(now_unix / u64::from(self.period))
    }

    /// A totp-rs signer for `secret`: one copy of the secret per `verify` or `generate` call,
    /// not per step; totp-rs is built with `zeroize`, so that copy is wiped when dropped (its
    /// API has no way to sign with a borrowed secret).
    fn totp(&self, secret: &TotpSecret) -> totp_rs::Totp {
        // `build_noncompliant` skips the builder's checks, which `TotpParams::new` and
        // `TotpSecret` have already made (digits 6..=8, period 15..=120, secret >= 128 bits);
        // the checked `build` would return a `Result` that cannot fail here. Digits are not
        // used: codes are computed from `sign` below.
        totp_rs::Builder::new()
            .with_algorithm(self.algorithm.to_totp_rs())
            .with_digits(self.digits)
            .with_step_duration(u64::from(self.period))
            .with_skew(0)
            .with_secret(secret.0.to_vec())
            .build_noncompliant()
    }

    /// The code for the step containing `at`, as a number below `10^digits`.
    fn code_value(&self, totp: &totp_rs::Totp, at: u64) -> u32 {
        let signature = totp.sign(at);
        let value = truncate(signature.as_ref());
        // Constant divisors, so the compiler emits multiplications, not a `div` whose
        // latency may depend on the (secret) dividend.
        match self.digits {
            6 => value % 1_000_000,
            7 => value % 10_000_000,
            _ => value % 100_000_000,
        }
    }
}

impl fmt::Display for TotpParams {
    /// The compact stored form, `ALGORITHM:digits:period:skew`, for example `SHA1:6:30:1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.algorithm.as_str(),
            self.digits,
            self.period,
            self.skew
        )
    }
}

impl std::str::FromStr for TotpParams {
    type Err = MfaError;

    /// Reads the stored form written by `Display`, with the same checks as [`TotpParams::new`]
    /// and [`TotpParams::with_skew`].
    ///
    /// # Errors
    /// [`MfaError::InvalidStoredParams`] unless the text is exactly what `Display` writes for
    /// valid params (no spaces, signs or leading zeros), so one set of params has one stored
    /// form.
    fn from_str(text: &str) -> Result<Self, MfaError> {
        let invalid = || MfaError::InvalidStoredParams;
        let mut parts = text.split(':');
        let mut next = || parts.next().ok_or_else(invalid);
        let algorithm = match next()? {
            "SHA1" => Algorithm::Sha1,
            "SHA256" => Algorithm::Sha256,
            "SHA512" => Algorithm::Sha512,
            _ => return Err(invalid()),
        };
        let digits = next()?.parse().map_err(|_| invalid())?;
        let period = next()?.parse().map_err(|_| invalid())?;
        let skew = next()?.parse().map_err(|_| invalid())?;
        let params = Self::new(algorithm, digits, period)
            .and_then(|p| p.with_skew(skew))
            .map_err(|_| invalid())?;
        // `parse` takes `+6` and `06`, and a fifth part would be ignored: insist on the
        // canonical form instead.
        if params.to_string() != text {
            return Err(invalid());
        }
        Ok(params)
    }
}

/// RFC 4226 section 5.3 dynamic truncation: 31 bits from the 4 bytes at the offset given by
/// the low nibble of the last byte. The offset is secret, so all 16 candidate words are read
/// and the one at the offset is selected in constant time, instead of indexing with it.
fn truncate(signature: &[u8]) -> u32 {
    let offset = signature.last().map_or(0, |last| last & 0x0f);
    let mut word = 0u32;
    for (i, window) in (0u8..16).zip(signature.windows(4)) {
        let candidate = u32::from_be_bytes([window[0], window[1], window[2], window[3]]);
        word.conditional_assign(&candidate, i.ct_eq(&offset));
    }
    word & 0x7fff_ffff
}

/// `value` as exactly `digits` decimal digits, zero-padded: always the same number of
/// divisions by the constant 10, whatever the value (core's integer `Display` loops and pads
/// depending on it).
fn format_code(value: u32, digits: u8) -> Zeroizing<String> {
    let mut buffer = [0u8; 8];
    let mut rest = value;
    let width = usize::from(digits).min(buffer.len());
    for slot in buffer.iter_mut().take(width).rev() {
        // `rest % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let code = Zeroizing::new(buffer.iter().take(width).map(|&b| char::from(b)).collect());
    zeroize::Zeroize::zeroize(&mut buffer);
    code
}

/// An RFC 6238 time step (the counter `floor(unix / period)`): the unit of replay protection.
/// A code verified at step `s` must not be accepted again for `s`, even on another replica;
/// see [`accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeStep(pub u64);

impl TimeStep {
    /// The counter value.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TimeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The shared secret of an enrolled authenticator. `Debug` does not show it, and its bytes are
/// wiped when it is dropped.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TotpSecret({} bytes)", self.0.len())
    }
}

impl TotpSecret {
    /// A new 160-bit secret from random bytes the caller draws from a CSPRNG.
    pub fn generate(random: [u8; SECRET_LEN]) -> Self {
        Self(Zeroizing::new(random.to_vec()))
    }

    /// A secret from its bytes, for example a stored one after decryption, or a longer one
    /// for SHA-256/512 (RFC 6238 uses 32 and 64 bytes there).
    ///
    /// # Errors
    /// [`MfaError::SecretTooShort`] under [`MIN_SECRET_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MfaError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(MfaError::SecretTooShort(bytes.len()));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret typed or pasted in base32; case, whitespace and trailing `=` padding are
    /// ignored. Anything else must be the canonical encoding of whole bytes: the decoder
    /// underneath drops `=` anywhere, trailing bits and partial characters, so a truncated or
    /// mistyped paste would otherwise pass as a different secret.
    ///
    /// # Errors
    /// [`MfaError::InvalidBase32`], or [`MfaError::SecretTooShort`].
    pub fn from_base32(text: &str) -> Result<Self, MfaError> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let unpadded = cleaned.trim_end_matches('=');
        let secret =
            totp_rs::Secret::try_from_base32(unpadded).map_err(|_| MfaError::InvalidBase32)?;
        let secret = Self::from_bytes(secret.as_bytes())?;
        if secret.to_base32().as_str() != unpadded {
            return Err(MfaError::InvalidBase32);
        }
        Ok(secret)
    }

    /// The raw bytes, to be stored (encrypted).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, upper case: the `secret` of the URI and the text
    /// shown for manual entry; wiped when dropped.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(totp_rs::Secret::new(self.0.to_vec().into_boxed_slice()).to_base32())
    }
}

/// The code for `now_unix`, as the authenticator app shows it (zero-padded to the digits).
/// The server needs it only in tests and tools; [`crate::PgMfaStore::verify`] is the check.
pub fn generate(params: &TotpParams, secret: &TotpSecret, now_unix: u64) -> Zeroizing<String> {
    let totp = params.totp(secret);
    format_code(params.code_value(&totp, now_unix), params.digits)
}

/// The replay rule: a code that [`verify`] matched at step `matched` is accepted only if that
/// step is later than the last step accepted for this user (`None` before the first use). So a
/// step is used at most once, and a code older than one already used is refused too (RFC 4226
/// section 7.2's counter rule, which also closes the skew window behind a used code).
///
/// The auth server keeps one `last_used` step per user (and per enrolment), shared by all
/// replicas, and moves it forward only with an atomic compare-and-set that applies this very
/// rule: [`crate::PgMfaStore::verify`] does
/// `UPDATE mfa_totp SET last_used_step = $matched WHERE user_id = $user AND ... AND last_used_step < $matched`
/// and accepts only when exactly one row changed. A read followed
/// by a separate write would let two replicas accept the same code at once. The stored value
/// never has to expire, so no TTL (and no clock of Redis versus the replicas') is involved:
/// the decision rests on step numbers alone. The step matched when confirming an enrolment
/// must be recorded as well, or its code could be replayed at the next login.
pub fn accept(last_used: Option<TimeStep>, matched: TimeStep) -> bool {
    last_used.is_none_or(|last| matched > last)
}

/// Checks a code typed by the user against the steps from `params.skew()` before to
/// `params.skew()` after the step of `now_unix`, and returns the step it matched. The caller
/// accepts the code only if [`accept`] says so for this user's last used step, atomically.
///
/// Crate-private on purpose: a match here is not a fresh second factor (the same code matches
/// again for the whole window). Outside this crate, [`crate::PgMfaStore::verify`] is the check.
///
/// Whitespace anywhere is ignored (apps show `123 456`); anything else that is not exactly
/// the enrolment's number of ASCII digits is refused before any HMAC is computed.
///
/// Every step of the window is computed and compared in constant time, without stopping at a
/// match, so the timing does not tell which step matched or how many digits were right; the
/// expected codes are never formatted (no value-dependent digit loop or padding) and the
/// truncation offset is not used as an index. If two steps give the same code (one chance in
/// 10^digits), the current one wins, then the past.
pub(crate) fn verify(
    params: &TotpParams,
    secret: &TotpSecret,
    code: &str,
    now_unix: u64,
) -> Option<TimeStep> {
    // The typed code is the attacker's input, not a secret: parsing it may branch.
    let mut typed = 0u32;
    let mut len = 0usize;
    for c in code.chars().filter(|c| !c.is_whitespace()) {
        let digit = c.to_digit(10).filter(|_| c.is_ascii_digit())?;
        if len == usize::from(params.digits) {
            return None;
        }
        // At most 8 digits: below 10^8, no overflow.
        typed = typed * 10 + digit;
        len += 1;
    }
    if len != usize::from(params.digits) {
        return None;
    }

    let totp = params.totp(secret);
    let period = u64::from(params.period);
    let now = params.time_step(now_unix).0;
    let mut matched = subtle::Choice::from(0);
    let mut step = 0u64;
    // Current step first, then the past, then the future: the order decides a collision.
    let offsets = std::iter::once(0i64)
        .chain((1..=i64::from(params.skew)).map(|o| -o))
        .chain(1..=i64::from(params.skew));
    for offset in offsets {
        let Some(candidate) = now.checked_add_signed(offset) else {
            continue;
        };
        let Some(at) = candidate.checked_mul(period) else {
            continue;
        };
        // Same length on both sides (exactly `digits` digits), so equal values are equal codes.
        let equal = params.code_value(&totp, at).ct_eq(&typed);
        step = u64::conditional_select(&step, &candidate, equal & !matched);
        matched |= equal;
    }
    bool::from(matched).then_some(TimeStep(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// RFC 6238 Appendix B: (time, SHA-1, SHA-256, SHA-512), 8 digits, 30 s.
    const RFC6238_VECTORS: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];

    fn rfc_cases() -> Vec<(Algorithm, TotpSecret, u64, &'static str)> {
        let mut cases = Vec::new();
        for (time, sha1, sha256, sha512) in RFC6238_VECTORS {
            for (algorithm, seed, code) in [
                (Algorithm::Sha1, SEED_SHA1, sha1),
                (Algorithm::Sha256, SEED_SHA256, sha256),
                (Algorithm::Sha512, SEED_SHA512, sha512),
            ] {
                cases.push((algorithm, TotpSecret::from_bytes(seed).unwrap(), time, code));
            }
        }
        cases
    }

    #[test]
    fn truncation_and_formatting_match_rfc_4226_appendix_d() {
        // RFC 4226 Appendix D: HOTP of "12345678901234567890" for counters 0..=9, as the
        // truncated 31-bit value and as the 6-digit code.
        let expected: [(u32, &str); 10] = [
            (1_284_755_224, "755224"),
            (1_094_287_082, "287082"),
            (137_359_152, "359152"),
            (1_726_969_429, "969429"),
            (1_640_338_314, "338314"),
            (868_254_676, "254676"),
            (1_918_287_922, "287922"),
            (82_162_583, "162583"),
            (673_399_871, "399871"),
            (645_520_489, "520489"),
        ];
        let params = TotpParams::default();
        let totp = params.totp(&TotpSecret::from_bytes(SEED_SHA1).unwrap());
        for (counter, (value, code)) in (0u64..).zip(expected) {
            let signature = totp.sign(counter * 30);
            assert_eq!(truncate(signature.as_ref()), value, "counter {counter}");
            assert_eq!(
                format_code(params.code_value(&totp, counter * 30), 6).as_str(),
                code
            );
        }
        // RFC 4226 section 5.4's worked example: offset 0xa, word 0x50ef7f19.
        let example = [
            0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19,
            0xda, 0x8e, 0x94, 0x5b, 0x55, 0x5a,
        ];
        assert_eq!(truncate(&example), 0x50ef_7f19);
        // Offset 15, the largest, reads bytes 15..=18 of a SHA-1 signature (the top bit
        // cleared), not beyond.
        let mut last = [0u8; 20];
        last[15..].copy_from_slice(&[0xff, 0x01, 0x02, 0x03, 0x0f]);
        assert_eq!(truncate(&last), 0x7f01_0203);
    }

    #[test]
    fn codes_are_formatted_to_exactly_their_digits() {
        assert_eq!(format_code(0, 6).as_str(), "000000");
        assert_eq!(format_code(42, 6).as_str(), "000042");
        assert_eq!(format_code(999_999, 6).as_str(), "999999");
        assert_eq!(format_code(1_234_567, 7).as_str(), "1234567");
        assert_eq!(format_code(7_081_804, 8).as_str(), "07081804");
    }

    #[test]
    fn generate_matches_the_rfc_6238_appendix_b_vectors() {
        for (algorithm, secret, time, code) in rfc_cases() {
            let params = TotpParams::new(algorithm, 8, 30).unwrap();
            assert_eq!(
                generate(&params, &secret, time).as_str(),
                code,
                "{algorithm:?} at {time}"
            );
        }
    }

    #[test]
    fn verify_accepts_the_rfc_vectors_and_returns_their_step() {
        for (algorithm, secret, time, code) in rfc_cases() {
            let params = TotpParams::new(algorithm, 8, 30).unwrap();
            assert_eq!(
                verify(&params, &secret, code, time),
                Some(TimeStep(time / 30)),
                "{algorithm:?} at {time}"
            );
        }
        // RFC 6238's table gives T for two of them: 0x23523EC and 0x27BC86AA.
        let params = TotpParams::new(Algorithm::Sha1, 8, 30).unwrap();
        let secret = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        let step = verify(&params, &secret, "07081804", 1_111_111_109).unwrap();
        assert_eq!(step.value(), 0x23523EC);
        let step = verify(&params, &secret, "65353130", 20_000_000_000).unwrap();
        assert_eq!(step.value(), 0x27BC86AA);
    }

    #[test]
    fn one_step_of_skew_is_accepted_and_two_are_refused() {
        let params = TotpParams::default();
        let secret = TotpSecret::generate(*b"abcdefghijklmnopqrst");
        let now = 1_767_225_615; // the middle of a step
        let current = params.time_step(now).value();
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let step = current.checked_add_signed(offset).unwrap();
            let code = generate(&params, &secret, step * 30);
            let expected = accepted.then_some(TimeStep(step));
            assert_eq!(
                verify(&params, &secret, &code, now),
                expected,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn zero_skew_accepts_only_the_current_step() {
        let params = TotpParams::default().with_skew(0).unwrap();
        let secret = TotpSecret::generate([3; SECRET_LEN]);
        let now = 1_767_225_600;
        let previous = generate(&params, &secret, now - 30);
        assert_eq!(verify(&params, &secret, &previous, now), None);
        let current = generate(&params, &secret, now);
        assert_eq!(
            verify(&params, &secret, &current, now),
            Some(params.time_step(now))
        );
    }

    /// The window's steps, as `verify` sees them: which of `steps` a code may come from.
    fn accepted_steps(
        params: &TotpParams,
        secret: &TotpSecret,
        now: u64,
        steps: &[u64],
    ) -> Vec<u64> {
        steps
            .iter()
            .copied()
            .filter(|&s| {
                let code = generate(params, secret, s * u64::from(params.period()));
                verify(params, secret, &code, now) == Some(TimeStep(s))
            })
            .collect()
    }

    #[test]
    fn the_window_at_step_zero_is_clipped_not_wrapped() {
        // A saturating window would give step 0 three times and a wrapping one u64::MAX and
        // u64::MAX - 1; either way the set below would differ.
        let params = TotpParams::default().with_skew(2).unwrap();
        let secret = TotpSecret::generate([5; SECRET_LEN]);
        let code = generate(&params, &secret, 0);
        assert_eq!(verify(&params, &secret, &code, 10), Some(TimeStep(0)));
        assert_eq!(
            accepted_steps(&params, &secret, 10, &[0, 1, 2, 3]),
            [0, 1, 2]
        );
        assert_eq!(
            accepted_steps(&params, &secret, 95, &[0, 1, 2, 3, 4, 5, 6]),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn the_window_near_the_end_of_time_skips_steps_past_u64_max() {
        // The last step whose start fits in u64: the future step's start would overflow and
        // is skipped (not wrapped to step 0, not saturated to u64::MAX).
        let params = TotpParams::default().with_skew(2).unwrap();
        let secret = TotpSecret::generate([8; SECRET_LEN]);
        let last = u64::MAX / 30;
        let current = generate(&params, &secret, u64::MAX);
        assert_eq!(
            verify(&params, &secret, &current, u64::MAX),
            Some(TimeStep(last))
        );
        let previous = generate(&params, &secret, (last - 2) * 30);
        assert_eq!(
            verify(&params, &secret, &previous, u64::MAX),
            Some(TimeStep(last - 2))
        );
        // A wrapping `(last + 1) * 30` is second 14, in step 0: its code is not accepted.
        let wrapped = generate(&params, &secret, 0);
        assert_eq!(verify(&params, &secret, &wrapped, u64::MAX), None);
        assert_eq!(params.time_step(u64::MAX), TimeStep(last));
    }

    #[test]
    fn skew_lives_in_the_params_and_is_capped_at_two() {
        let params = TotpParams::default();
        assert_eq!(params.skew(), 1);
        assert_eq!(params.with_skew(2).map(|p| p.skew()), Ok(2));
        assert_eq!(params.with_skew(3), Err(MfaError::InvalidSkew(3)));
        assert_eq!(params.with_skew(255), Err(MfaError::InvalidSkew(255)));
        let secret = TotpSecret::generate([6; SECRET_LEN]);
        let now = 1_767_225_615;
        let wide = params.with_skew(2).unwrap();
        let code = generate(&params, &secret, now - 60);
        assert_eq!(verify(&params, &secret, &code, now), None);
        assert_eq!(
            verify(&wide, &secret, &code, now),
            Some(TimeStep(now / 30 - 2))
        );
    }

    #[test]
    fn accept_moves_only_forward() {
        let s = TimeStep(58_907_520);
        assert!(accept(None, s));
        assert!(!accept(Some(s), s), "the same step twice");
        assert!(accept(Some(s), TimeStep(s.0 + 1)));
        // An older code after a newer one was used: refused even inside the skew window.
        assert!(!accept(Some(TimeStep(s.0 + 1)), s));
        assert!(!accept(Some(TimeStep(u64::MAX)), TimeStep(u64::MAX)));
    }

    #[test]
    fn a_replayed_code_is_refused_at_every_second_verify_still_matches_it() {
        // The old rule kept a used step until an inclusive "last accepted second" used as a
        // Redis expiry: gone within that second, and off by the replica's clock. With
        // `accept` there is no such second: for every second, on any replica's clock, in
        // which `verify` still returns the step, the replay is refused.
        for skew in 0..=MAX_SKEW_STEPS {
            let params = TotpParams::default().with_skew(skew).unwrap();
            let secret = TotpSecret::generate([9; SECRET_LEN]);
            let first_use = 1_767_225_629; // the last second of its step
            let code = generate(&params, &secret, first_use);
            let used = verify(&params, &secret, &code, first_use).unwrap();
            assert!(accept(None, used));
            let mut matched_seconds = 0;
            for now in first_use - 200..first_use + 200 {
                if let Some(step) = verify(&params, &secret, &code, now) {
                    matched_seconds += 1;
                    assert!(!accept(Some(used), step), "replay at {now}, skew {skew}");
                }
            }
            assert_eq!(matched_seconds, (2 * u64::from(skew) + 1) * 30);
        }
    }

    #[test]
    fn the_realms_digits_and_period_are_used() {
        let secret = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        // RFC 6238's T=59 SHA-1 code is 94287082; 6 and 7 digits are its last digits.
        let six = TotpParams::new(Algorithm::Sha1, 6, 30).unwrap();
        assert_eq!(generate(&six, &secret, 59).as_str(), "287082");
        let seven = TotpParams::new(Algorithm::Sha1, 7, 30).unwrap();
        assert_eq!(generate(&seven, &secret, 59).as_str(), "4287082");
        // With 60-second steps, 59 and 119 fall in steps 0 and 1 (counter 1 = T=59 at 30 s).
        let minute = TotpParams::new(Algorithm::Sha1, 8, 60)
            .unwrap()
            .with_skew(0)
            .unwrap();
        assert_eq!(generate(&minute, &secret, 119).as_str(), "94287082");
        assert_eq!(minute.time_step(119), TimeStep(1));
        assert_eq!(verify(&minute, &secret, "94287082", 100), Some(TimeStep(1)));
    }

    #[test]
    fn malformed_codes_are_refused() {
        let params = TotpParams::default();
        let secret = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        let now = 59;
        let good = generate(&params, &secret, now);
        assert_eq!(good.as_str(), "287082");
        assert!(verify(&params, &secret, &good, now).is_some());
        assert!(verify(&params, &secret, " 287 082\t", now).is_some());
        for bad in [
            "",
            "28708",
            "2870821",
            "0287082",
            "+287082",
            "-28708",
            "28708a",
            "287,082",
            "２８７０８２", // full-width digits
            "287082\u{0}",
        ] {
            assert_eq!(verify(&params, &secret, bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn a_wrong_code_or_secret_is_refused() {
        let params = TotpParams::default();
        let secret = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        assert_eq!(verify(&params, &secret, "287083", 59), None);
        let other = TotpSecret::generate([1; SECRET_LEN]);
        assert_eq!(verify(&params, &other, "287082", 59), None);
        let sha256 = TotpParams::new(Algorithm::Sha256, 6, 30).unwrap();
        assert_eq!(verify(&sha256, &secret, "287082", 59), None);
    }

    #[test]
    fn params_round_trip_through_their_stored_form() {
        let cases = [
            (TotpParams::default(), "SHA1:6:30:1"),
            (
                TotpParams::new(Algorithm::Sha256, 8, 60)
                    .unwrap()
                    .with_skew(2)
                    .unwrap(),
                "SHA256:8:60:2",
            ),
            (
                TotpParams::new(Algorithm::Sha512, 7, 15)
                    .unwrap()
                    .with_skew(0)
                    .unwrap(),
                "SHA512:7:15:0",
            ),
        ];
        for (params, stored) in cases {
            assert_eq!(params.to_string(), stored);
            assert_eq!(stored.parse::<TotpParams>(), Ok(params));
        }
    }

    #[test]
    fn malformed_or_invalid_stored_params_are_refused() {
        for bad in [
            "",
            "SHA1:6:30",
            "SHA1:6:30:1:",
            "SHA1:6:30:1:9",
            "sha1:6:30:1",
            "MD5:6:30:1",
            "SHA1:+6:30:1",
            "SHA1:06:30:1",
            "SHA1: 6:30:1",
            "SHA1:9:30:1",
            "SHA1:6:0:1",
            "SHA1:6:121:1",
            "SHA1:6:30:3",
            "SHA1:6:30:-1",
        ] {
            assert_eq!(
                bad.parse::<TotpParams>(),
                Err(MfaError::InvalidStoredParams),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_enrolment_keeps_verifying_with_its_stored_params_after_the_realm_changes() {
        // Enrolled under SHA1/6/30; the app keeps those. The realm later moves to 8 digits.
        let enrolled = TotpParams::default();
        let stored = enrolled.to_string();
        let secret = TotpSecret::generate([4; SECRET_LEN]);
        let now = 1_767_225_600;
        let app_code = generate(&enrolled, &secret, now);
        let realm_now = TotpParams::new(Algorithm::Sha1, 8, 30).unwrap();
        assert_eq!(verify(&realm_now, &secret, &app_code, now), None);
        let params: TotpParams = stored.parse().unwrap();
        assert_eq!(
            verify(&params, &secret, &app_code, now),
            Some(TimeStep(now / 30))
        );
    }

    #[test]
    fn settings_outside_the_rfc_are_refused() {
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 5, 30),
            Err(MfaError::InvalidDigits(5))
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 9, 30),
            Err(MfaError::InvalidDigits(9))
        );
        for period in [0, 1, 14, 121, 3600, u32::MAX] {
            assert_eq!(
                TotpParams::new(Algorithm::Sha1, 6, period),
                Err(MfaError::InvalidPeriod(period))
            );
        }
        assert!(TotpParams::new(Algorithm::Sha512, 8, 120).is_ok());
        assert!(TotpParams::new(Algorithm::Sha1, 6, 15).is_ok());
        assert_eq!(
            TotpSecret::from_bytes(&[0; 15]).err(),
            Some(MfaError::SecretTooShort(15))
        );
    }

    #[test]
    fn secrets_are_160_bits_and_base32_without_padding() {
        let secret = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        assert_eq!(
            secret.to_base32().as_str(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        // 16 bytes is 26 base32 characters; padded it would be 32.
        let short = TotpSecret::from_bytes(&[0xff; 16]).unwrap();
        assert_eq!(short.to_base32().as_str(), "77777777777777777777777774");
        let generated = TotpSecret::generate([0xA5; SECRET_LEN]);
        assert_eq!(generated.as_bytes().len() * 8, 160);
        let back = TotpSecret::from_base32(&generated.to_base32().to_lowercase()).unwrap();
        assert_eq!(back.as_bytes(), generated.as_bytes());
        let spaced = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(spaced.as_bytes(), SEED_SHA1);
        let padded = TotpSecret::from_base32("77777777777777777777777774======").unwrap();
        assert_eq!(padded.as_bytes(), [0xff; 16]);
        for bad in [
            "GEZDGNBV1",
            // One character too many: the decoder would drop it.
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQA",
            // `=` inside the text, which the decoder would skip.
            "GEZDGNBVGY3T=QOJQGEZDGNBVGY3TQOJQ",
            // Non-zero trailing bits: ...74 is canonical, ...77 decodes to the same bytes.
            "77777777777777777777777777",
        ] {
            assert_eq!(
                TotpSecret::from_base32(bad).err(),
                Some(MfaError::InvalidBase32),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let secret = TotpSecret::from_bytes(SEED_SHA1).unwrap();
        assert_eq!(format!("{secret:?}"), "TotpSecret(20 bytes)");
    }
}
