//! Authenticating a request: by session secret (cookie) or bearer access token, and the CSRF
//! token that cookie-authenticated state changes need.

use super::core::Core;
use super::principal::{AuthMethod, Principal};
use super::sessions::{self, TOUCH_INTERVAL};
use super::{AuthError, csrf};

/// Authenticates a session secret: unknown or timed-out sessions fail, and so do sessions of a
/// disabled account or of an older credential epoch (the password changed since); live ones
/// are touched (at most once a minute).
pub async fn authenticate_session(core: &Core, secret: &str) -> Result<Principal, AuthError> {
    let id = sessions::public_id(secret);
    let mut record = core
        .kv
        .session(&id)
        .await?
        .ok_or(AuthError::Unauthenticated)?;
    let now = core.clock.now();
    let idle = core.spec().sessions.idle_timeout.as_duration();
    let current = match core.db.user_by_id(record.user_id).await? {
        Some(user) => !user.disabled && user.credential_epoch == record.credential_epoch,
        None => false,
    };
    // A session from before the realm required TOTP ends: its user signs in again (and
    // enrols) rather than keep an account open on one factor.
    if !current
        || sessions::is_expired(&record, now, idle)
        || super::mfa_login::lacks_required_second_factor(core, &record.amr)
    {
        core.kv.delete_session(record.user_id, &id).await?;
        return Err(AuthError::Unauthenticated);
    }
    if now - record.last_seen_at >= TOUCH_INTERVAL {
        record.last_seen_at = now;
        let ttl = sessions::ttl(&record, now, idle);
        if !core.kv.touch_session(&id, &record, ttl).await? {
            // Revoked since it was read.
            return Err(AuthError::Unauthenticated);
        }
    }
    Ok(Principal {
        user_id: record.user_id,
        session_id: id,
        method: AuthMethod::Cookie,
    })
}

