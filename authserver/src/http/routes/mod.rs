//! Route modules; each exposes `router()`.

pub mod accounts;
pub mod admin;
pub mod health;
pub mod me;
pub mod metrics;
pub mod oauth;
pub mod oidc;
pub mod privacy;
