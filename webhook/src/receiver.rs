//! A receiver's whole check of one delivery, with one window for the signature and the replay
//! guard: [`Verifier`].
//!
//! [`crate::verify`] and [`ReplayGuard`] each take the window, and two different windows open a
//! gap: with `verify(…, 900 s)` and a guard sized for 300 s, the guard forgets an id after
//! 600 s while a captured copy still verifies until 900 s. [`Verifier`] holds both, so the
//! windows cannot differ.

use std::time::Duration;

use uuid::Uuid;

use crate::event::{BodyError, Received};
use crate::replay::{ReplayError, ReplayGuard};
use crate::signature::{VerifyError, verify};

/// Why a delivery is not handed off, and the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The signature header is missing, malformed, wrong or outside the window.
    #[error("signature refused: {0}")]
    Signature(VerifyError),
    /// Verified, but not a JSON object with a UUID `id`.
    #[error("body refused: {0}")]
    Body(BodyError),
    /// An id already received within twice the window: answer 2xx, do not hand it off again.
    #[error("event {0} was already received")]
    Duplicate(Uuid),
    /// The replay guard is full of live ids: answer 503, the sender retries later.
    #[error("the replay guard is full")]
    Busy,
}

impl Refusal {
    /// The HTTP status to answer: 401, 400, 204 (a duplicate is not an error for the sender)
    /// or 503.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Signature(_) => 401,
            Refusal::Body(_) => 400,
            Refusal::Duplicate(_) => 204,
            Refusal::Busy => 503,
        }
    }

    /// A stable snake_case reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Signature(e) => e.reason(),
            Refusal::Body(_) => "body",
            Refusal::Duplicate(_) => "duplicate",
            Refusal::Busy => "busy",
        }
    }
}

/// Verifies, reads and dedupes deliveries with one window.
#[derive(Debug)]
pub struct Verifier {
    window: Duration,
    guard: ReplayGuard,
}

impl Verifier {
    /// A verifier accepting `t` within `window` of the receiver's clock (use
    /// [`crate::DEFAULT_WINDOW`]), remembering at most `capacity` ids.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            guard: ReplayGuard::new(window, capacity),
        }
    }

    /// The signature window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Checks one delivery: `header` is the `Portcullis-Signature` value, `body` the raw bytes
    /// as received, `now` the receiver's clock in Unix seconds. On `Ok` the id is recorded: hand
    /// the event off, and call [`Self::forget`] if that fails.
    pub fn check(
        &mut self,
        secrets: &str,
        header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Received, Refusal> {
        verify(secrets, header, body, now, self.window).map_err(Refusal::Signature)?;
        // Only now is the body trusted; its id (not the header's) is the one to dedupe on.
        let received = Received::read(body).map_err(Refusal::Body)?;
        match self.guard.check(received.id(), now) {
            Ok(()) => Ok(received),
            Err(ReplayError::Replayed(id)) => Err(Refusal::Duplicate(id)),
            Err(ReplayError::Full) => Err(Refusal::Busy),
        }
    }

    /// Forgets `id` after a failed hand-off, so the sender's retry is accepted
    /// ([`ReplayGuard::forget`]).
    pub fn forget(&mut self, id: Uuid) {
        self.guard.forget(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign;

    const T: i64 = 1_767_225_600;
    const ID: &str = "00000000-0000-0000-0000-000000000001";

    fn body() -> String {
        format!(r#"{{"id":"{ID}","type":"some.future_type","data":{{}}}}"#)
    }

    #[test]
    fn one_window_for_the_signature_and_the_guard() {
        let window = Duration::from_secs(900);
        let mut v = Verifier::new(window, 10);
        assert_eq!(v.window(), window);
        let b = body();
        // Signed 900 s before it is first received: within the window.
        let header = sign("k", T - 900, b.as_bytes()).unwrap();
        let got = v.check("k", &header, b.as_bytes(), T).unwrap();
        assert!(matches!(got, Received::Unrecognised(_)));
        // A copy re-signed at T + 900 verifies until T + 1800; the id is still known then.
        let late = sign("k", T + 900, b.as_bytes()).unwrap();
        let replay = v.check("k", &late, b.as_bytes(), T + 1800).unwrap_err();
        assert_eq!(replay, Refusal::Duplicate(Uuid::parse_str(ID).unwrap()));
        assert_eq!((replay.status(), replay.reason()), (204, "duplicate"));
    }

    #[test]
    fn refusals_have_their_status_and_a_forgotten_id_is_taken_again() {
        let mut v = Verifier::new(crate::DEFAULT_WINDOW, 1);
        let b = body();
        let header = sign("k", T, b.as_bytes()).unwrap();
        let forged = v.check("x", &header, b.as_bytes(), T).unwrap_err();
        assert_eq!((forged.status(), forged.reason()), (401, "signature"));
        let no_id = br#"{"type":"a.b"}"#;
        let h = sign("k", T, no_id).unwrap();
        let bad = v.check("k", &h, no_id, T).unwrap_err();
        assert_eq!((bad.status(), bad.reason()), (400, "body"));
        let id = v.check("k", &header, b.as_bytes(), T).unwrap().id();
        let other = br#"{"id":"00000000-0000-0000-0000-000000000002"}"#;
        let h2 = sign("k", T, other).unwrap();
        assert_eq!(v.check("k", &h2, other, T), Err(Refusal::Busy));
        assert_eq!(Refusal::Busy.status(), 503);
        // The hand-off of the first failed: forget it, and its retry is taken.
        v.forget(id);
        assert!(v.check("k", &header, b.as_bytes(), T + 30).is_ok());
    }
}
