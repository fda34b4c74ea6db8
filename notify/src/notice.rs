//! What goes into the outbox ([`NewNotice`]) and what a worker gets back from a claim
//! ([`Claimed`]). The crate does not know the server's notices: a row is a channel, an event
//! type, an optional user, a recipient for mail, and a JSON object the channel turns into a
//! message.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The longest event type (the column's check says the same).
pub const MAX_EVENT_LEN: usize = 64;

/// The largest payload, serialised: notices hold ids and codes, not documents.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024;

/// The longest recipient address (RFC 5321's path limit).
pub const MAX_RECIPIENT_LEN: usize = 254;

/// Event types whose row is deleted as soon as it is delivered or dead rather than kept until
/// pruned: an erasure notice (and the address of a mail one) should not outlive its delivery.
pub const DELETE_WHEN_FINISHED: &[&str] = &["account.erased"];

/// How long after it is enqueued an erasure notice (an event in [`DELETE_WHEN_FINISHED`]) is
/// first due: longer than any worker lease ([`crate::WorkerConfig`] checks), so every notice
/// about the user that a worker was already sending has been sent or abandoned before the
/// receiver hears of the erasure, and does not re-create what it has just erased.
pub const ERASURE_DELAY: Duration = Duration::from_secs(300);

// Object keys a payload may not hold, compared case-insensitively as substrings: a notice is
// stored and may sit in backups, so no credential goes into it (token mails stay off the outbox).
const FORBIDDEN_KEY_PARTS: [&str; 3] = ["token", "secret", "password"];

/// How a notice is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A mail to the row's recipient, sent by the server's mailer.
    Email,
    /// A signed POST to the realm's webhook ([`crate::webhook`]).
    Webhook,
}

impl Channel {
    /// Both channels.
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Webhook];

    /// The name stored in the `channel` column and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// The channel named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Why a notice was refused before it reached the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// The event type is not dotted snake_case (`account.locked`) of at most 64 characters.
    #[error("the event type {0:?} is not dotted snake_case of at most 64 characters")]
    InvalidEvent(String),
    /// The mail recipient is empty, too long, has no `@` or holds a control character.
    #[error("the recipient is not a plausible mail address")]
    InvalidRecipient,
    /// The payload is not a JSON object.
    #[error("the payload is not a JSON object")]
    PayloadNotObject,
    /// The payload names a credential; notices never carry one.
    #[error("the payload key {0:?} looks like a credential; notices never carry tokens or secrets")]
    ForbiddenKey(String),
    /// A mail not about an erasure names no user, so erasing that user would not delete it.
    #[error("a {0:?} mail must name its user (only erasure notices may omit it)")]
    MissingUser(String),
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("the payload is {len} bytes, more than {max}")]
    PayloadTooLarge {
        /// Its serialised length.
        len: usize,
        /// [`MAX_PAYLOAD_BYTES`].
        max: usize,
    },
    /// A webhook event could not be serialised.
    #[error("the webhook event could not be serialised: {0}")]
    Serialise(String),
}

/// A notice to enqueue: build it with [`NewNotice::email`] or [`NewNotice::webhook`], which
/// validate it, then pass it to [`crate::Outbox::enqueue`]. Its `Debug` hides the recipient
/// and the payload, so a `{:?}` log leaks no address.
#[derive(Clone, PartialEq)]
pub struct NewNotice {
    channel: Channel,
    event: String,
    user_id: Option<Uuid>,
    recipient: Option<String>,
    payload: Value,
    created_at: OffsetDateTime,
    due_at: OffsetDateTime,
}

// When a notice of `event` created at `created_at` is first due.
fn first_due(event: &str, created_at: OffsetDateTime) -> OffsetDateTime {
    if DELETE_WHEN_FINISHED.contains(&event) {
        time::Duration::try_from(ERASURE_DELAY)
            .ok()
            .and_then(|delay| created_at.checked_add(delay))
            .unwrap_or(created_at)
    } else {
        created_at
    }
}

impl NewNotice {
    /// A mail notice of type `event` to `recipient` about `user_id`, due at once. `payload` is
    /// what the server's mail template needs (ids, codes, numbers); it must be a JSON object
    /// with no key naming a token, secret or password. Pass no `user_id` only for a notice that
    /// must survive the user's deletion (the `account.erased` mail, which is deleted once
    /// finished): any other mail needs it, so that erasing the user deletes the mail's address.
    pub fn email(
        event: &str,
        user_id: Option<Uuid>,
        recipient: &str,
        payload: Value,
        created_at: OffsetDateTime,
    ) -> Result<Self, NoticeError> {
        check_event(event)?;
        check_recipient(recipient)?;
        check_payload(&payload)?;
        if user_id.is_none() && !DELETE_WHEN_FINISHED.contains(&event) {
            return Err(NoticeError::MissingUser(event.to_owned()));
        }
        Ok(Self {
            channel: Channel::Email,
            event: event.to_owned(),
            user_id,
            recipient: Some(recipient.to_owned()),
            payload,
            created_at,
            due_at: first_due(event, created_at),
        })
    }

