//! `GET /openapi.json`: the OpenAPI 3.1 description of the public listener, built from one
//! table. A test checks the table against the routes the routers really register.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// One documented operation.
pub struct Operation {
    /// HTTP method, lowercase.
    pub method: &'static str,
    /// Path template, `{param}` style.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Request body schema (a `components/schemas` name) and its media type.
    pub request: Option<(&'static str, &'static str)>,
    /// Answers: status and response schema name (`None`: no body).
    pub responses: &'static [(u16, Option<&'static str>)],
    /// Needs the session cookie or a bearer access token.
    pub authenticated: bool,
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// Every operation of the public listener.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/api/v1/register",
        summary: "Register an account",
        request: Some(("RegisterRequest", JSON)),
        responses: &[
            (201, Some("Registered")),
            (202, Some("Status")),
            (400, None),
            (409, None),
        ],
        authenticated: false,
    },
    Operation {
        method: "post",
        path: "/api/v1/verify-email",
        summary: "Verify an email address with the mailed token",
        request: Some(("TokenRequest", JSON)),
        responses: &[(200, Some("Status")), (400, None)],
        authenticated: false,
    },
    Operation {
        method: "post",
        path: "/api/v1/password-reset",
        summary: "Mail a password reset token (202 whether or not the account exists)",
        request: Some(("EmailRequest", JSON)),
        responses: &[(202, Some("Status")), (400, None)],
        authenticated: false,
    },
    Operation {
        method: "post",
        path: "/api/v1/password-reset/confirm",
        summary: "Set a new password with a reset token; every session ends",
        request: Some(("ResetConfirmRequest", JSON)),
        responses: &[(204, None), (400, None)],
        authenticated: false,
    },
    Operation {
        method: "post",
        path: "/api/v1/login",
        summary: "Log in; sets the session cookie",
        request: Some(("LoginRequest", JSON)),
        responses: &[
            (200, Some("LoginResponse")),
            (401, None),
            (403, None),
            (429, None),
        ],
        authenticated: false,
    },
    Operation {
        method: "post",
        path: "/api/v1/logout",
        summary: "End the session and its refresh-token family",
        request: None,
        responses: &[(204, None), (401, None), (403, None)],
        authenticated: true,
    },
    Operation {
        method: "get",
        path: "/api/v1/me",
        summary: "The caller's profile",
        request: None,
        responses: &[(200, Some("Me")), (401, None)],
        authenticated: true,
    },
    Operation {
        method: "post",
        path: "/api/v1/me/password",
        summary: "Change the password; other sessions end",
        request: Some(("PasswordChangeRequest", JSON)),
        responses: &[(204, None), (400, None), (401, None), (403, None)],
        authenticated: true,
    },
    Operation {
        method: "get",
        path: "/api/v1/me/sessions",
        summary: "The caller's sessions",
        request: None,
        responses: &[(200, Some("Sessions")), (401, None)],
        authenticated: true,
    },
    Operation {
        method: "delete",
        path: "/api/v1/me/sessions/{id}",
        summary: "Revoke one of the caller's sessions",
        request: None,
        responses: &[(204, None), (401, None), (404, None)],
        authenticated: true,
    },
    Operation {
        method: "get",
        path: "/api/v1/csrf",
        summary: "The CSRF token of the caller's session",
        request: None,
        responses: &[(200, Some("CsrfToken")), (401, None)],
        authenticated: true,
    },
    Operation {
        method: "get",
        path: "/.well-known/jwks.json",
        summary: "Public signing keys (current and previous)",
        request: None,
        responses: &[(200, Some("Jwks"))],
        authenticated: false,
    },
    Operation {
        method: "post",
        path: "/oauth2/token",
        summary: "Token endpoint: grant_type=refresh_token (rotating)",
        request: Some(("RefreshTokenGrant", FORM)),
        responses: &[(200, Some("TokenResponse")), (400, None)],
        authenticated: false,
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        request: None,
        responses: &[(200, None)],
        authenticated: false,
    },
];

