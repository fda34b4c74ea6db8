//! The refresh-token grant: every use rotates the token; a used token presented again revokes
//! its family and the session that started it. A token is bound to the client it was issued
//! to (RFC 6749 §10.4): the realm's own API's tokens refresh without a client, a client's only
//! for that client, authenticated.

use crate::audit::Event;
use uuid::Uuid;

use super::AuthError;
use super::core::Core;
use super::tokens::{self, Grant};
use crate::metrics::GrantKind;
use crate::store::{FamilyGrant, RotateOutcome};

/// Tokens from a refresh grant.
#[derive(Clone)]
pub struct Refreshed {
    /// JWT access token.
    pub access_token: String,
    /// The successor refresh token.
    pub refresh_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scope.
    pub scope: String,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A rotated refresh token and the family it belongs to.
#[derive(Clone)]
pub struct Rotated {
    /// The family (grant id).
    pub family_id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Session that started the family.
    pub session_id: String,
    /// What the family grants.
    pub grant: FamilyGrant,
    /// The successor refresh token.
    pub refresh_token: String,
}

impl std::fmt::Debug for Rotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotated")
            .field("family_id", &self.family_id)
            .finish_non_exhaustive()
    }
}

/// Rotates `presented` for `client_id` (`None`: the realm's own API), which must be the
/// family's client; a replay revokes the family and its session.
pub async fn rotate(
    core: &Core,
    presented: &str,
    client_id: Option<&str>,
) -> Result<Rotated, AuthError> {
    let now = core.clock.now();
    let spec = core.spec();
    let presented_hash = tokens::hash_opaque(presented);
    // Bound to its client before anything changes: presenting another client's token (or a
    // client's token without client authentication) must not spend it, or its rightful client
    // would find it replayed and lose the grant.
    let standing = core.db.refresh_standing(&presented_hash, now).await?;
    if let Some(standing) = &standing
        && standing.client_id.as_deref() != client_id
    {
        return Err(AuthError::InvalidGrant(
            "the refresh token was not issued to this client",
        ));
    }
    // No token for a user who has not accepted the realm's current privacy policy (issue 13);
    // checked before the rotation, so the token stays usable once they accept it. Only for a
    // token that would be accepted: a replayed one goes on to the rotation, which ends its
    // family, and an expired or revoked one is refused as such.
    if let Some(standing) = &standing
        && standing.active
        && super::privacy::consent_needed(core, standing.user_id).await?
    {
        core.audit(
            Event::failure("refresh_refused")
                .by_user(standing.user_id)
                .details(portcullis_audit::Details::new().code("reason", "consent_required")),
            None,
        )
        .await;
        return Err(AuthError::PolicyNotAccepted);
    }
    let (successor, successor_hash) = tokens::new_refresh_token(&core.random);
    let outcome = core
        .db
        .rotate_refresh_token(
            &presented_hash,
            &successor_hash,
            now,
            core.later(now, spec.tokens.refresh_idle_ttl.as_duration())?,
        )
        .await?;
    match outcome {
        RotateOutcome::Rotated {
            family_id,
            user_id,
            session_id,
            client_id: family_client,
            grant,
        } => {
            if client_id != family_client.as_deref() {
                return Err(AuthError::InvalidGrant(
                    "the refresh token was not issued to this client",
                ));
            }
            // A grant from before the realm required TOTP can never satisfy it (its amr is
            // fixed): it ends here with its access tokens, and its user signs in again.
            if super::mfa_login::lacks_required_second_factor(core, &grant.amr) {
                core.db.revoke_family(family_id, now).await?;
                core.kv
                    .revoke_gid(&family_id.to_string(), core.access_ttl())
                    .await?;
                core.audit(
                    Event::failure("refresh_refused").by_user(user_id).details(
                        portcullis_audit::Details::new().code("reason", "second_factor_required"),
                    ),
                    None,
                )
                .await;
                return Err(AuthError::InvalidGrant(
                    "the realm requires two-step sign-in: sign in again",
                ));
            }
            Ok(Rotated {
                family_id,
                user_id,
                session_id,
                grant,
                refresh_token: successor,
            })
        }
        RotateOutcome::Reused {
            session_id,
            family_id,
            client_id: family_client,
        } => {
            core.metrics.refresh_reuse.inc();
            if family_client.is_some() {
                // A client's grant is not the user's session (RFC 9700 §4.14.2): the replay
                // ends this grant (family, now revoked, and its access tokens) and nothing else.
                core.kv
                    .revoke_gid(&family_id.to_string(), core.access_ttl())
                    .await?;
            } else {
                // The realm's own API: its family is the session, which ends with it.
                core.kv.revoke_sid(&session_id, core.access_ttl()).await?;
                if let Some(record) = core.kv.session(&session_id).await? {
                    core.kv.delete_session(record.user_id, &session_id).await?;
                }
            }
            tracing::warn!("refresh token reused; family revoked");
            let event = Event::failure("refresh_token_reuse");
            let event = match client_id {
                Some(client) => event.client(client),
                None => event,
            };
            core.audit(event, None).await;
            Err(AuthError::InvalidGrant(
                "refresh token reuse detected; the token family is revoked",
            ))
        }
        RotateOutcome::Invalid => Err(AuthError::InvalidGrant("invalid or expired refresh token")),
    }
}

