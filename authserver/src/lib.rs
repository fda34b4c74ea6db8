//! The Portcullis auth server: one realm's accounts, sessions and tokens.
//!
//! Layers: `http` (routers, extractors, middleware, the error mapping) calls `auth` (domain
//! logic, no HTTP or SQL types), which uses `store` (every SQL statement and Redis command).

pub mod auth;
pub mod clock;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod privacy;
pub mod secrets;
pub mod server;
pub mod settings_check;
pub mod store;

/// Installs rustls' ring provider as the process default; reqwest and lettre are built without
/// one so there is a single TLS stack. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
