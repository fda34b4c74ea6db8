//! Portcullis second factor: everything the auth server needs to enrol an authenticator app
//! and check its codes, and to issue and check recovery codes. No clock and no random source
//! of its own: the time is passed in and every secret or code is made from random bytes the
//! caller provides, so tests pin both and the auth server keeps a single CSPRNG. The only I/O
//! is the PostgreSQL store in [`pg`]; the other modules are pure.
//!
//! - [`totp`]: RFC 6238 codes with an enrolment's digits, period, hash and skew ([`TotpParams`],
//!   stored with each secret),
//!   the shared secret ([`TotpSecret`], base32 for display), the matched [`TimeStep`] of a
//!   code (checked only through [`PgMfaStore::verify`], which records it), and [`accept`],
//!   the replay rule (a per-user last used step that only
//!   moves forward) the auth server applies atomically across replicas;
//! - [`uri`]: the `otpauth://totp/...` enrolment URI (Key Uri Format);
//! - [`qr`]: that URI as a QR code, drawn as a small self-contained SVG;
//! - [`recovery`]: single-use recovery codes, their versioned per-user keyed hashes and a
//!   constant-time lookup that returns the hash to spend;
//! - [`pg`]: the store ([`PgMfaStore`]): enrolments with their secret sealed at rest
//!   (portcullis-sealed), the replay guard and recovery-code spending as compare-and-set
//!   statements shared by all replicas, and re-encryption after a key rotation.
//!
//! ```
//! use portcullis_mfa::*;
//! # fn main() -> Result<(), MfaError> {
//! let params = TotpParams::new(Algorithm::Sha1, 6, 30)?;
//! let secret = TotpSecret::generate([7; SECRET_LEN]);
//! let uri = otpauth_uri(&params, &secret, "Acme", "alice@example.com")?;
//! assert!(uri.starts_with("otpauth://totp/Acme:alice%40example.com?secret="));
//! let svg = qr_svg(&uri, "Scan this code with your authenticator app")?;
//! assert!(svg.starts_with("<svg"));
//!
//! let now = 1_767_225_600;
//! let code = generate(&params, &secret, now); // what the app shows; PgMfaStore::verify checks it
//! assert_eq!(code.len(), 6);
//! let step = params.time_step(now);
//! assert!(accept(None, step)); // first use: the server stores `step` as the user's last
//! assert!(!accept(Some(step), step)); // the same code again: refused
//!
//! // Recovery codes: shown once, stored as keyed hashes bound to the user with their key
//! // version, each found as its stored hash, which the caller then spends by value.
//! let ring = RecoveryKeyRing::new(vec![RecoveryKey::new(1, b"the realm's pepper, 32 bytes or so")?])?;
//! let (realm, user) = ("acme", "0b8f3a52-5c1e-4d7a-9f0e-2a6b1c3d4e5f");
//! let random: Vec<u8> = (0..2 * RECOVERY_CODE_RANDOM_BYTES as u8).collect(); // from a CSPRNG
//! let codes = generate_recovery_codes(2, &random)?;
//! let stored: Vec<RecoveryCodeHash> = codes.iter().map(|c| ring.hash(realm, user, c)).collect();
//! let typed = codes[1].as_str().to_uppercase().replace('-', " ");
//! assert_eq!(ring.find(realm, user, &typed, &stored), Some(stored[1]));
//! # Ok(())
//! # }
//! ```
//!
//! # Benchmark
//!
//! `mfa/benches/mfa.rs` prints what these pieces cost (a table of p50/p99/max and operations
//! per second; it asserts nothing but that every call succeeds): the pure parts (a TOTP code's
//! window, recovery-code hashing, sealing and opening a secret with a 1-key and a 3-key ring,
//! the QR SVG), then [`PgMfaStore`]'s `verify` with 1 and 16 concurrent tasks,
//! `spend_recovery_code`, `confirm` and `reencrypt_batch` over 10,000 rows, in a scratch
//! database on `DATABASE_URL`'s server. Run it in release, with PostgreSQL from the project's
//! services script:
//! `source scripts/services.sh; ensure_services; trap services_stop EXIT;
//! cargo bench --locked -p portcullis-mfa --bench mfa`. The figures depend on the machine's
//! load and on the server's `fsync` and `synchronous_commit`, which the output shows.

pub mod pg;
pub mod qr;
pub mod recovery;
pub mod totp;
pub mod uri;

pub use pg::{EnrolmentId, MfaStatus, MfaStoreError, PgMfaStore, ReencryptReport};
pub use qr::qr_svg;
pub use recovery::{
    RECOVERY_CODE_LEN, RECOVERY_CODE_RANDOM_BYTES, RecoveryCode, RecoveryCodeHash, RecoveryKey,
    RecoveryKeyRing, generate_recovery_codes,
};
pub use totp::{
    Algorithm, MAX_SKEW_STEPS, MIN_SECRET_LEN, PERIOD_RANGE, SECRET_LEN, TimeStep, TotpParams,
    TotpSecret, accept, generate,
};
pub use uri::otpauth_uri;

/// What can be wrong with the settings, secrets or keys handed to this crate. A code that does
/// not match is not an error: the checks return `None`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MfaError {
    /// RFC 4226 codes have 6 to 8 digits.
    #[error("a TOTP code has 6 to 8 digits, not {0}")]
    InvalidDigits(u32),
    /// More skew than [`totp::MAX_SKEW_STEPS`].
    #[error("at most {max} steps of TOTP skew, not {0}", max = totp::MAX_SKEW_STEPS)]
    InvalidSkew(u8),
    /// A time step outside [`totp::PERIOD_RANGE`] seconds.
    #[error("the TOTP period is {min} to {max} seconds, not {0}", min = totp::PERIOD_RANGE.start(), max = totp::PERIOD_RANGE.end())]
    InvalidPeriod(u32),
    /// RFC 4226 section 4: the shared secret is at least 128 bits.
    #[error("a TOTP secret has at least {MIN_SECRET_LEN} bytes, not {0}")]
    SecretTooShort(usize),
    /// Not the stored form of valid [`TotpParams`] (`SHA1:6:30:1`).
    #[error("not a stored TOTP parameter set")]
    InvalidStoredParams,
    /// Not RFC 4648 base32.
    #[error("not a base32 secret")]
    InvalidBase32,
    /// The issuer or the account name of an enrolment URI is empty.
    #[error("the {0} of an otpauth URI must not be empty")]
    EmptyLabel(&'static str),
    /// The issuer or the account name of an enrolment URI contains `:`, a control character or
    /// a bidirectional override, which authenticator apps misread or render.
    #[error(
        "the {0} of an otpauth URI must not contain ':', control or bidirectional override characters"
    )]
    InvalidLabel(&'static str),
    /// The text does not fit in the largest QR code.
    #[error("too long for a QR code")]
    QrDataTooLong,
    /// The caller handed over the wrong amount of random bytes.
    #[error("expected {expected} random bytes, got {got}")]
    RandomLength {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Two codes of a new recovery-code set are equal; draw new random bytes.
    #[error("the recovery code set has a repeated code")]
    DuplicateRecoveryCode,
    /// A recovery-code key ring without keys.
    #[error("a recovery code key ring needs at least one key")]
    EmptyKeyRing,
    /// Two keys of a recovery-code key ring have the same version.
    #[error("recovery code key version {0} appears twice")]
    DuplicateKeyVersion(u32),
    /// The recovery-code key is shorter than [`recovery::MIN_KEY_LEN`].
    #[error("the recovery code key has at least {} bytes", recovery::MIN_KEY_LEN)]
    KeyTooShort,
}
