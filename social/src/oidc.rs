//! OpenID Connect: discovery, and the ID token verified as OpenID Connect Core §3.1.3.7 asks
//! (signature by a key of the provider's JWKS, `iss`, `aud` with no other audience, `exp`,
//! `nonce`) with openidconnect's verifier, then by us what openidconnect 4.0 leaves out (`azp`,
//! `iat` not in the future, `nbf`), each time with [`CLOCK_SKEW`] of leeway. UserInfo fills in
//! the email when the ID token has none.

use std::str::FromStr as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use oauth2::{AuthType, AuthUrl, TokenUrl};
use openidconnect::core::{
    CoreClientAuthMethod, CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClaimsVerificationError, ClientId, IdToken, IdTokenClaims, IssuerUrl,
    JsonWebKeySetUrl, Nonce, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use url::Url;

use crate::http::{HttpClient, endpoint_allowed, get_json, get_public_json, send};
use crate::{SocialError, UpstreamIdentity};

/// How far the provider's clock may be from ours (on `exp`, `nbf` and `iat`).
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What discovery told about an OpenID provider.
#[derive(Clone, Debug)]
pub(crate) struct Discovered {
    pub issuer: IssuerUrl,
    pub authorize: AuthUrl,
    pub token: TokenUrl,
    pub auth_type: AuthType,
    pub userinfo: Option<Url>,
    pub jwks_uri: JsonWebKeySetUrl,
    /// The provider's keys, shared by the clones of the provider: a refetch after a key
    /// rotation is kept for every later sign-in.
    pub jwks: Arc<RwLock<Keys>>,
    /// The signing algorithms accepted for ID tokens: the provider's, asymmetric only.
    pub algs: Vec<CoreJwsSigningAlgorithm>,
    /// The provider advertises `authorization_response_iss_parameter_supported`: a callback
    /// without `iss` is then refused (RFC 9207 §2.4).
    pub iss_required: bool,
}

/// The provider's key set and when it was last refetched for an unknown `kid`.
#[derive(Debug)]
pub(crate) struct Keys {
    pub set: CoreJsonWebKeySet,
    pub refetched_at: Option<OffsetDateTime>,
}

impl Keys {
    pub fn new(set: CoreJsonWebKeySet) -> Arc<RwLock<Self>> {
        Arc::new(RwLock::new(Self {
            set,
            refetched_at: None,
        }))
    }
}

/// The least time between two refetches of a provider's JWKS for an unknown `kid`: a token
/// naming a key nobody publishes costs at most one extra request per this period.
pub(crate) const JWKS_REFETCH_INTERVAL: time::Duration = time::Duration::minutes(1);

/// Whether the JWKS may be fetched again at `now`, last refetched at `last`.
fn may_refetch(last: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    last.is_none_or(|last| now - last >= JWKS_REFETCH_INTERVAL || now < last)
}

/// Fetches `{issuer}/.well-known/openid-configuration` and the JWKS it names; openidconnect
/// checks that the document's `issuer` is `issuer` exactly. Every endpoint must be HTTPS
/// (plain HTTP only on loopback for a plain-HTTP loopback issuer, [`endpoint_allowed`]).
pub(crate) async fn discover(issuer: &str, http: &HttpClient) -> Result<Discovered, SocialError> {
    let failed = |reason: String| SocialError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| failed(e.to_string()))?;
    let document_url = issuer_url
        .join(".well-known/openid-configuration")
        .map_err(|e| failed(e.to_string()))?;
    let document = get_public_json(http, document_url).await.map_err(&failed)?;
    let metadata: CoreProviderMetadata =
        serde_json::from_value(document.clone()).map_err(|e| failed(e.to_string()))?;
    if metadata.issuer() != &issuer_url {
        return Err(failed(format!(
            "the document names the issuer {:?}",
            metadata.issuer().as_str()
        )));
    }
    check_endpoints(issuer_url.url(), &metadata).map_err(&failed)?;
    let jwks = fetch_jwks(metadata.jwks_uri(), http)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let token = metadata
        .token_endpoint()
        .cloned()
        .ok_or_else(|| failed("the provider has no token_endpoint".into()))?;
    let auth_type =
        auth_type(metadata.token_endpoint_auth_methods_supported()).ok_or_else(|| {
            failed(
                "the provider supports neither client_secret_basic nor client_secret_post".into(),
            )
        })?;
    let algs: Vec<_> = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|alg| asymmetric(alg))
        .cloned()
        .collect();
    if algs.is_empty() {
        return Err(failed(
            "the provider signs ID tokens with no asymmetric algorithm".into(),
        ));
    }
    Ok(Discovered {
        issuer: issuer_url,
        authorize: metadata.authorization_endpoint().clone(),
        token,
        auth_type,
        userinfo: metadata.userinfo_endpoint().map(|u| u.url().clone()),
        jwks_uri: metadata.jwks_uri().clone(),
        jwks: Keys::new(jwks),
        algs,
        iss_required: document.get("authorization_response_iss_parameter_supported")
            == Some(&Value::Bool(true)),
    })
}

