//! The webhook body: `{"id","type","time","realm","data"}`.
//!
//! A receiver is a third party, so the body must never carry personal data or secrets. Every
//! data struct below holds ids, numbers and closed enums only: there is no `String` field in
//! which an email address or free text could be put, and adding one is a visible change here.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// A realm's name as it appears in the body: a Kubernetes DNS label (1–63 characters of
/// `a-z`, `0-9` and `-`, starting and ending with a letter or digit). Validated so that the
/// one string of the envelope cannot carry free text either.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RealmName(String);

impl RealmName {
    /// Accepts `name` if it is a DNS label.
    pub fn new(name: &str) -> Result<Self, BodyError> {
        let bytes = name.as_bytes();
        let edge_ok =
            |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && edge_ok(bytes.first())
            && edge_ok(bytes.last());
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(BodyError::InvalidRealm)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a new device was recognised as new (§7.3 of the protection plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// The browser had no known `__Host-portcullis_device` cookie.
    Cookie,
    /// An API client whose user-agent and IP prefix were not seen before.
    Fingerprint,
}

/// How a password was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordChangeMethod {
    /// The signed-in user changed it.
    Change,
    /// It was set through a password-reset link.
    Reset,
}

/// The second factor that was added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaMethod {
    /// A TOTP authenticator.
    Totp,
    /// The set of recovery codes.
    RecoveryCodes,
}

/// `account.locked`: the lockout started for `minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLocked {
    /// The locked account.
    pub user_id: Uuid,
    /// How long the lock lasts, in minutes.
    pub minutes: u32,
}

/// `login.new_device`: a login from a device not seen before for this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeviceLogin {
    /// The account.
    pub user_id: Uuid,
    /// How the device was identified.
    pub device: DeviceKind,
}

/// `password.breached`: the password just used to log in appears in a breach corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordBreached {
    /// The account.
    pub user_id: Uuid,
}

/// `password.changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChanged {
    /// The account.
    pub user_id: Uuid,
    /// Changed by the user or through a reset.
    pub method: PasswordChangeMethod,
}

/// `mfa.added` and `mfa.removed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaChanged {
    /// The account.
    pub user_id: Uuid,
    /// The factor concerned.
    pub method: MfaMethod,
}

/// `account.erased`: the account's data has been erased. The id no longer resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountErased {
    /// The erased account's former id, so the receiver can erase its own copy.
    pub user_id: Uuid,
}

/// An event, its type and its typed data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
// Untagged: the envelope writes the type itself, `data` is just the struct.
#[serde(untagged)]
pub enum Event {
    /// `account.locked`
    AccountLocked(AccountLocked),
    /// `login.new_device`
    NewDeviceLogin(NewDeviceLogin),
    /// `password.breached`
    PasswordBreached(PasswordBreached),
    /// `password.changed`
    PasswordChanged(PasswordChanged),
    /// `mfa.added`
    MfaAdded(MfaChanged),
    /// `mfa.removed`
    MfaRemoved(MfaChanged),
    /// `account.erased`
    AccountErased(AccountErased),
}

impl Event {
    /// Every event type, in the order of the documentation.
    pub const TYPES: [&'static str; 7] = [
        "account.locked",
        "login.new_device",
        "password.breached",
        "password.changed",
        "mfa.added",
        "mfa.removed",
        "account.erased",
    ];

    /// The `type` of the body, e.g. `account.locked`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AccountLocked(_) => "account.locked",
            Event::NewDeviceLogin(_) => "login.new_device",
            Event::PasswordBreached(_) => "password.breached",
            Event::PasswordChanged(_) => "password.changed",
            Event::MfaAdded(_) => "mfa.added",
            Event::MfaRemoved(_) => "mfa.removed",
            Event::AccountErased(_) => "account.erased",
        }
    }

    /// The account the event is about (every event has one).
    pub fn user_id(&self) -> Uuid {
        match self {
            Event::AccountLocked(d) => d.user_id,
            Event::NewDeviceLogin(d) => d.user_id,
            Event::PasswordBreached(d) => d.user_id,
            Event::PasswordChanged(d) => d.user_id,
            Event::MfaAdded(d) | Event::MfaRemoved(d) => d.user_id,
            Event::AccountErased(d) => d.user_id,
        }
    }

    fn from_parts(kind: &str, raw: serde_json::Value) -> Result<Self, BodyError> {
        fn data<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, BodyError> {
            serde_json::from_value(v).map_err(|e| BodyError::Data(e.to_string()))
        }
        Ok(match kind {
            "account.locked" => Event::AccountLocked(data(data_value(raw)?)?),
            "login.new_device" => Event::NewDeviceLogin(data(data_value(raw)?)?),
            "password.breached" => Event::PasswordBreached(data(data_value(raw)?)?),
            "password.changed" => Event::PasswordChanged(data(data_value(raw)?)?),
            "mfa.added" => Event::MfaAdded(data(data_value(raw)?)?),
            "mfa.removed" => Event::MfaRemoved(data(data_value(raw)?)?),
            "account.erased" => Event::AccountErased(data(data_value(raw)?)?),
            // Bounded: the type is echoed in the error, and it came from outside.
            other => return Err(BodyError::UnknownType(other.chars().take(64).collect())),
        })
    }
}

