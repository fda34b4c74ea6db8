//! The session cookie: `__Host-portcullis_session` (bound to this host, path `/`, Secure,
//! HttpOnly, SameSite from the realm) carrying the session secret.

use std::time::Duration;

use portcullis_crds::realm::SameSite;

use crate::auth::sessions;

/// Name of the session cookie; `__Host-` binds it to this host, path `/`, Secure.
pub const COOKIE_NAME: &str = "__Host-portcullis_session";

/// The `Set-Cookie` value that installs a session.
pub fn session_cookie(secret: &str, max_age: Duration, same_site: SameSite) -> String {
    let same_site = match same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
    };
    format!(
        "{COOKIE_NAME}={secret}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Name of the cookie binding a login waiting for its second factor to the browser that gave
/// the password; it holds the pending login's `mfa_token`.
pub const MFA_COOKIE_NAME: &str = "__Host-portcullis_mfa";

/// The `Set-Cookie` value that binds a pending login (`token`) to this browser for `max_age`.
pub fn mfa_cookie(token: &str, max_age: Duration) -> String {
    format!(
        "{MFA_COOKIE_NAME}={token}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that removes the pending login's cookie.
pub fn clear_mfa_cookie() -> String {
    format!("{MFA_COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The cookie that binds a social sign-in under way to the browser that started it.
pub const SOCIAL_COOKIE_NAME: &str = "__Host-portcullis_social";

/// The `Set-Cookie` value of a social sign-in's id for `max_age`. `SameSite=Lax`: the
/// provider sends the browser back with a top-level GET from its own site.
pub fn social_cookie(id: &str, max_age: Duration) -> String {
    format!(
        "{SOCIAL_COOKIE_NAME}={id}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that removes the social sign-in's cookie.
pub fn clear_social_cookie() -> String {
    format!("{SOCIAL_COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The social sign-in's id in a `Cookie` header, if any.
pub fn social_id_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SOCIAL_COOKIE_NAME && !value.is_empty() && value.len() <= 64).then_some(value)
    })
}

/// The pending login's token in a `Cookie` header, if any.
pub fn mfa_token_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == MFA_COOKIE_NAME && !value.is_empty() && value.len() <= 64).then_some(value)
    })
}

/// The session secret in a `Cookie` header, if any (only a well-formed one).
pub fn secret_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME && sessions::is_well_formed(value)).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_host_only_secure_http_only_and_same_site() {
        let cookie = session_cookie("abc", Duration::from_secs(43_200), SameSite::Lax);
        assert_eq!(
            cookie,
            "__Host-portcullis_session=abc; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=43200"
        );
        assert!(
            session_cookie("abc", Duration::from_secs(1), SameSite::Strict)
                .contains("SameSite=Strict")
        );
        assert!(clear_cookie().ends_with("Max-Age=0"));
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let secret = "A".repeat(43);
        let header = format!("a=b; {COOKIE_NAME}={secret}; c=d");
        assert_eq!(secret_from_cookie_header(&header), Some(secret.as_str()));
        assert_eq!(
            secret_from_cookie_header(&format!("{COOKIE_NAME}=short")),
            None
        );
        assert_eq!(secret_from_cookie_header("portcullis_session=x"), None);
    }
}
