//! The webhook channel (plan §7.2): a signed POST of the event body to the realm's URL.
//!
//! - The body is `portcullis_webhook::Envelope`'s canonical bytes, built from the row's id,
//!   `created_at`, type and data, so every attempt sends the same bytes with the same id.
//! - Each attempt signs them again with a fresh `t` ([`portcullis_webhook::sign`], one `v1`
//!   per line of the secret file), so a slow retry is not refused as outside the window.
//! - No redirect is followed, every attempt has a 10 s timeout, and no proxy is used.
//! - No request reaches an internal address ([`egress`]): the URL must be `https://` to a
//!   public host; an IP literal in a private, loopback, link-local, CGNAT, unique local,
//!   multicast, documentation or otherwise special range is refused at start, and a host name
//!   is resolved at each attempt by a resolver that refuses the attempt if *any* address is in
//!   those ranges. The connection goes only to the addresses that resolver checked, so a DNS
//!   answer that changes between check and connect (rebinding) cannot slip through. Loopback
//!   (and plain `http://` to it) is allowed only with [`WebhookOptions::allow_loopback`], the
//!   server's `--dev` switch.
//! - 2xx is delivered, 410 Gone dead at once, anything else (a redirect too) retried.
//! - A failure is stored as a coarse class (`timeout`, `connect_refused`, `status 500`, …),
//!   never the client's error text, so `last_error` is no oracle on the network behind it.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_webhook::{
    EVENT_ID_HEADER, Envelope, Event, RealmName, SIGNATURE_HEADER, SignError, sign,
};
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use url::Url;

use crate::clock::Clock;
use crate::deliver::{Deliver, DeliverFuture, Outcome};
use crate::notice::Claimed;

pub mod egress;

use egress::{BlockedAddress, forbidden};

/// The timeout of one attempt, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The retry reason of a row this version cannot build a body for (a newer event type or
/// value, written during a rolling upgrade): a newer replica will send it.
pub const UNSUPPORTED_EVENT: &str = "unsupported_event";

/// The reason of a row killed by a `410 Gone`.
pub const GONE: &str = "status 410";

/// The `User-Agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// Why the webhook channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("webhook-url is not a URL")]
    InvalidUrl,
    /// The URL is not `https://` (plain `http://` only to loopback with `allow_loopback`).
    #[error("webhook-url must use https:// (plain http:// only to loopback in development)")]
    InsecureUrl,
    /// The URL's host is an internal or special address (or loopback without `allow_loopback`).
    #[error("webhook-url points at a {0} address; webhooks go to public hosts only")]
    ForbiddenHost(&'static str),
    /// The secret file cannot sign (empty, or more lines than receivers accept).
    #[error("webhook-secret cannot sign: {0}")]
    Secret(#[from] SignError),
    /// The realm's name is not a DNS label.
    #[error("the realm name is not a DNS label")]
    InvalidRealm,
    /// The HTTP client could not be built (no TLS crypto provider installed?).
    #[error("the webhook HTTP client could not be built: {0}")]
    Client(String),
}

/// Where the webhook channel may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookOptions {
    /// Allows loopback hosts (`localhost`, 127.0.0.0/8, `::1`), over plain `http://` too: for
    /// development and tests only (the server's `--dev`); never set in a deployment, where it
    /// would reach sidecar admin ports on the pod.
    pub allow_loopback: bool,
}

/// A checked webhook URL: `https://` to a host name or a public IP address; with
/// [`WebhookOptions::allow_loopback`], also `http(s)://` to a loopback host.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Checks `url` for a deployment (no loopback).
    pub fn parse(url: &str) -> Result<Self, WebhookError> {
        Self::parse_with(url, WebhookOptions::default())
    }

    /// Checks `url` under `options`.
    pub fn parse_with(url: &str, options: WebhookOptions) -> Result<Self, WebhookError> {
        let url = Url::parse(url).map_err(|_| WebhookError::InvalidUrl)?;
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let loopback = name == "localhost" || name.ends_with(".localhost");
                if loopback && !options.allow_loopback {
                    return Err(WebhookError::ForbiddenHost("loopback"));
                }
                loopback
            }
            Some(url::Host::Ipv4(ip)) => check_literal(IpAddr::V4(ip), options)?,
            Some(url::Host::Ipv6(ip)) => check_literal(IpAddr::V6(ip), options)?,
            None => return Err(WebhookError::InvalidUrl),
        };
        match url.scheme() {
            "https" => Ok(Self(url)),
            "http" if loopback && options.allow_loopback => Ok(Self(url)),
            _ => Err(WebhookError::InsecureUrl),
        }
    }

    /// The URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