/// Refuses a discovery document whose endpoints are not HTTPS (or loopback for a loopback
/// issuer): the code, the client secret and the tokens go to them.
fn check_endpoints(issuer: &Url, metadata: &CoreProviderMetadata) -> Result<(), String> {
    let endpoints = [
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint().url()),
        ),
        ("token_endpoint", metadata.token_endpoint().map(|u| u.url())),
        (
            "userinfo_endpoint",
            metadata.userinfo_endpoint().map(|u| u.url()),
        ),
        ("jwks_uri", Some(metadata.jwks_uri().url())),
    ];
    for (name, url) in endpoints {
        if let Some(url) = url
            && !endpoint_allowed(issuer, url)
        {
            return Err(format!("{name} {url} is not https"));
        }
    }
    Ok(())
}

/// How to send the client secret: HTTP Basic unless the provider lists only `client_secret_post`
/// (no list means Basic, the default of OpenID Connect Discovery §3).
fn auth_type(methods: Option<&Vec<CoreClientAuthMethod>>) -> Option<AuthType> {
    let Some(methods) = methods else {
        return Some(AuthType::BasicAuth);
    };
    if methods.contains(&CoreClientAuthMethod::ClientSecretBasic) {
        Some(AuthType::BasicAuth)
    } else if methods.contains(&CoreClientAuthMethod::ClientSecretPost) {
        Some(AuthType::RequestBody)
    } else {
        None
    }
}

/// Public-key algorithms only: with an HMAC algorithm the "signature" would be keyed with our
/// own client secret, and `none` is no signature at all.
fn asymmetric(alg: &CoreJwsSigningAlgorithm) -> bool {
    use CoreJwsSigningAlgorithm as A;
    matches!(
        alg,
        A::RsaSsaPkcs1V15Sha256
            | A::RsaSsaPkcs1V15Sha384
            | A::RsaSsaPkcs1V15Sha512
            | A::EcdsaP256Sha256
            | A::EcdsaP384Sha384
            | A::EcdsaP521Sha512
            | A::RsaSsaPssSha256
            | A::RsaSsaPssSha384
            | A::RsaSsaPssSha512
            | A::EdDsa
    )
}

/// The ID token claims openidconnect does not know and this crate reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct ExtraClaims {
    /// Google's hosted domain: the Workspace domain that manages the account (absent for
    /// consumer accounts, whatever their email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
    /// Not before (RFC 7519 §4.1.5), seconds since the epoch; openidconnect ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<serde_json::Number>,
}

impl AdditionalClaims for ExtraClaims {}

type IdTokenOf = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

type Claims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;

/// Whether Google's `email_verified` can be trusted: Google is authoritative for an address
/// only at its own consumer domains, or at the Workspace domain (`hd`) that manages the
/// account. A consumer account can be made on any address, verified once by a mail loop, and
/// keeps `email_verified: true` after its owner leaves the company or the domain is sold.
pub(crate) fn google_email_verified(
    email: Option<&str>,
    email_verified: bool,
    hd: Option<&str>,
) -> bool {
    let Some(domain) = email.and_then(|e| e.rsplit_once('@')).map(|(_, d)| d) else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    email_verified
        && (matches!(domain.as_str(), "gmail.com" | "googlemail.com")
            || hd.is_some_and(|hd| hd.eq_ignore_ascii_case(&domain)))
}

/// What the token response gave for OpenID Connect.
pub(crate) struct Tokens<'a> {
    pub id_token: Option<&'a str>,
    pub access_token: &'a str,
}

