//! The request-level rate limit on the public listener: every request counts against its route
//! class and `All`, per client address and globally, before any body is read. Subject limits
//! (per identifier, account or client) are the use cases' own (`crate::auth::limits`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_crds::rate_limit::Route;

use super::client_ip::client_addr;
use super::error::ApiError;
use super::state::AppState;

/// The route class of a matched route template: the table of `crds::rate_limit::Route`'s doc.
/// `None` (only `All` applies) for discovery, keys, static files, pages, `/openapi.json` and
/// unmatched paths.
pub fn route_class(method: &Method, template: &str) -> Option<Route> {
    let post = method == Method::POST;
    match template {
        // A password change checks the current password (and hashes twice): to an attacker
        // with a stolen session it is a login attempt, so it shares the login limits.
        // So does beginning a TOTP enrolment, which re-checks the password.
        "/api/v1/login"
        | "/login"
        | "/api/v1/me/password"
        | "/account/password"
        | "/api/v1/me/mfa/totp"
            if post =>
        {
            Some(Route::Login)
        }
        // Removing TOTP and regenerating recovery codes re-check the password too.
        "/api/v1/me/mfa/totp" if method == Method::DELETE => Some(Route::Login),
        // Deleting the account re-checks the password: to a stolen session, a login attempt.
        "/api/v1/me" if method == Method::DELETE => Some(Route::Login),
        "/account/delete" if post => Some(Route::Login),
        // A social sign-in is a sign-in, and each costs the server up to three requests to
        // the provider (token, keys, user info): counted as logins, per address.
        "/oauth2/social/{name}/start" | "/oauth2/social/{name}/callback" => Some(Route::Login),
        "/account/identities/link" if post => Some(Route::Login),
        "/api/v1/me/mfa/recovery-codes"
        | "/account/mfa/totp"
        | "/account/mfa/totp/remove"
        | "/account/mfa/recovery-codes"
            if post =>
        {
            Some(Route::Login)
        }
        "/api/v1/register" | "/register" if post => Some(Route::Register),
        "/api/v1/login/mfa"
        | "/api/v1/login/mfa/enrol"
        | "/api/v1/login/mfa/enrol/confirm"
        | "/login/mfa"
        | "/login/mfa/enrol"
            if post =>
        {
            Some(Route::Mfa)
        }
        "/api/v1/password-reset"
        | "/api/v1/password-reset/confirm"
        | "/reset-password"
        | "/reset-password/confirm"
            if post =>
        {
            Some(Route::PasswordReset)
        }
        "/oauth2/token" | "/oauth2/revoke" | "/oauth2/introspect" if post => Some(Route::Token),
        _ if template.starts_with("/api/v1/") || template.starts_with("/oauth2/") => {
            Some(Route::Api)
        }
        _ => None,
    }
}

/// The client address of a request: the peer, or what trusted proxies say.
pub fn request_addr(request: &Request, state: &AppState) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_addr(peer, &forwarded, &state.web.trusted_proxies)
}

/// Decides the request against its class and `All`, per address and globally; a refusal is
/// answered here (429 `rate_limited`, or 503 `rate_limit_unavailable` when the store is down
/// and the realm fails closed) and the handler never runs.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = state.core.limits();
    if !limits.enabled() {
        return next.run(request).await;
    }
    let class = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| route_class(request.method(), m.as_str()));
    let ip = request_addr(&request, &state);
    match limits.check_request(class, ip).await {
        Ok(()) => next.run(request).await,
        Err(error) => ApiError::from(error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_classes_the_credential_routes_and_leaves_pages_to_all() {
        let cases = [
            (Method::POST, "/api/v1/login", Some(Route::Login)),
            (Method::POST, "/login", Some(Route::Login)),
            (Method::GET, "/login", None),
            (Method::POST, "/api/v1/me/password", Some(Route::Login)),
            (Method::POST, "/api/v1/me/mfa/totp", Some(Route::Login)),
            (Method::POST, "/account/password", Some(Route::Login)),
            (Method::POST, "/api/v1/register", Some(Route::Register)),
            (Method::POST, "/register", Some(Route::Register)),
            (
                Method::POST,
                "/api/v1/password-reset/confirm",
                Some(Route::PasswordReset),
            ),
            (Method::POST, "/reset-password", Some(Route::PasswordReset)),
            (Method::POST, "/oauth2/token", Some(Route::Token)),
            (Method::POST, "/oauth2/introspect", Some(Route::Token)),
            (Method::GET, "/oauth2/userinfo", Some(Route::Api)),
            (Method::GET, "/api/v1/me", Some(Route::Api)),
            (Method::DELETE, "/api/v1/me", Some(Route::Login)),
            (Method::POST, "/account/delete", Some(Route::Login)),
            (
                Method::GET,
                "/oauth2/social/{name}/start",
                Some(Route::Login),
            ),
            (
                Method::GET,
                "/oauth2/social/{name}/callback",
                Some(Route::Login),
            ),
            (Method::POST, "/account/identities/link", Some(Route::Login)),
            (Method::GET, "/.well-known/jwks.json", None),
            (Method::GET, "/static/{file}", None),
            (Method::GET, "/openapi.json", None),
        ];
        for (method, template, class) in cases {
            assert_eq!(route_class(&method, template), class, "{method} {template}");
        }
    }

    #[test]
    fn every_served_api_and_oauth_operation_has_a_class() {
        let document = crate::http::public_openapi();
        let mut seen = 0;
        for (path, item) in document.paths.paths {
            let methods = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::DELETE, item.delete.is_some()),
                (Method::PATCH, item.patch.is_some()),
            ];
            for (method, _) in methods.into_iter().filter(|(_, served)| *served) {
                seen += 1;
                let class = route_class(&method, &path);
                let credential = matches!(
                    path.as_str(),
                    "/login"
                        | "/register"
                        | "/reset-password"
                        | "/reset-password/confirm"
                        | "/account/password"
                        | "/login/mfa"
                        | "/login/mfa/enrol"
                        | "/account/mfa/totp"
                        | "/account/mfa/totp/remove"
                        | "/account/mfa/recovery-codes"
                        | "/account/identities/link"
                        | "/account/delete"
                ) && method == Method::POST;
                if path.starts_with("/api/v1/") || path.starts_with("/oauth2/") || credential {
                    assert!(class.is_some(), "{method} {path} has no route class");
                } else {
                    assert_eq!(class, None, "{method} {path} counts against All only");
                }
            }
        }
        assert!(
            seen > 20,
            "the document lists the served operations ({seen})"
        );
    }
}
