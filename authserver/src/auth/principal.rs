//! Who is asking: the request's origin, and the authenticated caller.

use uuid::Uuid;

/// Who is asking: the client address (after trusted-proxy handling) and user agent.
#[derive(Clone, Default)]
pub struct RequestMeta {
    /// Client IP.
    pub ip: String,
    /// User agent, truncated.
    pub user_agent: String,
    /// The device cookie's value, when the request carried a well-formed one.
    pub device: Option<String>,
}

// By hand: the device cookie's value silences new-device notices for whoever holds it, so it
// never reaches a log.
impl std::fmt::Debug for RequestMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMeta")
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .field("device", &self.device.as_ref().map(|_| "<redacted>"))
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_device_cookie() {
        let meta = RequestMeta {
            ip: "192.0.2.1".into(),
            user_agent: "ua/1".into(),
            device: Some("secret-device-cookie-value".into()),
        };
        let text = format!("{meta:?}");
        assert!(!text.contains("secret-device-cookie-value"), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains("192.0.2.1"),
            "{text}"
        );
    }
}
