//! The token endpoint's grants for registered clients (RFC 6749 §4.1.3, §4.4, §6; OpenID
//! Connect Core §3.1.3): the authorization code (single use, bound to its client and redirect
//! URI, PKCE, a replay revoking what the code issued), the refresh token (rotation, bound to
//! its client, scope may only narrow, a new ID token keeping `auth_time`) and client
//! credentials (confidential clients only, no refresh or ID token, no I/O). The client is
//! authenticated before any of this (`clients::ClientRegistry::authenticate`).

use crate::audit::{Actor, Event, client_ident};
use portcullis_crds::client::GrantType;
use uuid::Uuid;

use super::clients::Client;
use super::flow::code_key;
use super::pkce;
use crate::auth::AuthError;
use crate::auth::core::Core;
use crate::auth::refresh;
use crate::auth::tokens::{self, Grant, IdContext};
use crate::metrics::GrantKind;
use crate::store::kv::{CodeRecord, Redeemed};
use crate::store::{FamilyGrant, NewFamily};

/// Scopes about a user, meaningless in a client-credentials token.
const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// What a grant issues.
#[derive(Clone)]
pub struct Issued {
    /// JWT access token.
    pub access_token: String,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
    /// Opaque refresh token, when the client has the refresh grant.
    pub refresh_token: Option<String>,
    /// ID token, when `openid` was granted.
    pub id_token: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn refused(code: &'static str, detail: &str) -> AuthError {
    AuthError::InvalidOAuthRequest {
        code,
        detail: detail.to_owned(),
    }
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// The `authorization_code` grant.
pub async fn exchange_code(
    core: &Core,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<Issued, AuthError> {
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(refused(
            "unauthorized_client",
            "this client may not use the authorization_code grant",
        ));
    }
    let key = code_key(code);
    let now_ms = core.clock.now_ms();
    // Checked before the code is spent (RFC 9700 §4.2): a code presented by another client, or
    // without its redirect URI and verifier, changes nothing; only its own client's second use
    // is a replay that revokes what the code issued.
    if let Some(record) = core.kv.peek_code(&key, now_ms).await? {
        bound_to(&record, client, redirect_uri, code_verifier)?;
    }
    let record = match core.kv.redeem_code(&key, now_ms).await? {
        Redeemed::Fresh(record) => record,
        Redeemed::Replayed { gid, jti } => {
            revoke_issued(core, gid.as_deref(), jti.as_deref()).await?;
            tracing::warn!(client_id = %client.id(), "authorization code replayed; what it issued is revoked");
            core.audit(
                Event::failure("oauth_code_replay")
                    .by(Actor::Client(client_ident(client.id())))
                    .client(client.id()),
                None,
            )
            .await;
            return Err(AuthError::InvalidGrant(
                "the authorization code was already used; the tokens it issued are revoked",
            ));
        }
        Redeemed::Expired => return Err(AuthError::InvalidGrant("the authorization code expired")),
        Redeemed::Unknown => return Err(AuthError::InvalidGrant("unknown authorization code")),
    };
    bound_to(&record, client, redirect_uri, code_verifier)?;
    let issued = issue_for_code(core, client, &record).await?;
    let (gid, jti, issued) = issued;
    if core.kv.record_code_issue(&key, &gid, &jti).await? {
        // Replayed while this exchange ran: what it just issued dies too.
        revoke_issued(core, Some(&gid), Some(&jti)).await?;
        return Err(AuthError::InvalidGrant(
            "the authorization code was already used; the tokens it issued are revoked",
        ));
    }
    core.metrics.token_issued(GrantKind::AuthorizationCode);
    core.audit(
        Event::success("oauth_code_exchanged")
            .by(Actor::Client(client_ident(client.id())))
            .about(record.user_id)
            .client(client.id()),
        None,
    )
    .await;
    Ok(issued)
}

/// Whether a code's record is bound to this client, its redirect URI and PKCE verifier.
fn bound_to(
    record: &CodeRecord,
    client: &Client,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<(), AuthError> {
    if record.client_id != client.id() {
        return Err(AuthError::InvalidGrant(
            "the authorization code was issued to another client",
        ));
    }
    if redirect_uri != Some(record.redirect_uri.as_str()) {
        return Err(AuthError::InvalidGrant(
            "redirect_uri must be identical to the authorization request's",
        ));
    }
    if !pkce::verifies(record.code_challenge.as_deref(), code_verifier) {
        return Err(AuthError::InvalidGrant(
            "the PKCE code_verifier is missing, malformed or does not match",
        ));
    }
    Ok(())
}

/// Revokes what a code issued: its grant (the refresh family and its access tokens) and its
/// first access token.
async fn revoke_issued(core: &Core, gid: Option<&str>, jti: Option<&str>) -> Result<(), AuthError> {
    let ttl = core.access_ttl();
    if let Some(gid) = gid {
        if let Ok(family) = gid.parse::<Uuid>() {
            core.db.revoke_family(family, core.clock.now()).await?;
        }
        core.kv.revoke_gid(gid, ttl).await?;
    }
    if let Some(jti) = jti {
        core.kv.revoke_jti(jti, ttl).await?;
    }
    Ok(())
}

/// Tokens for a redeemed code; returns the grant id and access token id with them.
async fn issue_for_code(
    core: &Core,
    client: &Client,
    record: &CodeRecord,
) -> Result<(String, String, Issued), AuthError> {
    let now = core.clock.now();
    let spec = core.spec();
    match core.db.user_by_id(record.user_id).await? {
        Some(user) if !user.disabled && user.credential_epoch == record.credential_epoch => {}
        _ => {
            return Err(AuthError::InvalidGrant(
                "the account changed its credentials or was disabled",
            ));
        }
    }
    if core.kv.session(&record.sid).await?.is_none() {
        return Err(AuthError::InvalidGrant(
            "the session that authorized this code ended",
        ));
    }
    if crate::auth::mfa_login::lacks_required_second_factor(core, &record.amr) {
        return Err(AuthError::InvalidGrant(
            "the realm requires two-step sign-in: sign in again",
        ));
    }
    let family_id = core.random.uuid();
    let gid = family_id.to_string();
    let auth_time = time::OffsetDateTime::from_unix_timestamp(record.auth_time)
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    // offline_access means something only with a refresh token (OpenID Connect Core §11):
    // then the grant outlives the session; otherwise everything is tied to the session.
    let refreshable = client.allows_grant(GrantType::RefreshToken);
    let offline = refreshable && has_scope(&record.scope, "offline_access");
    let refresh_token = if refreshable {
        let (token, hash) = tokens::new_refresh_token(&core.random);
        let started = core
            .db
            .start_refresh_family(&NewFamily {
                family_id,
                user_id: record.user_id,
                session_id: &record.sid,
                client_id: Some(client.id()),
                credential_epoch: record.credential_epoch,
                token_hash: &hash,
                issued_at: now,
                token_expires_at: core.later(now, spec.tokens.refresh_idle_ttl.as_duration())?,
                expires_at: core.later(now, spec.tokens.refresh_token_ttl.as_duration())?,
                grant: FamilyGrant {
                    scope: record.scope.clone(),
                    auth_time: Some(auth_time),
                    amr: record.amr.clone(),
                    acr: record.acr.clone(),
                    offline,
                },
            })
            .await?;
        if !started {
            return Err(AuthError::InvalidGrant(
                "the account changed its credentials or was disabled",
            ));
        }
        Some(token)
    } else {
        None
    };
    let grant = FamilyGrant {
        scope: record.scope.clone(),
        auth_time: Some(auth_time),
        amr: record.amr.clone(),
        acr: record.acr.clone(),
        offline,
    };
    let (jti, mut issued) = user_tokens(
        core,
        client,
        record.user_id,
        &record.sid,
        &gid,
        &grant,
        record.nonce.as_deref(),
    )?;
    issued.refresh_token = refresh_token;
    Ok((gid, jti, issued))
}

/// An access token (and an ID token with `openid`) for a user's grant.
fn user_tokens(
    core: &Core,
    client: &Client,
    user: Uuid,
    sid: &str,
    gid: &str,
    grant: &FamilyGrant,
    nonce: Option<&str>,
) -> Result<(String, Issued), AuthError> {
    let now = core.clock.now();
    let jti = core.random.uuid();
    let mut claims = tokens::access_claims(
        core.issuer(),
        core.issuer(),
        &Grant {
            user,
            sid,
            gid: Some(gid),
            client_id: Some(client.id()),
            scope: &grant.scope,
        },
        now,
        core.access_ttl(),
        jti,
    );
    if grant.offline {
        // An offline_access grant outlives its session: its access tokens are not the
        // session's, and end with the grant (gid) instead.
        claims.sid = None;
    }
    claims.auth_time = grant.auth_time.map(time::OffsetDateTime::unix_timestamp);
    claims.amr = grant.amr.clone();
    // From the factors, not the stored value: grants made before the acr followed them
    // said "pwd" for every sign-in.
    let acr = super::discovery::acr_for(&grant.amr);
    claims.acr = Some(acr.to_owned());
    let access_token = core.keys.sign("at+jwt", &claims)?;
    let id_token = if has_scope(&grant.scope, "openid") {
        let context = IdContext {
            auth_time: grant.auth_time,
            nonce,
            access_token: Some(&access_token),
            amr: &grant.amr,
            acr: Some(acr),
            sid: Some(sid),
        };
        let claims = tokens::id_claims(
            core.issuer(),
            client.id(),
            user,
            &context,
            now,
            core.spec().tokens.id_token_ttl.as_duration(),
        );
        Some(core.keys.sign("JWT", &claims)?)
    } else {
        None
    };
    Ok((
        jti.to_string(),
        Issued {
            access_token,
            expires_in: core.access_ttl().as_secs(),
            refresh_token: None,
            id_token,
            scope: grant.scope.clone(),
        },
    ))
}

/// The `refresh_token` grant for a client: rotation (a replay revokes the family), the token
/// bound to its client, `scope` only narrowing (RFC 6749 §6), a new ID token with the original
/// `auth_time` and no nonce (OpenID Connect Core §12.2).
pub async fn refresh(
    core: &Core,
    client: &Client,
    presented: &str,
    scope: Option<&str>,
) -> Result<Issued, AuthError> {
    if !client.allows_grant(GrantType::RefreshToken) {
        return Err(refused(
            "unauthorized_client",
            "this client may not use the refresh_token grant",
        ));
    }
    let requested = scope.filter(|s| !s.trim().is_empty());
    if let Some(requested) = requested {
        // Checked before the rotation: a refused narrowing must not spend the token (the
        // client's retry would then be a replay that ends its grant). Only a token the
        // rotation would accept is checked here; any other fails there as it would.
        let standing = core
            .db
            .refresh_standing(&tokens::hash_opaque(presented), core.clock.now())
            .await?
            .filter(|s| s.active && s.client_id.as_deref() == Some(client.id()));
        if let Some(standing) = standing
            && requested
                .split(' ')
                .any(|s| !s.is_empty() && !has_scope(&standing.scope, s))
        {
            return Err(refused(
                "invalid_scope",
                "a requested scope was not granted; a refresh can only narrow the scope",
            ));
        }
    }
    let rotated = refresh::rotate(core, presented, Some(client.id())).await?;
    if !rotated.grant.offline && core.kv.session(&rotated.session_id).await?.is_none() {
        // Without offline_access the grant lives only as long as its session.
        core.db
            .revoke_family(rotated.family_id, core.clock.now())
            .await?;
        return Err(AuthError::InvalidGrant(
            "the session this grant belongs to ended; offline_access was not granted",
        ));
    }
    let mut grant = rotated.grant.clone();
    if let Some(requested) = requested {
        let mut narrowed: Vec<&str> = Vec::new();
        for s in requested.split(' ').filter(|s| !s.is_empty()) {
            if !has_scope(&rotated.grant.scope, s) {
                return Err(refused(
                    "invalid_scope",
                    "a requested scope was not granted; a refresh can only narrow the scope",
                ));
            }
            if !narrowed.contains(&s) {
                narrowed.push(s);
            }
        }
        grant.scope = narrowed.join(" ");
    }
    refresh::record_activity(core, rotated.user_id).await;
    let gid = rotated.family_id.to_string();
    let (_, mut issued) = user_tokens(
        core,
        client,
        rotated.user_id,
        &rotated.session_id,
        &gid,
        &grant,
        None,
    )?;
    issued.refresh_token = Some(rotated.refresh_token);
    core.metrics.token_issued(GrantKind::RefreshToken);
    Ok(issued)
}

/// The `client_credentials` grant: a confidential client's own access token (`sub` is its
/// client id), for `scope` (default: every scope it may have that is not about a user); no
/// refresh or ID token (RFC 6749 §4.4.3). No I/O.
pub fn client_credentials(
    core: &Core,
    client: &Client,
    scope: Option<&str>,
) -> Result<Issued, AuthError> {
    if !client.is_confidential() || !client.allows_grant(GrantType::ClientCredentials) {
        return Err(refused(
            "unauthorized_client",
            "this client may not use the client_credentials grant",
        ));
    }
    let allowed = |s: &str| !USER_SCOPES.contains(&s) && client.spec.scopes.iter().any(|c| c == s);
    let scopes: Vec<&str> = match scope.filter(|s| !s.trim().is_empty()) {
        Some(requested) => {
            let mut scopes: Vec<&str> = Vec::new();
            for s in requested.split(' ').filter(|s| !s.is_empty()) {
                if !allowed(s) {
                    return Err(refused(
                        "invalid_scope",
                        "a requested scope is not available to client credentials",
                    ));
                }
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            scopes
        }
        None => client
            .spec
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| allowed(s))
            .collect(),
    };
    let now = core.clock.now();
    let iat = now.unix_timestamp();
    let ttl = core.access_ttl();
    let claims = tokens::AccessClaims {
        iss: core.issuer().to_owned(),
        sub: client.id().to_owned(),
        aud: core.issuer().to_owned(),
        exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        iat,
        nbf: iat,
        jti: core.random.uuid().to_string(),
        sid: None,
        gid: None,
        client_id: Some(client.id().to_owned()),
        scope: scopes.join(" "),
        auth_time: None,
        acr: None,
        amr: Vec::new(),
    };
    let access_token = core.keys.sign("at+jwt", &claims)?;
    core.metrics.token_issued(GrantKind::ClientCredentials);
    Ok(Issued {
        access_token,
        expires_in: ttl.as_secs(),
        refresh_token: None,
        id_token: None,
        scope: claims.scope,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::oidc::flow::{self, Outcome};
    use crate::auth::testing::{Fixture, fixture_with_clients, meta, signed_in};
    use crate::auth::tokens::IdClaims;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CB: &str = "https://app.example.com/cb";

    /// A code for `client` from a signed-in browser; with `pkce`, a challenge.
    async fn code(f: &Fixture, client: &str, scope: &str, pkce: bool) -> String {
        let login = signed_in(f, "alice@example.com").await;
        let mut params = vec![
            ("client_id", client),
            ("redirect_uri", CB),
            ("response_type", "code"),
            ("scope", scope),
            ("nonce", "n-1"),
        ];
        if pkce {
            params.extend([
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ]);
        }
        let params: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        match flow::begin(&f.core, &params, Some(&login.session_secret))
            .await
            .unwrap()
        {
            Outcome::Code(reply) => reply.code,
            other => panic!("{other:?}"),
        }
    }

    fn client<'a>(f: &'a Fixture, id: &str) -> &'a Client {
        f.core.clients().get(id).unwrap()
    }

    fn id_claims(f: &Fixture, token: &str) -> IdClaims {
        f.core
            .keys
            .verify_id_token_hint(token, f.core.issuer())
            .unwrap()
    }

    /// The claims of an access token the fixture's realm issued, verified as its own API would.
    fn access_claims(f: &Fixture, token: &str) -> tokens::AccessClaims {
        f.core
            .keys
            .verify_access(token, f.core.issuer(), f.core.issuer(), f.clock.now())
            .unwrap()
    }

    #[tokio::test]
    async fn a_code_gives_access_id_and_refresh_tokens_carrying_the_login() {
        let f = fixture_with_clients();
        let code = code(&f, "spa", "openid email", true).await;
        let issued = exchange_code(&f.core, client(&f, "spa"), &code, Some(CB), Some(VERIFIER))
            .await
            .unwrap();
        assert_eq!(issued.scope, "openid email");
        assert!(issued.refresh_token.is_some());
        let id = id_claims(&f, issued.id_token.as_deref().unwrap());
        assert_eq!(id.aud, "spa");
        assert_eq!(id.nonce.as_deref(), Some("n-1"));
        assert_eq!(id.at_hash, Some(tokens::at_hash(&issued.access_token)));
        assert_eq!(id.auth_time, f.clock.now().unix_timestamp());
        assert_eq!(id.amr, ["pwd"]);
        let access = access_claims(&f, &issued.access_token);
        assert_eq!(access.client_id.as_deref(), Some("spa"));
        assert_eq!(access.sub, id.sub);
        assert_eq!(access.sid, id.sid);
        assert!(access.gid.is_some());
    }

    #[tokio::test]
    async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
        let f = fixture_with_clients();
        let code = code(&f, "spa", "openid", true).await;
        let spa = client(&f, "spa");
        let issued = exchange_code(&f.core, spa, &code, Some(CB), Some(VERIFIER))
            .await
            .unwrap();
        assert!(matches!(
            exchange_code(&f.core, spa, &code, Some(CB), Some(VERIFIER)).await,
            Err(AuthError::InvalidGrant(_))
        ));
        let access = access_claims(&f, &issued.access_token);
        assert!(
            f.core
                .kv
                .is_access_revoked(None, access.gid.as_deref(), &access.jti)
                .await
                .unwrap()
        );
        assert!(
            refresh(&f.core, spa, issued.refresh_token.as_deref().unwrap(), None)
                .await
                .is_err(),
            "the family died"
        );
    }

    #[tokio::test]
    async fn a_code_presented_by_another_client_or_with_a_wrong_redirect_uri_changes_nothing() {
        let f = fixture_with_clients();
        let code = code(&f, "spa", "openid", true).await;
        let spa = client(&f, "spa");
        let wrong = [
            (client(&f, "web"), CB),
            (spa, "https://app.example.com/cb/"),
        ];
        for (presenter, uri) in wrong {
            assert!(
                exchange_code(&f.core, presenter, &code, Some(uri), Some(VERIFIER))
                    .await
                    .is_err()
            );
        }
        let issued = exchange_code(&f.core, spa, &code, Some(CB), Some(VERIFIER))
            .await
            .unwrap();
        for (presenter, uri) in wrong {
            assert!(
                exchange_code(&f.core, presenter, &code, Some(uri), Some(VERIFIER))
                    .await
                    .is_err()
            );
        }
        assert!(!revoked(&f, &issued.access_token).await);
        let refresh_token = issued.refresh_token.as_deref().unwrap();
        assert!(refresh(&f.core, spa, refresh_token, None).await.is_ok());
    }

    #[tokio::test]
    async fn a_missing_wrong_or_unasked_for_verifier_is_invalid_grant() {
        let f = fixture_with_clients();
        for verifier in [None, Some("x".repeat(43))] {
            let code = code(&f, "spa", "openid", true).await;
            assert!(matches!(
                exchange_code(
                    &f.core,
                    client(&f, "spa"),
                    &code,
                    Some(CB),
                    verifier.as_deref()
                )
                .await,
                Err(AuthError::InvalidGrant(_))
            ));
        }
        let code = code(&f, "web", "openid", false).await;
        assert!(matches!(
            exchange_code(&f.core, client(&f, "web"), &code, Some(CB), Some(VERIFIER)).await,
            Err(AuthError::InvalidGrant(_))
        ));
    }

    #[tokio::test]
    async fn a_code_is_bound_to_its_client_and_redirect_uri_and_expires() {
        let f = fixture_with_clients();
        let spa_code = code(&f, "spa", "openid", true).await;
        assert!(matches!(
            exchange_code(
                &f.core,
                client(&f, "web"),
                &spa_code,
                Some(CB),
                Some(VERIFIER)
            )
            .await,
            Err(AuthError::InvalidGrant(_))
        ));
        let code_a = code(&f, "spa", "openid", true).await;
        assert!(matches!(
            exchange_code(
                &f.core,
                client(&f, "spa"),
                &code_a,
                Some("https://app.example.com/cb/"),
                Some(VERIFIER)
            )
            .await,
            Err(AuthError::InvalidGrant(_))
        ));
        let late = code(&f, "spa", "openid", true).await;
        f.clock.advance(Duration::from_secs(61));
        assert!(matches!(
            exchange_code(&f.core, client(&f, "spa"), &late, Some(CB), Some(VERIFIER)).await,
            Err(AuthError::InvalidGrant("the authorization code expired"))
        ));
    }

    #[tokio::test]
    async fn a_refresh_keeps_auth_time_drops_the_nonce_and_only_narrows_the_scope() {
        let f = fixture_with_clients();
        let code = code(&f, "web", "openid email", false).await;
        let web = client(&f, "web");
        let first = exchange_code(&f.core, web, &code, Some(CB), None)
            .await
            .unwrap();
        let auth_time = id_claims(&f, first.id_token.as_deref().unwrap()).auth_time;
        f.clock.advance(Duration::from_secs(120));
        let refreshed = refresh(
            &f.core,
            web,
            first.refresh_token.as_deref().unwrap(),
            Some("openid"),
        )
        .await
        .unwrap();
        assert_eq!(refreshed.scope, "openid");
        let id = id_claims(&f, refreshed.id_token.as_deref().unwrap());
        assert_eq!((id.auth_time, id.nonce), (auth_time, None));
        assert_eq!(id.iat, f.clock.now().unix_timestamp());
        assert!(matches!(
            refresh(
                &f.core,
                web,
                refreshed.refresh_token.as_deref().unwrap(),
                Some("openid profile")
            )
            .await,
            Err(AuthError::InvalidOAuthRequest {
                code: "invalid_scope",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_refresh_token_is_refused_to_another_client_without_being_spent() {
        let f = fixture_with_clients();
        let code = code(&f, "web", "openid", false).await;
        let first = exchange_code(&f.core, client(&f, "web"), &code, Some(CB), None)
            .await
            .unwrap();
        let token = first.refresh_token.as_deref().unwrap();
        assert!(
            matches!(
                crate::auth::refresh::refresh(&f.core, token, None).await,
                Err(AuthError::InvalidGrant(_))
            ),
            "not the realm API's"
        );
        assert!(matches!(
            refresh(
                &f.core,
                client(&f, "spa"),
                first.refresh_token.as_deref().unwrap(),
                None
            )
            .await,
            Err(AuthError::InvalidGrant(_))
        ));
        assert!(
            refresh(&f.core, client(&f, "web"), token, None)
                .await
                .is_ok(),
            "its own client still refreshes it: the refusals spent nothing"
        );
    }

    #[tokio::test]
    async fn client_credentials_give_a_confidential_client_its_own_token_and_nothing_else() {
        let f = fixture_with_clients();
        let issued = client_credentials(&f.core, client(&f, "web"), None).unwrap();
        assert_eq!(issued.scope, "api");
        assert!(issued.refresh_token.is_none() && issued.id_token.is_none());
        let access = access_claims(&f, &issued.access_token);
        assert_eq!((access.sub.as_str(), access.sid), ("web", None));
        assert!(matches!(
            client_credentials(&f.core, client(&f, "web"), Some("openid")),
            Err(AuthError::InvalidOAuthRequest {
                code: "invalid_scope",
                ..
            })
        ));
        assert!(matches!(
            client_credentials(&f.core, client(&f, "spa"), None),
            Err(AuthError::InvalidOAuthRequest {
                code: "unauthorized_client",
                ..
            })
        ));
    }

    /// A signed-in browser of alice, as the principal of its session.
    fn principal_of(login: &crate::auth::login::LoginSuccess) -> crate::auth::principal::Principal {
        crate::auth::principal::Principal {
            user_id: login.user_id,
            session_id: login.session_id.clone(),
            method: crate::auth::principal::AuthMethod::Cookie,
        }
    }

    /// A code for `web` and `scope` from the browser session of `login`.
    async fn web_code(
        f: &Fixture,
        login: &crate::auth::login::LoginSuccess,
        scope: &str,
    ) -> String {
        let params: Vec<(String, String)> = [
            ("client_id", "web"),
            ("redirect_uri", CB),
            ("response_type", "code"),
            ("scope", scope),
            ("nonce", "n-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let Outcome::Code(reply) = flow::begin(&f.core, &params, Some(&login.session_secret))
            .await
            .unwrap()
        else {
            panic!("a code expected");
        };
        reply.code
    }

    /// Tokens `web` gets for `scope` through the browser session of `login`.
    async fn web_tokens(
        f: &Fixture,
        login: &crate::auth::login::LoginSuccess,
        scope: &str,
    ) -> Issued {
        let code = web_code(f, login, scope).await;
        exchange_code(&f.core, client(f, "web"), &code, Some(CB), None)
            .await
            .unwrap()
    }

    async fn web_refresh(f: &Fixture, issued: &Issued) -> Result<Issued, AuthError> {
        let token = issued.refresh_token.as_deref().unwrap();
        refresh(&f.core, client(f, "web"), token, None).await
    }

    async fn revoked(f: &Fixture, access_token: &str) -> bool {
        let claims = access_claims(f, access_token);
        f.core
            .kv
            .is_access_revoked(claims.sid.as_deref(), claims.gid.as_deref(), &claims.jti)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_replayed_client_refresh_token_ends_only_that_grant_not_the_session_or_other_grants()
    {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let replayed = web_tokens(&f, &login, "openid").await;
        let other = web_tokens(&f, &login, "openid").await;
        web_refresh(&f, &replayed).await.unwrap();
        assert!(matches!(
            web_refresh(&f, &replayed).await,
            Err(AuthError::InvalidGrant(_))
        ));
        assert!(revoked(&f, &replayed.access_token).await);
        assert!(f.session_lives(&login.session_id).await);
        assert!(!revoked(&f, &other.access_token).await);
        assert!(web_refresh(&f, &other).await.is_ok());
    }

    #[tokio::test]
    async fn an_offline_access_grant_survives_logout_with_access_tokens_not_tied_to_the_session() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let issued = web_tokens(&f, &login, "openid offline_access").await;
        assert_eq!(access_claims(&f, &issued.access_token).sid, None);
        crate::auth::account::logout(&f.core, &principal_of(&login), &meta())
            .await
            .unwrap();
        let refreshed = web_refresh(&f, &issued).await.unwrap();
        assert!(!revoked(&f, &issued.access_token).await);
        assert!(!revoked(&f, &refreshed.access_token).await);
        let userinfo = super::super::resource::userinfo(&f.core, &refreshed.access_token)
            .await
            .unwrap();
        assert_eq!(userinfo["sub"], login.user_id.to_string());
    }

    #[tokio::test]
    async fn without_offline_access_the_grant_ends_at_logout() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let issued = web_tokens(&f, &login, "openid").await;
        assert_eq!(
            access_claims(&f, &issued.access_token).sid.as_deref(),
            Some(login.session_id.as_str())
        );
        let rotated = web_refresh(&f, &issued).await.unwrap();
        crate::auth::account::logout(&f.core, &principal_of(&login), &meta())
            .await
            .unwrap();
        assert!(matches!(
            web_refresh(&f, &rotated).await,
            Err(AuthError::InvalidGrant(_))
        ));
        assert!(revoked(&f, &rotated.access_token).await);
    }

    #[tokio::test]
    async fn without_offline_access_the_grant_ends_when_its_session_times_out() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let issued = web_tokens(&f, &login, "openid").await;
        f.core
            .kv
            .delete_session(login.user_id, &login.session_id)
            .await
            .unwrap();
        let refused = web_refresh(&f, &issued).await;
        assert!(
            matches!(refused, Err(AuthError::InvalidGrant(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_password_change_ends_offline_grants_even_of_the_session_that_made_it() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let offline = web_tokens(&f, &login, "openid offline_access").await;
        let online = web_tokens(&f, &login, "openid").await;
        crate::auth::account::change_password(
            &f.core,
            &principal_of(&login),
            &crate::auth::testing::meta(),
            crate::auth::testing::PASSWORD,
            crate::auth::testing::OTHER_PASSWORD,
        )
        .await
        .unwrap();
        assert!(web_refresh(&f, &offline).await.is_err());
        assert!(revoked(&f, &offline.access_token).await);
        assert!(
            web_refresh(&f, &online).await.is_ok(),
            "the session that changed the password keeps its own grants"
        );
    }

    #[tokio::test]
    async fn offline_access_without_the_refresh_grant_ties_the_tokens_to_the_session() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let mut web = client(&f, "web").clone();
        web.spec
            .grant_types
            .retain(|g| *g != GrantType::RefreshToken);
        let code = web_code(&f, &login, "openid offline_access").await;
        let issued = exchange_code(&f.core, &web, &code, Some(CB), None)
            .await
            .unwrap();
        assert!(issued.refresh_token.is_none());
        assert_eq!(
            access_claims(&f, &issued.access_token).sid.as_deref(),
            Some(login.session_id.as_str())
        );
    }
}
