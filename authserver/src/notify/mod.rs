//! Security notifications: the one seam the domain tells a user's notices through.
//!
//! The domain builds a typed [`Notice`] and hands it to [`Notifier::enqueue`] for a
//! [`Recipient`]; it never waits for delivery. Today a notice is mailed through the mail
//! outbox, if the realm's `notifications.events` includes its event. A durable outbox with
//! webhook delivery (crate `portcullis-notify`) is to be wired in behind this seam, so nothing
//! outside this module knows how a notice travels.

pub mod device;

use std::sync::Arc;

use portcullis_crds::realm::NotificationEvent;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::limits::Limiter;
use crate::mail::{Mail, Outbox};

/// Something a user is told about their account. Notices carry no secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The account was locked after failed logins.
    AccountLocked {
        /// Lock length in minutes (rounded up).
        minutes: u64,
    },
    /// The password was changed or reset.
    PasswordChanged,
    /// A sign-in from a device not seen before.
    NewDeviceLogin {
        /// The client's user agent (as the request gave it, truncated).
        user_agent: String,
        /// The client's address.
        ip: String,
        /// When.
        at: OffsetDateTime,
    },
    /// The password that just signed in appears in a breach corpus.
    PasswordBreached,
    /// A second factor was added.
    MfaAdded,
    /// A second factor was removed.
    MfaRemoved,
    /// The account was erased.
    ErasureDone,
}

impl Notice {
    /// The realm's `NotificationEvent` that switches this notice on or off.
    pub fn event(&self) -> NotificationEvent {
        match self {
            Notice::AccountLocked { .. } => NotificationEvent::Lockout,
            Notice::PasswordChanged => NotificationEvent::PasswordChanged,
            Notice::NewDeviceLogin { .. } => NotificationEvent::NewDevice,
            Notice::PasswordBreached => NotificationEvent::Breach,
            Notice::MfaAdded | Notice::MfaRemoved => NotificationEvent::MfaChanged,
            Notice::ErasureDone => NotificationEvent::Erasure,
        }
    }

    /// The mail that tells it.
    fn mail(self) -> Mail {
        match self {
            Notice::AccountLocked { minutes } => Mail::AccountLocked { minutes },
            Notice::PasswordChanged => Mail::PasswordChanged,
            Notice::NewDeviceLogin { user_agent, ip, at } => {
                Mail::NewDeviceLogin { user_agent, ip, at }
            }
            Notice::PasswordBreached => Mail::PasswordBreached,
            Notice::MfaAdded => Mail::MfaChanged { added: true },
            Notice::MfaRemoved => Mail::MfaChanged { added: false },
            Notice::ErasureDone => Mail::ErasureDone,
        }
    }
}

/// Whom a notice is for: the account and the address its mail goes to (an erased account's
/// last address, for [`Notice::ErasureDone`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The account.
    pub user_id: Uuid,
    /// Its canonical email.
    pub email: String,
}

impl Recipient {
    /// The recipient of an account's notices.
    pub fn of(user: &crate::store::UserRecord) -> Self {
        Self {
            user_id: user.id,
            email: user.email_canonical.clone(),
        }
    }
}

/// Whether the realm's `notifications.events` lets `event` through; a realm without a
/// `notifications` section notifies every event (the CRD's default list).
pub fn enabled(events: Option<&[NotificationEvent]>, event: NotificationEvent) -> bool {
    events.is_none_or(|events| events.contains(&event))
}

/// Where notices go.
#[derive(Clone, Debug)]
pub struct Notifier {
    outbox: Outbox,
    limits: Arc<Limiter>,
    events: Option<Vec<NotificationEvent>>,
}

impl Notifier {
    /// A notifier mailing through `outbox` under the per-address mail limits of `limits`,
    /// for the realm's `notifications.events` (`None`: no `notifications` section).
    pub fn new(
        outbox: Outbox,
        limits: Arc<Limiter>,
        events: Option<Vec<NotificationEvent>>,
    ) -> Self {
        Self {
            outbox,
            limits,
            events,
        }
    }

    /// Enqueues `notice` for `to` and returns without waiting for delivery; an event the
    /// realm switched off is dropped. Returns whether it was enqueued.
    pub async fn enqueue(&self, to: &Recipient, notice: Notice) -> bool {
        if !enabled(self.events.as_deref(), notice.event()) {
            return false;
        }
        let mail = notice.mail();
        if !self.limits.allow_mail(&to.email, mail.limit(), None).await {
            return false;
        }
        self.outbox.send(&to.email, mail);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notice_is_switched_by_its_realm_event() {
        use NotificationEvent as E;
        let cases = [
            (Notice::AccountLocked { minutes: 1 }, E::Lockout),
            (Notice::PasswordChanged, E::PasswordChanged),
            (Notice::PasswordBreached, E::Breach),
            (Notice::MfaAdded, E::MfaChanged),
            (Notice::MfaRemoved, E::MfaChanged),
            (Notice::ErasureDone, E::Erasure),
        ];
        for (notice, event) in cases {
            assert_eq!(notice.event(), event, "{notice:?}");
        }
    }

    #[test]
    fn a_realm_without_notifications_notifies_every_event_and_a_list_only_its_events() {
        use NotificationEvent as E;
        assert!(enabled(None, E::NewDevice));
        assert!(enabled(Some(&[E::Lockout, E::NewDevice]), E::NewDevice));
        assert!(!enabled(Some(&[E::Lockout]), E::NewDevice));
        assert!(!enabled(Some(&[]), E::Lockout));
    }
}
