//! The webhook body: `{"id","type","time","realm","data"}`.
//!
//! A receiver is a third party, so the body carries no direct identifier and no secret. Every
//! data struct below holds ids, numbers, closed enums and validated identifiers only (a realm
//! or provider name, a DNS label): there is no field in which an email address, a name, an IP
//! address, a token or free text could be put, and adding one is a visible change here. The
//! `user_id` is still a pseudonymous identifier that the operator can resolve to a person, so
//! under the GDPR (Art. 4(1), Recital 26) a body is personal data.
//!
//! Typed for the sender, liberal for the receiver: [`Envelope`] only builds bodies of the
//! known types and values, while [`Received::read`] turns a verified body of a type or with
//! values this version does not know into [`Received::Unrecognised`] (raw JSON), so a newer
//! sender never makes an older receiver fail and the event retried until it dies.

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
        if is_dns_label(name) {
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

/// A social sign-in provider's name as configured in the AuthRealm's `socialProviders`
/// (`github`, `google`, `corp-sso`): a DNS label, as the CRD requires, so it cannot carry free
/// text or a user's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderName(String);

impl ProviderName {
    /// Accepts `name` if it is a DNS label.
    pub fn new(name: &str) -> Result<Self, BodyError> {
        if is_dns_label(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(BodyError::InvalidProvider)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for ProviderName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

// 1–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
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

/// `identity.linked`: a new sign-in method (a social provider's identity) was linked to the
/// account, so the user can be warned if it was not them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLinked {
    /// The account.
    pub user_id: Uuid,
    /// The AuthRealm's name for the provider (`socialProviders[].name`), not the upstream
    /// account: the upstream subject and email stay out of the body.
    pub provider: ProviderName,
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
    /// `identity.linked`
    IdentityLinked(IdentityLinked),
}

impl Event {
    /// Every event type, in the order of the documentation.
    pub const TYPES: [&'static str; 8] = [
        "account.locked",
        "login.new_device",
        "password.breached",
        "password.changed",
        "mfa.added",
        "mfa.removed",
        "identity.linked",
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
            Event::IdentityLinked(_) => "identity.linked",
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
            Event::IdentityLinked(d) => d.user_id,
        }
    }

    /// The event of type `kind` whose data is `raw` (the body's `data` object): the inverse of
    /// [`Event::type_name`] and serialising the event, for a sender that stores the two apart
    /// (the notifications outbox keeps the type in a column and the data as JSON) and builds
    /// the body at delivery. Strict, like [`Envelope::from_body`].
    pub fn from_parts(kind: &str, raw: serde_json::Value) -> Result<Self, BodyError> {
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
            "identity.linked" => Event::IdentityLinked(data(data_value(raw)?)?),
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
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The realm is not a DNS label.
    #[error("the realm name is not a DNS label")]
    InvalidRealm,
    /// The provider name is not a DNS label.
    #[error("the provider name is not a DNS label")]
    InvalidProvider,
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

    /// Reads a body strictly as this version's types: unknown fields are ignored, but an
    /// unknown type or value is an error. For the sender's tests and [`Received::read`];
    /// a receiver should use [`Received::read`] (or [`crate::Verifier`]), which turns what this
    /// version does not know into [`Received::Unrecognised`] instead of an error that would be
    /// answered non-2xx and retried for hours.
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

/// A verified body as a receiver reads it: typed when this version knows its type and values,
/// raw otherwise. Either way the receiver dedupes on the id, hands it off and answers 2xx:
/// later versions add event types and enum values (a new `mfa.added` method, a new `device`),
/// and refusing those would only have the sender retry them for hours and then drop them.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A type and data this version knows.
    Known(Envelope),
    /// A body this version cannot type: store or skip it, but answer 2xx.
    Unrecognised(RawEvent),
}

/// A verified body this version could not type, kept as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The event id, to dedupe on.
    pub id: Uuid,
    /// The `type`, if the body has a string there.
    pub kind: Option<String>,
    /// The whole body as JSON.
    pub body: serde_json::Value,
    /// Why it could not be typed (the type is unknown, or the data or envelope holds a value
    /// this version does not know).
    pub why: BodyError,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Uuid,
}

impl Received {
    /// Reads a body (after [`crate::verify`] accepted it). Refuses only a body that is not a
    /// JSON object with a UUID `id`, since without an id it cannot be deduplicated; anything
    /// else this version does not understand becomes [`Received::Unrecognised`].
    pub fn read(body: &[u8]) -> Result<Self, BodyError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
        let IdOnly { id } =
            IdOnly::deserialize(&value).map_err(|e| BodyError::Json(e.to_string()))?;
        match Envelope::from_body(body) {
            Ok(envelope) => Ok(Received::Known(envelope)),
            Err(why) => Ok(Received::Unrecognised(RawEvent {
                id,
                kind: value
                    .get("type")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                body: value,
                why,
            })),
        }
    }

    /// The event id, to dedupe on.
    pub fn id(&self) -> Uuid {
        match self {
            Received::Known(envelope) => envelope.id,
            Received::Unrecognised(raw) => raw.id,
        }
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
            Event::IdentityLinked(IdentityLinked {
                user_id,
                provider: ProviderName::new("github").unwrap(),
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
    fn every_event_is_rebuilt_from_its_type_and_data() {
        for event in every_event() {
            let data = serde_json::to_value(&event).unwrap();
            assert_eq!(Event::from_parts(event.type_name(), data).unwrap(), event);
        }
        let locked = serde_json::json!({"user_id": user(), "minutes": 15});
        assert_eq!(
            Event::from_parts("account.unlocked", locked.clone()),
            Err(BodyError::UnknownType("account.unlocked".to_owned()))
        );
        assert!(matches!(
            Event::from_parts("password.changed", locked),
            Err(BodyError::Data(_))
        ));
        assert!(matches!(
            Event::from_parts("account.locked", serde_json::json!([1])),
            Err(BodyError::Data(_))
        ));
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

    /// Every path to a leaf value (a string, number or bool) inside `v`.
    fn leaf_paths(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    path.push(k.clone());
                    leaf_paths(child, path, out);
                    path.pop();
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    leaf_paths(child, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }

    #[test]
    fn no_data_field_of_any_type_accepts_an_email_address_or_free_text() {
        // Put personal data in each data field in turn (nested ones too) and read the body
        // back as the sender's types: every field must refuse it. A new `String` (or
        // `serde_json::Value`) field anywhere in a data struct fails here, whatever value the
        // test data gives it.
        for event in every_event() {
            let kind = event.type_name();
            let body: serde_json::Value =
                serde_json::from_slice(&envelope(event).to_body().unwrap()).unwrap();
            let mut paths = Vec::new();
            leaf_paths(&body["data"], &mut Vec::new(), &mut paths);
            assert!(!paths.is_empty(), "{kind}");
            for path in paths {
                for text in [
                    "alice@example.com",
                    "Alice Smith",
                    "203.0.113.7",
                    "alice_smith",
                ] {
                    let mut changed = body.clone();
                    let mut slot = &mut changed["data"];
                    for key in &path {
                        slot = &mut slot[key.as_str()];
                    }
                    *slot = serde_json::Value::String(text.to_owned());
                    let bytes = serde_json::to_vec(&changed).unwrap();
                    assert!(
                        Envelope::from_body(&bytes).is_err(),
                        "{kind}: data.{} accepts {text:?}",
                        path.join(".")
                    );
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
    fn a_receiver_reads_unknown_types_and_values_as_raw_events_not_errors() {
        let good = String::from_utf8(envelope(every_event().remove(4)).to_body().unwrap()).unwrap();
        assert!(good.contains(r#""method":"totp""#), "{good}");
        let id = Uuid::parse_str("0b7e4d52-3c1f-4a8e-9d2b-6f5a4c3b2a10").unwrap();
        // A later version adds WebAuthn: a new value of a known type's enum.
        let webauthn = good.replace(r#""method":"totp""#, r#""method":"webauthn""#);
        assert!(Envelope::from_body(webauthn.as_bytes()).is_err());
        let Received::Unrecognised(raw) = Received::read(webauthn.as_bytes()).unwrap() else {
            panic!("a new method value must not be typed");
        };
        assert_eq!(raw.id, id);
        assert_eq!(raw.kind.as_deref(), Some("mfa.added"));
        assert_eq!(raw.body["data"]["method"], "webauthn");
        assert!(matches!(raw.why, BodyError::Data(_)));
        // A new type, and a known type whose data lacks a field, are raw too.
        let new_type = good.replace("mfa.added", "passkey.added");
        let read = Received::read(new_type.as_bytes()).unwrap();
        assert_eq!(read.id(), id);
        assert!(matches!(
            read,
            Received::Unrecognised(RawEvent {
                why: BodyError::UnknownType(_),
                ..
            })
        ));
        // What it knows is typed.
        assert_eq!(
            Received::read(good.as_bytes()).unwrap(),
            Received::Known(Envelope::from_body(good.as_bytes()).unwrap())
        );
        // Only a body without a usable id is refused: it cannot be deduplicated.
        for bad in [
            "not json",
            "[]",
            r#"{"type":"mfa.added"}"#,
            r#"{"id":"42","type":"mfa.added"}"#,
        ] {
            assert!(
                matches!(Received::read(bad.as_bytes()), Err(BodyError::Json(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn provider_names_must_be_dns_labels_when_built_and_when_read() {
        assert!(ProviderName::new("corp-sso").is_ok());
        for bad in ["", "GitHub", "a@b.example", "alice smith", &"x".repeat(64)] {
            assert_eq!(
                ProviderName::new(bad),
                Err(BodyError::InvalidProvider),
                "{bad}"
            );
        }
        let linked = every_event()
            .into_iter()
            .find(|e| e.type_name() == "identity.linked")
            .unwrap();
        let good = String::from_utf8(envelope(linked).to_body().unwrap()).unwrap();
        assert!(good.ends_with(r#""provider":"github"}}"#), "{good}");
        let email = good.replace(r#""provider":"github""#, r#""provider":"a@b.example""#);
        assert!(matches!(
            Envelope::from_body(email.as_bytes()),
            Err(BodyError::Data(_))
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
