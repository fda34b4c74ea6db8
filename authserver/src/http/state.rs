//! Shared state of the routers.

use std::sync::Arc;

use crate::auth::accounts::AuthService;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The account service.
    pub service: Arc<AuthService>,
    /// `scheme://host[:port]` of the issuer, for same-origin checks.
    pub issuer_origin: String,
    /// Pre-rendered security headers (from the realm's settings).
    pub headers: Arc<super::middleware::SecurityHeaders>,
    /// Bearer token of the admin API.
    pub admin_token: Arc<str>,
}

impl AppState {
    /// State for a service.
    pub fn new(service: Arc<AuthService>, admin_token: &str) -> Self {
        let issuer = &service.settings.spec.issuer;
        let origin = issuer
            .split_once("://")
            .map(|(scheme, rest)| {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            })
            .unwrap_or_default();
        let headers = Arc::new(super::middleware::SecurityHeaders::from_spec(
            &service.settings.spec.security_headers,
        ));
        Self {
            service,
            issuer_origin: origin,
            headers,
            admin_token: admin_token.into(),
        }
    }
}
