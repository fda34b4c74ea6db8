//! The webhook channel (plan §7.2): a signed POST of the event body to the realm's URL.
//!
//! - The body is `portcullis_webhook::Envelope`'s canonical bytes, built from the row's id,
//!   `created_at`, type and data, so every attempt sends the same bytes with the same id.
//! - Each attempt signs them again with a fresh `t` ([`portcullis_webhook::sign`], one `v1`
//!   per line of the secret file), so a slow retry is not refused as outside the window.
//! - No redirect is followed, every attempt has a 10 s timeout, and the URL must be `https://`
//!   unless the host is loopback.
//! - 2xx is delivered, 410 Gone dead at once, anything else (a redirect too) retried.

use std::fmt;
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

/// The timeout of one attempt, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// Why the webhook channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("webhook-url is not a URL")]
    InvalidUrl,
    /// The URL is not `https://`, or `http://` to a loopback host.
    #[error("webhook-url must use https:// (plain http:// only to a loopback host)")]
    InsecureUrl,
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

/// A checked webhook URL: `https://`, or `http://` to `localhost` or a loopback address.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Checks `url`.
    pub fn parse(url: &str) -> Result<Self, WebhookError> {
        let url = Url::parse(url).map_err(|_| WebhookError::InvalidUrl)?;
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => Ok(Self(url)),
            "http" if loopback => Ok(Self(url)),
            _ => Err(WebhookError::InsecureUrl),
        }
    }

    /// The URL.
    pub fn as_url(&self) -> &Url {
        &self.0
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
        410 => Outcome::Permanent("HTTP 410 Gone: the receiver asked us to stop".to_owned()),
        300..=399 => Outcome::Retry(format!("HTTP {status}: redirects are not followed")),
        _ => Outcome::Retry(format!("HTTP {status}")),
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
    /// read: one key per line), for `realm`, reading the time from `clock`. Refuses a URL
    /// that is not https (except loopback) and a secret that cannot sign, so a bad
    /// configuration stops the server at start rather than killing every delivery. Needs a
    /// rustls crypto provider installed (the server installs ring at start).
    pub fn new(
        url: &str,
        secrets: &str,
        realm: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WebhookError> {
        let url = WebhookUrl::parse(url)?;
        sign(secrets, 0, b"")?;
        let realm = RealmName::new(realm).map_err(|_| WebhookError::InvalidRealm)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| WebhookError::Client(e.without_url().to_string()))?;
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
            // A stored payload this version cannot type will never become sendable.
            Err(e) => return Outcome::Permanent(format!("cannot build the body: {e}")),
        };
        let t = self.clock.now().unix_timestamp();
        let signature = match sign(&self.secrets, t, &body) {
            Ok(s) => s,
            Err(e) => return Outcome::Retry(format!("cannot sign: {e}")),
        };
        let Ok(signature) = HeaderValue::from_str(&signature) else {
            return Outcome::Retry("the signature is not a header value".to_owned());
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
            Err(e) => Outcome::Retry(describe(&e)),
        }
    }
}

impl Deliver for WebhookChannel {
    fn deliver<'a>(&'a self, notice: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(self.post(notice))
    }
}

// Without the URL (it may hold a credential), with the cause's first line.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let cause = std::error::Error::source(e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!("{kind}{cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_for_loopback() {
        let table: [(&str, bool); 12] = [
            ("https://hooks.example.org/portcullis", true),
            ("https://10.0.0.1/x", true),
            ("http://127.0.0.1:8080/hook", true),
            ("http://127.9.9.9/hook", true),
            ("http://[::1]:9000/hook", true),
            ("http://localhost/hook", true),
            ("http://LOCALHOST/hook", true),
            ("http://hooks.example.org/portcullis", false),
            ("http://10.0.0.1/x", false),
            ("http://[::2]/x", false),
            ("http://localhost.example.org/x", false),
            ("ftp://127.0.0.1/x", false),
        ];
        for (url, ok) in table {
            assert_eq!(WebhookUrl::parse(url).is_ok(), ok, "{url}");
        }
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
        let table: [(u16, &str); 10] = [
            (200, "delivered"),
            (202, "delivered"),
            (204, "delivered"),
            (299, "delivered"),
            (410, "permanent"),
            (301, "retry"),
            (302, "retry"),
            (400, "retry"),
            (404, "retry"),
            (503, "retry"),
        ];
        for (status, want) in table {
            let got = match classify(status) {
                Outcome::Delivered => "delivered",
                Outcome::Retry(_) => "retry",
                Outcome::Permanent(_) => "permanent",
            };
            assert_eq!(got, want, "{status}");
        }
        assert_eq!(
            classify(307),
            Outcome::Retry("HTTP 307: redirects are not followed".into())
        );
    }
}
