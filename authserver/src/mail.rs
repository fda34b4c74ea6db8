//! Outgoing mail: verification, reset and notice messages, delivered by SMTP (URL from the
//! `smtp-url` secret) and/or written one `.eml` file per message to the mail dir (the only sink
//! in `--dev`).

use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// A message to send; bodies are built from these templates only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mail {
    /// Confirm an address after registration.
    VerifyEmail {
        /// Single-use token.
        token: String,
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
    /// The account will be deleted or disabled for inactivity unless its owner signs in.
    InactivityWarning {
        /// What will happen.
        action: portcullis_crds::retention::InactiveAccountAction,
        /// Days left.
        days: i64,
    },
}

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message could not be built (bad address).
    #[error("cannot build message: {0}")]
    Build(String),
    /// SMTP delivery failed.
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    /// The SMTP URL would send credentials and tokens in clear.
    #[error(
        "smtp-url must use TLS: smtps:// or smtp://...?tls=required (plain smtp:// only to a loopback host)"
    )]
    Cleartext,
    /// Writing the .eml file failed.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Delivers mail.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    issuer: String,
    realm: String,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("smtp", &self.smtp.is_some())
            .field("dir", &self.dir)
            .finish()
    }
}

impl Mailer {
    /// A mailer sending from `from`, through SMTP when `smtp_url` is given, and into `dir` when
    /// given. At least one sink is required.
    pub fn new(
        from: &str,
        issuer: &str,
        realm: &str,
        smtp_url: Option<&str>,
        dir: Option<PathBuf>,
    ) -> Result<Self, MailError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| MailError::Build(format!("sender {from}: {e}")))?;
        if let Some(url) = smtp_url
            && !encrypts_or_stays_local(url)
        {
            return Err(MailError::Cleartext);
        }
        let smtp = smtp_url
            .map(|url| {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map(|b| b.build())
                    .map_err(|e| MailError::Smtp(format!("invalid smtp-url: {e}")))
            })
            .transpose()?;
        if smtp.is_none() && dir.is_none() {
            return Err(MailError::Build(
                "no mail sink: give the smtp-url secret or --mail-dir".into(),
            ));
        }
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|source| MailError::File {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self {
            from,
            issuer: issuer.to_owned(),
            realm: realm.to_owned(),
            smtp,
            dir,
        })
    }

    /// Subject and plain-text body of a message.
    pub fn render(&self, mail: &Mail) -> (String, String) {
        let realm = &self.realm;
        let issuer = &self.issuer;
        match mail {
            Mail::VerifyEmail { token } => (
                format!("Confirm your email address for {realm}"),
                format!(
                    "Welcome to {realm}.\n\nConfirm your address by opening this link within 24 hours:\n\n{issuer}/verify-email?token={token}\n\nVerification code:\n{token}\n\nIf you did not register, ignore this message.\n"
                ),
            ),
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
            Mail::AccountLocked { minutes } => (
                format!("Your {realm} account is temporarily locked"),
                format!(
                    "After repeated failed sign-in attempts your {realm} account is locked for {minutes} minute(s).\n\nIf these attempts were not yours, consider changing your password once the lock ends.\n"
                ),
            ),
        }
    }

    /// Builds and delivers a message to every configured sink. `to` is a bare address
    /// (addr-spec); a display-name form like `a<b@evil.com>` is refused, never parsed.
    pub async fn send(&self, to: &str, mail: &Mail) -> Result<(), MailError> {
        let to = Mailbox::new(
            None,
            to.parse::<Address>()
                .map_err(|e| MailError::Build(format!("recipient: {e}")))?,
        );
        let (subject, body) = self.render(mail);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        if let Some(dir) = &self.dir {
            let name = format!(
                "{}-{}.eml",
                time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
                uuid::Uuid::new_v4()
            );
            let path = dir.join(name);
            tokio::fs::write(&path, message.formatted())
                .await
                .map_err(|source| MailError::File { path, source })?;
        }
        if let Some(smtp) = &self.smtp {
            smtp.send(message)
                .await
                .map_err(|e| MailError::Smtp(e.to_string()))?;
        }
        Ok(())
    }
}

/// Whether an SMTP URL protects what it carries (passwords, reset tokens): implicit TLS
/// (`smtps://`), required STARTTLS (`?tls=required`), or a server on this host.
fn encrypts_or_stays_local(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        // lettre refuses it with its own message.
        return true;
    };
    let tls_required = url
        .query_pairs()
        .any(|(key, value)| key == "tls" && value == "required");
    let loopback = match url.host() {
        // `smtp` is not a special scheme for the URL parser: IPv4 hosts arrive as names.
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.scheme() == "smtps" || tls_required || loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_is_written_as_an_eml_file_with_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(
            "no-reply@auth.example.com",
            "https://auth.example.com",
            "demo",
            None,
            Some(dir.path().into()),
        )
        .unwrap();
        mailer
            .send(
                "alice@example.com",
                &Mail::VerifyEmail {
                    token: "tok123".into(),
                },
            )
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let eml = std::fs::read_to_string(&files[0]).unwrap();
        assert!(eml.contains("To: alice@example.com"), "{eml}");
        assert!(
            eml.contains("Subject: Confirm your email address for demo"),
            "{eml}"
        );
        assert!(
            eml.contains("https://auth.example.com/verify-email?token=tok123"),
            "{eml}"
        );
    }

    fn with_smtp(url: &str) -> Result<Mailer, MailError> {
        Mailer::new("a@example.com", "https://x", "r", Some(url), None)
    }

    #[tokio::test]
    async fn smtp_without_tls_is_refused_unless_the_server_is_on_loopback() {
        for clear in [
            "smtp://user:secret@mail.example.com:587",
            "smtp://mail.example.com:25?tls=opportunistic",
        ] {
            let error = with_smtp(clear).unwrap_err().to_string();
            assert!(error.contains("TLS"), "{clear}: {error}");
            assert!(!error.contains("secret"), "never echo the URL: {error}");
        }
        for ok in [
            "smtps://user:secret@mail.example.com:465",
            "smtp://user:secret@mail.example.com:587?tls=required",
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
            "smtp://[::1]:25",
        ] {
            if let Err(error) = with_smtp(ok) {
                panic!("{ok}: {error}");
            }
        }
    }

    #[tokio::test]
    async fn a_recipient_with_a_display_name_is_never_parsed_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(
            "no-reply@auth.example.com",
            "https://auth.example.com",
            "demo",
            None,
            Some(dir.path().into()),
        )
        .unwrap();
        assert!(
            mailer
                .send("a<b@evil.com>", &Mail::PasswordChanged)
                .await
                .is_err()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_mailer_needs_a_sink() {
        assert!(Mailer::new("a@example.com", "https://x", "r", None, None).is_err());
    }
}
