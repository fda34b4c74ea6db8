//! Delivery: SMTP (URL from the `smtp-url` secret; TLS required unless the server is on this
//! host) and/or one `.eml` file per message in the mail dir (the only sink in `--dev`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use lettre::message::{Mailbox, header::ContentType};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Mail, render};
use crate::clock::Clock;
use crate::random::Random;

/// How long one SMTP exchange may take before delivery fails (and is logged and counted).
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
pub struct Mailer {
    from: Mailbox,
    issuer: String,
    realm: String,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    dir: Option<PathBuf>,
    clock: Clock,
    random: Random,
    written: AtomicU64,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("smtp", &self.smtp.is_some())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Where and as whom a [`Mailer`] sends.
#[derive(Clone, Debug)]
pub struct Sinks<'a> {
    /// Sender address.
    pub from: &'a str,
    /// The realm's issuer URL (links in messages).
    pub issuer: &'a str,
    /// The realm's name (subjects).
    pub realm: &'a str,
    /// SMTP URL with credentials, when mail goes out by SMTP.
    pub smtp_url: Option<&'a str>,
    /// Directory for `.eml` copies.
    pub dir: Option<PathBuf>,
}

impl Mailer {
    /// A mailer for `sinks`; at least one of SMTP and a directory is required. `.eml` files are
    /// named by `clock` time, a sequence number and a random suffix.
    pub fn new(sinks: Sinks<'_>, clock: Clock, random: Random) -> Result<Self, MailError> {
        let from: Mailbox = sinks
            .from
            .parse()
            .map_err(|e| MailError::Build(format!("sender {}: {e}", sinks.from)))?;
        if let Some(url) = sinks.smtp_url
            && !encrypts_or_stays_local(url)
        {
            return Err(MailError::Cleartext);
        }
        let smtp = sinks
            .smtp_url
            .map(|url| {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map(|b| b.timeout(Some(SMTP_TIMEOUT)).build())
                    .map_err(|e| MailError::Smtp(format!("invalid smtp-url: {e}")))
            })
            .transpose()?;
        if smtp.is_none() && sinks.dir.is_none() {
            return Err(MailError::Build(
                "no mail sink: give the smtp-url secret or --mail-dir".into(),
            ));
        }
        if let Some(dir) = &sinks.dir {
            std::fs::create_dir_all(dir).map_err(|source| MailError::File {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self {
            from,
            issuer: sinks.issuer.to_owned(),
            realm: sinks.realm.to_owned(),
            smtp,
            dir: sinks.dir,
            clock,
            random,
            written: AtomicU64::new(0),
        })
    }

    /// Builds and delivers a message to every configured sink. `to` is a bare address
    /// (addr-spec); a display-name form like `a<b@evil.com>` is refused, never parsed.
    pub async fn send(&self, to: &str, mail: &Mail) -> Result<(), MailError> {
        let to = Mailbox::new(
            None,
            to.parse::<Address>()
                .map_err(|e| MailError::Build(format!("recipient: {e}")))?,
        );
        let (subject, body) = render(&self.realm, &self.issuer, mail);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        if let Some(dir) = &self.dir {
            // Names sort in sending order, also on a stopped test clock.
            let name = format!(
                "{}-{:08}-{}.eml",
                self.clock.now().unix_timestamp_nanos(),
                self.written.fetch_add(1, Ordering::Relaxed),
                &self.random.uuid().simple().to_string()[..8]
            );
            let path = dir.join(name);
            write_private(&path, &message.formatted())
                .await
                .map_err(|source| MailError::File { path, source })?;
        }
        if let Some(smtp) = &self.smtp {
            // lettre's own timeout does not cover a server that accepts and never greets.
            tokio::time::timeout(SMTP_TIMEOUT, smtp.send(message))
                .await
                .map_err(|_| MailError::Smtp(format!("no answer within {SMTP_TIMEOUT:?}")))?
                .map_err(|e| MailError::Smtp(e.to_string()))?;
        }
        Ok(())
    }
}

/// Writes a file only its owner can read (mails hold reset and verification tokens), under a
/// hidden name first and then renamed, so a reader of the directory never sees half a mail.
async fn write_private(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let partial = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&partial).await?;
    file.write_all(content).await?;
    file.flush().await?;
    tokio::fs::rename(&partial, path).await
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
        let mailer = mailer(None, Some(dir.path().into())).unwrap();
        mailer
            .send(
                "alice@example.com",
                &Mail::VerifyEmail {
                    token: "tok123".into(),
                    req: None,
                },
            )
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mails hold tokens: owner only");
        }
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

    fn mailer(smtp_url: Option<&str>, dir: Option<PathBuf>) -> Result<Mailer, MailError> {
        use rand_chacha::rand_core::SeedableRng;
        let sinks = Sinks {
            from: "no-reply@auth.example.com",
            issuer: "https://auth.example.com",
            realm: "demo",
            smtp_url,
            dir,
        };
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let random = Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(2));
        Mailer::new(sinks, clock, random)
    }

    fn with_smtp(url: &str) -> Result<Mailer, MailError> {
        mailer(Some(url), None)
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
        let mailer = mailer(None, Some(dir.path().into())).unwrap();
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
        assert!(mailer(None, None).is_err());
    }
}
