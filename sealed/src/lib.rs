//! Portcullis encryption at rest, the pure part: TOTP secrets and stored upstream provider
//! tokens are kept as standard Fernet tokens, bound to their row and column. No I/O; the auth
//! server stores the tokens and runs the re-encryption loop over its rows.
//!
//! - [`KeyRing`]: the secrets dir's `fernet-keys`, newest first. The first key encrypts,
//!   every key decrypts; each key has a [`KeyId`] for status output.
//! - [`seal`] / [`open`]: a secret in, a Fernet token out, and back. [`open`] refuses a token
//!   sealed for another row or purpose ([`SealedError::MovedCiphertext`]).
//! - [`reencrypt`]: a new token under the first key when an older key wrote it.
//!
//! # Plaintext framing (version 1)
//!
//! The Fernet plaintext is not the bare secret but
//!
//! ```text
//! 0x01 ‖ purpose (1 byte) ‖ row id (16 bytes) ‖ secret (the rest, any length)
//! ```
//!
//! with purpose `0x01` TOTP secret, `0x02` upstream access token, `0x03` upstream refresh
//! token ([`Purpose::code`]), and the row id's 16 bytes in the order of its text form
//! (`Uuid::as_bytes`; Python's `uuid.UUID(...).bytes`). Any standard Fernet implementation
//! decrypts a token to these bytes given the key, e.g. in Python:
//!
//! ```text
//! framed = Fernet(base64url_key).decrypt(token)
//! assert framed[0] == 1 and framed[1] == purpose
//! row, secret = uuid.UUID(bytes=framed[2:18]), framed[18:]
//! ```
//!
//! The binding lives inside the authenticated plaintext, so nobody without the key can change
//! it, and a ciphertext copied to another user's row (or from the access-token column to the
//! refresh-token column) is refused on open instead of yielding someone else's secret.
//!
//! # No TTL
//!
//! Fernet tokens carry a timestamp, and Fernet's TTL is for short-lived messages. A TOTP
//! secret stays valid for as long as the user keeps the authenticator, and a refresh token
//! for as long as the provider honours it: expiry is the row's business, not the encryption's.
//! A TTL would make old secrets undecryptable at some arbitrary date. So [`open`] ignores the
//! timestamp altogether (as Python's `Fernet.decrypt(token)` without `ttl` does), including
//! a timestamp in the future: replicas' clocks differ. The timestamp [`seal`] writes is the
//! time passed in, which tests control.
//!
//! # Key rotation
//!
//! Put a new key first in `fernet-keys` and keep the old ones after it. Tokens under an old
//! key still open, with [`Opened::needs_reencrypt`] set; the re-encryption command calls
//! [`reencrypt`] row by row in bounded batches; once no row needs it, the old key can go.
//!
//! # What is wiped
//!
//! The keys live in `fernet::Fernet`, which zeroes them on drop; the decrypted framing and
//! [`Opened::plaintext`] are `Zeroizing`. The fernet crate's own intermediate buffers (the
//! padded plaintext during AES-CBC) are not wiped; that is outside this crate's reach.
//!
//! ```
//! use portcullis_sealed::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ring = KeyRing::new(&[vec![7; 32]])?;
//! let alice = Binding::new(Purpose::TotpSecret, uuid::Uuid::from_u128(1));
//! let bob = Binding::new(Purpose::TotpSecret, uuid::Uuid::from_u128(2));
//! let token = seal(&ring, alice, b"JBSWY3DPEHPK3PXP", 1_767_225_600);
//! assert_eq!(open(&ring, alice, &token)?.plaintext.as_slice(), b"JBSWY3DPEHPK3PXP");
//! assert_eq!(open(&ring, bob, &token).unwrap_err().reason(), "moved_ciphertext");
//! # Ok(())
//! # }
//! ```

pub mod binding;
pub mod keyring;
pub mod token;

pub use binding::{Binding, FRAMING_HEADER_LEN, FRAMING_V1, Purpose, frame};
pub use keyring::{KEY_LEN, KeyId, KeyRing, KeyRingError};
pub use token::{Opened, SealedError, open, reencrypt, seal};
