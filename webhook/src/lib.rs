//! Portcullis webhooks, the pure part shared by the sender (the auth server's outbox worker)
//! and Rust receivers. No I/O and no clock: every time is passed in as Unix seconds.
//!
//! - [`event`]: the event envelope `{"id","type","time","realm","data"}` with one typed data
//!   struct per event type, holding ids and codes only, and its canonical body bytes;
//! - [`signature`]: [`sign`] and [`verify`] for the `Portcullis-Signature` header
//!   (`t=<unix s>,v1=<hex HMAC-SHA256(secret line, "<t>.<body>")>`, one `v1` per secret line);
//! - [`replay`]: [`ReplayGuard`], a bounded memory of recently accepted event ids, with
//!   [`ReplayGuard::forget`] for an event that could not be handed off;
//! - [`receiver`]: [`Verifier`], a receiver's whole check (verify, read, dedupe) with one
//!   window for the signature and the replay guard;
//! - [`backoff`]: when the next delivery attempt is due and when a delivery is dead.
//!
//! ```
//! use portcullis_webhook::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Sender: the body is built once (and stored); each attempt signs it with its own t.
//! let user_id = uuid::Uuid::from_u128(7);
//! let event = Event::AccountLocked(AccountLocked { user_id, minutes: 15 });
//! let time = time::OffsetDateTime::from_unix_timestamp(1_767_225_600)?;
//! let envelope = Envelope::new(uuid::Uuid::from_u128(1), time, RealmName::new("acme")?, event);
//! let body = envelope.to_body()?;
//! let header = sign("secret-line\n", 1_767_225_630, &body)?;
//!
//! // Receiver: verify the raw bytes, then dedupe on the body's id.
//! let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 100_000);
//! verify("secret-line", &header, &body, 1_767_225_640, DEFAULT_WINDOW)?;
//! // Liberal: a type or value this version does not know is `Received::Unrecognised`.
//! let received = Received::read(&body)?;
//! assert!(matches!(received, Received::Known(_)));
//! guard.check(received.id(), 1_767_225_640)?;
//! // ...hand it off; if that fails, `guard.forget(received.id())` and answer 503.
//! assert!(guard.check(received.id(), 1_767_225_650).is_err()); // a replay
//! # Ok(())
//! # }
//! ```
//!
//! The wire format is specified for receivers in `docs/webhooks.md`; tests in this crate check
//! the worked example there and run the Python receiver of `docs/examples/` against [`sign`].

pub mod backoff;
pub mod event;
pub mod receiver;
pub mod replay;
pub mod signature;

pub use backoff::{MAX_ATTEMPTS, is_dead, next_attempt};
pub use event::{
    AccountErased, AccountLocked, BodyError, DeviceKind, Envelope, Event, IdentityLinked,
    MfaChanged, MfaMethod, NewDeviceLogin, PasswordBreached, PasswordChangeMethod, PasswordChanged,
    ProviderName, RawEvent, RealmName, Received,
};
pub use receiver::{Refusal, Verifier};
pub use replay::{ReplayError, ReplayGuard};
pub use signature::{SignError, VerifyError, secret_lines, sign, verify};

use std::time::Duration;

/// The header carrying the signature: `t=<unix s>,v1=<hex>[,v1=<hex>…]`.
pub const SIGNATURE_HEADER: &str = "Portcullis-Signature";

/// The header carrying the event id, the same as the body's `id` (which is the one to trust:
/// only the body is signed).
pub const EVENT_ID_HEADER: &str = "Portcullis-Event-Id";

/// The receiver's tolerance between its clock and the signature's `t`: 300 s either way.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
