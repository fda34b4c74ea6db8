//! The caller's second factor: TOTP enrolment (begun after a password re-check, confirmed
//! with a first code, which issues the recovery codes) and its status.
//!
//! The enrolment number the store hands out stays server-side, with the session that was
//! shown the secret, for [`ENROLMENT_TTL`]: only the enrolment this session saw can be
//! confirmed, and only by this session.

use portcullis_mfa::{
    Algorithm, EnrolmentId, MfaStoreError, PgMfaStore, RECOVERY_CODE_RANDOM_BYTES, RecoveryCode,
    SECRET_LEN, TotpParams, TotpSecret, generate_recovery_codes, otpauth_uri,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AuthError;
use super::account::{keep_session_under, recheck_password};
use super::core::Core;
use super::principal::{Principal, RequestMeta};
use crate::audit::Event;
use crate::notify::Notice;
use crate::store::kv::PendingKind;

/// How long a begun enrolment waits for its first code.
pub const ENROLMENT_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What the caller is shown to set up the authenticator (its `Debug` shows neither part:
/// both carry the secret).
pub struct TotpEnrolment {
    /// The secret in base32, for typing in.
    pub secret: String,
    /// The `otpauth://` URI (the QR code's content).
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment")
    }
}

/// The caller's second factor, as `/api/v1/me` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaView {
    /// A confirmed TOTP enrolment exists.
    pub totp: bool,
    /// Recovery codes not yet used.
    pub recovery_codes_left: u32,
}

/// The enrolment a session was shown, kept under the session id.
#[derive(Serialize, Deserialize)]
struct Pending {
    user_id: Uuid,
    enrolment: i64,
}

pub(super) fn store(core: &Core) -> Result<&PgMfaStore, AuthError> {
    core.mfa
        .as_ref()
        .ok_or(AuthError::Unsupported("MFA on the in-memory database"))
}

pub(super) fn store_error(error: MfaStoreError) -> AuthError {
    match error {
        MfaStoreError::InvalidCode | MfaStoreError::Replayed => AuthError::InvalidTotp,
        MfaStoreError::AlreadyEnrolled => AuthError::MfaAlreadyEnrolled,
        MfaStoreError::NotEnrolled => AuthError::MfaNotEnrolled,
        MfaStoreError::NoPendingEnrolment | MfaStoreError::EnrolmentExpired => {
            AuthError::NoPendingEnrolment
        }
        MfaStoreError::Database(_) => AuthError::Unavailable("database"),
        other => AuthError::Internal(format!("mfa store: {}", other.reason())),
    }
}

/// The realm's TOTP parameters (SHA-1, which every authenticator app supports).
fn params(core: &Core) -> Result<TotpParams, AuthError> {
    let totp = &core.spec().mfa.totp;
    TotpParams::new(Algorithm::Sha1, totp.digits, totp.period)
        .map_err(|e| AuthError::Internal(format!("realm TOTP parameters: {e}")))
}

/// The caller's second factor.
pub async fn status(core: &Core, principal: &Principal) -> Result<MfaView, AuthError> {
    let Some(store) = core.mfa.as_ref() else {
        return Ok(MfaView {
            totp: false,
            recovery_codes_left: 0,
        });
    };
    let status = store.status(principal.user_id).await.map_err(store_error)?;
    Ok(MfaView {
        totp: status.enrolled,
        recovery_codes_left: status.recovery_codes_remaining,
    })
}

/// Begins a TOTP enrolment after checking the caller's password; replaces a pending one.
pub async fn begin_totp(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
    password: &str,
) -> Result<TotpEnrolment, AuthError> {
    let store = store(core)?;
    if !core.spec().mfa.totp.enabled {
        return Err(AuthError::Unsupported("TOTP in this realm"));
    }
    let user = core.active_user(principal).await?;
    recheck_password(core, &user, meta, password).await?;
    let (shown, EnrolmentId(enrolment)) = new_enrolment(core, store, &user).await?;
    let pending = serde_json::to_string(&Pending {
        user_id: user.id,
        enrolment,
    })
    .map_err(|e| AuthError::Internal(e.to_string()))?;
    core.kv
        .put_pending(
            PendingKind::MfaEnrolment,
            &principal.session_id,
            &pending,
            ENROLMENT_TTL,
        )
        .await?;
    Ok(shown)
}