// Whether an IP literal host is loopback (allowed only under `allow_loopback`); an error if it
// is in a forbidden range.
fn check_literal(ip: IpAddr, options: WebhookOptions) -> Result<bool, WebhookError> {
    match forbidden(ip, options.allow_loopback) {
        Some(range) => Err(WebhookError::ForbiddenHost(range)),
        None => Ok(egress::is_loopback(ip)),
    }
}

// The URL may carry a credential in its path or query: never print it.
impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebhookUrl({}://{}/…)",
            self.0.scheme(),
            self.0.host_str().unwrap_or("")
        )
    }
}

/// The outcome of an HTTP answer: 2xx delivered, 410 Gone dead, anything else retried (a
/// redirect included: it is not followed, and a receiver's fixed misconfiguration should
/// still get the event once corrected).
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Permanent(GONE.to_owned()),
        _ => Outcome::Retry(format!("status {status}")),
    }
}

/// The webhook channel of one realm.
#[derive(Clone)]
pub struct WebhookChannel {
    client: reqwest::Client,
    url: WebhookUrl,
    secrets: Arc<str>,
    realm: RealmName,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &self.url)
            .field("realm", &self.realm.as_str())
            .finish_non_exhaustive()
    }
}

impl WebhookChannel {
    /// The channel posting to `url`, signing with `secrets` (the `webhook-secret` file as
    /// read: one key per line), for `realm`, reading the time from `clock`, for a deployment:
    /// no loopback. Refuses a URL that is not https or points at an internal address, and a
    /// secret that cannot sign, so a bad configuration stops the server at start rather than
    /// failing every delivery. Needs a rustls crypto provider installed (the server installs
    /// ring at start).
    pub fn new(
        url: &str,
        secrets: &str,
        realm: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WebhookError> {
        Self::with_options(url, secrets, realm, clock, WebhookOptions::default())
    }

    /// As [`WebhookChannel::new`], under `options` (the server's `--dev` allows loopback).
    pub fn with_options(
        url: &str,
        secrets: &str,
        realm: &str,
        clock: Arc<dyn Clock>,
        options: WebhookOptions,
    ) -> Result<Self, WebhookError> {
        let url = WebhookUrl::parse_with(url, options)?;
        sign(secrets, 0, b"")?;
        let realm = RealmName::new(realm).map_err(|_| WebhookError::InvalidRealm)?;
        let client = client(egress::GuardedResolver::system(options.allow_loopback))?;
        Ok(Self {
            client,
            url,
            secrets: Arc::from(secrets),
            realm,
            clock,
        })
    }

    /// The body for `notice`: the same bytes on every attempt.
    pub fn body(&self, notice: &Claimed) -> Result<Vec<u8>, portcullis_webhook::BodyError> {
        let event = Event::from_parts(&notice.event, notice.payload.clone())?;
        Envelope::new(notice.id, notice.created_at, self.realm.clone(), event).to_body()
    }

    async fn post(&self, notice: &Claimed) -> Outcome {
        let body = match self.body(notice) {
            Ok(body) => body,
            // Written by a newer version (a new event type or value) during a rolling upgrade:
            // a newer replica will send it; the attempt cap still bounds it.
            Err(_) => return Outcome::Retry(UNSUPPORTED_EVENT.to_owned()),
        };
        let t = self.clock.now().unix_timestamp();
        let Ok(signature) = sign(&self.secrets, t, &body) else {
            return Outcome::Retry("sign_failed".to_owned());
        };
        let Ok(signature) = HeaderValue::from_str(&signature) else {
            return Outcome::Retry("sign_failed".to_owned());
        };
        let answer = self
            .client
            .post(self.url.as_url().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
            .header(EVENT_ID_HEADER, notice.id.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(response) => classify(response.status().as_u16()),
            Err(e) => Outcome::Retry(describe(&e).to_owned()),
        }
    }
}

impl Deliver for WebhookChannel {
    fn deliver<'a>(&'a self, notice: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(self.post(notice))
    }
}

// The HTTP client: no redirects, no proxy (neither `*_PROXY` from the environment nor any
// other), a total timeout, and `resolver` for every host name.
fn client(resolver: egress::GuardedResolver) -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(TIMEOUT)
        .dns_resolver(Arc::new(resolver))
        .build()
        .map_err(|e| WebhookError::Client(e.without_url().to_string()))
}

