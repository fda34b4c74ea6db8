//! CSRF tokens for cookie-authenticated state changes: HMAC-SHA256 of the session's public id
//! under the cookie key. Bound to the session, so a token is useless in another one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The CSRF token of a form shown before any session exists (the login form), paired with the
/// random `cookie_value` of the pre-session CSRF cookie: HMAC(key, "form:" + value). A forged
/// cross-site POST has neither the cookie nor a token matching it.
pub fn form_token(key: &[u8], cookie_value: &str) -> String {
    token(key, &format!("form:{cookie_value}"))
}

/// Whether `candidate` is the form token of `cookie_value`, in constant time.
pub fn verify_form(key: &[u8], cookie_value: &str, candidate: &str) -> bool {
    !cookie_value.is_empty() && verify(key, &format!("form:{cookie_value}"), candidate)
}

/// The CSRF token of a session.
pub fn token(key: &[u8], session_id: &str) -> String {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"csrf:");
            mac.update(session_id.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Whether `candidate` is the session's token, compared in constant time.
pub fn verify(key: &[u8], session_id: &str, candidate: &str) -> bool {
    let Ok(candidate) = URL_SAFE_NO_PAD.decode(candidate) else {
        return false;
    };
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"csrf:");
            mac.update(session_id.as_bytes());
            mac.verify_slice(&candidate).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_for_its_session_only() {
        let key = [9u8; 32];
        let t = token(&key, "session-a");
        assert!(verify(&key, "session-a", &t));
        assert!(!verify(&key, "session-b", &t));
        assert!(!verify(&[8u8; 32], "session-a", &t));
        assert!(!verify(&key, "session-a", "not base64 !"));
    }

    #[test]
    fn a_form_token_belongs_to_its_cookie_and_is_never_a_session_token() {
        let key = [9u8; 32];
        let t = form_token(&key, "cookie-1");
        assert!(verify_form(&key, "cookie-1", &t));
        assert!(!verify_form(&key, "cookie-2", &t));
        assert!(!verify_form(&key, "", &form_token(&key, "")));
        assert!(!verify(&key, "cookie-1", &t), "not a session's token");
    }
}
