//! What the admin API does: find and show accounts, unlock, disable, the audit trail, the key
//! status and retention runs. Every action is audited with the admin caller's address.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::audit::{Actor, Event};
use crate::privacy::retention;
use crate::store::kv::LockState;
use portcullis_audit::{AuditRow, Details, Ident, PageQuery, Report};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use super::core::Core;
use super::identifier::canonical_email;
use super::key_fingerprints::{KeyFingerprint, KeyKind};
use super::principal::RequestMeta;
use super::sessions;

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

/// Lock state of a login identifier, from its lockout counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LockView {
    /// Locked for every address (past the overall ceiling).
    pub locked: bool,
    /// Seconds until that lock ends (0 when not locked).
    pub locked_for_secs: u64,
    /// Failures from all addresses in the current window.
    pub recent_failures: u32,
    /// Addresses locked out now (each after `maxFailures` of its own).
    pub locked_addresses: usize,
}

/// The lock view of `state` at `now_ms` (pure): failures of a window that has ended count 0.
pub fn lock_view(state: Option<&LockState>, now_ms: u64, window_ms: u64) -> LockView {
    let Some(state) = state else {
        return LockView::default();
    };
    let overall = &state.overall;
    let locked_for_ms = overall.locked_until.saturating_sub(now_ms);
    let in_window = now_ms.saturating_sub(overall.window_start) < window_ms;
    LockView {
        locked: locked_for_ms > 0,
        locked_for_secs: locked_for_ms.div_ceil(1000),
        recent_failures: if in_window { overall.failures } else { 0 },
        locked_addresses: state
            .sources
            .values()
            .filter(|c| c.locked_until > now_ms)
            .count(),
    }
}

/// An account in detail: its state, lock and sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDetail {
    /// The summary.
    pub summary: UserSummary,
    /// Registration time.
    pub created_at: OffsetDateTime,
    /// Last successful login.
    pub last_login_at: Option<OffsetDateTime>,
    /// Last granted refresh (at most an hour old when recent).
    pub last_active_at: Option<OffsetDateTime>,
    /// The lockout counters of its email.
    pub lock: LockView,
    /// Live sessions.
    pub sessions: usize,
    /// Whether a second factor (TOTP) is enrolled and confirmed.
    pub mfa_enrolled: bool,
}

/// A user by email.
pub async fn find_user(
    core: &Core,
    email: &str,
    meta: &RequestMeta,
) -> Result<Option<UserSummary>, AuthError> {
    let Ok(email) = canonical_email("email", email) else {
        core.audit(Event::failure("admin_lookup").by(Actor::Admin), Some(meta))
            .await;
        return Ok(None);
    };
    let found = core.db.user_by_email(&email).await?;
    // Which account was looked up, never the address asked for.
    let event = match &found {
        Some(user) => Event::success("admin_lookup").about(user.id),
        None => Event::failure("admin_lookup"),
    };
    core.audit(event.by(Actor::Admin), Some(meta)).await;
    Ok(found.map(|user| UserSummary {
        user_id: user.id,
        email: user.email,
        email_verified: user.email_verified,
        disabled: user.disabled,
    }))
}

/// A user by id, in detail (audited as `admin_lookup`).
pub async fn user_detail(
    core: &Core,
    user: Uuid,
    meta: &RequestMeta,
) -> Result<UserDetail, AuthError> {
    let Some(user) = core.db.user_by_id(user).await? else {
        core.audit(Event::failure("admin_lookup").by(Actor::Admin), Some(meta))
            .await;
        return Err(AuthError::NotFound);
    };
    let now = core.clock.now();
    let idle = core.spec().sessions.idle_timeout.as_duration();
    let sessions = core
        .kv
        .user_sessions(user.id)
        .await?
        .iter()
        .filter(|(_, record)| !sessions::is_expired(record, now, idle))
        .count();
    let state = core.kv.lock_state(&user.email_canonical).await?;
    let window_ms = u64::try_from(core.lockout_rules().window.as_millis()).unwrap_or(u64::MAX);
    let lock = lock_view(state.as_ref(), core.clock.now_ms(), window_ms);
    let mfa_enrolled = core.db.mfa_enrolled(user.id).await?;
    core.audit(
        Event::success("admin_lookup")
            .by(Actor::Admin)
            .about(user.id),
        Some(meta),
    )
    .await;
    Ok(UserDetail {
        summary: UserSummary {
            user_id: user.id,
            email: user.email,
            email_verified: user.email_verified,
            disabled: user.disabled,
        },
        created_at: user.created_at,
        last_login_at: user.last_login_at,
        last_active_at: user.last_active_at,
        lock,
        sessions,
        mfa_enrolled,
    })
}

