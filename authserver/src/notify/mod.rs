//! Security notifications: the one seam the domain tells a user's notices through.
//!
//! The domain builds a typed [`Notice`] and hands it to [`Notifier::enqueue`] for a
//! [`Recipient`]; it never waits for delivery, and only notices whose event the realm's
//! `notifications.events` includes are sent. With PostgreSQL each notice becomes one row per
//! channel of the durable outbox (crate `portcullis-notify`, see [`outbox`]): a mail to the
//! user's address and, when the realm has a webhook, a signed event with ids only; a worker
//! delivers them with retries. On the in-memory database (development without PostgreSQL,
//! unit tests) a notice is mailed at once through the mail outbox. Nothing outside this
//! module knows how a notice travels.

pub mod device;
pub mod outbox;

use std::sync::Arc;

use portcullis_crds::realm::NotificationEvent;
use portcullis_webhook::{DeviceKind, MfaMethod, PasswordChangeMethod};
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
    PasswordChanged {
        /// Changed by the signed-in user, or set through a reset link.
        method: PasswordChangeMethod,
    },
    /// A sign-in from a device not seen before.
    NewDeviceLogin {
        /// How it was found new: an unknown device cookie, or an unknown user agent and
        /// network.
        device: DeviceKind,
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
    MfaAdded {
        /// Which.
        method: MfaMethod,
    },
    /// A second factor was removed.
    MfaRemoved {
        /// Which.
        method: MfaMethod,
    },
    /// A recovery code was used to sign in (it is spent: for the webhook, one code of the
    /// set was removed).
    RecoveryCodeUsed {
        /// Unspent codes left.
        remaining: u32,
    },
    /// The account was erased.
    ErasureDone,
    /// A social provider's identity was linked to the account: a new way to sign in.
    IdentityLinked {
        /// The realm's name for the provider.
        provider: portcullis_webhook::ProviderName,
    },
}

impl Notice {
    /// The realm's `NotificationEvent` that switches this notice on or off.
    pub fn event(&self) -> NotificationEvent {
        match self {
            Notice::AccountLocked { .. } => NotificationEvent::Lockout,
            Notice::PasswordChanged { .. } => NotificationEvent::PasswordChanged,
            Notice::NewDeviceLogin { .. } => NotificationEvent::NewDevice,
            Notice::PasswordBreached => NotificationEvent::Breach,
            Notice::MfaAdded { .. }
            | Notice::MfaRemoved { .. }
            | Notice::RecoveryCodeUsed { .. } => NotificationEvent::MfaChanged,
            Notice::ErasureDone => NotificationEvent::Erasure,
            Notice::IdentityLinked { .. } => NotificationEvent::IdentityLinked,
        }
    }

    /// The mail that tells it.
    pub fn mail(self) -> Mail {
        match self {
            Notice::AccountLocked { minutes } => Mail::AccountLocked { minutes },
            Notice::PasswordChanged { .. } => Mail::PasswordChanged,
            Notice::NewDeviceLogin {
                user_agent, ip, at, ..
            } => Mail::NewDeviceLogin { user_agent, ip, at },
            Notice::PasswordBreached => Mail::PasswordBreached,
            Notice::MfaAdded { .. } => Mail::MfaChanged { added: true },
            Notice::MfaRemoved { .. } => Mail::MfaChanged { added: false },
            Notice::RecoveryCodeUsed { remaining } => Mail::RecoveryCodeUsed { remaining },
            Notice::ErasureDone => Mail::ErasureDone,
            Notice::IdentityLinked { provider } => Mail::IdentityLinked {
                provider: provider.as_str().to_owned(),
            },
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
    durable: Option<outbox::Durable>,
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
            durable: None,
        }
    }

    /// The same notifier enqueueing into the durable outbox `durable` (PostgreSQL) instead of
    /// mailing at once.
    pub fn with_durable(mut self, durable: outbox::Durable) -> Self {
        self.durable = Some(durable);
        self
    }

    /// The durable outbox, when notices go through PostgreSQL.
    pub fn durable(&self) -> Option<&outbox::Durable> {
        self.durable.as_ref()
    }

    /// Whether the realm notifies `notice`'s event at all.
    pub fn notifies(&self, notice: &Notice) -> bool {
        enabled(self.events.as_deref(), notice.event())
    }

    /// Enqueues `notice` for `to` and returns without waiting for delivery; an event the
    /// realm switched off is dropped, and so is a notice (mail and webhook event alike) the
    /// per-address mail limits refuse.
    /// With the durable outbox, a row that cannot be written is logged and counted, never
    /// failing the caller. Returns whether something was enqueued.
    pub async fn enqueue(&self, to: &Recipient, notice: Notice) -> bool {
        if !enabled(self.events.as_deref(), notice.event()) {
            return false;
        }
        let mail_allowed = self
            .limits
            .allow_mail(&to.email, notice.clone().mail().limit(), None)
            .await;
        match &self.durable {
            Some(durable) => durable.enqueue(to, &notice, mail_allowed).await,
            None if mail_allowed => {
                self.outbox.send(&to.email, notice.mail());
                true
            }
            None => false,
        }
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
            (
                Notice::PasswordChanged {
                    method: PasswordChangeMethod::Reset,
                },
                E::PasswordChanged,
            ),
            (Notice::PasswordBreached, E::Breach),
            (
                Notice::MfaAdded {
                    method: MfaMethod::Totp,
                },
                E::MfaChanged,
            ),
            (
                Notice::MfaRemoved {
                    method: MfaMethod::RecoveryCodes,
                },
                E::MfaChanged,
            ),
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