    /// A webhook notice for `event`, due at once. The payload is the event's typed data (ids
    /// and codes only, see `portcullis_webhook::event`); the body is built from it, the row id
    /// and `created_at` at each attempt. `account.erased` rows carry no `user_id`, so that the
    /// erasure they report (which cascades to the user's rows) does not delete them.
    pub fn webhook(
        event: &portcullis_webhook::Event,
        created_at: OffsetDateTime,
    ) -> Result<Self, NoticeError> {
        let payload =
            serde_json::to_value(event).map_err(|e| NoticeError::Serialise(e.to_string()))?;
        check_payload(&payload)?;
        let user_id = match event {
            portcullis_webhook::Event::AccountErased(_) => None,
            other => Some(other.user_id()),
        };
        Ok(Self {
            channel: Channel::Webhook,
            event: event.type_name().to_owned(),
            user_id,
            recipient: None,
            payload,
            created_at,
            due_at: first_due(event.type_name(), created_at),
        })
    }

    /// Its channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Its event type.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The user it is about, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        self.user_id
    }

    /// The mail recipient (email channel only).
    pub fn recipient(&self) -> Option<&str> {
        self.recipient.as_deref()
    }

    /// The payload object.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// When it was created (the webhook body's `time`).
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it is first due: at once, or [`ERASURE_DELAY`] later for an erasure notice.
    pub fn due_at(&self) -> OffsetDateTime {
        self.due_at
    }
}

/// A row claimed by a worker: it holds the lease until [`crate::Outbox`] records the outcome
/// or the lease runs out. Its `Debug` hides the recipient and the payload.
#[derive(Clone, PartialEq)]
pub struct Claimed {
    /// The row id; also the webhook event id, the same on every attempt.
    pub id: Uuid,
    /// Its channel.
    pub channel: Channel,
    /// Its event type.
    pub event: String,
    /// The user it is about, if any.
    pub user_id: Option<Uuid>,
    /// The mail recipient (email channel only).
    pub recipient: Option<String>,
    /// The payload object.
    pub payload: Value,
    /// When it was enqueued.
    pub created_at: OffsetDateTime,
    /// Attempts including this one (1 on the first). Recording an outcome checks it, so a
    /// worker whose lease ran out and was claimed again cannot overwrite the newer attempt.
    pub attempts: u32,
}

// Shown instead of a recipient or payload.
const REDACTED: &str = "<redacted>";

fn redacted(present: bool) -> Option<&'static str> {
    present.then_some(REDACTED)
}

impl std::fmt::Debug for NewNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNotice")
            .field("channel", &self.channel)
            .field("event", &self.event)
            .field("user_id", &self.user_id)
            .field("recipient", &redacted(self.recipient.is_some()))
            .field("payload", &REDACTED)
            .field("created_at", &self.created_at)
            .field("due_at", &self.due_at)
            .finish()
    }
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("event", &self.event)
            .field("user_id", &self.user_id)
            .field("recipient", &redacted(self.recipient.is_some()))
            .field("payload", &REDACTED)
            .field("created_at", &self.created_at)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// Whether `event` is dotted snake_case: `account.locked`, `login.new_device`.
pub(crate) fn check_event(event: &str) -> Result<(), NoticeError> {
    let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let ok = event.len() <= MAX_EVENT_LEN && event.contains('.') && event.split('.').all(part_ok);
    if ok {
        Ok(())
    } else {
        Err(NoticeError::InvalidEvent(
            event.chars().take(MAX_EVENT_LEN).collect(),
        ))
    }
}

fn check_recipient(recipient: &str) -> Result<(), NoticeError> {
    let ok = !recipient.is_empty()
        && recipient.len() <= MAX_RECIPIENT_LEN
        && recipient.contains('@')
        && !recipient.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(NoticeError::InvalidRecipient)
    }
}