// `data` must be an object; anything else is refused before field-level decoding.
fn data_value(v: serde_json::Value) -> Result<serde_json::Value, BodyError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(BodyError::Data("data is not an object".to_owned()))
    }
}

/// One webhook delivery's body. The id is stable across retries (it is the outbox row's id),
/// so receivers dedupe on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The event id.
    pub id: Uuid,
    /// When the event happened, UTC, whole seconds.
    pub time: OffsetDateTime,
    /// The realm it happened in.
    pub realm: RealmName,
    /// What happened.
    pub event: Event,
}

/// Why a body could not be built or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The realm is not a DNS label.
    #[error("the realm name is not a DNS label")]
    InvalidRealm,
    /// The time cannot be written as RFC 3339 (a year outside 0–9999).
    #[error("the event time cannot be written as RFC 3339")]
    InvalidTime,
    /// The body is not a JSON envelope.
    #[error("the body is not a webhook envelope: {0}")]
    Json(String),
    /// The type is not one of [`Event::TYPES`].
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The data does not match the type.
    #[error("the data does not match the event type: {0}")]
    Data(String),
}

#[derive(Serialize)]
struct WireOut<'a> {
    id: &'a Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    realm: &'a str,
    data: &'a Event,
}

#[derive(Deserialize)]
struct WireIn {
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    time: String,
    realm: String,
    data: serde_json::Value,
}

impl Envelope {
    /// An envelope; `time` is converted to UTC and truncated to whole seconds, so the body
    /// does not depend on the caller's offset or clock precision.
    pub fn new(id: Uuid, time: OffsetDateTime, realm: RealmName, event: Event) -> Self {
        let time = time
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            // A nanosecond of 0 is always in range; keep the time as it was if not.
            .unwrap_or(time);
        Self {
            id,
            time,
            realm,
            event,
        }
    }

    /// The canonical body: compact JSON, keys in the order `id`, `type`, `time`, `realm`,
    /// `data`, data keys in struct order, time as `YYYY-MM-DDTHH:MM:SSZ`. The outbox stores
    /// these bytes and every attempt sends them unchanged.
    pub fn to_body(&self) -> Result<Vec<u8>, BodyError> {
        let time = self
            .time
            .format(&Rfc3339)
            .map_err(|_| BodyError::InvalidTime)?;
        let wire = WireOut {
            id: &self.id,
            kind: self.event.type_name(),
            time,
            realm: self.realm.as_str(),
            data: &self.event,
        };
        serde_json::to_vec(&wire).map_err(|e| BodyError::Json(e.to_string()))
    }

