//! Portcullis encryption at rest, the pure part: TOTP secrets and stored upstream provider
//! tokens are kept as standard Fernet tokens, bound to their owner (the user's id) and column.
//! No I/O; the auth server stores the tokens and runs the re-encryption loop over its rows.
//!
//! - [`KeyRing`]: the secrets dir's `fernet-keys`, the active key first. The first key
//!   encrypts, every key decrypts; each key has a [`KeyId`] for status output.
//! - [`seal`] / [`open`]: a secret in, a Fernet token out, and back. [`open`] refuses a token
//!   sealed for another owner or purpose ([`SealedError::MovedCiphertext`]). The owner is
//!   the owning user's id, never the secret's own row id ([`Binding`] says why).
//! - [`reencrypt`]: the token re-sealed under the first key when another key wrote it, with
//!   the old token for a compare-and-swap write ([`Reencrypted`]).
//!
//! # Plaintext framing (version 1)
//!
//! The Fernet plaintext is not the bare secret but
//!
//! ```text
//! 0x01 ‖ purpose (1 byte) ‖ owner's user id (16 bytes) ‖ secret (the rest, any length)
//! ```
//!
//! with purpose `0x01` TOTP secret, `0x02` upstream access token, `0x03` upstream refresh
//! token ([`Purpose::code`]), and the owner id's 16 bytes in the order of its text form
//! (`Uuid::as_bytes`; Python's `uuid.UUID(...).bytes`). Any standard Fernet implementation
//! decrypts a token to these bytes given the key, with its TTL check disabled (tokens at rest
//! have no TTL, below; e.g. Ruby's `fernet` gem enforces 60 s by default), e.g. in Python:
//!
//! ```text
//! framed = Fernet(base64url_key).decrypt(token)   # no ttl argument
//! assert framed[0] == 1 and framed[1] == purpose
//! owner, secret = uuid.UUID(bytes=framed[2:18]), framed[18:]
//! ```
//!
//! The binding lives inside the authenticated plaintext, so nobody without the key can change
//! it, and a ciphertext copied to another user's row (or from the access-token column to the
//! refresh-token column) is refused on open instead of yielding someone else's secret. The
//! framing does not hide the secret's length (a token's length gives it to within 16 bytes),
//! nor does the Fernet timestamp hide when it was sealed.
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
//! The operator rotates `fernet-keys` in the realm's keys Secret on the signing-key schedule
//! (`tokens.keyRotation.every`), in two steps, and this crate follows its order:
//!
//! 1. **Staged:** the new key is added *second*, after the active key. It decrypts but does
//!    not encrypt yet, so pods that start with the new file can open anything that pods still
//!    on the old file write, and the reverse.
//! 2. **Promoted:** one access-token lifetime later (`tokens.accessTokenTtl`) the operator
//!    moves it first. Pods that start from then on seal under it; tokens under older keys
//!    still open, with [`Opened::needs_reencrypt`] set, and the re-encryption command calls
//!    [`reencrypt`] row by row in bounded batches, writing each result by compare-and-swap.
//!
//! **No key is ever removed.** The operator keeps every Fernet key, and the auth server
//! records each key's fingerprint at the first start that sees it and refuses to start when a
//! recorded key is missing from `fernet-keys` (`authserver/src/startup/keys_check.rs`): a
//! removed key would silently lose every secret only it can open. After re-encryption the old
//! key protects no row, but there is no procedure yet to retire its fingerprint, so it stays.
//! By hand, do the same: add a new key as the second line, restart the pods, and only then
//! move it to the first line; never delete a line.
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
pub use token::{Opened, Reencrypted, SealedError, open, reencrypt, seal};
