//! A Portcullis webhook receiver in Rust, using the `portcullis-webhook` crate: the handler of
//! docs/webhooks.md, with no HTTP framework so it fits any (axum, hyper, actix…). Build it with
//! `cargo run -p portcullis-webhook --example webhook_receiver`.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_webhook::{DEFAULT_WINDOW, Event, Received, Refusal, Verifier};

/// What the handler did with one delivery, and the status to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified, new, and handed off (queued or stored): answer 204.
    Accepted,
    /// An id already received: answer 204 without handing it off again.
    Duplicate,
    /// Refused: the reason, and the status to answer.
    Refused(&'static str, u16),
}

impl Outcome {
    /// The HTTP status for the answer.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Accepted | Outcome::Duplicate => 204,
            Outcome::Refused(_, status) => *status,
        }
    }
}

/// Handles one delivery: `signature` is the `Portcullis-Signature` header, `body` the raw
/// bytes as received (before any JSON parsing), `now` the receiver's clock in Unix seconds.
/// `hand_off` queues or stores the event and must be fast; process it after answering.
pub fn handle<E>(
    secrets: &str,
    verifier: &mut Verifier,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    hand_off: impl FnOnce(Received) -> Result<(), E>,
) -> Outcome {
    let Some(signature) = signature else {
        return Outcome::Refused("no signature", 401);
    };
    // Verify, then read the body liberally (a type or value this version does not know is
    // `Received::Unrecognised`, not refused: a 4xx would be retried for hours and dropped),
    // then dedupe on the body's id, all with one window.
    let received = match verifier.check(secrets, signature, body, now) {
        Ok(received) => received,
        Err(Refusal::Duplicate(_)) => return Outcome::Duplicate,
        Err(refusal) => return Outcome::Refused(refusal.reason(), refusal.status()),
    };
    // Recorded is not processed: if the hand-off fails, forget the id so the sender's retry
    // is taken, not answered "duplicate" and lost.
    let id = received.id();
    if hand_off(received).is_err() {
        verifier.forget(id);
        return Outcome::Refused("hand_off", 503);
    }
    Outcome::Accepted
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use portcullis_webhook::{AccountLocked, Envelope, RealmName, sign};
    use time::OffsetDateTime;
    use uuid::Uuid;

    let secrets = "example-secret-from-the-webhook-secret-file\n";
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let mut verifier = Verifier::new(DEFAULT_WINDOW, 100_000);

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
        let outcome = handle(secrets, &mut verifier, Some(&header), &body, now, |event| {
            // A real receiver puts the event on its queue here.
            println!("queued {event:?}");
            Ok::<(), std::convert::Infallible>(())
        });
        println!("{delivery}: {} {outcome:?}", outcome.status());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

    use super::*;
    use portcullis_webhook::{Envelope, MfaChanged, MfaMethod, RealmName, sign};
    use uuid::Uuid;

    const NOW: i64 = 1_767_225_600;
    const SECRET: &str = "q9Vt2xKp7Lm4Rz8Nw3Hc6Jf1Yb5Ds0Ge2Ua7Wi9Ox4E";

    fn body(id: u128) -> String {
        let event = Event::MfaAdded(MfaChanged {
            user_id: Uuid::from_u128(7),
            method: MfaMethod::Totp,
        });
        let time = time::OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        let env = Envelope::new(
            Uuid::from_u128(id),
            time,
            RealmName::new("acme").unwrap(),
            event,
        );
        String::from_utf8(env.to_body().unwrap()).unwrap()
    }

    /// One delivery signed now with `SECRET`; the hand-off records what it got.
    fn deliver(
        verifier: &mut Verifier,
        body: &str,
        fail: bool,
        got: &mut Vec<Received>,
    ) -> Outcome {
        let header = sign(SECRET, NOW, body.as_bytes()).unwrap();
        handle(SECRET, verifier, Some(&header), body.as_bytes(), NOW, |r| {
            got.push(r);
            if fail { Err("queue down") } else { Ok(()) }
        })
    }

    #[test]
    fn every_outcome_has_its_status_and_only_accepted_events_are_handed_off() {
        let mut verifier = Verifier::new(DEFAULT_WINDOW, 1);
        let mut got = Vec::new();
        let b1 = body(1);
        assert_eq!(
            deliver(&mut verifier, &b1, false, &mut got),
            Outcome::Accepted
        );
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Received::Known(_)));
        let again = deliver(&mut verifier, &b1, false, &mut got);
        assert_eq!((again.status(), &again), (204, &Outcome::Duplicate));
        // The replay memory (capacity 1) is full of a live id: 503, the sender retries later.
        let busy = deliver(&mut verifier, &body(2), false, &mut got);
        assert_eq!(busy, Outcome::Refused("busy", 503));
        assert_eq!(got.len(), 1);
        let header = sign(SECRET, NOW, b1.as_bytes()).unwrap();
        let no_sig = handle(SECRET, &mut verifier, None, b1.as_bytes(), NOW, |_| {
            Ok::<(), ()>(())
        });
        assert_eq!(no_sig.status(), 401);
        let forged = handle(
            "other",
            &mut verifier,
            Some(&header),
            b1.as_bytes(),
            NOW,
            |_| Ok::<(), ()>(()),
        );
        assert_eq!(forged, Outcome::Refused("signature", 401));
        let mut other = Verifier::new(DEFAULT_WINDOW, 10);
        let garbage = deliver(&mut other, r#"{"type":"mfa.added"}"#, false, &mut got);
        assert_eq!(garbage, Outcome::Refused("body", 400));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn a_failed_hand_off_answers_503_and_the_retry_is_accepted_not_a_duplicate() {
        let mut verifier = Verifier::new(DEFAULT_WINDOW, 10);
        let mut got = Vec::new();
        let b1 = body(1);
        assert_eq!(
            deliver(&mut verifier, &b1, true, &mut got),
            Outcome::Refused("hand_off", 503)
        );
        assert_eq!(
            deliver(&mut verifier, &b1, false, &mut got),
            Outcome::Accepted
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_new_enum_value_or_type_is_accepted_and_handed_off_raw() {
        let mut verifier = Verifier::new(DEFAULT_WINDOW, 10);
        let mut got = Vec::new();
        let webauthn = body(1).replace(r#""method":"totp""#, r#""method":"webauthn""#);
        let new_type = body(2).replace("mfa.added", "passkey.added");
        for b in [&webauthn, &new_type] {
            assert_eq!(
                deliver(&mut verifier, b, false, &mut got),
                Outcome::Accepted
            );
        }
        assert!(got.iter().all(|r| matches!(r, Received::Unrecognised(_))));
    }
}
