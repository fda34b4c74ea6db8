//! Privacy (GDPR, issue 13): the realm's policy, the acceptance step of a sign-in, the
//! caller's consents, their data export and their erasure.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::principal::RequestMeta;
use crate::auth::privacy::{self, Acceptance};
use crate::http::caller::{Authenticated, PresentedSession};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::routes::accounts::{LoginResponse, signed_in};
use crate::http::state::AppState;
use portcullis_privacy::consent::{Consent, Source};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(privacy_policy))
        .routes(routes!(accept_policy))
        .routes(routes!(consents))
        .routes(routes!(change_consent))
        .routes(routes!(export))
        .routes(routes!(erase_me))
}

/// A purpose of the policy.
#[derive(Serialize, ToSchema)]
pub struct PurposeAnswer {
    /// Machine name.
    name: String,
    /// Whether the account needs it.
    required: bool,
    /// Text shown to users.
    description: String,
}

/// The realm's privacy policy.
#[derive(Serialize, ToSchema)]
pub struct PolicyAnswer {
    /// The current version (what `policy_version` fields must name).
    version: String,
    /// Where the policy text is (`null` when the realm sets none).
    url: Option<String>,
    /// The purposes users consent to.
    purposes: Vec<PurposeAnswer>,
}

/// The realm's privacy policy: version, URL and purposes.
#[utoipa::path(
    get,
    path = "/api/v1/privacy-policy",
    responses((status = 200, description = "The policy", body = PolicyAnswer))
)]
async fn privacy_policy(State(state): State<AppState>) -> Json<PolicyAnswer> {
    let view = privacy::policy_view(&state.core);
    Json(PolicyAnswer {
        version: view.version,
        url: view.url,
        purposes: view
            .purposes
            .into_iter()
            .map(|p| PurposeAnswer {
                name: p.name,
                required: p.required,
                description: p.description,
            })
            .collect(),
    })
}

/// The acceptance that completes a sign-in waiting for it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// The token the sign-in answered with `consent_required`.
    consent_token: String,
    /// Grant or refusal per purpose; every required purpose must be `true`.
    #[serde(default)]
    consents: BTreeMap<String, bool>,
    /// The policy version shown (the current one when left out).
    #[serde(default)]
    policy_version: Option<String>,
}

/// Accept the realm's current privacy policy and complete the sign-in; answers as a login.
#[utoipa::path(
    post,
    path = "/api/v1/consent",
    request_body = ConsentRequest,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the session", body = LoginResponse),
        (status = 400, description = "A required purpose not granted, an unknown purpose, a stale policy version, or an unknown, used or expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`registration_required`: the realm now requires TOTP, so a social sign-up makes no account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sign_up_outdated`: a social sign-up whose identity was linked, email registered or rules changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store could not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn accept_policy(
    State(state): State<AppState>,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    ApiJson(body): ApiJson<ConsentRequest>,
) -> Result<Response, ApiError> {
    let acceptance = Acceptance {
        policy_version: body.policy_version,
        consents: body.consents,
    };
    let success = privacy::complete_consent(
        &state.core,
        &body.consent_token,
        &acceptance,
        &meta,
        previous.as_deref(),
    )
    .await?;
    Ok(signed_in(&state, success, None))
}

/// A purpose's current answer.
#[derive(Serialize, ToSchema)]
pub struct ConsentAnswer {
    /// The purpose.
    purpose: String,
    /// Granted (`true`) or refused / withdrawn.
    granted: bool,
    /// The policy version it was given under.
    policy_version: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<Consent> for ConsentAnswer {
    fn from(c: Consent) -> Self {
        Self {
            purpose: c.purpose,
            granted: c.granted,
            policy_version: c.policy_version,
            updated_at: c.updated_at,
        }
    }
}

/// The caller's consents, one per purpose answered.
#[utoipa::path(
    get,
    path = "/api/v1/me/consents",
    responses(
        (status = 200, description = "The answers", body = [ConsentAnswer]),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn consents(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<Vec<ConsentAnswer>>, ApiError> {
    let list = privacy::my_consents(&state.core, &principal).await?;
    Ok(Json(list.into_iter().map(ConsentAnswer::from).collect()))
}

/// A grant or withdrawal.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChangeRequest {
    /// Grant (`true`) or withdraw (`false`).
    granted: bool,
    /// The policy version shown; a grant needs the current one, a withdrawal is recorded
    /// under the version in force whatever it names.
    policy_version: String,
}

/// Grant or withdraw one purpose; recorded with a history row (source `api`) and audited.
#[utoipa::path(
    put,
    path = "/api/v1/me/consents/{purpose}",
    params(("purpose" = String, Path, description = "The purpose's name")),
    request_body = ConsentChangeRequest,
    responses(
        (status = 200, description = "The consent as stored", body = ConsentAnswer),
        (status = 400, description = "Unknown purpose, or a grant under a stale policy version", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`consent_required`: a required purpose cannot be withdrawn (delete the account instead)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn change_consent(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiPath(purpose): ApiPath<String>,
    ApiJson(body): ApiJson<ConsentChangeRequest>,
) -> Result<Json<ConsentAnswer>, ApiError> {
    let consent = privacy::change_consent(
        &state.core,
        &principal,
        &purpose,
        body.granted,
        &body.policy_version,
        Source::Api,
        &meta,
    )
    .await?;
    Ok(Json(consent.into()))
}

/// Every stored datum about the caller, as one JSON document (a download); audited.
#[utoipa::path(
    get,
    path = "/api/v1/me/export",
    responses(
        (status = 200, description = "The export document (`schema_version`, profile, sessions, consents and their history, grants, devices, MFA state, linked identities, tokens' metadata, notifications, a pending erasure, audit events); no hash, secret or token", content_type = "application/json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn export(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let document = privacy::export(&state.core, &principal, &meta).await?;
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"portcullis-export.json\""),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The erasure request: the password, and a fresh second factor when TOTP is on.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The current password. An account without one (made by social sign-in) sends none and
    /// needs a sign-in from the last 10 minutes instead.
    #[serde(default)]
    password: String,
    /// A current TOTP code or an unused recovery code (required when TOTP is on).
    #[serde(default)]
    code: Option<String>,
}

/// An erasure request's answer.
#[derive(Serialize, ToSchema)]
pub struct ErasureAnswer {
    /// The erasure id (the receipt's key, and the pseudonym in the audit trail).
    erasure_id: Uuid,
    /// When the data goes (now, with no grace period).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    effective_at: OffsetDateTime,
}

/// Delete the caller's account: sessions and tokens end at once; the data goes at once or
/// after the realm's `erasureGracePeriod`.
#[utoipa::path(
    delete,
    path = "/api/v1/me",
    request_body = EraseRequest,
    responses(
        (status = 202, description = "Requested (or done, with no grace period)", body = ErasureAnswer),
        (status = 400, description = "`code` missing while TOTP is on", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in, or the password or code is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof, or (`reauthentication_required`) an account without a password whose sign-in is older than 10 minutes", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked or rate limited", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn erase_me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiJson(body): ApiJson<EraseRequest>,
) -> Result<Response, ApiError> {
    let request = privacy::erase_me(
        &state.core,
        &principal,
        &meta,
        &body.password,
        body.code.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ErasureAnswer {
            erasure_id: request.id,
            effective_at: request.effective_at,
        }),
    )
        .into_response())
}
