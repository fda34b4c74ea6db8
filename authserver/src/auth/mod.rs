//! Domain logic: passwords, lockout, sessions, tokens and the account service that ties them
//! together. No HTTP or SQL types here; storage is behind `crate::store`.

pub mod accounts;
pub mod breach;
pub mod csrf;
pub mod error;
pub mod hashing;
pub mod identifier;
pub mod lockout;
pub mod password;
pub mod sessions;
pub mod tokens;

pub use error::{AuthError, Violation};
