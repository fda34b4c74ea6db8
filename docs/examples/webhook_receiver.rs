//! A Portcullis webhook receiver in Rust, using the `portcullis-webhook` crate: the handler of
//! docs/webhooks.md, with no HTTP framework so it fits any (axum, hyper, actix…). Build it with
//! `cargo run -p portcullis-webhook --example webhook_receiver`.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_webhook::{
    BodyError, DEFAULT_WINDOW, Envelope, Event, ReplayError, ReplayGuard, verify,
};

/// What the handler did with one delivery, and the status to answer.
#[derive(Debug)]
pub enum Outcome {
    /// Verified, new: process it (quickly, or queue it) and answer 204.
    Accepted(Envelope),
    /// Verified, but a type this receiver does not know: answer 204 and skip it, or it would
    /// be retried for hours.
    Skipped,
    /// An id already received: answer 204 without processing it again.
    Duplicate,
    /// Refused: the reason, and the status to answer.
    Refused(&'static str, u16),
}

impl Outcome {
    /// The HTTP status for the answer.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Accepted(_) | Outcome::Skipped | Outcome::Duplicate => 204,
            Outcome::Refused(_, status) => *status,
        }
    }
}

/// Handles one delivery: `signature` is the `Portcullis-Signature` header, `body` the raw
/// bytes as received (before any JSON parsing), `now` the receiver's clock in Unix seconds.
pub fn handle(
    secrets: &str,
    guard: &mut ReplayGuard,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Outcome {
    let Some(signature) = signature else {
        return Outcome::Refused("no signature", 401);
    };
    if let Err(e) = verify(secrets, signature, body, now, DEFAULT_WINDOW) {
        return Outcome::Refused(e.reason(), 401);
    }
    // Only now is the body trusted; its id (not the header's) is the one to dedupe on.
    let envelope = match Envelope::from_body(body) {
        Ok(envelope) => envelope,
        Err(BodyError::UnknownType(_)) => return Outcome::Skipped,
        Err(_) => return Outcome::Refused("body", 400),
    };
    match guard.check(envelope.id, now) {
        Ok(()) => Outcome::Accepted(envelope),
        Err(ReplayError::Replayed(_)) => Outcome::Duplicate,
        Err(ReplayError::Full) => Outcome::Refused("busy", 503),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use portcullis_webhook::{AccountLocked, RealmName, sign};
    use time::OffsetDateTime;
    use uuid::Uuid;

    let secrets = "example-secret-from-the-webhook-secret-file\n";
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 100_000);

    let event = Event::AccountLocked(AccountLocked {
        user_id: Uuid::nil(),
        minutes: 15,
    });
    let envelope = Envelope::new(
        Uuid::nil(),
        OffsetDateTime::now_utc(),
        RealmName::new("acme")?,
        event,
    );
    let body = envelope.to_body()?;
    let header = sign(secrets, now, &body)?;

    for delivery in ["first", "replay"] {
        let outcome = handle(secrets, &mut guard, Some(&header), &body, now);
        println!("{delivery}: {} {outcome:?}", outcome.status());
    }
    Ok(())
}
