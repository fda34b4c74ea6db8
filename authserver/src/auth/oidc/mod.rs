//! The OpenID Connect provider: registered clients and how they authenticate, and (in later
//! modules) the authorization, token, userinfo, revocation and introspection use cases.

pub mod authorize;
pub mod clients;
pub mod consent;
pub mod discovery;
pub mod flow;
pub mod logout;
pub mod pkce;
pub mod resource;
pub mod token;

/// A request parameter given more than once (OAuth parameters stand at most once).
#[derive(Debug)]
pub struct Repeated;

/// The single value of `name` among request parameters (query or form pairs, in order): `None`
/// when absent, empty values counting as absent (RFC 6749 §3.1); `Err` when it is repeated.
pub fn single_param<'a>(
    params: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, Repeated> {
    let mut values = params
        .iter()
        .filter(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str());
    let first = values.next();
    match values.next() {
        Some(_) => Err(Repeated),
        None => Ok(first),
    }
}
