//! The OpenID Connect provider: registered clients and how they authenticate, and (in later
//! modules) the authorization, token, userinfo, revocation and introspection use cases.

pub mod authorize;
pub mod clients;
pub mod discovery;
pub mod flow;
pub mod logout;
pub mod pkce;
pub mod resource;
pub mod token;
