//! The channel side: [`Deliver`] sends one claimed notice and says how it went ([`Outcome`]).
//! The worker records the outcome; a channel never touches the outbox.

use std::future::Future;
use std::pin::Pin;

use crate::notice::Claimed;

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver has it (a 2xx, or the mail server accepted the message).
    Delivered,
    /// It may work later (network error, timeout, 5xx, a redirect): try again after the
    /// backoff, until the attempts run out. The reason is stored as `last_error`.
    Retry(String),
    /// It will never work (a 410 Gone, a payload the channel cannot render): dead at once.
    Permanent(String),
}

/// The future a [`Deliver`] returns: boxed, so the worker can hold channels as trait objects.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One channel's delivery. The webhook channel is [`crate::WebhookChannel`]; the server
/// implements the email channel over its mailer.
///
/// An implementation must not hold a notice longer than the worker's attempt timeout (the
/// worker cancels it then and counts a retry), and its reasons must not carry secrets (they
/// are stored and logged): no URL with credentials, no token.
pub trait Deliver: Send + Sync {
    /// Tries to deliver `notice` once.
    fn deliver<'a>(&'a self, notice: &'a Claimed) -> DeliverFuture<'a>;
}
