//! The caller's own account: profile, password change, session list and revocation, logout.

use crate::audit::Event;
use time::OffsetDateTime;
use uuid::Uuid;

use super::core::{Core, stored_hash};
use super::principal::{Principal, RequestMeta};
use super::{AuthError, Violation, new_password, password, sessions};
use crate::metrics::BreachContext;
use crate::notify::Notice;
use crate::store::TokenPurpose;
use crate::store::kv::Attempt;

/// What `GET /api/v1/me` shows.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The user.
    pub user_id: Uuid,
    /// Email as entered.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Registration time.
    pub created_at: OffsetDateTime,
    /// Whether the account has a password (one made by social sign-in has none until a
    /// password reset).
    pub has_password: bool,
}

/// One session in the session list.
#[derive(Clone, Debug)]
pub struct SessionView {
    /// Public id.
    pub id: String,
    /// Login time.
    pub created_at: OffsetDateTime,
    /// Last request seen.
    pub last_seen_at: OffsetDateTime,
    /// Client IP at login.
    pub ip: String,
    /// User agent at login.
    pub user_agent: String,
    /// Whether it is the caller's own.
    pub current: bool,
}

/// The caller's profile.
pub async fn profile(core: &Core, principal: &Principal) -> Result<Profile, AuthError> {
    let user = core.active_user(principal).await?;
    Ok(Profile {
        user_id: user.id,
        email: user.email,
        display_name: user.display_name,
        email_verified: user.email_verified,
        created_at: user.created_at,
        has_password: user.password_hash.is_some(),
    })
}

/// Ends the caller's session and the refresh-token families tied to it (every one it started
/// but the `offline_access` grants, which outlive it; see `auth::oidc::consent`).
pub async fn logout(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let now = core.clock.now();
    core.kv
        .delete_session(principal.user_id, &principal.session_id)
        .await?;
    core.kv
        .revoke_sid(&principal.session_id, core.access_ttl())
        .await?;
    core.db
        .revoke_refresh_by_session(&principal.session_id, now)
        .await?;
    core.audit(
        Event::success("logout").by_user(principal.user_id),
        Some(meta),
    )
    .await;
    Ok(())
}

/// Changes the password after checking the current one (which counts towards the lockout
/// like a login from `meta`'s address); every other session, refresh token and outstanding
/// reset token ends.
pub async fn change_password(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
    current: &str,
    new: &str,
) -> Result<(), AuthError> {
    let user = core.active_user(principal).await?;
    let current = recheck_password(core, &user, meta, current).await?;
    let new = password::normalize(new);
    let mut violations = new_password::violations(
        core,
        BreachContext::PasswordChange,
        "new_password",
        &new,
        &user.email_canonical,
        user.display_name.as_deref(),
    )
    .await;
    if new == current {
        violations.push(Violation::new(
            "new_password",
            "password_unchanged",
            "choose a password different from the current one",
        ));
    }
    if !violations.is_empty() {
        return Err(AuthError::Validation(violations));
    }
    let now = core.clock.now();
    let hash = core.hash_timed(&new).await?;
    let epoch = core
        .db
        .replace_password(user.id, &hash.hash, &hash.pepper_version, now)
        .await?;
    // Told and audited as soon as the password is replaced: a later step that fails (Redis
    // ending sessions) must not leave a changed password that nobody hears of.
    core.tell(
        &user,
        Notice::PasswordChanged {
            method: portcullis_webhook::PasswordChangeMethod::Change,
        },
    )
    .await;
    core.audit(
        Event::success("password_changed").by_user(user.id),
        Some(meta),
    )
    .await;
    keep_session_under(core, principal, epoch).await?;
    core.db
        .void_one_time_tokens(user.id, TokenPurpose::PasswordReset, now)
        .await?;
    core.end_sessions(user.id, Some(&principal.session_id))
        .await?;
    Ok(())
}

/// How recent a sign-in must be to stand in for a password re-check (an account without a
/// password), or to add a way to sign in: a borrowed or stolen session must not delete the
/// account or plant a sign-in method that outlives the password its owner then resets.
pub const REAUTHENTICATION_WINDOW: time::Duration = time::Duration::minutes(10);