fn string() -> Value {
    json!({"type": "string"})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn schemas() -> Value {
    json!({
        "Problem": object(&["type", "title", "status", "detail", "code"], json!({
            "type": string(), "title": string(), "status": {"type": "integer"}, "detail": string(),
            "code": {"type": "string", "description": "Stable snake_case machine name"},
            "violations": {"type": "array", "items": object(&["field", "code", "message"], json!({"field": string(), "code": string(), "message": string()}))},
            "error": {"type": "string", "description": "RFC 6749 error (token endpoint)"}, "error_description": string()
        })),
        "RegisterRequest": object(&["email", "password", "policy_version"], json!({
            "email": string(), "password": {"type": "string", "minLength": 1}, "display_name": string(),
            "consents": {"type": "object", "additionalProperties": {"type": "boolean"}}, "policy_version": string()
        })),
        "Registered": object(&["user_id"], json!({"user_id": {"type": "string", "format": "uuid"}})),
        "Status": object(&["status"], json!({"status": string()})),
        "TokenRequest": object(&["token"], json!({"token": string()})),
        "EmailRequest": object(&["email"], json!({"email": string()})),
        "ResetConfirmRequest": object(&["token", "new_password"], json!({"token": string(), "new_password": string()})),
        "LoginRequest": object(&["email", "password"], json!({"email": string(), "password": string()})),
        "LoginResponse": object(&["user_id", "access_token", "refresh_token", "token_type", "expires_in", "csrf_token"], json!({
            "user_id": {"type": "string", "format": "uuid"}, "access_token": string(), "refresh_token": string(),
            "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}, "csrf_token": string()
        })),
        "PasswordChangeRequest": object(&["current_password", "new_password"], json!({"current_password": string(), "new_password": string()})),
        "Me": object(&["user_id", "email", "email_verified", "mfa", "created_at"], json!({
            "user_id": {"type": "string", "format": "uuid"}, "email": string(), "display_name": {"type": ["string", "null"]},
            "email_verified": {"type": "boolean"},
            "mfa": object(&["totp", "recovery_codes_left"], json!({"totp": {"type": "boolean"}, "recovery_codes_left": {"type": "integer"}})),
            "created_at": {"type": "string", "format": "date-time"}
        })),
        "Sessions": {"type": "array", "items": object(&["id", "created_at", "last_seen_at", "ip", "user_agent", "current"], json!({
            "id": string(), "created_at": {"type": "string", "format": "date-time"}, "last_seen_at": {"type": "string", "format": "date-time"},
            "ip": string(), "user_agent": string(), "current": {"type": "boolean"}
        }))},
        "CsrfToken": object(&["csrf_token"], json!({"csrf_token": string()})),
        "Jwks": object(&["keys"], json!({"keys": {"type": "array", "items": {"type": "object"}}})),
        "RefreshTokenGrant": object(&["grant_type", "refresh_token"], json!({"grant_type": {"const": "refresh_token"}, "refresh_token": string(), "client_id": string()})),
        "TokenResponse": object(&["access_token", "token_type", "expires_in", "refresh_token", "scope"], json!({
            "access_token": string(), "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}, "refresh_token": string(), "scope": string()
        })),
    })
}

/// The whole document for a realm's issuer.
pub fn document(issuer: &str) -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut responses = Map::new();
        for (status, schema) in op.responses {
            let (media, reference) = match schema {
                Some(name) => (JSON, Some(format!("#/components/schemas/{name}"))),
                None if *status >= 400 => (
                    "application/problem+json",
                    Some("#/components/schemas/Problem".to_owned()),
                ),
                None => (JSON, None),
            };
            let mut response = json!({"description": format!("HTTP {status}")});
            if let Some(reference) = reference {
                response["content"] = json!({media: {"schema": {"$ref": reference}}});
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({"summary": op.summary, "responses": responses});
        if let Some((schema, media)) = op.request {
            operation["requestBody"] = json!({"required": true, "content": {media: {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        if op.authenticated {
            operation["security"] = json!([{"session": []}, {"bearer": []}]);
        }
        if op.path.contains("{id}") {
            operation["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Portcullis auth server", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Errors are RFC 9457 application/problem+json. Cookie-authenticated state changes need X-CSRF-Token."},
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": super::cookies::COOKIE_NAME},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        }
    })
}

/// The handler.
pub async fn serve(
    axum::extract::State(state): axum::extract::State<super::state::AppState>,
) -> Response {
    Json(document(&state.web.issuer)).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(method, path)` of every `.route("PATH", method(` in the public route modules' source.
    fn registered_routes() -> BTreeSet<(String, String)> {
        let sources = [
            include_str!("routes/accounts.rs"),
            include_str!("routes/me.rs"),
            include_str!("routes/oauth.rs"),
            include_str!("mod.rs"),
        ];
        let mut routes = BTreeSet::new();
        for source in sources {
            let compact: String = source.split_whitespace().collect::<Vec<_>>().join("");
            for piece in compact.split(".route(\"").skip(1) {
                let Some((path, rest)) = piece.split_once("\",") else {
                    continue;
                };
                let method = rest.split('(').next().unwrap_or_default();
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
        routes
    }

    #[test]
    fn every_registered_route_is_documented_and_every_documented_one_registered() {
        let documented: BTreeSet<(String, String)> = OPERATIONS
            .iter()
            .map(|o| (o.method.to_owned(), o.path.to_owned()))
            .collect();
        assert_eq!(documented, registered_routes());
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document("https://auth.example.com");
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "https://auth.example.com");
    }
}
