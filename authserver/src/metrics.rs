//! Prometheus metrics, served on the admin listener's `/metrics`. Names are shared with the
//! alert rules in `config/prometheus/alerts.yaml`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Matched route template, e.g. `/api/v1/login` (never a raw path with ids).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels with a single `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// Labels with a single `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// Every metric of the auth server.
pub struct Metrics {
    registry: Registry,
    /// HTTP answers by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Successful logins.
    pub login_successes: Counter,
    /// Failed logins by reason (invalid_credentials, locked, ...).
    pub login_failures: Family<ReasonLabels, Counter>,
    /// Lockouts started.
    pub lockouts: Counter,
    /// Breach checks that could not answer (the failure policy decided).
    pub breach_check_failures: Counter,
    /// Mails that could not be delivered.
    pub mail_failures: Counter,
    /// Refresh-token reuse detections (families revoked).
    pub refresh_reuse: Counter,
    /// Time spent in bcrypt, seconds.
    pub password_hash_seconds: Histogram,
    /// Requests refused because the hashing pool and its queue were full.
    pub hashing_refused: Counter,
    /// Age of the active signing key, set at each scrape (only when the key records `iat`).
    pub signing_key_age_seconds: Option<Gauge>,
    /// Changed TLS certificate files read by the public listener, by result (`ok`: serving
    /// the new pair; `error`: refused, the previous pair still serving).
    pub tls_reloads: Family<ResultLabels, Counter>,
    /// TLS handshakes on the public listener that did not complete, by reason (`timeout`,
    /// `error`).
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Metrics {
    /// Registers every metric under the `portcullis` prefix; the signing-key age only when
    /// the key's creation time is known (a made-up age would silence or fire the alert).
    pub fn new(with_signing_key_age: bool) -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP answers by route and status",
            http_requests.clone(),
        );
        let login_successes = Counter::default();
        registry.register(
            "login_successes",
            "Successful logins",
            login_successes.clone(),
        );
        let login_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Failed logins by reason",
            login_failures.clone(),
        );
        let lockouts = Counter::default();
        registry.register("lockouts", "Lockouts started", lockouts.clone());
        let breach_check_failures = Counter::default();
        registry.register(
            "breach_check_failures",
            "Breach checks that could not answer",
            breach_check_failures.clone(),
        );
        let mail_failures = Counter::default();
        registry.register(
            "mail_failures",
            "Mails that could not be delivered",
            mail_failures.clone(),
        );
        let refresh_reuse = Counter::default();
        registry.register(
            "refresh_token_reuse",
            "Refresh tokens presented twice (family revoked)",
            refresh_reuse.clone(),
        );
        let password_hash_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 10));
        registry.register(
            "password_hash_seconds",
            "Time spent in bcrypt",
            password_hash_seconds.clone(),
        );
        let hashing_refused = Counter::default();
        registry.register(
            "password_hashing_refused",
            "Requests refused because password hashing was saturated",
            hashing_refused.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_certificate_reloads",
            "Changed TLS certificate files read by the public listener, by result",
            tls_reloads.clone(),
        );
        let tls_handshake_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the public listener that did not complete, by reason",
            tls_handshake_failures.clone(),
        );
        let signing_key_age_seconds = with_signing_key_age.then(|| {
            let gauge = Gauge::default();
            registry.register(
                "signing_key_age_seconds",
                "Age of the active token signing key",
                gauge.clone(),
            );
            gauge
        });
        Self {
            registry,
            signing_key_age_seconds,
            http_requests,
            login_successes,
            login_failures,
            lockouts,
            breach_check_failures,
            mail_failures,
            refresh_reuse,
            password_hash_seconds,
            hashing_refused,
            tls_reloads,
            tls_handshake_failures,
        }
    }

    /// Counts a look at changed TLS certificate files: `ok` or `error`.
    pub fn tls_reloaded(&self, result: &str) {
        self.tls_reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts a TLS handshake that did not complete: `timeout` or `error`.
    pub fn tls_handshake_failed(&self, reason: &str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a failed login.
    pub fn login_failed(&self, reason: &str) {
        self.login_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition_with_the_prefix() {
        let m = Metrics::new(true);
        m.signing_key_age_seconds.as_ref().unwrap().set(86_400);
        m.login_failed("invalid_credentials");
        m.lockouts.inc();
        m.http_requests
            .get_or_create(&HttpLabels {
                route: "/api/v1/login".into(),
                status: 401,
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("portcullis_login_failures_total{reason=\"invalid_credentials\"} 1"),
            "{text}"
        );
        assert!(text.contains("portcullis_lockouts_total 1"), "{text}");
        assert!(
            text.contains(
                "portcullis_http_requests_total{route=\"/api/v1/login\",status=\"401\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("portcullis_signing_key_age_seconds 86400"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