/// Whether the caller's session was signed in within [`REAUTHENTICATION_WINDOW`].
pub(super) async fn signed_in_recently(
    core: &Core,
    principal: &Principal,
) -> Result<bool, AuthError> {
    let session = core
        .kv
        .session(&principal.session_id)
        .await?
        .filter(|session| session.user_id == principal.user_id)
        .ok_or(AuthError::Unauthenticated)?;
    Ok(core.clock.now() - session.created_at <= REAUTHENTICATION_WINDOW)
}

/// Confirms a sensitive change by the caller: the current password, or for an account
/// without one a sign-in within [`REAUTHENTICATION_WINDOW`].
pub(super) async fn reauthenticate(
    core: &Core,
    principal: &Principal,
    user: &crate::store::UserRecord,
    meta: &RequestMeta,
    password: &str,
) -> Result<(), AuthError> {
    if user.password_hash.is_some() {
        recheck_password(core, user, meta, password).await?;
    } else if !signed_in_recently(core, principal).await? {
        return Err(AuthError::RecentSignInRequired);
    }
    Ok(())
}

/// Checks the caller's current password before a sensitive change; a wrong one counts towards
/// the lockout like a login from `meta`'s address. Returns the normalized password.
pub(super) async fn recheck_password(
    core: &Core,
    user: &crate::store::UserRecord,
    meta: &RequestMeta,
    current: &str,
) -> Result<String, AuthError> {
    // No password (an account made by social sign-in): nothing to re-check against, and the
    // dummy hash must never stand in for one. Its owner is told, not counted: nothing is
    // being guessed.
    let Some(stored) = stored_hash(user) else {
        return Err(AuthError::PasswordNotSet);
    };
    let slot = core.reserve_hashing()?;
    let identifier = user.email_canonical.clone();
    let limits = core.lockout_rules().limits();
    // Counted per source as at login, so a login and a change from one prefix share a count.
    let source = super::limits::lockout_source(&meta.ip);
    if let Attempt::Locked { retry_after_ms } = core
        .kv
        .begin_attempt(&identifier, &source, core.clock.now_ms(), &limits)
        .await?
    {
        return Err(core.locked(retry_after_ms));
    }
    let current = password::normalize(current);
    let right = core.hasher.verify(slot, &current, Some(&stored)).await?.ok;
    if !right {
        if core
            .kv
            .fail_attempt(&identifier, &source, core.clock.now_ms(), &limits)
            .await?
            .is_some()
        {
            core.metrics.lockouts.inc();
        }
        return Err(AuthError::InvalidCredentials);
    }
    core.kv.clear_attempts(&identifier).await?;
    Ok(current)
}

/// Moves the caller's own session and its refresh-token families to the credential epoch a
/// password change (or a new second factor) started, so they outlive the change that ends
/// every other session.
pub(super) async fn keep_session_under(
    core: &Core,
    principal: &Principal,
    epoch: i64,
) -> Result<(), AuthError> {
    let now = core.clock.now();
    let idle = core.spec().sessions.idle_timeout.as_duration();
    if let Some(mut record) = core.kv.session(&principal.session_id).await? {
        record.credential_epoch = epoch;
        let ttl = sessions::ttl(&record, now, idle);
        core.kv
            .touch_session(&principal.session_id, &record, ttl)
            .await?;
    }
    core.db
        .restamp_session_families(&principal.session_id, epoch)
        .await?;
    Ok(())
}

/// The caller's live sessions, newest first.
pub async fn sessions(core: &Core, principal: &Principal) -> Result<Vec<SessionView>, AuthError> {
    let now = core.clock.now();
    let idle = core.spec().sessions.idle_timeout.as_duration();
    let mut list: Vec<SessionView> = core
        .kv
        .user_sessions(principal.user_id)
        .await?
        .into_iter()
        .filter(|(_, record)| !sessions::is_expired(record, now, idle))
        .map(|(id, record)| SessionView {
            current: id == principal.session_id,
            id,
            created_at: record.created_at,
            last_seen_at: record.last_seen_at,
            ip: record.ip,
            user_agent: record.user_agent,
        })
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(list)
}

