//! Password reset: a mailed single-use token, then a new password that ends every session.

use crate::audit::Event;
use std::net::IpAddr;
use std::time::Duration;

use portcullis_crds::rate_limit::Route;

use super::core::Core;
use super::identifier::canonical_email;
use super::limits::Subject;
use super::principal::RequestMeta;
use super::{AuthError, new_password, password, tokens};
use crate::mail::Mail;
use crate::metrics::BreachContext;
use crate::notify::Notice;
use crate::store::TokenPurpose;

/// Password reset tokens live 30 minutes.
const RESET_TTL: Duration = Duration::from_secs(30 * 60);

/// Mails a reset token when the account exists and is enabled; says nothing either way.
/// `source` is the requester's address, which the recovery mail limit is kept per.
pub async fn request_password_reset(
    core: &Core,
    email: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let source: Option<IpAddr> = meta.ip.parse().ok();
    let Ok(email) = canonical_email("email", email) else {
        return Ok(());
    };
    let Some(user) = core.db.user_by_email(&email).await? else {
        return Ok(());
    };
    if user.disabled {
        return Ok(());
    }
    let now = core.clock.now();
    let token = core.random.token(32);
    core.db
        .insert_one_time_token(
            &tokens::hash_opaque(&token),
            user.id,
            TokenPurpose::PasswordReset,
            now,
            core.later(now, RESET_TTL)?,
        )
        .await?;
    core.notify_from(&user.email_canonical, Mail::PasswordReset { token }, source)
        .await;
    core.audit(
        Event::success("password_reset_requested").about(user.id),
        Some(meta),
    )
    .await;
    Ok(())
}

/// Requests a reset in the background and returns at once, so that neither the caller's
/// answer nor its timing tells whether the account exists; a failure is logged. The address
/// is rate limited first, before the account is looked up, so the refusal tells nothing
/// either.
pub async fn request_password_reset_detached(
    core: std::sync::Arc<Core>,
    email: String,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let source: Option<IpAddr> = meta.ip.parse().ok();
    if let Ok(canonical) = canonical_email("email", &email) {
        core.limits
            .check_subject(
                Route::PasswordReset,
                Subject::Identifier(&canonical, source),
            )
            .await?;
    }
    let meta = meta.clone();
    tokio::spawn(async move {
        if let Err(error) = request_password_reset(&core, &email, &meta).await {
            // No answer carries this failure to `observe`: count it here.
            if let Some(store) = error.failed_store() {
                core.metrics.store_failed(store);
            }
            tracing::error!(error = %error, "password reset request failed");
        }
    });
    Ok(())
}

/// Sets a new password with a reset token; every session, refresh token and other reset token
/// ends. A refused password leaves the token usable.
pub async fn confirm_password_reset(
    core: &Core,
    token: &str,
    new_password: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let password = password::normalize(new_password);
    let now = core.clock.now();
    let hash = tokens::hash_opaque(token);
    let user_id = core
        .db
        .peek_one_time_token(&hash, TokenPurpose::PasswordReset, now)
        .await?
        .ok_or(AuthError::InvalidToken)?;
    // Before the breach API and hashing.
    core.limits
        .check_subject(Route::PasswordReset, Subject::User(user_id))
        .await?;
    let user = core
        .db
        .user_by_id(user_id)
        .await?
        .ok_or(AuthError::InvalidToken)?;
    let violations = new_password::violations(
        core,
        BreachContext::PasswordReset,
        "new_password",
        &password,
        &user.email_canonical,
        user.display_name.as_deref(),
    )
    .await;
    if !violations.is_empty() {
        return Err(AuthError::Validation(violations));
    }
    // Single use is decided here, atomically: of two concurrent resets one wins.
    if core
        .db
        .consume_one_time_token(&hash, TokenPurpose::PasswordReset, now)
        .await?
        != Some(user.id)
    {
        return Err(AuthError::InvalidToken);
    }
    let stored = core.hash_timed(&password).await?;
    core.db
        .replace_password(user.id, &stored.hash, &stored.pepper_version, now)
        .await?;
    // Told and audited as soon as the password is replaced: a later step that fails (Redis
    // ending sessions) must not leave a changed password that nobody hears of.
    core.tell(
        &user,
        Notice::PasswordChanged {
            method: portcullis_webhook::PasswordChangeMethod::Reset,
        },
    )
    .await;
    core.audit(
        Event::success("password_reset").by_user(user.id),
        Some(meta),
    )
    .await;
    // The link came by mail: the address is proven. Social links made before that were made
    // by whoever held the account then, not necessarily the address's owner: they go.
    if !user.email_verified {
        super::social::drop_unproven_links(core, user.id, meta).await?;
    }
    core.db.set_email_verified(user.id, now).await?;
    core.db
        .void_one_time_tokens(user.id, TokenPurpose::PasswordReset, now)
        .await?;
    core.end_sessions(user.id, None).await?;
    core.kv.clear_attempts(&user.email_canonical).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::login;
    use crate::auth::testing::{OTHER_PASSWORD, PASSWORD, fixture, meta, registered};

    #[tokio::test]
    async fn only_an_existing_enabled_account_gets_a_reset_mail() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        request_password_reset(&f.core, "nobody@example.com", &RequestMeta::default())
            .await
            .unwrap();
        request_password_reset(&f.core, "not an email", &RequestMeta::default())
            .await
            .unwrap();
        assert!(f.mails().is_empty());
        request_password_reset(&f.core, "ALICE@example.com", &RequestMeta::default())
            .await
            .unwrap();
        let mails = f.mails();
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].to, "alice@example.com");
    }

    #[tokio::test]
    async fn a_reset_sets_the_password_once_and_ends_every_session() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        let session = login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
            .await
            .unwrap();
        request_password_reset(&f.core, "alice@example.com", &RequestMeta::default())
            .await
            .unwrap();
        let token = f.mailed_token();
        let weak = confirm_password_reset(&f.core, &token, "short", &meta()).await;
        assert!(matches!(weak, Err(AuthError::Validation(_))));
        confirm_password_reset(&f.core, &token, OTHER_PASSWORD, &meta())
            .await
            .unwrap();
        assert!(matches!(
            confirm_password_reset(&f.core, &token, OTHER_PASSWORD, &meta()).await,
            Err(AuthError::InvalidToken)
        ));
        assert!(!f.session_lives(&session.session_id).await);
        assert!(f.core.kv.is_sid_revoked(&session.session_id).await.unwrap());
        assert!(
            login(&f.core, "alice@example.com", OTHER_PASSWORD, &meta(), None)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_reset_voids_the_other_outstanding_reset_tokens() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        request_password_reset(&f.core, "alice@example.com", &RequestMeta::default())
            .await
            .unwrap();
        let first = f.mailed_token();
        request_password_reset(&f.core, "alice@example.com", &RequestMeta::default())
            .await
            .unwrap();
        let second = f.mailed_token();
        confirm_password_reset(&f.core, &second, OTHER_PASSWORD, &meta())
            .await
            .unwrap();
        assert!(matches!(
            confirm_password_reset(&f.core, &first, "Marigold-Harbor-31-Velvet", &meta()).await,
            Err(AuthError::InvalidToken)
        ));
    }

    #[tokio::test]
    async fn a_reset_token_expires_after_30_minutes() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        request_password_reset(&f.core, "alice@example.com", &RequestMeta::default())
            .await
            .unwrap();
        let token = f.mailed_token();
        f.clock.advance(RESET_TTL);
        assert!(matches!(
            confirm_password_reset(&f.core, &token, OTHER_PASSWORD, &meta()).await,
            Err(AuthError::InvalidToken)
        ));
    }
}
