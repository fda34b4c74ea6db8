//! The Portcullis operator: reconciles AuthRealm, RateLimitPolicy and RetentionPolicy into
//! running, hardened auth servers.

pub mod controllers;
pub mod crdgen;
pub mod nginx_config;
pub mod render;
pub mod resources;
pub mod secrets;

#[cfg(test)]
mod chart_tests;
#[cfg(test)]
mod rbac_tests;