/// A failed request's coarse class: `blocked_address`, `timeout`, `connect_refused`,
/// `connect_failed` or `request_failed`. Never the error text, which names addresses, TLS
/// details or the URL.
pub fn describe(e: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut refused = false;
    while let Some(error) = source {
        if error.is::<BlockedAddress>() {
            return "blocked_address";
        }
        if let Some(io) = error.downcast_ref::<io::Error>() {
            refused |= io.kind() == io::ErrorKind::ConnectionRefused;
        }
        source = error.source();
    }
    if e.is_timeout() {
        "timeout"
    } else if refused {
        "connect_refused"
    } else if e.is_connect() {
        "connect_failed"
    } else {
        "request_failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_to_public_hosts_is_accepted_in_a_deployment() {
        let table: [(&str, bool); 16] = [
            ("https://hooks.example.org/portcullis", true),
            ("https://93.184.215.14/x", true),
            ("https://[2606:4700::1111]/x", true),
            ("https://10.0.0.1/x", false),
            ("https://[::ffff:127.0.0.1]/x", false),
            ("https://169.254.169.254/latest", false),
            ("https://100.64.0.1/x", false),
            ("https://[fe80::1]/x", false),
            ("https://[fd00::1]/x", false),
            ("https://2130706433/x", false),
            ("https://localhost/x", false),
            ("https://a.localhost./x", false),
            ("http://127.0.0.1:15000/quitquitquit", false),
            ("http://localhost/hook", false),
            ("http://hooks.example.org/portcullis", false),
            ("ftp://hooks.example.org/x", false),
        ];
        for (url, ok) in table {
            assert_eq!(WebhookUrl::parse(url).is_ok(), ok, "{url}");
        }
        assert!(matches!(
            WebhookUrl::parse("https://10.0.0.1/x"),
            Err(WebhookError::ForbiddenHost("private"))
        ));
        assert!(matches!(
            WebhookUrl::parse("not a url"),
            Err(WebhookError::InvalidUrl)
        ));
        assert!(matches!(
            WebhookUrl::parse("http://hooks.example.org/"),
            Err(WebhookError::InsecureUrl)
        ));
    }

    #[test]
    fn loopback_over_http_needs_the_development_switch() {
        let dev = WebhookOptions {
            allow_loopback: true,
        };
        let table: [(&str, bool); 9] = [
            ("http://127.0.0.1:8080/hook", true),
            ("http://127.9.9.9/hook", true),
            ("http://[::1]:9000/hook", true),
            ("http://LOCALHOST/hook", true),
            ("https://localhost/hook", true),
            ("http://hooks.example.org/portcullis", false),
            ("http://10.0.0.1/x", false),
            ("https://10.0.0.1/x", false),
            ("http://localhost.example.org/x", false),
        ];
        for (url, ok) in table {
            assert_eq!(WebhookUrl::parse_with(url, dev).is_ok(), ok, "{url}");
        }
    }

    #[tokio::test]
    async fn a_name_rebound_to_loopback_is_refused_before_connecting() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lookup: egress::Lookup =
            Arc::new(|_| Box::pin(async { Ok(vec![IpAddr::from([127, 0, 0, 1])]) }));
        let client = client(egress::GuardedResolver::with_lookup(false, lookup)).unwrap();
        let error = client
            .post(format!("http://hooks.example.org:{port}/hook?token=SECRET"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(describe(&error), "blocked_address");
        // Nothing connected to the listener.
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "a connection reached the loopback listener"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_stored_as_its_class_only() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = client(egress::GuardedResolver::system(true)).unwrap();
        let error = client
            .post(format!("http://127.0.0.1:{port}/hook?token=SECRET"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(describe(&error), "connect_refused");
    }

    #[test]
    fn the_url_is_not_printed() {
        let url = WebhookUrl::parse("https://h.example.org/hook?token=abc").unwrap();
        let shown = format!("{url:?}");
        assert!(
            !shown.contains("abc") && shown.contains("h.example.org"),
            "{shown}"
        );
    }

    #[test]
    fn answers_are_classified_by_status() {
        let table: [(u16, Outcome); 8] = [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (299, Outcome::Delivered),
            (410, Outcome::Permanent("status 410".into())),
            (302, Outcome::Retry("status 302".into())),
            (400, Outcome::Retry("status 400".into())),
            (404, Outcome::Retry("status 404".into())),
            (503, Outcome::Retry("status 503".into())),
        ];
        for (status, want) in table {
            assert_eq!(classify(status), want, "{status}");
        }
    }
}
