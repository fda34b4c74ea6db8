//! Route modules; each exposes `router()`.

pub mod accounts;
pub mod admin;
pub mod me;
pub mod oauth;
