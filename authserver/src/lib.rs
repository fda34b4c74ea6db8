//! The Portcullis auth server: one realm's accounts, sessions and tokens.
//!
//! Layers: `http` (routers, extractors, cookies, middleware, the error mapping) calls `auth`
//! (one module per use case over a small core; no HTTP or SQL types), which uses `store`
//! (every SQL statement and Redis command; it knows nothing of `auth`). Time and randomness
//! are passed in (`clock`, `random`); `wiring` is the one place that reads the real ones.
//! `ui` renders the hosted pages.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod privacy;
pub mod random;
pub mod readiness;
pub mod startup;
pub mod store;
pub mod ui;
pub mod wiring;

/// Installs rustls' ring provider as the process default; reqwest and lettre are built without
/// one so there is a single TLS stack. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
