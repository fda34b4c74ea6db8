//! Who is asking: the request's origin, and the authenticated caller.

use uuid::Uuid;

/// Who is asking: the client address (after trusted-proxy handling) and user agent.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    /// Client IP.
    pub ip: String,
    /// User agent, truncated.
    pub user_agent: String,
    /// The device cookie's value, when the request carried a well-formed one.
    pub device: Option<String>,
}

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// The session cookie (state changes then need CSRF proof).
    Cookie,
    /// A bearer access token.
    Bearer,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user_id: Uuid,
    /// Public id of the session (cookie) or the token's `sid`.
    pub session_id: String,
    /// How they authenticated.
    pub method: AuthMethod,
}