/// The identity in the ID token, verified for `client_id` and `nonce` at `now`; the email
/// and name from UserInfo when the ID token has no email. For `google`, the hosted domain
/// (`hd`) is kept and the email counts as verified only as [`google_email_verified`] says.
#[allow(clippy::too_many_arguments)] // one call site, each argument a different fact
pub(crate) async fn identity(
    provider: &Discovered,
    name: &str,
    google: bool,
    client_id: &str,
    http: &HttpClient,
    tokens: Tokens<'_>,
    nonce: Option<&str>,
    now: OffsetDateTime,
) -> Result<UpstreamIdentity, SocialError> {
    let raw = tokens.id_token.ok_or(SocialError::MissingIdToken)?;
    let token =
        IdTokenOf::from_str(raw).map_err(|e| SocialError::IdTokenMalformed(e.to_string()))?;
    // A pending record without a nonce was not started for this provider (GitHub's).
    let nonce = Nonce::new(
        nonce
            .ok_or_else(|| SocialError::IdTokenNonce("the sign-in sent no nonce".into()))?
            .to_owned(),
    );
    let (keys, last) = {
        let cached = provider.jwks.read().unwrap_or_else(|e| e.into_inner());
        (cached.set.clone(), cached.refetched_at)
    };
    let claims = match verify(&token, provider, keys, client_id, &nonce, now) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) if may_refetch(last, now) => {
            // The provider may have rotated its keys since discovery: fetch them once more,
            // and keep them for the next sign-ins.
            let jwks = fetch_jwks(&provider.jwks_uri, http).await?;
            {
                let mut cached = provider.jwks.write().unwrap_or_else(|e| e.into_inner());
                cached.set = jwks.clone();
                cached.refetched_at = Some(now);
            }
            verify(&token, provider, jwks, client_id, &nonce, now)
        }
        verified => verified,
    }
    .map_err(claims_error)?;
    check_unchecked_claims(
        claims.authorized_party().map(|azp| azp.as_str()),
        claims.issue_time().timestamp(),
        claims.additional_claims().nbf.as_ref().map(|n| n.as_f64()),
        client_id,
        now.unix_timestamp(),
    )?;
    let mut identity = UpstreamIdentity {
        provider: name.to_owned(),
        issuer: claims.issuer().as_str().to_owned(),
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        hosted_domain: None,
    };
    if identity.email.is_none()
        && let Some(url) = &provider.userinfo
    {
        let info = get_json(http, url.clone(), tokens.access_token)
            .await
            .map_err(SocialError::UserInfo)?;
        merge_userinfo(&mut identity, &info)?;
    }
    if google {
        let hd = claims.additional_claims().hd.clone();
        identity.email_verified = google_email_verified(
            identity.email.as_deref(),
            identity.email_verified,
            hd.as_deref(),
        );
        identity.hosted_domain = hd;
    }
    Ok(identity)
}

/// What openidconnect 4.0.1 does not check: `azp`, when present, must be our client id (its
/// check is commented out); `iat` must not be in the future (its default accepts any);
/// `nbf`, when present, must be a number not in the future (it never reads it). Times in
/// seconds since the epoch; [`CLOCK_SKEW`] of leeway.
fn check_unchecked_claims(
    azp: Option<&str>,
    iat: i64,
    nbf: Option<Option<f64>>,
    client_id: &str,
    now: i64,
) -> Result<(), SocialError> {
    if let Some(azp) = azp
        && azp != client_id
    {
        return Err(SocialError::IdTokenAudience(format!(
            "the authorized party (azp) is {azp:?}, not this client"
        )));
    }
    let skew = CLOCK_SKEW.as_secs() as i64;
    if iat > now + skew {
        return Err(SocialError::IdTokenInvalid(format!(
            "issued in the future (iat {iat}, now {now})"
        )));
    }
    match nbf {
        None => Ok(()),
        Some(Some(nbf)) if nbf <= (now + skew) as f64 => Ok(()),
        Some(Some(nbf)) => Err(SocialError::IdTokenInvalid(format!(
            "not valid before {nbf} (now {now})"
        ))),
        Some(None) => Err(SocialError::IdTokenInvalid("nbf is not a number".into())),
    }
}

fn verify<'t>(
    token: &'t IdTokenOf,
    provider: &Discovered,
    jwks: CoreJsonWebKeySet,
    client_id: &str,
    nonce: &Nonce,
    now: OffsetDateTime,
) -> Result<&'t Claims, ClaimsVerificationError> {
    // openidconnect's clock is a chrono time; SystemTime converts into it. It refuses at
    // `now >= exp` with no leeway: give it our clock minus the allowed skew.
    let at = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(now.unix_timestamp()).unwrap_or(0))
        - CLOCK_SKEW;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_owned()),
        provider.issuer.clone(),
        jwks,
    )
    .set_allowed_algs(provider.algs.iter().cloned())
    .set_time_fn(move || at.into());
    token.claims(&verifier, nonce)
}