/// Clears a user's failures and locks (the password's and the second factor's), and the
/// rate-limit buckets of their login identifier and account, so the owner can sign in at once.
pub async fn unlock(core: &Core, user: Uuid, meta: &RequestMeta) -> Result<(), AuthError> {
    let user = core.db.user_by_id(user).await?.ok_or(AuthError::NotFound)?;
    core.kv.clear_attempts(&user.email_canonical).await?;
    core.kv.clear_mfa_attempts(user.id).await?;
    core.limits
        .forget_subject(&user.email_canonical, user.id)
        .await?;
    core.audit(
        Event::success("admin_unlock")
            .by(Actor::Admin)
            .about(user.id),
        Some(meta),
    )
    .await;
    Ok(())
}

/// Disables an account and ends its sessions.
pub async fn disable(core: &Core, user: Uuid, meta: &RequestMeta) -> Result<(), AuthError> {
    if !core.db.disable_user(user, core.clock.now()).await? {
        return Err(AuthError::NotFound);
    }
    core.end_sessions(user, None).await?;
    core.audit(
        Event::success("admin_disable").by(Actor::Admin).about(user),
        Some(meta),
    )
    .await;
    Ok(())
}

/// One page of the audit trail for the admin export, itself audited (`admin_audit_query`).
pub async fn audit_page(
    core: &Core,
    query: &PageQuery,
    meta: &RequestMeta,
) -> Result<Vec<AuditRow>, AuthError> {
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
    core.audit(event.details(details), Some(meta)).await;
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
pub async fn audit_verify(core: &Core, meta: &RequestMeta) -> Result<Report, AuthError> {
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
        Some(meta),
    )
    .await;
    Ok(report)
}

/// One signing key as the key status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SigningKeyStatus {
    /// Key id.
    pub kid: String,
    /// Whether it signs (the others only verify).
    pub active: bool,
    /// Creation time, when its JWK records one.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    /// Age in seconds, when the creation time is known.
    pub age_secs: Option<i64>,
}

/// One loaded key protecting stored data or the audit chain, by its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredKeyStatus {
    /// Version (pepper, audit key) or fingerprint prefix (Fernet).
    pub id: String,
    /// The first 16 hex digits of its fingerprint (HMAC of a fixed label: reveals nothing).
    pub fingerprint: String,
    /// When a start first recorded it in the database (none until one has).
    #[serde(with = "time::serde::rfc3339::option")]
    pub recorded_at: Option<OffsetDateTime>,
}

/// Key status: which keys are in use and how old, never key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    /// Signing keys, the active one first.
    pub signing_keys: Vec<SigningKeyStatus>,
    /// `kid` of the active signing key.
    pub active_kid: String,
    /// The realm's `tokens.keyRotation.every`, seconds.
    pub rotation_every_secs: u64,
    /// When the active key is due for rotation (its creation plus the interval).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_rotation: Option<OffsetDateTime>,
    /// Fernet keys loaded.
    pub fernet_keys: usize,
    /// The pepper version new password hashes use.
    pub pepper_current: String,
    /// Pepper versions loaded.
    pub peppers: Vec<StoredKeyStatus>,
    /// Audit-key versions loaded.
    pub audit_keys: Vec<StoredKeyStatus>,
}

/// The key status at `now` from the signing ring, the loaded keys' fingerprints and when the
/// database recorded each (pure).
pub fn key_status(
    ring: &[(String, Option<i64>)],
    loaded: &[KeyFingerprint],
    recorded: &[crate::store::KeyFingerprintRow],
    rotation_every: Duration,
    pepper_current: &str,
    now: OffsetDateTime,
) -> KeyStatus {
    let created_at = |t: Option<i64>| t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let signing_keys: Vec<SigningKeyStatus> = ring
        .iter()
        .enumerate()
        .map(|(i, (kid, created))| {
            let created = created_at(*created);
            SigningKeyStatus {
                kid: kid.clone(),
                active: i == 0,
                created,
                age_secs: created.map(|c| (now - c).whole_seconds()),
            }
        })
        .collect();
    let active = signing_keys.first();
    let mut by_kind: BTreeMap<KeyKind, Vec<StoredKeyStatus>> = BTreeMap::new();
    for key in loaded {
        let fingerprint: String = key
            .fingerprint
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let recorded_at = recorded
            .iter()
            .find(|r| {
                r.kind == key.kind.as_str()
                    && r.key_id == key.key_id
                    && r.fingerprint == key.fingerprint
            })
            .map(|r| r.recorded_at);
        by_kind.entry(key.kind).or_default().push(StoredKeyStatus {
            id: key.key_id.clone(),
            fingerprint,
            recorded_at,
        });
    }
    KeyStatus {
        active_kid: active.map(|k| k.kid.clone()).unwrap_or_default(),
        rotation_every_secs: rotation_every.as_secs(),
        next_rotation: active
            .and_then(|k| k.created)
            .and_then(|c| crate::clock::later(c, rotation_every)),
        signing_keys,
        fernet_keys: by_kind.get(&KeyKind::Fernet).map_or(0, Vec::len),
        pepper_current: pepper_current.to_owned(),
        peppers: by_kind.remove(&KeyKind::Pepper).unwrap_or_default(),
        audit_keys: by_kind.remove(&KeyKind::Audit).unwrap_or_default(),
    }
}