/// The principal of a browser's session secret, if any: `None` without a secret or when
/// [`authenticate_session`] finds it unauthenticated; store failures stay errors.
pub async fn signed_in(core: &Core, secret: Option<&str>) -> Result<Option<Principal>, AuthError> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    match authenticate_session(core, secret).await {
        Ok(principal) => Ok(Some(principal)),
        Err(AuthError::Unauthenticated) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Authenticates a bearer access token for the realm's own API: signature, issuer, audience,
/// expiry, that it was issued to the realm's API (a token an OAuth client got must not drive
/// the user's account) for a session, and that neither its session, its grant nor itself was
/// revoked (logout, password change, revocation).
pub async fn authenticate_bearer(core: &Core, token: &str) -> Result<Principal, AuthError> {
    let issuer = core.issuer();
    let claims = core
        .keys
        .verify_access(token, issuer, issuer, core.clock.now())?;
    let (None, Some(sid)) = (&claims.client_id, claims.sid) else {
        return Err(AuthError::Unauthenticated);
    };
    if core
        .kv
        .is_access_revoked(Some(&sid), claims.gid.as_deref(), &claims.jti)
        .await?
    {
        return Err(AuthError::Unauthenticated);
    }
    if super::mfa_login::lacks_required_second_factor(core, &claims.amr) {
        return Err(AuthError::Unauthenticated);
    }
    let user_id = claims.sub.parse().map_err(|_| AuthError::Unauthenticated)?;
    Ok(Principal {
        user_id,
        session_id: sid,
        method: AuthMethod::Bearer,
    })
}

/// The CSRF token of a session.
pub fn csrf_token(core: &Core, session_id: &str) -> String {
    csrf::token(&core.csrf_key, session_id)
}

/// The CSRF token of a pre-session form, for the CSRF cookie's `value`.
pub fn form_csrf_token(core: &Core, value: &str) -> String {
    csrf::form_token(&core.csrf_key, value)
}

/// Whether a pre-session form's CSRF token matches the CSRF cookie's `value`.
pub fn verify_form_csrf(core: &Core, value: &str, candidate: &str) -> bool {
    csrf::verify_form(&core.csrf_key, value, candidate)
}

/// Whether a CSRF token belongs to the session.
pub fn verify_csrf(core: &Core, session_id: &str, candidate: &str) -> bool {
    csrf::verify(&core.csrf_key, session_id, candidate)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::account::logout;
    use crate::auth::testing::{fixture, meta, signed_in};

    #[tokio::test]
    async fn activity_keeps_a_session_alive_until_the_idle_timeout() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        let minutes = |n: u64| Duration::from_secs(n * 60);
        f.clock.advance(minutes(29));
        assert!(
            authenticate_session(&f.core, &login.session_secret)
                .await
                .is_ok()
        );
        f.clock.advance(minutes(29));
        assert!(
            authenticate_session(&f.core, &login.session_secret)
                .await
                .is_ok()
        );
        f.clock.advance(minutes(30));
        assert!(matches!(
            authenticate_session(&f.core, &login.session_secret).await,
            Err(AuthError::Unauthenticated)
        ));
    }

    #[tokio::test]
    async fn an_access_token_works_until_it_expires_or_its_session_ends() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        f.clock.advance(Duration::from_secs(599));
        let principal = authenticate_bearer(&f.core, &login.access_token)
            .await
            .unwrap();
        assert_eq!(principal.method, AuthMethod::Bearer);
        f.clock.advance(Duration::from_secs(1));
        assert!(
            authenticate_bearer(&f.core, &login.access_token)
                .await
                .is_err()
        );

        let other = signed_in(&f, "bob@example.com").await;
        let principal = authenticate_bearer(&f.core, &other.access_token)
            .await
            .unwrap();
        logout(&f.core, &principal, &meta()).await.unwrap();
        assert!(
            authenticate_bearer(&f.core, &other.access_token)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_touch_never_brings_back_a_session_revoked_since_it_was_read() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        let record = f.core.kv.session(&login.session_id).await.unwrap().unwrap();
        f.core
            .kv
            .delete_session(login.user_id, &login.session_id)
            .await
            .unwrap();
        let ttl = Duration::from_secs(600);
        assert!(
            !f.core
                .kv
                .touch_session(&login.session_id, &record, ttl)
                .await
                .unwrap()
        );
        assert!(!f.session_lives(&login.session_id).await);
    }

    #[tokio::test]
    async fn a_csrf_token_belongs_to_its_session_only() {
        let f = fixture(|_| {});
        let a = signed_in(&f, "alice@example.com").await;
        let b = signed_in(&f, "bob@example.com").await;
        assert!(verify_csrf(&f.core, &a.session_id, &a.csrf_token));
        assert!(!verify_csrf(&f.core, &b.session_id, &a.csrf_token));
        assert_eq!(csrf_token(&f.core, &a.session_id), a.csrf_token);
    }

    #[tokio::test]
    async fn a_token_issued_to_an_oauth_client_cannot_use_the_account_api() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        let grant = crate::auth::tokens::Grant {
            user: login.user_id,
            sid: &login.session_id,
            gid: None,
            client_id: Some("shop-web"),
            scope: "openid",
        };
        let claims = crate::auth::tokens::access_claims(
            f.core.issuer(),
            f.core.issuer(),
            &grant,
            f.clock.now(),
            Duration::from_secs(600),
            uuid::Uuid::nil(),
        );
        let token = f.core.keys.sign("at+jwt", &claims).unwrap();
        assert!(matches!(
            authenticate_bearer(&f.core, &token).await,
            Err(AuthError::Unauthenticated)
        ));
    }

    #[tokio::test]
    async fn an_access_token_stops_when_its_grant_or_itself_is_revoked() {
        let f = fixture(|_| {});
        let ttl = Duration::from_secs(600);
        let first = signed_in(&f, "alice@example.com").await;
        let second = signed_in(&f, "bob@example.com").await;
        let claims = |token: &str| {
            f.core
                .keys
                .verify_access(token, f.core.issuer(), f.core.issuer(), f.clock.now())
                .unwrap()
        };
        let gid = claims(&first.access_token).gid.unwrap();
        f.core.kv.revoke_gid(&gid, ttl).await.unwrap();
        assert!(
            authenticate_bearer(&f.core, &first.access_token)
                .await
                .is_err()
        );
        let jti = claims(&second.access_token).jti;
        assert!(
            authenticate_bearer(&f.core, &second.access_token)
                .await
                .is_ok()
        );
        f.core.kv.revoke_jti(&jti, ttl).await.unwrap();
        assert!(
            authenticate_bearer(&f.core, &second.access_token)
                .await
                .is_err()
        );
    }
}
