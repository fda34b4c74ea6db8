//! The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414), built from the
//! issuer alone: every endpoint this server serves and exactly the features it implements.
//! Features it lacks are stated as such where the default would claim them
//! (`request_uri_parameter_supported` defaults to true).

use serde_json::{Value, json};

/// The acr of a sign-in with a password alone.
pub const ACR_PASSWORD: &str = "urn:portcullis:acr:pwd";
/// The acr of a sign-in through a social provider alone (what that provider checked is its
/// own business).
pub const ACR_FEDERATED: &str = "urn:portcullis:acr:fed";
/// The acr of a sign-in with a second factor (TOTP or a recovery code) after the first.
pub const ACR_MFA: &str = "urn:portcullis:acr:mfa";

/// The acr of a sign-in whose factors are `amr` (RFC 8176 values, as the session keeps them):
/// a second factor makes it [`ACR_MFA`] whatever came first, else a provider's sign-in is
/// [`ACR_FEDERATED`] and a password [`ACR_PASSWORD`]. An RP that asks how strong a sign-in was
/// must never read "password" for one that had none.
pub fn acr_for<S: AsRef<str>>(amr: &[S]) -> &'static str {
    let has = |m: &str| amr.iter().any(|a| a.as_ref() == m);
    if has(crate::auth::mfa_login::OTP_AMR) {
        ACR_MFA
    } else if has(crate::auth::social::FEDERATED_AMR) {
        ACR_FEDERATED
    } else {
        ACR_PASSWORD
    }
}

/// The metadata of the provider at `issuer` (no trailing slash, no path).
pub fn metadata(issuer: &str) -> Value {
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "acr",
            "sid", "name", "email", "email_verified"
        ],
        "acr_values_supported": [ACR_PASSWORD, ACR_FEDERATED, ACR_MFA],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acr_says_mfa_after_a_second_factor_and_never_password_without_one() {
        assert_eq!(acr_for(&["pwd"]), ACR_PASSWORD);
        assert_eq!(acr_for(&["pwd", "otp"]), ACR_MFA);
        assert_eq!(acr_for(&["fed"]), ACR_FEDERATED);
        assert_eq!(acr_for(&["fed", "otp"]), ACR_MFA);
        assert_eq!(
            metadata("https://auth.example.com")["acr_values_supported"],
            json!([ACR_PASSWORD, ACR_FEDERATED, ACR_MFA])
        );
    }

    #[test]
    fn every_endpoint_sits_under_the_issuer_and_unbuilt_features_are_denied() {
        let m = metadata("https://auth.example.com");
        assert_eq!(m["issuer"], "https://auth.example.com");
        for key in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
            "revocation_endpoint",
            "introspection_endpoint",
            "end_session_endpoint",
        ] {
            assert!(
                m[key]
                    .as_str()
                    .unwrap()
                    .starts_with("https://auth.example.com/"),
                "{key}"
            );
        }
        assert_eq!(
            m["end_session_endpoint"],
            "https://auth.example.com/oauth2/logout"
        );
        assert_eq!(m["request_uri_parameter_supported"], false);
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["id_token_signing_alg_values_supported"], json!(["ES256"]));
    }
}