/// A new pending enrolment of `user` (replacing one that waits): what to show, and its number.
pub(super) async fn new_enrolment(
    core: &Core,
    store: &PgMfaStore,
    user: &crate::store::UserRecord,
) -> Result<(TotpEnrolment, EnrolmentId), AuthError> {
    if !core.spec().mfa.totp.enabled {
        return Err(AuthError::Unsupported("TOTP in this realm"));
    }
    let params = params(core)?;
    let mut random = [0u8; SECRET_LEN];
    random.copy_from_slice(&core.random.bytes(SECRET_LEN));
    let secret = TotpSecret::generate(random);
    let issuer = core
        .spec()
        .mfa
        .totp
        .issuer_name
        .clone()
        .unwrap_or_else(|| core.settings.name.clone());
    let uri = otpauth_uri(&params, &secret, &issuer, &user.email)
        .map_err(|e| AuthError::Internal(format!("otpauth URI: {e}")))?;
    let id = store
        .begin_enrolment(user.id, &secret, params, core.clock.now())
        .await
        .map_err(store_error)?;
    Ok((
        TotpEnrolment {
            secret: secret.to_base32().to_string(),
            otpauth_uri: uri,
        },
        id,
    ))
}

/// Confirms the enrolment this session was shown with a first `code`, and issues the realm's
/// number of recovery codes (shown once).
pub async fn confirm_totp(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
    code: &str,
) -> Result<Vec<RecoveryCode>, AuthError> {
    let store = store(core)?;
    let user = core.active_user(principal).await?;
    let pending: Pending = core
        .kv
        .pending(PendingKind::MfaEnrolment, &principal.session_id)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok())
        .filter(|p: &Pending| p.user_id == user.id)
        .ok_or(AuthError::NoPendingEnrolment)?;
    let now = core.clock.now();
    let ttl =
        time::Duration::try_from(ENROLMENT_TTL).map_err(|e| AuthError::Internal(e.to_string()))?;
    let confirmed = store
        .confirm(
            user.id,
            EnrolmentId(pending.enrolment),
            code.trim(),
            now,
            ttl,
        )
        .await;
    super::mfa_login::count_attempt(core, crate::metrics::MfaMethod::Totp, &confirmed);
    confirmed.map_err(store_error)?;
    // TOTP is on from here. First, as a password change does: whoever held another session
    // or a refresh token from before the second factor existed must now pass it. This
    // session (which just proved the code) moves to the new epoch with its families. Done
    // before anything else can fail: an error below must not leave the old sessions alive.
    let epoch = core.db.raise_credential_epoch(user.id, now).await?;
    keep_session_under(core, principal, epoch).await?;
    core.end_sessions(user.id, Some(&principal.session_id))
        .await?;
    core.kv
        .take_pending(PendingKind::MfaEnrolment, &principal.session_id)
        .await?;
    // Should this fail, the owner regenerates the codes with a fresh TOTP code.
    enrolled(core, store, &user, meta).await
}

/// What follows a confirmed enrolment: the realm's number of recovery codes (returned to be
/// shown once), the audit record and the owner's notice.
pub(super) async fn enrolled(
    core: &Core,
    store: &PgMfaStore,
    user: &crate::store::UserRecord,
    meta: &RequestMeta,
) -> Result<Vec<RecoveryCode>, AuthError> {
    let now = core.clock.now();
    let count = core.spec().mfa.recovery_codes;
    let codes = new_recovery_codes(core, count)?;
    store
        .replace_recovery_codes(user.id, &codes, now)
        .await
        .map_err(store_error)?;
    core.audit(Event::success("mfa_enrolled").by_user(user.id), Some(meta))
        .await;
    core.tell(
        user,
        Notice::MfaAdded {
            method: portcullis_webhook::MfaMethod::Totp,
        },
    )
    .await;
    Ok(codes)
}

/// `count` fresh recovery codes; a set with a duplicate (about 2^-44) is drawn again.
pub(super) fn new_recovery_codes(core: &Core, count: u32) -> Result<Vec<RecoveryCode>, AuthError> {
    let len = usize::try_from(count).unwrap_or(0) * RECOVERY_CODE_RANDOM_BYTES;
    let mut last = None;
    for _ in 0..3 {
        match generate_recovery_codes(count, &core.random.bytes(len)) {
            Ok(codes) => return Ok(codes),
            Err(e) => last = Some(e),
        }
    }
    Err(AuthError::Internal(format!(
        "recovery codes: {}",
        last.map_or_else(String::new, |e| e.to_string())
    )))
}

