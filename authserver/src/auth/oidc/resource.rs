//! What a client does with tokens after the grant: UserInfo (OpenID Connect Core §5.3),
//! revocation (RFC 7009) and introspection (RFC 7662).

use crate::audit::{Actor, Event, client_ident};
use portcullis_audit::Details;
use serde_json::{Map, Value, json};

use super::clients::Client;
use crate::auth::AuthError;
use crate::auth::core::Core;
use crate::auth::tokens::{self, AccessClaims};

/// A live access token: signed by this realm for its own audience, unexpired, and neither its
/// session, grant nor itself revoked.
async fn live_access(core: &Core, token: &str) -> Result<Option<AccessClaims>, AuthError> {
    let Ok(claims) = core
        .keys
        .verify_access(token, core.issuer(), core.issuer(), core.clock.now())
    else {
        return Ok(None);
    };
    if core
        .kv
        .is_access_revoked(claims.sid.as_deref(), claims.gid.as_deref(), &claims.jti)
        .await?
    {
        return Ok(None);
    }
    Ok(Some(claims))
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// UserInfo: the user's claims the token's scopes allow (`sub` always; `profile`: `name`;
/// `email`: `email`, `email_verified`). A token without `openid` is `insufficient_scope`; an
/// invalid one, or one of a client (not a user) or of a gone or disabled account, is
/// `invalid_token`.
pub async fn userinfo(core: &Core, token: &str) -> Result<Value, AuthError> {
    let claims = live_access(core, token)
        .await?
        .ok_or(AuthError::InvalidAccessToken)?;
    if !has_scope(&claims.scope, "openid") {
        return Err(AuthError::InsufficientScope("openid"));
    }
    let user_id = claims
        .sub
        .parse()
        .map_err(|_| AuthError::InvalidAccessToken)?;
    let user = match core.db.user_by_id(user_id).await? {
        Some(user) if !user.disabled => user,
        _ => return Err(AuthError::InvalidAccessToken),
    };
    let mut out = Map::new();
    out.insert("sub".into(), json!(claims.sub));
    if has_scope(&claims.scope, "profile")
        && let Some(name) = &user.display_name
    {
        out.insert("name".into(), json!(name));
    }
    if has_scope(&claims.scope, "email") {
        out.insert("email".into(), json!(user.email_canonical));
        out.insert("email_verified".into(), json!(user.email_verified));
    }
    Ok(Value::Object(out))
}

/// Revokes `token` for `client` (RFC 7009): a refresh token of this client ends its grant
/// (family, and the grant's access tokens, §2.1); an access token of this client is revoked by
/// its `jti`. Tokens that are unknown, invalid or another client's are left alone and the
/// answer is the same (§2.2). `hint` only orders the lookups.
pub async fn revoke(
    core: &Core,
    client: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<(), AuthError> {
    let now = core.clock.now();
    let ttl = core.access_ttl();
    let refresh = || async {
        let Some(standing) = core
            .db
            .refresh_standing(&tokens::hash_opaque(token), now)
            .await?
        else {
            return Ok::<bool, AuthError>(false);
        };
        if standing.client_id.as_deref() == Some(client.id()) {
            core.db.revoke_family(standing.family_id, now).await?;
            core.kv
                .revoke_gid(&standing.family_id.to_string(), ttl)
                .await?;
            core.audit(
                Event::success("oauth_token_revoked")
                    .by(Actor::Client(client_ident(client.id())))
                    .client(client.id())
                    .details(Details::new().code("kind", "refresh_token")),
                None,
            )
            .await;
        }
        Ok(true)
    };
    let access = || async {
        let Ok(claims) = core
            .keys
            .verify_access(token, core.issuer(), core.issuer(), now)
        else {
            return Ok::<bool, AuthError>(false);
        };
        if claims.client_id.as_deref() == Some(client.id()) {
            core.kv.revoke_jti(&claims.jti, ttl).await?;
            core.audit(
                Event::success("oauth_token_revoked")
                    .by(Actor::Client(client_ident(client.id())))
                    .client(client.id())
                    .details(Details::new().code("kind", "access_token")),
                None,
            )
            .await;
        }
        Ok(true)
    };
    if hint == Some("access_token") {
        if !access().await? {
            refresh().await?;
        }
    } else if !refresh().await? {
        access().await?;
    }
    Ok(())
}

/// Introspects `token` for a confidential `client` (RFC 7662): an active access or refresh
/// token issued to this very client is described; anything else is
/// exactly `{"active": false}` (§2.2).
pub async fn introspect(core: &Core, client: &Client, token: &str) -> Result<Value, AuthError> {
    if !client.is_confidential() {
        return Err(AuthError::InvalidClient(
            "introspection is for confidential clients",
        ));
    }
    let inactive = json!({"active": false});
    if let Some(claims) = live_access(core, token).await? {
        // RFC 7662 §4: only the client a token was issued to may learn about it (every access
        // token's audience is the issuer, so none names another client); another client's
        // token, or one of the realm's own API, is as inactive as a stranger's.
        if claims.client_id.as_deref() != Some(client.id()) {
            return Ok(inactive);
        }
        // A user's token (sub is a user id; client ids are never UUID-shaped) is active only
        // while the account is; a client's own token (client_credentials) has no account.
        let user = claims.sub.parse::<uuid::Uuid>().ok();
        if let Some(id) = user
            && core.db.user_by_id(id).await?.is_none_or(|u| u.disabled)
        {
            return Ok(inactive);
        }
        let mut out = json!({
            "active": true,
            "scope": claims.scope,
            "sub": claims.sub,
            "aud": claims.aud,
            "iss": claims.iss,
            "exp": claims.exp,
            "iat": claims.iat,
            "nbf": claims.nbf,
            "jti": claims.jti,
            "token_type": "Bearer",
        });
        if let Some(client_id) = claims.client_id {
            out["client_id"] = json!(client_id);
        }
        return Ok(out);
    }
    let now = core.clock.now();
    match core
        .db
        .refresh_standing(&tokens::hash_opaque(token), now)
        .await?
    {
        Some(standing) if standing.active && standing.client_id.as_deref() == Some(client.id()) => {
            Ok(json!({
                "active": true,
                "scope": standing.scope,
                "client_id": client.id(),
                "sub": standing.user_id.to_string(),
                "iss": core.issuer(),
                "exp": standing.expires_at.unix_timestamp(),
                "iat": standing.issued_at.unix_timestamp(),
                "token_type": "refresh_token",
            }))
        }
        _ => Ok(inactive),
    }
}
