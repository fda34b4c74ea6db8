//! Connected apps: the OAuth clients a user allowed something (the remembered consents of the
//! consent page), as the account page lists them, and their revocation, which also ends what
//! the client holds for the user.

use crate::audit::Event;
use portcullis_audit::Details;
use time::OffsetDateTime;

use crate::auth::AuthError;
use crate::auth::core::Core;
use crate::auth::principal::{Principal, RequestMeta};

/// A client the user allowed something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedApp {
    /// The client.
    pub client_id: String,
    /// The scopes allowed, sorted.
    pub scopes: Vec<String>,
    /// When it was first allowed.
    pub granted_at: OffsetDateTime,
}

/// The caller's connected apps, by client id.
pub async fn connected_apps(
    core: &Core,
    principal: &Principal,
) -> Result<Vec<ConnectedApp>, AuthError> {
    Ok(core
        .db
        .oauth_consents(principal.user_id)
        .await?
        .into_iter()
        .map(|c| ConnectedApp {
            client_id: c.client_id,
            scopes: c.scopes,
            granted_at: c.granted_at,
        })
        .collect())
}

/// Revokes a connected app: the consent is withdrawn (the next authorization asks again), and
/// the client's refresh-token families for the caller end, with their access tokens, offline
/// ones too. `NotFound` when the client held neither.
pub async fn revoke_app(
    core: &Core,
    principal: &Principal,
    client_id: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let user = principal.user_id;
    let had_consent = core.db.revoke_oauth_consent(user, client_id).await?;
    let families = core
        .db
        .revoke_client_families(user, client_id, core.clock.now())
        .await?;
    for family in &families {
        core.kv
            .revoke_gid(&family.to_string(), core.access_ttl())
            .await?;
    }
    if !had_consent && families.is_empty() {
        return Err(AuthError::NotFound);
    }
    // The client held a consent or families for this user: a known client id, not free input.
    let families_ended = i64::try_from(families.len()).unwrap_or(i64::MAX);
    core.audit(
        Event::success("oauth_consent_revoked")
            .by_user(user)
            .client(client_id)
            .details(Details::new().int("families", families_ended)),
        Some(meta),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oidc::flow::{self, Outcome};
    use crate::auth::oidc::token;
    use crate::auth::principal::AuthMethod;
    use crate::auth::testing::{Fixture, fixture_with_clients, meta, signed_in};

    const CB: &str = "https://app.example.com/cb";

    /// The tokens `client` (confidential, first-party) gets for a fresh login of alice.
    async fn tokens_of(f: &Fixture, client: &str, session: &str) -> token::Issued {
        let params: Vec<(String, String)> = [
            ("client_id", client),
            ("redirect_uri", CB),
            ("response_type", "code"),
            ("scope", "openid email offline_access"),
            ("nonce", "n-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let Outcome::Code(reply) = flow::begin(&f.core, &params, Some(session)).await.unwrap()
        else {
            panic!("a code expected");
        };
        let client = f.core.clients().get(client).unwrap();
        token::exchange_code(&f.core, client, &reply.code, Some(CB), None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn revoking_an_app_withdraws_its_consent_and_ends_its_tokens_but_no_other_clients() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let caller = Principal {
            user_id: login.user_id,
            session_id: login.session_id.clone(),
            method: AuthMethod::Cookie,
        };
        let now = f.clock.now();
        for client in ["web", "partner"] {
            f.core
                .db
                .grant_oauth_consent(login.user_id, client, &["openid", "email"], now)
                .await
                .unwrap();
        }
        let web = tokens_of(&f, "web", &login.session_secret).await;
        let listed: Vec<String> = connected_apps(&f.core, &caller)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.client_id)
            .collect();
        assert_eq!(listed, ["partner", "web"]);
        let access = f
            .core
            .keys
            .verify_access(&web.access_token, f.core.issuer(), f.core.issuer(), now)
            .unwrap();
        let revoked = || async {
            f.core
                .kv
                .is_access_revoked(access.sid.as_deref(), access.gid.as_deref(), &access.jti)
                .await
                .unwrap()
        };
        assert!(!revoked().await);

        revoke_app(&f.core, &caller, "web", &meta()).await.unwrap();

        let listed = connected_apps(&f.core, &caller).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_id, "partner");
        let client = f.core.clients().get("web").unwrap();
        let refresh = web.refresh_token.as_deref().unwrap();
        assert!(
            token::refresh(&f.core, client, refresh, None)
                .await
                .is_err()
        );
        assert!(revoked().await);
        assert!(
            f.session_lives(&login.session_id).await,
            "the session stays"
        );
        assert!(matches!(
            revoke_app(&f.core, &caller, "web", &meta()).await,
            Err(AuthError::NotFound)
        ));
    }
}