/// Records a granted refresh as the account's activity (the inactive-accounts rule), once the
/// grant passed every check. Best effort: the rotation is committed, and a refresh that
/// failed now would leave its client holding a spent token (a replay at its next use).
pub(super) async fn record_activity(core: &Core, user: Uuid) {
    if let Err(error) = core.db.record_activity(user, core.clock.now()).await {
        tracing::warn!(%error, "could not record the account's activity");
    }
}

/// Rotates a refresh token of the realm's own API (`client_id`, when given, must be the
/// family's client) and issues an access token for it.
pub async fn refresh(
    core: &Core,
    presented: &str,
    client_id: Option<&str>,
) -> Result<Refreshed, AuthError> {
    let now = core.clock.now();
    let rotated = rotate(core, presented, client_id).await?;
    record_activity(core, rotated.user_id).await;
    let gid = rotated.family_id.to_string();
    let grant = Grant {
        user: rotated.user_id,
        sid: &rotated.session_id,
        gid: Some(&gid),
        client_id,
        scope: &rotated.grant.scope,
    };
    let claims = tokens::access_claims(
        core.issuer(),
        core.issuer(),
        &grant,
        now,
        core.access_ttl(),
        core.random.uuid(),
    );
    let access_token = core.keys.sign("at+jwt", &claims)?;
    core.metrics.token_issued(GrantKind::RefreshToken);
    Ok(Refreshed {
        access_token,
        refresh_token: rotated.refresh_token,
        expires_in: core.access_ttl().as_secs(),
        scope: rotated.grant.scope,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::testing::{fixture, signed_in};

    #[tokio::test]
    async fn a_refresh_rotates_the_token_and_a_replay_kills_the_family_and_session() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        let rotated = refresh(&f.core, &login.refresh_token, None).await.unwrap();
        assert_ne!(rotated.refresh_token, login.refresh_token);
        let replay = refresh(&f.core, &login.refresh_token, None).await;
        assert!(matches!(replay, Err(AuthError::InvalidGrant(_))));
        assert!(
            refresh(&f.core, &rotated.refresh_token, None)
                .await
                .is_err(),
            "the successor died with the family"
        );
        assert!(!f.session_lives(&login.session_id).await);
        assert!(f.core.kv.is_sid_revoked(&login.session_id).await.unwrap());
    }

    #[tokio::test]
    async fn a_family_dies_when_its_account_is_disabled_or_its_password_reset() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        let user = f.core.db.user_by_id(login.user_id).await.unwrap().unwrap();
        f.core
            .db
            .replace_password(
                user.id,
                user.password_hash.as_deref().unwrap(),
                &user.pepper_version,
                f.clock.now(),
            )
            .await
            .unwrap();
        assert!(matches!(
            refresh(&f.core, &login.refresh_token, None).await,
            Err(AuthError::InvalidGrant(_))
        ));
    }

    #[tokio::test]
    async fn a_refresh_token_expires_when_idle() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        f.clock.advance(Duration::from_secs(7 * 86_400));
        assert!(matches!(
            refresh(&f.core, &login.refresh_token, None).await,
            Err(AuthError::InvalidGrant("invalid or expired refresh token"))
        ));
    }

    #[tokio::test]
    async fn a_token_of_the_realm_api_is_refused_to_a_client() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        assert!(matches!(
            refresh(&f.core, &login.refresh_token, Some("web")).await,
            Err(AuthError::InvalidGrant(_))
        ));
    }
}