/// Revokes one of the caller's sessions; someone else's is `NotFound`, like a missing one.
pub async fn revoke_session(
    core: &Core,
    principal: &Principal,
    id: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let owned = core
        .kv
        .session(id)
        .await?
        .is_some_and(|r| r.user_id == principal.user_id);
    if !owned {
        return Err(AuthError::NotFound);
    }
    let now = core.clock.now();
    core.kv.delete_session(principal.user_id, id).await?;
    core.kv.revoke_sid(id, core.access_ttl()).await?;
    core.db.revoke_refresh_by_session(id, now).await?;
    core.audit(
        Event::success("session_revoked").by_user(principal.user_id),
        Some(meta),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::AuthMethod;
    use crate::auth::refresh::refresh;
    use crate::auth::testing::{OTHER_PASSWORD, PASSWORD, fixture, meta, signed_in};
    use crate::mail::Mail;

    fn caller(login: &crate::auth::login::LoginSuccess) -> Principal {
        Principal {
            user_id: login.user_id,
            session_id: login.session_id.clone(),
            method: AuthMethod::Cookie,
        }
    }

    #[tokio::test]
    async fn a_password_change_keeps_this_session_and_ends_the_others() {
        let f = fixture(|_| {});
        let here = signed_in(&f, "alice@example.com").await;
        let elsewhere = signed_in(&f, "alice@example.com").await;
        let wrong = change_password(
            &f.core,
            &caller(&here),
            &meta(),
            OTHER_PASSWORD,
            OTHER_PASSWORD,
        )
        .await;
        assert!(matches!(wrong, Err(AuthError::InvalidCredentials)));
        let same = change_password(&f.core, &caller(&here), &meta(), PASSWORD, PASSWORD).await;
        let Err(AuthError::Validation(violations)) = same else {
            panic!("accepted: {same:?}");
        };
        assert_eq!(violations[0].code, "password_unchanged");
        change_password(&f.core, &caller(&here), &meta(), PASSWORD, OTHER_PASSWORD)
            .await
            .unwrap();
        assert!(f.session_lives(&here.session_id).await);
        assert!(!f.session_lives(&elsewhere.session_id).await);
        assert!(
            refresh(&f.core, &elsewhere.refresh_token, None)
                .await
                .is_err()
        );
        assert!(refresh(&f.core, &here.refresh_token, None).await.is_ok());
        assert!(f.mails().iter().any(|m| m.mail == Mail::PasswordChanged));
    }

    #[tokio::test]
    async fn sessions_are_listed_newest_first_and_revocable_by_their_owner_only() {
        let f = fixture(|_| {});
        let first = signed_in(&f, "alice@example.com").await;
        f.clock.advance(std::time::Duration::from_secs(5));
        let second = signed_in(&f, "alice@example.com").await;
        let mallory = signed_in(&f, "mallory@example.com").await;
        let list = sessions(&f.core, &caller(&second)).await.unwrap();
        let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [second.session_id.as_str(), first.session_id.as_str()]);
        assert!(list[0].current && !list[1].current);
        assert!(matches!(
            revoke_session(&f.core, &caller(&mallory), &first.session_id, &meta()).await,
            Err(AuthError::NotFound)
        ));
        revoke_session(&f.core, &caller(&second), &first.session_id, &meta())
            .await
            .unwrap();
        assert!(!f.session_lives(&first.session_id).await);
        assert!(refresh(&f.core, &first.refresh_token, None).await.is_err());
    }

    #[tokio::test]
    async fn logout_ends_the_session_its_tokens_and_its_access_tokens() {
        let f = fixture(|_| {});
        let login = signed_in(&f, "alice@example.com").await;
        logout(&f.core, &caller(&login), &meta()).await.unwrap();
        assert!(!f.session_lives(&login.session_id).await);
        assert!(f.core.kv.is_sid_revoked(&login.session_id).await.unwrap());
        assert!(refresh(&f.core, &login.refresh_token, None).await.is_err());
    }
}
