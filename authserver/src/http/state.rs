//! What the handlers reach: the core (use cases), and what HTTP itself needs — metrics, the
//! public keys, readiness, the clock and random source, and the realm's web settings.

use std::sync::Arc;
use std::time::Duration;

use portcullis_crds::RealmSettings;
use portcullis_crds::realm::SameSite;
use portcullis_crds::settings::Cidr;

use super::middleware::SecurityHeaders;
use crate::auth::core::Core;
use crate::auth::tokens::KeyRing;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::random::Random;
use crate::readiness::Readiness;

/// The routers' state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The use cases' core.
    pub core: Arc<Core>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Signing keys (JWKS, key age).
    pub keys: Arc<KeyRing>,
    /// Readiness checks.
    pub readiness: Readiness,
    /// Clock.
    pub clock: Clock,
    /// Random source (request ids).
    pub random: Random,
    /// The realm's web settings.
    pub web: Arc<WebSettings>,
}

/// The realm's settings as HTTP uses them.
pub struct WebSettings {
    /// The realm's name, shown on the hosted pages.
    pub realm_name: String,
    /// The issuer URL.
    pub issuer: String,
    /// `scheme://host[:port]` of the issuer, for same-origin checks.
    pub issuer_origin: String,
    /// Pre-rendered security headers.
    pub headers: SecurityHeaders,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Session cookie lifetime (the absolute session timeout).
    pub cookie_max_age: Duration,
    /// Session cookie `SameSite`.
    pub same_site: SameSite,
    /// Bearer token of the admin API.
    pub admin_token: String,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("issuer", &self.issuer)
            .field("admin_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WebSettings {
    /// The web settings of a realm.
    pub fn new(settings: &RealmSettings, admin_token: &str) -> Self {
        let spec = &settings.spec;
        let issuer_origin = spec
            .issuer
            .split_once("://")
            .map(|(scheme, rest)| {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            })
            .unwrap_or_default();
        Self {
            realm_name: settings.name.clone(),
            issuer: spec.issuer.clone(),
            issuer_origin,
            headers: SecurityHeaders::from_spec(&spec.security_headers),
            trusted_proxies: settings.trusted_proxies.clone(),
            cookie_max_age: spec.sessions.absolute_timeout.as_duration(),
            same_site: spec.sessions.same_site,
            admin_token: admin_token.to_owned(),
        }
    }
}
