//! The Portcullis operator: reconciles AuthRealm, RateLimitPolicy and RetentionPolicy into
//! running, hardened auth servers.

pub mod crdgen;
pub mod resources;
pub mod secrets;