async fn fetch_jwks(
    url: &JsonWebKeySetUrl,
    http: &HttpClient,
) -> Result<CoreJsonWebKeySet, SocialError> {
    let client = {
        let http = http.clone();
        move |request| send(http.clone(), request)
    };
    CoreJsonWebKeySet::fetch_async(url, &client)
        .await
        .map_err(|e| {
            SocialError::IdTokenSignature(format!("refetching the JWKS: {}", error_chain(&e)))
        })
}

/// openidconnect's verdict as our error.
fn claims_error(error: ClaimsVerificationError) -> SocialError {
    match error {
        ClaimsVerificationError::Expired(m) => SocialError::IdTokenExpired(m),
        ClaimsVerificationError::InvalidAudience(m) => SocialError::IdTokenAudience(m),
        ClaimsVerificationError::InvalidIssuer(m) => SocialError::IdTokenIssuer(m),
        ClaimsVerificationError::InvalidNonce(m) => SocialError::IdTokenNonce(m),
        ClaimsVerificationError::SignatureVerification(e) => {
            SocialError::IdTokenSignature(e.to_string())
        }
        other => SocialError::IdTokenInvalid(other.to_string()),
    }
}

/// Takes the email and name from a UserInfo response about the same subject.
fn merge_userinfo(identity: &mut UpstreamIdentity, info: &Value) -> Result<(), SocialError> {
    if info.get("sub").and_then(Value::as_str) != Some(identity.subject.as_str()) {
        return Err(SocialError::SubjectMismatch);
    }
    identity.email = info.get("email").and_then(Value::as_str).map(str::to_owned);
    // Some providers send the boolean as a string.
    identity.email_verified = match info.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if identity.name.is_none() {
        identity.name = info.get("name").and_then(Value::as_str).map(str::to_owned);
    }
    Ok(())
}

