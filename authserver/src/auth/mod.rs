//! The domain: one module per use case over a small core, and the rules they share. No HTTP
//! types here; storage is `crate::store`.
//!
//! Use cases: [`registration`] (register, verify email), [`login`], [`reset`] (password
//! reset), [`session_auth`] (authenticating a session or access token, CSRF), [`refresh`]
//! (the refresh-token grant), [`account`] (the caller's profile, password, sessions, logout)
//! and [`admin`], privacy ([`privacy`]: consent, export, erasure), and the OpenID Connect
//! provider ([`oidc`]). Each takes the [`core::Core`].

pub mod account;
pub mod admin;
pub mod breach;
pub mod core;
pub mod csrf;
pub mod error;
pub mod hashing;
pub mod identifier;
pub mod key_fingerprints;
pub mod keys;
pub mod limits;
pub mod lockout;
pub mod login;
pub mod mfa;
pub mod mfa_login;
mod new_password;
pub mod oidc;
pub mod password;
pub mod principal;
pub mod privacy;
pub mod refresh;
pub mod registration;
pub mod reset;
pub mod session_auth;
pub mod sessions;
pub mod social;
#[cfg(test)]
mod testing;
pub mod tokens;

pub use error::{AuthError, Violation};
