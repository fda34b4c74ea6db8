//! Client authentication as a request presents it (RFC 6749 §2.3): `client_secret_basic`
//! (the `Authorization: Basic` header, whose id and secret are form-urlencoded before base64,
//! §2.3.1), `client_secret_post` (`client_id` and `client_secret` in the form) or `none` (a
//! public client's `client_id`, §3.2.1). One method per request: two are `invalid_request`.
//! Checking the credentials is the domain's (`auth::oidc::clients`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::auth::AuthError;
use crate::auth::oidc::clients::ClientCredentials;

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; the result
/// must be UTF-8.
fn form_urldecode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn bad(detail: &str) -> AuthError {
    AuthError::InvalidOAuthRequest {
        code: "invalid_request",
        detail: detail.to_owned(),
    }
}

/// The client credentials of a request, from its `Authorization` header and its form's
/// `client_id` and `client_secret` (empty values count as absent, RFC 6749 §3.1).
pub fn client_credentials(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_client_secret: Option<&str>,
) -> Result<ClientCredentials, AuthError> {
    let form_client_id = form_client_id.filter(|v| !v.is_empty());
    let form_client_secret = form_client_secret.filter(|v| !v.is_empty());
    if let Some(header) = authorization {
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::InvalidClient(
                "client authentication uses the Basic scheme",
            ));
        }
        let decoded = STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(AuthError::InvalidClient("malformed Basic credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or(AuthError::InvalidClient("malformed Basic credentials"))?;
        let (client_id, secret) = form_urldecode(id)
            .zip(form_urldecode(secret))
            .ok_or(AuthError::InvalidClient("malformed Basic credentials"))?;
        if form_client_secret.is_some() {
            return Err(bad(
                "use one client authentication method: Basic or client_secret in the body",
            ));
        }
        if form_client_id.is_some_and(|id| id != client_id) {
            return Err(bad("client_id differs from the authenticated client"));
        }
        return Ok(ClientCredentials::Secret { client_id, secret });
    }
    match (form_client_id, form_client_secret) {
        (Some(id), Some(secret)) => Ok(ClientCredentials::Secret {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        (Some(id), None) => Ok(ClientCredentials::Public {
            client_id: id.to_owned(),
        }),
        (None, _) => Err(AuthError::InvalidClient(
            "no client authentication: send Basic credentials or client_id",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn secret(id: &str, secret: &str) -> ClientCredentials {
        ClientCredentials::Secret {
            client_id: id.into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn basic_credentials_are_form_urldecoded_after_base64() {
        assert_eq!(
            client_credentials(Some(&basic("my%3Aapp", "a+b%25c%2B")), None, None).unwrap(),
            secret("my:app", "a b%c+")
        );
        assert_eq!(
            client_credentials(Some(&basic("web", "p:q")), None, None).unwrap(),
            secret("web", "p:q"),
            "the first colon splits"
        );
        assert_eq!(
            client_credentials(Some(&basic("web", "s")), Some("web"), None).unwrap(),
            secret("web", "s"),
            "the same client_id in the body is allowed"
        );
    }

    #[test]
    fn a_secret_in_the_body_or_a_bare_client_id_is_understood() {
        assert_eq!(
            client_credentials(None, Some("web"), Some("s")).unwrap(),
            secret("web", "s")
        );
        assert_eq!(
            client_credentials(None, Some("spa"), Some("")).unwrap(),
            ClientCredentials::Public {
                client_id: "spa".into()
            }
        );
    }

    #[test]
    fn two_methods_or_two_client_ids_are_invalid_request() {
        for (id, secret) in [(None, Some("s")), (Some("other"), None)] {
            assert!(matches!(
                client_credentials(Some(&basic("web", "s")), id, secret),
                Err(AuthError::InvalidOAuthRequest {
                    code: "invalid_request",
                    ..
                })
            ));
        }
    }

    #[test]
    fn no_or_malformed_credentials_are_invalid_client() {
        for header in [
            Some("Bearer abc".to_owned()),
            Some("Basic !!!".to_owned()),
            Some(format!("Basic {}", STANDARD.encode("no-colon"))),
            Some(basic("web", "%zz")),
            None,
        ] {
            assert!(
                matches!(
                    client_credentials(header.as_deref(), None, None),
                    Err(AuthError::InvalidClient(_))
                ),
                "{header:?}"
            );
        }
    }
}