fn check_payload(payload: &Value) -> Result<(), NoticeError> {
    if !payload.is_object() {
        return Err(NoticeError::PayloadNotObject);
    }
    if let Some(key) = forbidden_key(payload) {
        return Err(NoticeError::ForbiddenKey(key));
    }
    let len = payload.to_string().len();
    if len > MAX_PAYLOAD_BYTES {
        return Err(NoticeError::PayloadTooLarge {
            len,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

fn forbidden_key(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(key, child)| {
            let lower = key.to_ascii_lowercase();
            if FORBIDDEN_KEY_PARTS.iter().any(|part| lower.contains(part)) {
                Some(key.clone())
            } else {
                forbidden_key(child)
            }
        }),
        Value::Array(items) => items.iter().find_map(forbidden_key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_webhook::{AccountErased, AccountLocked, Event};
    use serde_json::json;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-11-30 12:00:00 UTC);

    #[test]
    fn event_types_are_dotted_snake_case() {
        for good in ["account.locked", "login.new_device", "a.b.c"] {
            assert_eq!(check_event(good), Ok(()), "{good}");
        }
        let long = format!("a.{}", "b".repeat(63));
        for bad in [
            "",
            "locked",
            "Account.locked",
            "a..b",
            ".a",
            "a.",
            "a.b-c",
            "a.b ",
            &long,
        ] {
            assert!(
                matches!(check_event(bad), Err(NoticeError::InvalidEvent(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_email_notice_needs_a_plausible_recipient() {
        let user = Some(Uuid::from_u128(1));
        let at = |r: &str| NewNotice::email("account.locked", user, r, json!({}), AT);
        assert!(at("ada@example.org").is_ok());
        for bad in ["", "ada", "ada@example.org\r\nBcc: x@y", &"a@".repeat(200)] {
            assert_eq!(at(bad), Err(NoticeError::InvalidRecipient), "{bad:?}");
        }
    }

    #[test]
    fn a_payload_is_a_small_object_without_credentials() {
        let user = Some(Uuid::from_u128(1));
        let at = |p: Value| NewNotice::email("password.changed", user, "a@b.c", p, AT);
        assert_eq!(at(json!([1])), Err(NoticeError::PayloadNotObject));
        assert_eq!(
            at(json!({"link": {"resetToken": "x"}})),
            Err(NoticeError::ForbiddenKey("resetToken".into()))
        );
        assert_eq!(
            at(json!({"items": [{"client_secret": "x"}]})),
            Err(NoticeError::ForbiddenKey("client_secret".into()))
        );
        assert_eq!(
            at(json!({"new_password": "x"})),
            Err(NoticeError::ForbiddenKey("new_password".into()))
        );
        let big = json!({"pad": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert!(matches!(at(big), Err(NoticeError::PayloadTooLarge { .. })));
        let ok = at(json!({"minutes": 15, "method": "reset"})).unwrap();
        assert_eq!(ok.channel(), Channel::Email);
        assert_eq!(ok.recipient(), Some("a@b.c"));
    }

    #[test]
    fn a_webhook_notice_holds_the_typed_data_and_no_recipient() {
        let user_id = Uuid::from_u128(7);
        let n = NewNotice::webhook(
            &Event::AccountLocked(AccountLocked {
                user_id,
                minutes: 15,
            }),
            AT,
        )
        .unwrap();
        assert_eq!(n.channel(), Channel::Webhook);
        assert_eq!(n.event(), "account.locked");
        assert_eq!(n.user_id(), Some(user_id));
        assert_eq!(n.recipient(), None);
        assert_eq!(n.payload(), &json!({"user_id": user_id, "minutes": 15}));
        assert_eq!(n.created_at(), AT);
    }

    #[test]
    fn an_erasure_notice_is_not_tied_to_the_erased_user_row() {
        let n = NewNotice::webhook(
            &Event::AccountErased(AccountErased {
                user_id: Uuid::from_u128(9),
            }),
            AT,
        )
        .unwrap();
        assert_eq!(n.user_id(), None);
        assert_eq!(n.payload(), &json!({"user_id": Uuid::from_u128(9)}));
        assert!(DELETE_WHEN_FINISHED.contains(&n.event()));
    }

    #[test]
    fn an_erasure_notice_waits_out_the_leases_and_others_are_due_at_once() {
        let erased = Event::AccountErased(AccountErased {
            user_id: Uuid::from_u128(9),
        });
        let n = NewNotice::webhook(&erased, AT).unwrap();
        assert_eq!(n.due_at(), AT + time::Duration::seconds(300));
        let mail = NewNotice::email("account.erased", None, "a@b.c", json!({}), AT).unwrap();
        assert_eq!(mail.due_at(), AT + time::Duration::seconds(300));
        let locked = Event::AccountLocked(AccountLocked {
            user_id: Uuid::from_u128(9),
            minutes: 15,
        });
        assert_eq!(NewNotice::webhook(&locked, AT).unwrap().due_at(), AT);
    }

    #[test]
    fn only_an_erasure_mail_may_name_no_user() {
        assert_eq!(
            NewNotice::email("account.locked", None, "a@b.c", json!({}), AT),
            Err(NoticeError::MissingUser("account.locked".into()))
        );
        assert!(NewNotice::email("account.erased", None, "a@b.c", json!({}), AT).is_ok());
    }

    #[test]
    fn debug_output_hides_the_recipient_and_the_payload() {
        let notice = NewNotice::email(
            "login.new_device",
            Some(Uuid::from_u128(1)),
            "ada@example.org",
            json!({"device": "Firefox on Linux"}),
            AT,
        )
        .unwrap();
        let claimed = Claimed {
            id: Uuid::from_u128(2),
            channel: Channel::Email,
            event: notice.event().to_owned(),
            user_id: notice.user_id(),
            recipient: notice.recipient().map(str::to_owned),
            payload: notice.payload().clone(),
            created_at: AT,
            attempts: 1,
        };
        for shown in [format!("{notice:?}"), format!("{claimed:?}")] {
            assert!(!shown.contains("ada@"), "{shown}");
            assert!(!shown.contains("Firefox"), "{shown}");
            assert!(
                shown.contains("login.new_device") && shown.contains(REDACTED),
                "{shown}"
            );
        }
    }

    #[test]
    fn channels_round_trip_through_their_names() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("sms"), None);
    }
}