    /// Reads a body (after [`crate::verify`] accepted it). Unknown fields are ignored, so a
    /// receiver keeps working when a later version adds one; an unknown type is an error the
    /// receiver should answer with 2xx and skip (a non-2xx would be retried for hours).
    pub fn from_body(body: &[u8]) -> Result<Self, BodyError> {
        let wire: WireIn =
            serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
        let time =
            OffsetDateTime::parse(&wire.time, &Rfc3339).map_err(|_| BodyError::InvalidTime)?;
        let realm = RealmName::new(&wire.realm)?;
        let event = Event::from_parts(&wire.kind, wire.data)?;
        Ok(Self::new(wire.id, time, realm, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn user() -> Uuid {
        Uuid::parse_str("7d3c1e2a-5b4f-4c6d-8e9f-0a1b2c3d4e5f").unwrap()
    }

    fn every_event() -> Vec<Event> {
        let user_id = user();
        vec![
            Event::AccountLocked(AccountLocked {
                user_id,
                minutes: 15,
            }),
            Event::NewDeviceLogin(NewDeviceLogin {
                user_id,
                device: DeviceKind::Cookie,
            }),
            Event::PasswordBreached(PasswordBreached { user_id }),
            Event::PasswordChanged(PasswordChanged {
                user_id,
                method: PasswordChangeMethod::Reset,
            }),
            Event::MfaAdded(MfaChanged {
                user_id,
                method: MfaMethod::Totp,
            }),
            Event::MfaRemoved(MfaChanged {
                user_id,
                method: MfaMethod::RecoveryCodes,
            }),
            Event::AccountErased(AccountErased { user_id }),
        ]
    }

    fn envelope(event: Event) -> Envelope {
        Envelope::new(
            Uuid::parse_str("0b7e4d52-3c1f-4a8e-9d2b-6f5a4c3b2a10").unwrap(),
            datetime!(2026-01-01 00:00:00 UTC),
            RealmName::new("acme").unwrap(),
            event,
        )
    }

    #[test]
    fn body_has_the_documented_shape_and_key_order() {
        let body = envelope(every_event().remove(0)).to_body().unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"id":"0b7e4d52-3c1f-4a8e-9d2b-6f5a4c3b2a10","type":"account.locked","time":"2026-01-01T00:00:00Z","realm":"acme","data":{"user_id":"7d3c1e2a-5b4f-4c6d-8e9f-0a1b2c3d4e5f","minutes":15}}"#
        );
    }

    #[test]
    fn every_event_type_round_trips_and_is_listed() {
        let events = every_event();
        let names: Vec<_> = events.iter().map(Event::type_name).collect();
        assert_eq!(names, Event::TYPES);
        for event in events {
            let env = envelope(event);
            let back = Envelope::from_body(&env.to_body().unwrap()).unwrap();
            assert_eq!(back, env);
        }
    }

    #[test]
    fn time_is_utc_whole_seconds_whatever_the_callers_offset() {
        let t = datetime!(2026-01-01 02:00:00.987654321 +02:00);
        let env = Envelope::new(
            Uuid::nil(),
            t,
            RealmName::new("a").unwrap(),
            every_event().remove(2),
        );
        let body = String::from_utf8(env.to_body().unwrap()).unwrap();
        assert!(body.contains(r#""time":"2026-01-01T00:00:00Z""#), "{body}");
    }

    #[test]
    fn data_values_are_ids_numbers_and_codes_only() {
        // Every string in every data object must be a UUID or a snake_case code: nothing that
        // could be an email address or free text.
        for event in every_event() {
            let value = serde_json::to_value(&event).unwrap();
            for (key, v) in value.as_object().unwrap() {
                match v {
                    serde_json::Value::Number(_) => {}
                    serde_json::Value::String(s) => assert!(
                        Uuid::parse_str(s).is_ok()
                            || s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{key}={s}"
                    ),
                    other => panic!("{key} holds {other}"),
                }
            }
        }
    }

    #[test]
    fn realm_names_must_be_dns_labels() {
        for ok in ["acme", "a", "a-1", &"x".repeat(63)] {
            assert!(RealmName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Acme", "a b", "a@b.c", "é", &"x".repeat(64)] {
            assert_eq!(RealmName::new(bad), Err(BodyError::InvalidRealm), "{bad}");
        }
    }

    #[test]
    fn reading_refuses_unknown_types_and_mismatched_data() {
        let good = String::from_utf8(envelope(every_event().remove(0)).to_body().unwrap()).unwrap();
        let unknown = good.replace("account.locked", "account.hacked");
        assert_eq!(
            Envelope::from_body(unknown.as_bytes()),
            Err(BodyError::UnknownType("account.hacked".into()))
        );
        let wrong_data = good.replace(r#","minutes":15"#, "");
        assert!(matches!(
            Envelope::from_body(wrong_data.as_bytes()),
            Err(BodyError::Data(_))
        ));
        let not_object = good.replace(
            r#"{"user_id":"7d3c1e2a-5b4f-4c6d-8e9f-0a1b2c3d4e5f","minutes":15}"#,
            "[]",
        );
        assert!(matches!(
            Envelope::from_body(not_object.as_bytes()),
            Err(BodyError::Data(_))
        ));
        assert!(matches!(
            Envelope::from_body(b"not json"),
            Err(BodyError::Json(_))
        ));
    }

    #[test]
    fn an_extra_field_is_dropped_when_read_not_kept() {
        let good = String::from_utf8(envelope(every_event().remove(2)).to_body().unwrap()).unwrap();
        let extra = good.replace(r#""data":{"#, r#""data":{"email":"a@b.example","#);
        let env = Envelope::from_body(extra.as_bytes()).unwrap();
        assert!(
            !String::from_utf8(env.to_body().unwrap())
                .unwrap()
                .contains("email")
        );
    }
}
