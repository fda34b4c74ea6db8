//! `GET /openapi.json`: the OpenAPI 3.1 description of the public listener, derived from the
//! handlers' own attributes and types. `utoipa_axum` registers each route and documents it from
//! the same `#[utoipa::path]`, so the two cannot disagree; schemas follow serde
//! (`deny_unknown_fields` gives `additionalProperties: false`, `Option` fields are optional);
//! and the answers any operation can give — a malformed, oversized, slow or mistyped body, an
//! overloaded or failing server — are added here, once.

use std::sync::Arc;

use axum::extract::Extension;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cookies::COOKIE_NAME;
use super::error::{PROBLEM_JSON, Problem};
use super::state::AppState;
use crate::auth::Violation;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis auth server",
        description = "One realm's accounts, sessions and tokens. Errors are RFC 9457 \
            application/problem+json with a stable `code`; cookie-authenticated state changes \
            need the session's X-CSRF-Token (or a same-origin request)."
    ),
    components(schemas(Problem, Violation))
)]
struct ApiDoc;

/// The document's skeleton: info and the shared schemas; routes add their operations.
pub fn skeleton() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The route serving the document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(serve))
}

/// Answers every operation may give, by status: (status, description, only with a body).
const COMMON_ANSWERS: &[(&str, &str, bool)] = &[
    (
        "400",
        "The body is not valid JSON or not the documented object (`invalid_json`, `invalid_body`), or breaks a rule (`violations`)",
        true,
    ),
    (
        "408",
        "The body did not arrive in time (`request_timeout`)",
        true,
    ),
    ("413", "The body is over 64 KiB (`payload_too_large`)", true),
    (
        "415",
        "The body is not of the documented media type (`unsupported_media_type`)",
        true,
    ),
    (
        "429",
        "A rate limit refused the request (`rate_limited`, or `account_locked` at login); see `Retry-After`, `RateLimit-Policy` and `RateLimit`",
        false,
    ),
    ("500", "An unexpected failure (`internal_error`)", false),
    (
        "503",
        "Overloaded, too slow or a dependency down (`server_busy`, `server_timeout`, `service_unavailable`, `rate_limit_unavailable`); see `Retry-After`",
        false,
    ),
];

/// The served document for a realm: `api` (the routes' operations) with the answers every
/// operation may give, the security schemes and the issuer as its server.
pub fn document(api: &utoipa::openapi::OpenApi, issuer: &str) -> Value {
    let mut doc = serde_json::to_value(api).unwrap_or_else(|_| json!({}));
    let problem = json!({
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(Value::as_object_mut)
        {
            let has_body = operation.contains_key("requestBody");
            // A body utoipa leaves optional (an `Option` type) says so explicitly: tools read a
            // missing `required` differently.
            if let Some(body) = operation
                .get_mut("requestBody")
                .and_then(Value::as_object_mut)
            {
                body.entry("required").or_insert(Value::Bool(false));
            }
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            for (status, description, with_body) in COMMON_ANSWERS {
                if *with_body && !has_body {
                    continue;
                }
                responses.entry(*status).or_insert_with(
                    || json!({"description": description, "content": problem.clone()}),
                );
            }
        }
    }
    doc["servers"] = json!([{"url": issuer}]);
    doc["components"]["securitySchemes"] = json!({
        "session": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    });
    doc
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
async fn serve(Extension(doc): Extension<Arc<Value>>) -> Response {
    axum::Json(doc.as_ref().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes;

    fn public_document() -> Value {
        let (_, api) = OpenApiRouter::<AppState>::with_openapi(skeleton())
            .merge(router())
            .merge(routes::accounts::router())
            .merge(routes::me::router())
            .merge(routes::privacy::router())
            .merge(routes::oauth::router())
            .split_for_parts();
        document(&api, "https://auth.example.com")
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = public_document();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "https://auth.example.com");
    }

    #[test]
    fn request_bodies_refuse_unknown_fields_and_document_their_failures() {
        let doc = public_document();
        let login = &doc["paths"]["/api/v1/login"]["post"];
        for status in ["400", "408", "413", "415", "503"] {
            assert!(login["responses"][status].is_object(), "{status}");
        }
        assert_eq!(
            doc["components"]["schemas"]["LoginRequest"]["additionalProperties"],
            false
        );
        let jwks = &doc["paths"]["/.well-known/jwks.json"]["get"];
        assert!(
            jwks["responses"]["413"].is_null(),
            "no body, no body answers"
        );
    }
}