/// Checks a fresh second factor of `user`: a recovery code (spent) when `code` has the
/// recovery-code shape, else a TOTP code (its step accepted once, through the store's
/// compare-and-set: never a "signed in with otp" marker). Limited per account like the login
/// step, and on the same second-factor lockout: refused while it is locked, a wrong one
/// counted (and audited), a right one clears it.
pub(super) async fn fresh_second_factor(
    core: &Core,
    store: &PgMfaStore,
    user: &crate::store::UserRecord,
    meta: &RequestMeta,
    code: &str,
) -> Result<(), AuthError> {
    core.limits
        .check_subject(
            portcullis_crds::rate_limit::Route::Mfa,
            super::limits::Subject::User(user.id),
        )
        .await?;
    super::mfa_login::begin_mfa_attempt(core, user).await?;
    let now = core.clock.now();
    let code = code.trim();
    let recovery = RecoveryCode::parse(code).is_some();
    let checked = if recovery {
        store.spend_recovery_code(user.id, code, now).await
    } else {
        store.verify(user.id, code, now).await.map(drop)
    };
    let method = if recovery {
        crate::metrics::MfaMethod::Recovery
    } else {
        crate::metrics::MfaMethod::Totp
    };
    super::mfa_login::count_attempt(core, method, &checked);
    match checked {
        Ok(()) => {
            core.kv.clear_mfa_attempts(user.id).await?;
            if recovery {
                let remaining = store
                    .status(user.id)
                    .await
                    .map_err(store_error)?
                    .recovery_codes_remaining;
                core.audit(
                    Event::success("recovery_code_used")
                        .by_user(user.id)
                        .details(
                            portcullis_audit::Details::new().int("remaining", i64::from(remaining)),
                        ),
                    Some(meta),
                )
                .await;
                core.tell(user, Notice::RecoveryCodeUsed { remaining })
                    .await;
            }
            Ok(())
        }
        Err(
            MfaStoreError::InvalidCode
            | MfaStoreError::Replayed
            | MfaStoreError::InvalidRecoveryCode,
        ) => {
            core.audit(Event::failure("mfa_failed").by_user(user.id), Some(meta))
                .await;
            super::mfa_login::fail_mfa_attempt(core, user, meta).await?;
            Err(AuthError::InvalidTotp)
        }
        Err(other) => Err(store_error(other)),
    }
}

/// Removes the caller's TOTP and recovery codes after checking the password and a fresh
/// second factor (a TOTP code or a recovery code); audited, and the owner told.
pub async fn remove_totp(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
    password: &str,
    code: &str,
) -> Result<(), AuthError> {
    let store = store(core)?;
    let user = core.active_user(principal).await?;
    recheck_password(core, &user, meta, password).await?;
    if !store.status(user.id).await.map_err(store_error)?.enrolled {
        return Err(AuthError::MfaNotEnrolled);
    }
    fresh_second_factor(core, store, &user, meta, code).await?;
    store.remove(user.id).await.map_err(store_error)?;
    core.audit(Event::success("mfa_removed").by_user(user.id), Some(meta))
        .await;
    core.tell(
        &user,
        Notice::MfaRemoved {
            method: portcullis_webhook::MfaMethod::Totp,
        },
    )
    .await;
    Ok(())
}

/// Replaces the caller's recovery codes (the old set is void) after checking the password
/// and a fresh second factor, which is stricter than the contract's `{password}`: a stolen
/// session and password alone must not mint codes that bypass the authenticator. Every other
/// session ends; audited, and the owner told. Returns the new codes, shown once.
pub async fn regenerate_recovery_codes(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
    password: &str,
    code: &str,
) -> Result<Vec<RecoveryCode>, AuthError> {
    let store = store(core)?;
    let user = core.active_user(principal).await?;
    recheck_password(core, &user, meta, password).await?;
    if !store.status(user.id).await.map_err(store_error)?.enrolled {
        return Err(AuthError::MfaNotEnrolled);
    }
    fresh_second_factor(core, store, &user, meta, code).await?;
    let codes = new_recovery_codes(core, core.spec().mfa.recovery_codes)?;
    store
        .replace_recovery_codes(user.id, &codes, core.clock.now())
        .await
        .map_err(store_error)?;
    core.audit(
        Event::success("recovery_codes_regenerated").by_user(user.id),
        Some(meta),
    )
    .await;
    core.tell(
        &user,
        Notice::MfaAdded {
            method: portcullis_webhook::MfaMethod::RecoveryCodes,
        },
    )
    .await;
    core.end_sessions(user.id, Some(&principal.session_id))
        .await?;
    Ok(codes)
}
