//! What the admin API does to accounts: find, unlock, disable.

use crate::audit::{Actor, Event};
use portcullis_audit::{AuditRow, Details, Ident, PageQuery, Report};
use uuid::Uuid;

use super::AuthError;
use super::core::Core;
use super::identifier::canonical_email;

/// An account as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    /// Id.
    pub user_id: Uuid,
    /// Email as entered.
    pub email: String,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
}

/// A user by email.
pub async fn find_user(core: &Core, email: &str) -> Result<Option<UserSummary>, AuthError> {
    let Ok(email) = canonical_email("email", email) else {
        return Ok(None);
    };
    let found = core.db.user_by_email(&email).await?;
    // Which account was looked up, never the address asked for.
    let event = match &found {
        Some(user) => Event::success("admin_lookup").about(user.id),
        None => Event::failure("admin_lookup"),
    };
    core.audit(event.by(Actor::Admin), None).await;
    Ok(found.map(|user| UserSummary {
        user_id: user.id,
        email: user.email,
        email_verified: user.email_verified,
        disabled: user.disabled,
    }))
}

/// Clears a user's failures and lock.
pub async fn unlock(core: &Core, user: Uuid) -> Result<(), AuthError> {
    let user = core.db.user_by_id(user).await?.ok_or(AuthError::NotFound)?;
    core.kv.clear_attempts(&user.email_canonical).await?;
    core.audit(
        Event::success("admin_unlock")
            .by(Actor::Admin)
            .about(user.id),
        None,
    )
    .await;
    Ok(())
}

/// Disables an account and ends its sessions.
pub async fn disable(core: &Core, user: Uuid) -> Result<(), AuthError> {
    if !core.db.disable_user(user, core.clock.now()).await? {
        return Err(AuthError::NotFound);
    }
    core.end_sessions(user, None).await?;
    core.audit(
        Event::success("admin_disable").by(Actor::Admin).about(user),
        None,
    )
    .await;
    Ok(())
}

/// One page of the audit trail for the admin export, itself audited (`admin_audit_query`).
pub async fn audit_page(core: &Core, query: &PageQuery) -> Result<Vec<AuditRow>, AuthError> {
    let rows = core
        .audit_log()
        .page(query)
        .await
        .map_err(|e| AuthError::Internal(format!("audit page: {e}")))?;
    let mut details = Details::new()
        .int("limit", query.clamped_limit())
        .int("after", query.after)
        .int("rows", i64::try_from(rows.len()).unwrap_or(i64::MAX))
        .bool("since", query.since.is_some());
    if let Some(kind) = query.event_type.as_deref().and_then(Ident::parse) {
        details = details.id("type", kind);
    }
    let mut event = Event::success("admin_audit_query").by(Actor::Admin);
    if let Some(user) = query.user_id {
        event = event.about(user);
    }
    core.audit(event.details(details), None).await;
    Ok(rows)
}

/// Verifies the whole audit chain and sets the chain gauges from the report, without an
/// audit event of its own (the background verifier: a broken chain raises the gauge an
/// alert watches, without waiting for an admin to ask).
pub async fn verify_chain(core: &Core) -> Result<Report, AuthError> {
    let report = core
        .audit_log()
        .verify(None)
        .await
        .map_err(|e| AuthError::Internal(format!("audit verify: {e}")))?;
    core.metrics.audit_chain_broken.set(i64::from(!report.ok));
    core.metrics.audit_chain_verified_seq.set(report.head.seq);
    Ok(report)
}

/// Verifies the whole audit chain, sets the chain gauges from the report and audits the
/// check (`admin_audit_verify`, a failure when the chain is broken).
pub async fn audit_verify(core: &Core) -> Result<Report, AuthError> {
    let report = verify_chain(core).await?;
    let event = if report.ok {
        Event::success("admin_audit_verify")
    } else {
        Event::failure("admin_audit_verify")
    };
    let findings = i64::try_from(report.findings_total).unwrap_or(i64::MAX);
    core.audit(
        event.by(Actor::Admin).details(
            Details::new()
                .int("findings", findings)
                .int("head_seq", report.head.seq),
        ),
        None,
    )
    .await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::login::login;
    use crate::auth::testing::{OTHER_PASSWORD, PASSWORD, fixture, meta, registered, signed_in};

    #[tokio::test]
    async fn an_account_is_found_by_any_spelling_of_its_email() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        let found = find_user(&f.core, " ALICE@example.com").await.unwrap();
        assert_eq!(found.map(|u| u.user_id), Some(id));
        assert_eq!(
            find_user(&f.core, "nobody@example.com").await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn unlocking_lets_the_right_password_in_again() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        for _ in 0..5 {
            let _ = login(&f.core, "alice@example.com", OTHER_PASSWORD, &meta(), None).await;
        }
        assert!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
                .await
                .is_err()
        );
        unlock(&f.core, id).await.unwrap();
        assert!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
                .await
                .is_ok()
        );
        assert!(matches!(
            unlock(&f.core, Uuid::nil()).await,
            Err(AuthError::NotFound)
        ));
    }

    #[tokio::test]
    async fn disabling_ends_the_sessions_and_refuses_the_next_login() {
        let f = fixture(|_| {});
        let session = signed_in(&f, "alice@example.com").await;
        disable(&f.core, session.user_id).await.unwrap();
        assert!(!f.session_lives(&session.session_id).await);
        assert!(matches!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None).await,
            Err(AuthError::AccountDisabled)
        ));
        assert!(matches!(
            disable(&f.core, Uuid::nil()).await,
            Err(AuthError::NotFound)
        ));
    }

    #[tokio::test]
    async fn the_chain_check_sets_the_gauges_and_admin_actions_are_audited() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        unlock(&f.core, id).await.unwrap();
        let report = verify_chain(&f.core).await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(f.core.metrics.audit_chain_broken.get(), 0);
        assert_eq!(
            f.core.metrics.audit_chain_verified_seq.get(),
            report.head.seq
        );
        let rows = audit_page(
            &f.core,
            &PageQuery {
                event_type: Some("admin_unlock".into()),
                ..PageQuery::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].subject_id, Some(id));
        assert_eq!(rows[0].actor_id.as_deref(), Some("admin"));
    }
}
