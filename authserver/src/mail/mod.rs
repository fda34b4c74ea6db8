//! Outgoing mail: the messages and their text (here), delivery by SMTP and/or `.eml` files
//! (`transport`), and the outbox the domain hands messages to (`outbox`).

mod outbox;
mod transport;

pub use outbox::{Outbox, Sent};
pub use transport::{MailError, Mailer, Sinks};

/// A message to send; bodies are built from these templates only.
#[derive(Clone, PartialEq, Eq)]
pub enum Mail {
    /// Confirm an address after registration.
    VerifyEmail {
        /// Single-use token.
        token: String,
        /// The pending authorization request the registration was made in, carried on the
        /// link so the verified user can go on to the application.
        req: Option<String>,
    },
    /// Someone registered with an address that already has an account.
    AlreadyRegistered,
    /// Reset a forgotten password.
    PasswordReset {
        /// Single-use token.
        token: String,
    },
    /// The password was changed or reset.
    PasswordChanged,
    /// The account was locked after failed logins.
    AccountLocked {
        /// Lock length in minutes (rounded up).
        minutes: u64,
    },
    /// A sign-in from a device not seen before.
    NewDeviceLogin {
        /// The client's user agent.
        user_agent: String,
        /// The client's address.
        ip: String,
        /// When.
        at: time::OffsetDateTime,
    },
    /// The password used to sign in appears in known data breaches.
    PasswordBreached,
    /// A second factor was added or removed.
    MfaChanged {
        /// Added (else removed).
        added: bool,
    },
    /// A recovery code was used to sign in.
    RecoveryCodeUsed {
        /// Unspent codes left.
        remaining: u32,
    },
    /// The account and its data were erased.
    ErasureDone,
    /// A social provider was linked to the account.
    IdentityLinked {
        /// The realm's name for the provider.
        provider: String,
    },
    /// The account will be deleted or disabled for inactivity unless its owner signs in.
    InactivityWarning {
        /// What will happen.
        action: portcullis_crds::retention::InactiveAccountAction,
        /// Days left.
        days: i64,
    },
}

/// Which per-address mail limit a message counts against. Each kind has a bucket of its own,
/// so that one kind cannot silence another: registrations anyone can make for an address do
/// not drain the bucket its owner's recovery mail needs, and lock notices cannot be used to
/// mail-bomb it either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailLimit {
    /// Registration mail anyone who knows the address can trigger.
    Signup,
    /// Account-recovery mail: only reset requests charge this bucket, per requester.
    Recovery,
    /// The account-locked notice: anyone can trigger it with wrong passwords, so at most one
    /// per address per dedupe window.
    LockNotice,
    /// Notices that need a credential or come from the server itself: never limited, so no
    /// drained bucket can hide a password change from the owner.
    Unlimited,
}

impl Mail {
    /// The per-address limit this message counts against.
    pub fn limit(&self) -> MailLimit {
        match self {
            Mail::VerifyEmail { .. } | Mail::AlreadyRegistered => MailLimit::Signup,
            Mail::PasswordReset { .. } => MailLimit::Recovery,
            Mail::AccountLocked { .. } => MailLimit::LockNotice,
            // Each needs the right password (or comes from the server): never limited.
            Mail::PasswordChanged
            | Mail::InactivityWarning { .. }
            | Mail::NewDeviceLogin { .. }
            | Mail::PasswordBreached
            | Mail::MfaChanged { .. }
            | Mail::RecoveryCodeUsed { .. }
            | Mail::IdentityLinked { .. }
            | Mail::ErasureDone => MailLimit::Unlimited,
        }
    }
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens in mails are credentials: never printed.
        let name = match self {
            Mail::VerifyEmail { .. } => "VerifyEmail",
            Mail::AlreadyRegistered => "AlreadyRegistered",
            Mail::PasswordReset { .. } => "PasswordReset",
            Mail::PasswordChanged => "PasswordChanged",
            Mail::AccountLocked { .. } => "AccountLocked",
            Mail::InactivityWarning { .. } => "InactivityWarning",
            Mail::NewDeviceLogin { .. } => "NewDeviceLogin",
            Mail::PasswordBreached => "PasswordBreached",
            Mail::MfaChanged { .. } => "MfaChanged",
            Mail::RecoveryCodeUsed { .. } => "RecoveryCodeUsed",
            Mail::ErasureDone => "ErasureDone",
            Mail::IdentityLinked { .. } => "IdentityLinked",
        };
        write!(f, "Mail::{name}")
    }
}

