//! Recording security events (issue 11): each one is appended to the tamper-evident trail
//! (crate `portcullis-audit`) and then logged, with its seq and hash, as a structured line
//! under the `audit` target, so a SIEM that reads logs sees the same events as the export.
//!
//! Recording never fails the user's request: an audit store that is down must not lock
//! everyone out. A failed append is logged in full at error level and counted
//! (`portcullis_audit_write_failures_total`), which is what an alert watches.

use portcullis_audit::{ActorKind, AuditLog, AuditRow, Details, Ident, NewEvent, Outcome};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::principal::RequestMeta;
use crate::metrics::{AuditTypeLabels, Metrics};

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Nobody known yet (a failed login, a registration).
    Anonymous,
    /// A signed-in user.
    User(Uuid),
    /// The admin API.
    Admin,
    /// A registered OAuth client.
    Client(Ident),
    /// The server itself.
    System,
}

/// A registered client's id as an actor id; one that is not an identifier (configuration
/// refuses those, so this is not expected) is recorded as `invalid`.
pub fn client_ident(client_id: &str) -> Ident {
    Ident::parse(client_id)
        .or_else(|| Ident::parse("invalid"))
        .unwrap_or_else(|| Ident::hex(client_id.as_bytes()))
}

/// A security event before it is recorded: its type from the program text, how it ended,
/// who acted, whom it is about and typed details (which cannot hold emails, tokens or text).
#[derive(Clone, Debug)]
pub struct Event {
    event_type: &'static str,
    outcome: Outcome,
    actor: Actor,
    subject: Option<Uuid>,
    client: Option<Ident>,
    details: Details,
}

impl Event {
    /// A successful event by nobody known yet.
    pub fn success(event_type: &'static str) -> Self {
        Self {
            event_type,
            outcome: Outcome::Success,
            actor: Actor::Anonymous,
            subject: None,
            client: None,
            details: Details::new(),
        }
    }

    /// A failed or refused event by nobody known yet.
    pub fn failure(event_type: &'static str) -> Self {
        Self {
            outcome: Outcome::Failure,
            ..Self::success(event_type)
        }
    }

    /// Who acted.
    pub fn by(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// The user acted on their own account: actor and subject.
    pub fn by_user(self, user: Uuid) -> Self {
        self.by(Actor::User(user)).about(user)
    }

    /// The account the event is about.
    pub fn about(mut self, user: Uuid) -> Self {
        self.subject = Some(user);
        self
    }

    /// The registered OAuth client involved. A client id that is not an identifier (it
    /// came from configuration, so this is not expected) is left out and flagged.
    pub fn client(mut self, client_id: &str) -> Self {
        match Ident::parse(client_id) {
            Some(id) => self.client = Some(id),
            None => self.details = self.details.bool("client_id_unrecordable", true),
        }
        self
    }

    /// Typed details.
    pub fn details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    /// The event type.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    fn into_new(self, event_id: Uuid, now: OffsetDateTime, meta: Option<&RequestMeta>) -> NewEvent {
        let (actor_kind, actor_id) = match self.actor {
            Actor::Anonymous => (ActorKind::Anonymous, None),
            Actor::User(id) => (ActorKind::User, Some(id.hyphenated().to_string())),
            Actor::Admin => (ActorKind::Admin, Some("admin".to_owned())),
            Actor::Client(id) => (ActorKind::Client, Some(id.as_str().to_owned())),
            Actor::System => (ActorKind::System, None),
        };
        NewEvent {
            event_id,
            occurred_at: now,
            event_type: self.event_type,
            outcome: self.outcome,
            actor_kind,
            actor_id,
            subject_id: self.subject,
            client_id: self.client,
            ip: meta.map(|m| m.ip.clone()).filter(|ip| !ip.is_empty()),
            user_agent: meta
                .map(|m| m.user_agent.clone())
                .filter(|ua| !ua.is_empty()),
            details: self.details,
        }
    }
}

/// Appends `event` to the trail, then logs it with its seq and hash; on failure logs the full
/// event at error level and counts it. Returns the row when it was written.
pub async fn record(
    log: &AuditLog,
    metrics: &Metrics,
    event_id: Uuid,
    now: OffsetDateTime,
    event: Event,
    meta: Option<&RequestMeta>,
) -> Option<AuditRow> {
    let event = event.into_new(event_id, now, meta);
    match log.append(&event).await {
        Ok(row) => {
            metrics
                .audit_events
                .get_or_create(&AuditTypeLabels {
                    r#type: event.event_type,
                })
                .inc();
            tracing::info!(
                target: "audit",
                event = event.event_type,
                outcome = event.outcome.as_str(),
                actor_kind = event.actor_kind.as_str(),
                actor_id = event.actor_id.as_deref(),
                subject_id = event.subject_id.map(tracing::field::display),
                client_id = event.client_id.as_ref().map(Ident::as_str),
                ip = event.ip.as_deref(),
                user_agent = event.user_agent.as_deref(),
                details = %event.details.canonical_json(),
                event_id = %event.event_id,
                seq = row.seq,
                hash = %portcullis_audit::chain::hex(&row.hash),
                "audit event"
            );
            Some(row)
        }
        Err(error) => {
            metrics.audit_write_failures.inc();
            tracing::error!(
                target: "audit",
                event = event.event_type,
                outcome = event.outcome.as_str(),
                actor_kind = event.actor_kind.as_str(),
                actor_id = event.actor_id.as_deref(),
                subject_id = event.subject_id.map(tracing::field::display),
                client_id = event.client_id.as_ref().map(Ident::as_str),
                ip = event.ip.as_deref(),
                user_agent = event.user_agent.as_deref(),
                details = %event.details.canonical_json(),
                event_id = %event.event_id,
                %error,
                "audit event could not be written to the audit trail"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;
    use portcullis_audit::{AuditKeys, MemoryAuditLog, PageQuery};
    use time::macros::datetime;

    use super::*;

    fn log() -> AuditLog {
        let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        let keys = AuditKeys::parse(&format!("v1:{key}")).unwrap();
        MemoryAuditLog::new(Arc::new(keys), "t").into()
    }

    #[tokio::test]
    async fn a_recorded_event_is_a_chained_row_with_the_request_metadata_and_is_counted() {
        let log = log();
        let metrics = Metrics::default();
        let user = Uuid::from_u128(7);
        let meta = RequestMeta {
            ip: "192.0.2.9".into(),
            user_agent: "agent/1".into(),
            device: None,
        };
        let now = datetime!(2030-01-01 0:00 UTC);
        let first = record(
            &log,
            &metrics,
            Uuid::from_u128(1),
            now,
            Event::success("login").by_user(user),
            Some(&meta),
        )
        .await
        .unwrap();
        let second = record(
            &log,
            &metrics,
            Uuid::from_u128(2),
            now,
            Event::failure("login_failed"),
            None,
        )
        .await
        .unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(first.ip.as_deref(), Some("192.0.2.9"));
        assert_eq!(first.user_agent.as_deref(), Some("agent/1"));
        assert_eq!(first.actor_id.as_deref(), Some(user.to_string().as_str()));
        assert_eq!(first.subject_id, Some(user));
        assert_eq!(second.outcome, Outcome::Failure);
        assert_eq!(second.ip, None);
        let rows = log.page(&PageQuery::default()).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert!(log.verify(None).await.unwrap().ok);
        let login = metrics
            .audit_events
            .get_or_create(&AuditTypeLabels { r#type: "login" })
            .get();
        assert_eq!(login, 1);
    }
}