/// The realm's key status now (audited as `admin_key_status`).
pub async fn keys(core: &Core, meta: &RequestMeta) -> Result<KeyStatus, AuthError> {
    let recorded = core.db.key_fingerprints().await?;
    let status = key_status(
        &core.keys.key_ids(),
        &core.key_fingerprints,
        &recorded,
        core.spec().tokens.key_rotation.every.as_duration(),
        core.hasher.current_pepper_version(),
        core.clock.now(),
    );
    core.audit(
        Event::success("admin_key_status").by(Actor::Admin),
        Some(meta),
    )
    .await;
    Ok(status)
}

/// Applies the realm's RetentionPolicy once, as `retention run` does (dry when asked or when
/// the policy says so), and audits it (`admin_retention_run`, with the counts).
pub async fn retention_run(
    core: &Core,
    dry_run: bool,
    meta: &RequestMeta,
) -> Result<retention::Summary, AuthError> {
    let Some(policy) = core.settings.retention.as_ref() else {
        core.audit(
            Event::failure("admin_retention_run")
                .by(Actor::Admin)
                .details(Details::new().code("reason", "no_retention_policy")),
            Some(meta),
        )
        .await;
        return Err(AuthError::NoRetentionPolicy);
    };
    let db = core
        .db
        .postgres()
        .ok_or(AuthError::Unsupported("retention on an in-memory database"))?;
    let dry_run = dry_run || policy.dry_run;
    // One run at a time per realm, the CronJob's included: two would mail each warning twice.
    let lock =
        portcullis_privacy::retention::RetentionLock::try_acquire(db.pool(), &core.settings.name)
            .await
            .map_err(super::privacy::privacy_error)?;
    let Some(lock) = lock else {
        core.audit(
            Event::failure("admin_retention_run")
                .by(Actor::Admin)
                .details(Details::new().code("reason", "retention_running")),
            Some(meta),
        )
        .await;
        return Err(AuthError::RetentionRunning);
    };
    let kv = super::privacy::ServerKvEraser::of(core);
    let hook = super::privacy::ErasedNotice::of(core);
    let privacy = match &core.audit {
        portcullis_audit::AuditLog::Postgres(audit) => Some(retention::PrivacyRun {
            audit,
            kv: &kv,
            hook: Some(&hook),
            rules: super::privacy::retention_rules(&policy.rules),
        }),
        portcullis_audit::AuditLog::Memory(_) => None,
    };
    let summary = retention::run(
        db,
        &lock,
        privacy,
        core.outbox.mailer(),
        &policy.rules,
        core.clock.now(),
        dry_run,
    )
    .await;
    if let Err(error) = lock.release().await {
        tracing::warn!(%error, "retention lock not released; its connection is closed instead");
    }
    let summary = summary?;
    let mut details = Details::new().bool("dry_run", dry_run);
    for (rule, count) in &summary.counts {
        details = details.int(rule, *count);
    }
    core.audit(
        Event::success("admin_retention_run")
            .by(Actor::Admin)
            .details(details),
        Some(meta),
    )
    .await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::login;
    use crate::auth::testing::{OTHER_PASSWORD, PASSWORD, fixture, meta, registered, signed_in};

    #[tokio::test]
    async fn an_account_is_found_by_any_spelling_of_its_email() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        let found = find_user(&f.core, " ALICE@example.com", &meta())
            .await
            .unwrap();
        assert_eq!(found.map(|u| u.user_id), Some(id));
        assert_eq!(
            find_user(&f.core, "nobody@example.com", &meta())
                .await
                .unwrap(),
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
        unlock(&f.core, id, &meta()).await.unwrap();
        assert!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
                .await
                .is_ok()
        );
        assert!(matches!(
            unlock(&f.core, Uuid::nil(), &meta()).await,
            Err(AuthError::NotFound)
        ));
    }

    #[tokio::test]
    async fn disabling_ends_the_sessions_and_refuses_the_next_login() {
        let f = fixture(|_| {});
        let session = signed_in(&f, "alice@example.com").await;
        disable(&f.core, session.user_id, &meta()).await.unwrap();
        assert!(!f.session_lives(&session.session_id).await);
        assert!(matches!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None).await,
            Err(AuthError::AccountDisabled)
        ));
        assert!(matches!(
            disable(&f.core, Uuid::nil(), &meta()).await,
            Err(AuthError::NotFound)
        ));
    }

    #[tokio::test]
    async fn the_chain_check_sets_the_gauges_and_admin_actions_are_audited() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        unlock(&f.core, id, &meta()).await.unwrap();
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
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].subject_id, Some(id));
        assert_eq!(rows[0].actor_id.as_deref(), Some("admin"));
        assert_eq!(rows[0].ip.as_deref(), Some(meta().ip.as_str()));
    }

    #[test]
    fn the_lock_view_counts_the_current_window_and_locked_addresses_only() {
        use crate::store::kv::CounterState;
        assert_eq!(lock_view(None, 1_000, 60_000), LockView::default());
        let mut state = LockState {
            overall: CounterState {
                failures: 4,
                window_start: 10_000,
                locked_until: 0,
                lockouts: 0,
            },
            ..LockState::default()
        };
        state.sources.insert(
            "192.0.2.1".into(),
            CounterState {
                locked_until: 75_500,
                ..CounterState::default()
            },
        );
        state.sources.insert(
            "192.0.2.2".into(),
            CounterState {
                locked_until: 20_000,
                ..CounterState::default()
            },
        );
        let at = |state: &LockState, now| lock_view(Some(state), now, 60_000);
        assert_eq!(
            at(&state, 30_000),
            LockView {
                locked: false,
                locked_for_secs: 0,
                recent_failures: 4,
                locked_addresses: 1,
            }
        );
        assert_eq!(
            at(&state, 70_000).recent_failures,
            0,
            "the window has ended"
        );
        state.overall.locked_until = 90_001;
        let locked = at(&state, 30_000);
        assert!(locked.locked);
        assert_eq!(locked.locked_for_secs, 61, "rounded up");
    }

    #[test]
    fn the_key_status_names_keys_ages_and_the_next_rotation_without_material() {
        use crate::store::KeyFingerprintRow;
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = 86_400;
        let ring = vec![
            ("new".to_owned(), Some(1_800_000_000 - 3 * day)),
            ("old".to_owned(), Some(1_800_000_000 - 40 * day)),
            ("legacy".to_owned(), None),
        ];
        let key = |kind, id: &str, byte: u8| KeyFingerprint {
            kind,
            key_id: id.into(),
            fingerprint: [byte; 32],
        };
        let loaded = [
            key(KeyKind::Pepper, "v1", 0xab),
            key(KeyKind::Pepper, "v2", 0xcd),
            key(KeyKind::Fernet, "0011", 1),
            key(KeyKind::Fernet, "2233", 2),
            key(KeyKind::Audit, "v1", 3),
        ];
        let recorded = [KeyFingerprintRow {
            kind: "pepper".into(),
            key_id: "v1".into(),
            fingerprint: vec![0xab; 32],
            recorded_at: now - time::Duration::days(9),
        }];
        let status = key_status(
            &ring,
            &loaded,
            &recorded,
            Duration::from_secs(30 * 86_400),
            "v2",
            now,
        );
        assert_eq!(status.active_kid, "new");
        let ages: Vec<_> = status
            .signing_keys
            .iter()
            .map(|k| (k.active, k.age_secs))
            .collect();
        assert_eq!(
            ages,
            [
                (true, Some(3 * day)),
                (false, Some(40 * day)),
                (false, None)
            ]
        );
        assert_eq!(
            status.next_rotation,
            Some(now + time::Duration::days(27)),
            "created 3 days ago, rotated every 30"
        );
        assert_eq!(status.fernet_keys, 2);
        assert_eq!(status.pepper_current, "v2");
        let peppers: Vec<_> = status
            .peppers
            .iter()
            .map(|p| (p.id.as_str(), p.fingerprint.as_str()))
            .collect();
        assert_eq!(
            peppers,
            [("v1", "abababababababab"), ("v2", "cdcdcdcdcdcdcdcd")]
        );
        assert_eq!(
            status.peppers[0].recorded_at,
            Some(now - time::Duration::days(9))
        );
        assert_eq!(status.peppers[1].recorded_at, None, "not recorded yet");
        assert_eq!(status.audit_keys.len(), 1);
    }
}