/// An error with its sources, which openidconnect's errors keep the details in.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn identity() -> UpstreamIdentity {
        UpstreamIdentity {
            provider: "corp".into(),
            issuer: "https://id.example.com".into(),
            subject: "sub-1".into(),
            email: None,
            email_verified: false,
            name: None,
            hosted_domain: None,
        }
    }

    #[test]
    fn basic_auth_unless_only_post_is_listed() {
        use CoreClientAuthMethod as M;
        assert!(matches!(auth_type(None), Some(AuthType::BasicAuth)));
        let both = vec![M::ClientSecretPost, M::ClientSecretBasic];
        assert!(matches!(auth_type(Some(&both)), Some(AuthType::BasicAuth)));
        let post = vec![M::ClientSecretPost];
        assert!(matches!(
            auth_type(Some(&post)),
            Some(AuthType::RequestBody)
        ));
        let jwt = vec![M::PrivateKeyJwt];
        assert!(auth_type(Some(&jwt)).is_none());
    }

    #[test]
    fn hmac_and_none_are_not_accepted_signing_algorithms() {
        assert!(asymmetric(&CoreJwsSigningAlgorithm::EcdsaP256Sha256));
        assert!(asymmetric(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256));
        assert!(!asymmetric(&CoreJwsSigningAlgorithm::HmacSha256));
        assert!(!asymmetric(&CoreJwsSigningAlgorithm::None));
    }

    #[test]
    fn userinfo_about_the_same_subject_gives_email_and_name() {
        let mut id = identity();
        let info = json!({"sub": "sub-1", "email": "ada@example.com", "email_verified": true, "name": "Ada"});
        merge_userinfo(&mut id, &info).unwrap();
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
        assert!(id.email_verified);
        assert_eq!(id.name.as_deref(), Some("Ada"));
    }

    #[test]
    fn userinfo_email_verified_as_a_string_is_read() {
        let mut id = identity();
        let info = json!({"sub": "sub-1", "email": "ada@example.com", "email_verified": "true"});
        merge_userinfo(&mut id, &info).unwrap();
        assert!(id.email_verified);
    }

    #[test]
    fn userinfo_without_email_verified_leaves_the_email_unverified() {
        let mut id = identity();
        let info = json!({"sub": "sub-1", "email": "ada@example.com"});
        merge_userinfo(&mut id, &info).unwrap();
        assert!(!id.email_verified);
    }

    #[test]
    fn userinfo_about_another_subject_is_refused() {
        let mut id = identity();
        let info = json!({"sub": "sub-2", "email": "ada@example.com", "email_verified": true});
        let error = merge_userinfo(&mut id, &info).expect_err("refused");
        assert_eq!(error.code(), "subject_mismatch");
        assert_eq!(id.email, None);
    }

    #[test]
    fn google_email_is_verified_only_at_gmail_or_its_hosted_domain() {
        for (email, verified, hd, expect, why) in [
            (
                Some("ada@gmail.com"),
                true,
                None,
                true,
                "a consumer Gmail address",
            ),
            (
                Some("ada@googlemail.com"),
                true,
                None,
                true,
                "the old Gmail domain",
            ),
            (
                Some("ada@corp.com"),
                true,
                Some("corp.com"),
                true,
                "the Workspace domain",
            ),
            (
                Some("ada@Corp.com"),
                true,
                Some("corp.com"),
                true,
                "case does not matter",
            ),
            (
                Some("ada@corp.com"),
                true,
                None,
                false,
                "a consumer account on a corp address",
            ),
            (
                Some("ada@corp.com"),
                true,
                Some("other.com"),
                false,
                "another Workspace domain",
            ),
            (
                Some("ada@corp.com"),
                false,
                Some("corp.com"),
                false,
                "Google did not verify it",
            ),
            (
                Some("ada@gmail.com"),
                false,
                None,
                false,
                "Google did not verify it",
            ),
            (None, true, Some("corp.com"), false, "no email"),
        ] {
            assert_eq!(google_email_verified(email, verified, hd), expect, "{why}");
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn jwks_is_refetched_at_most_once_a_minute() {
        let at = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        assert!(may_refetch(None, at));
        assert!(!may_refetch(Some(at), at + time::Duration::seconds(59)));
        assert!(may_refetch(Some(at), at + JWKS_REFETCH_INTERVAL));
        // A clock that went back is no reason to stop refetching for good.
        assert!(may_refetch(Some(at), at - time::Duration::seconds(1)));
    }

    #[test]
    fn foreign_authorized_party_is_refused() {
        let error = check_unchecked_claims(Some("other-client"), NOW, None, "portcullis", NOW)
            .expect_err("refused");
        assert_eq!(error.code(), "id_token_audience");
        assert!(check_unchecked_claims(Some("portcullis"), NOW, None, "portcullis", NOW).is_ok());
        assert!(check_unchecked_claims(None, NOW, None, "portcullis", NOW).is_ok());
    }

    #[test]
    fn issue_time_in_the_future_is_refused_beyond_the_skew() {
        let skew = CLOCK_SKEW.as_secs() as i64;
        assert!(check_unchecked_claims(None, NOW + skew, None, "c", NOW).is_ok());
        let error =
            check_unchecked_claims(None, NOW + skew + 1, None, "c", NOW).expect_err("refused");
        assert_eq!(error.code(), "id_token_invalid");
    }

    #[test]
    fn not_before_in_the_future_is_refused_beyond_the_skew() {
        let skew = CLOCK_SKEW.as_secs() as i64;
        let at = |nbf: i64| Some(Some(nbf as f64));
        assert!(check_unchecked_claims(None, NOW, at(NOW + skew), "c", NOW).is_ok());
        let error =
            check_unchecked_claims(None, NOW, at(NOW + skew + 1), "c", NOW).expect_err("refused");
        assert_eq!(error.code(), "id_token_invalid");
        let error = check_unchecked_claims(None, NOW, Some(None), "c", NOW).expect_err("refused");
        assert_eq!(error.code(), "id_token_invalid");
    }

    #[test]
    fn hosted_domain_is_read_from_the_claims() {
        let claims: ExtraClaims = serde_json::from_value(json!({"hd": "corp.com"})).unwrap();
        assert_eq!(claims.hd.as_deref(), Some("corp.com"));
        let claims: ExtraClaims = serde_json::from_value(json!({"email": "a@b.c"})).unwrap();
        assert_eq!(claims.hd, None);
    }

    #[test]
    fn claims_errors_map_to_their_codes() {
        let cases = [
            (
                ClaimsVerificationError::Expired("x".into()),
                "id_token_expired",
            ),
            (
                ClaimsVerificationError::InvalidAudience("x".into()),
                "id_token_audience",
            ),
            (
                ClaimsVerificationError::InvalidIssuer("x".into()),
                "id_token_issuer",
            ),
            (
                ClaimsVerificationError::InvalidNonce("x".into()),
                "id_token_nonce",
            ),
            (
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ),
                "id_token_signature",
            ),
            (
                ClaimsVerificationError::InvalidSubject("x".into()),
                "id_token_invalid",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(claims_error(error).code(), code);
        }
    }
}
