//! The outbox the domain hands messages to. Delivery runs in the background: an answer never
//! waits for a mail server (so whether a mail was sent cannot be told from its timing), and
//! delivery problems are logged and counted, never failing the request that caused the mail.

use std::sync::{Arc, Mutex, PoisonError};

use super::{Mail, Mailer};
use crate::metrics::Metrics;

/// A message handed to the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Recipient address.
    pub to: String,
    /// The message.
    pub mail: Mail,
}

/// Where the domain's mail goes.
#[derive(Clone, Debug)]
pub enum Outbox {
    /// Delivered by a [`Mailer`].
    Deliver {
        /// The mailer.
        mailer: Arc<Mailer>,
        /// Counts delivery failures.
        metrics: Arc<Metrics>,
    },
    /// Kept in memory, in order, for whoever holds the list (the domain's unit tests).
    Recording(Arc<Mutex<Vec<Sent>>>),
}

impl Outbox {
    /// An outbox that records, and the list it records into.
    pub fn recording() -> (Self, Arc<Mutex<Vec<Sent>>>) {
        let list = Arc::new(Mutex::new(Vec::new()));
        (Outbox::Recording(list.clone()), list)
    }

    /// The mailer this outbox delivers with (none when it only records).
    pub fn mailer(&self) -> Option<&Mailer> {
        match self {
            Outbox::Deliver { mailer, .. } => Some(mailer),
            Outbox::Recording(_) => None,
        }
    }

    /// Hands `mail` for `to` over for delivery and returns at once.
    pub fn send(&self, to: &str, mail: Mail) {
        match self {
            Outbox::Deliver { mailer, metrics } => {
                let (mailer, metrics, to) = (mailer.clone(), metrics.clone(), to.to_owned());
                tokio::spawn(async move {
                    match mailer.send(&to, &mail).await {
                        Ok(()) => {
                            metrics.mails_sent.inc();
                        }
                        Err(error) => {
                            metrics.mail_failures.inc();
                            tracing::error!(error = %error, mail = ?mail, "mail delivery failed");
                        }
                    }
                });
            }
            Outbox::Recording(list) => {
                list.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Sent {
                        to: to.to_owned(),
                        mail,
                    })
            }
        }
    }
}