/// Subject and plain-text body of a message for `realm`, linking to `issuer`.
pub fn render(realm: &str, issuer: &str, mail: &Mail) -> (String, String) {
    match mail {
        Mail::VerifyEmail { token, req } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("token", token);
            if let Some(req) = req {
                query.append_pair("req", req);
            }
            let query = query.finish();
            (
                format!("Confirm your email address for {realm}"),
                format!(
                    "Welcome to {realm}.\n\nConfirm your address by opening this link within 24 hours:\n\n{issuer}/verify-email?{query}\n\nVerification code:\n{token}\n\nIf you did not register, ignore this message.\n"
                ),
            )
        }
        Mail::AlreadyRegistered => (
            format!("Registration attempt on {realm}"),
            format!(
                "Someone tried to register on {realm} with this address, which already has an account.\n\nIf it was you, sign in or reset your password at {issuer}/login.\nIf it was not, you can ignore this message; your account is unchanged.\n"
            ),
        ),
        Mail::PasswordReset { token } => (
            format!("Reset your {realm} password"),
            format!(
                "Open this link within 30 minutes to choose a new password:\n\n{issuer}/reset-password?token={token}\n\nReset code:\n{token}\n\nIf you did not ask for this, ignore this message; your password is unchanged.\n"
            ),
        ),
        Mail::PasswordChanged => (
            format!("Your {realm} password was changed"),
            format!(
                "The password of your {realm} account was just changed and every other session was signed out.\n\nIf this was not you, reset your password at once: {issuer}/login\n"
            ),
        ),
        Mail::InactivityWarning { action, days } => {
            let outcome = match action {
                portcullis_crds::retention::InactiveAccountAction::Delete => {
                    "deleted with its data"
                }
                portcullis_crds::retention::InactiveAccountAction::Disable => "disabled",
            };
            (
                format!("Your {realm} account will be {outcome}"),
                format!(
                    "Nobody has signed in to your {realm} account for a long time. Under the {realm} retention policy it will be {outcome} in {days} day(s).\n\nTo keep it, sign in before then: {issuer}/login\n"
                ),
            )
        }
        Mail::NewDeviceLogin { user_agent, ip, at } => {
            let at = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            (
                format!("New sign-in to your {realm} account"),
                format!(
                    "Your {realm} account was just signed in to from a device it has not been used from before.

When: {at}
Address: {}
Browser or app: {}

If this was you, there is nothing to do. If it was not, change your password at once: {issuer}/login
",
                    printable(ip, 64),
                    printable(user_agent, 160)
                ),
            )
        }
        Mail::PasswordBreached => (
            format!("Your {realm} password appears in a data breach"),
            format!(
                "The password you just signed in to {realm} with appears in a known data breach, so others may try it.

Please choose a new password now: {issuer}/account
"
            ),
        ),
        Mail::MfaChanged { added } => {
            let what = if *added { "added to" } else { "removed from" };
            (
                format!("A second factor was {what} your {realm} account"),
                format!(
                    "A second sign-in factor was just {what} your {realm} account.

If this was not you, reset your password at once: {issuer}/login
"
                ),
            )
        }
        Mail::RecoveryCodeUsed { remaining } => (
            format!("A recovery code was used to sign in to your {realm} account"),
            format!(
                "A recovery code was just used to sign in to your {realm} account. {remaining} unused code(s) remain.

If this was not you, reset your password at once: {issuer}/login
"
            ),
        ),
        Mail::IdentityLinked { provider } => (
            format!("A new way to sign in was added to your {realm} account"),
            format!(
                "Your {realm} account can now be signed in to through {provider}.

If this was not you, remove it from your account page and reset your password: {issuer}/account
"
            ),
        ),
        Mail::ErasureDone => (
            format!("Your {realm} account was erased"),
            format!(
                "Your {realm} account and the personal data it held were erased as requested.

This is the last message you will receive about it.
"
            ),
        ),
        Mail::AccountLocked { minutes } => (
            format!("Your {realm} account is temporarily locked"),
            format!(
                "After repeated failed sign-in attempts your {realm} account is locked for {minutes} minute(s).\n\nIf these attempts were not yours, consider changing your password once the lock ends.\n"
            ),
        ),
    }
}

/// `text` without control characters, at most `max` characters: what a client sent (a user
/// agent) goes into a mail body as one inert line.
fn printable(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_device_mail_shows_the_client_on_one_inert_line() {
        let (subject, body) = render(
            "demo",
            "https://auth.example.com",
            &Mail::NewDeviceLogin {
                user_agent: "evil\r\nBcc: x@example.com".into(),
                ip: "192.0.2.7".into(),
                at: time::macros::datetime!(2030-01-01 0:00 UTC),
            },
        );
        assert_eq!(subject, "New sign-in to your demo account");
        assert!(body.contains("Browser or app: evilBcc: x@example.com\n"));
        assert!(body.contains("When: 2030-01-01T00:00:00Z\nAddress: 192.0.2.7\n"));
    }

    #[test]
    fn a_verification_mail_links_to_the_issuer_with_its_token() {
        let (subject, body) = render(
            "demo",
            "https://auth.example.com",
            &Mail::VerifyEmail {
                token: "tok123".into(),
                req: None,
            },
        );
        assert_eq!(subject, "Confirm your email address for demo");
        assert!(body.contains("https://auth.example.com/verify-email?token=tok123\n"));
    }

    #[test]
    fn a_verification_mail_made_during_an_authorization_carries_its_request_on_the_link() {
        let (_, body) = render(
            "demo",
            "https://auth.example.com",
            &Mail::VerifyEmail {
                token: "tok123".into(),
                req: Some("r/1".into()),
            },
        );
        assert!(body.contains("https://auth.example.com/verify-email?token=tok123&req=r%2F1\n"));
    }

    #[test]
    fn debug_never_prints_a_token() {
        let mail = Mail::PasswordReset {
            token: "tok123".into(),
        };
        assert_eq!(format!("{mail:?}"), "Mail::PasswordReset");
    }
}
