//! The second step of a login: after a right password, an account with TOTP gets a short-lived
//! `mfa_token` instead of a session, and only a TOTP code (accepted once per step through the
//! store's compare-and-set) or an unspent recovery code turns it into one.
//!
//! The pending login lives in the KV under the SHA-256 of its token (the token itself is never
//! stored) for [`MFA_LOGIN_TTL`]; [`MAX_ATTEMPTS`] wrong codes end it, and so does a change of
//! credentials meanwhile (its credential epoch is checked again when the session starts). On
//! top of that, the second factor has a per-account rate limit (route class `Mfa`) and wrong
//! codes count into a lockout of their own, per account and not per address: whoever got this
//! far knows the password, so nothing the password path does (a reset, a re-check) lifts it;
//! only a right second factor or an admin unlock does.
//! Any store failure answers an error, never a session.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_audit::Details;
use portcullis_crds::rate_limit::Route;
use portcullis_mfa::{EnrolmentId, MfaStoreError, RecoveryCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AuthError;
use super::core::Core;
use super::limits::Subject;
use super::login::{LoginOutcome, PASSWORD_AMR, conclude};
use super::mfa::TotpEnrolment;
use super::principal::RequestMeta;
use crate::audit::Event;
use crate::metrics::{MfaMethod, MfaResult};
use crate::notify::Notice;
use crate::store::UserRecord;
use crate::store::kv::MfaFailure;

/// How long a pending login waits for its second factor.
pub const MFA_LOGIN_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Wrong codes a pending login survives; the last one ends it.
pub const MAX_ATTEMPTS: u32 = 5;

/// The RFC 8176 method of a one-time password (TOTP or a recovery code).
pub const OTP_AMR: &str = "otp";

/// What the pending login waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A code of the account's confirmed TOTP, or a recovery code.
    Verify,
    /// The realm requires TOTP and the account has none: its enrolment.
    Enrol,
}

/// How a pending login's first factor was given: it goes into the session's `amr` beside
/// `otp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstFactor {
    /// A password (`pwd`).
    #[default]
    Password,
    /// A social provider's assertion (`fed`).
    Federated,
}

impl FirstFactor {
    /// Its RFC 8176 `amr` value.
    pub fn amr(self) -> &'static str {
        match self {
            FirstFactor::Password => PASSWORD_AMR,
            FirstFactor::Federated => super::social::FEDERATED_AMR,
        }
    }
}

/// A login waiting for its second factor, as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PendingLogin {
    pub(super) user_id: Uuid,
    pub(super) credential_epoch: i64,
    pub(super) created_at_ms: u64,
    pub(super) stage: Stage,
    /// The enrolment shown through this login ([`Stage::Enrol`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) enrolment: Option<i64>,
    /// The first factor (records from before it was kept were all passwords).
    #[serde(default)]
    pub(super) first: FirstFactor,
}

/// The second factor presented (its `Debug` names the kind, never the code).
pub enum SecondFactor {
    /// A TOTP code.
    Code(String),
    /// A recovery code.
    RecoveryCode(String),
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecondFactor::Code(_) => "Code",
            SecondFactor::RecoveryCode(_) => "RecoveryCode",
        })
    }
}

/// The key a pending login is stored under: the token's SHA-256.
pub(super) fn digest(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// The stage a right password for `user` must pass before a session, if any: TOTP when the
/// account has it confirmed, enrolment when the realm requires TOTP and it has none.
///
/// # Errors
/// [`AuthError::Unavailable`] when the store cannot tell (fail closed).
pub(super) async fn required(core: &Core, user: &UserRecord) -> Result<Option<Stage>, AuthError> {
    let totp = &core.spec().mfa.totp;
    let Some(store) = core.mfa.as_ref() else {
        // Without a store (the in-memory database) no account can have TOTP; a realm that
        // requires it issues nothing rather than letting everyone through.
        return if totp.required {
            Err(AuthError::Unsupported("MFA on the in-memory database"))
        } else {
            Ok(None)
        };
    };
    let status = store.status(user.id).await.map_err(|e| fail_closed(&e))?;
    Ok(if status.enrolled {
        Some(Stage::Verify)
    } else if totp.required {
        // Even with `enabled` off (the CRD refuses that pair): enrolment then refuses too, and
        // nothing is issued.
        Some(Stage::Enrol)
    } else {
        None
    })
}

/// Whether a sign-in with factors `amr` lacks the second factor the realm requires (it was
/// made before `mfa.totp.required` was turned on): it issues nothing more, neither by a
/// refresh nor by an authorization, and its user signs in again (and enrols).
pub(crate) fn lacks_required_second_factor<S: AsRef<str>>(core: &Core, amr: &[S]) -> bool {
    core.spec().mfa.totp.required && !amr.iter().any(|m| m.as_ref() == OTP_AMR)
}

/// Starts a pending login for `user` at `stage`; returns its token.
pub(super) async fn begin(
    core: &Core,
    user: &UserRecord,
    stage: Stage,
    first: FirstFactor,
) -> Result<String, AuthError> {
    let token = core.random.token(32);
    let pending = PendingLogin {
        user_id: user.id,
        credential_epoch: user.credential_epoch,
        created_at_ms: core.clock.now_ms(),
        stage,
        enrolment: None,
        first,
    };
    let json = serde_json::to_string(&pending).map_err(|e| AuthError::Internal(e.to_string()))?;
    core.kv
        .put_mfa_login(&digest(&token), &json, MFA_LOGIN_TTL)
        .await?;
    Ok(token)
}

/// A store failure while the second factor is checked: logged, and answered 503.
fn fail_closed(error: &MfaStoreError) -> AuthError {
    tracing::error!(
        reason = error.reason(),
        "MFA store failed; no session issued"
    );
    AuthError::Unavailable("database")
}

/// The pending login of `token` at `stage`, with its account (active, and under the same
/// credentials as at password time: otherwise the pending login ends here).
pub(super) async fn pending(
    core: &Core,
    token: &str,
    stage: Stage,
) -> Result<(PendingLogin, UserRecord), AuthError> {
    let key = digest(token);
    let pending: PendingLogin = core
        .kv
        .mfa_login(&key)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok())
        .filter(|p: &PendingLogin| p.stage == stage)
        .ok_or(AuthError::InvalidTotp)?;
    let user = core.db.user_by_id(pending.user_id).await?;
    match user {
        Some(user) if !user.disabled && user.credential_epoch == pending.credential_epoch => {
            Ok((pending, user))
        }
        _ => {
            // A password reset or change, or a disabled account, since the password step.
            core.kv.take_mfa_login(&key).await?;
            Err(AuthError::InvalidTotp)
        }
    }
}

/// Completes the pending login of `mfa_token` with `factor`: the session and tokens of a
/// login with amr `pwd otp`, or `invalid_totp` (wrong, replayed or spent code, unknown or
/// ended token).
pub async fn complete(
    core: &Core,
    mfa_token: &str,
    factor: &SecondFactor,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<LoginOutcome, AuthError> {
    let store = core
        .mfa
        .as_ref()
        .ok_or(AuthError::Unsupported("MFA on the in-memory database"))?;
    let (pending_login, user) = pending(core, mfa_token, Stage::Verify).await?;
    // Per account, whoever holds how many tokens: the bucket of a second factor.
    core.limits
        .check_subject(Route::Mfa, Subject::User(user.id))
        .await?;
    begin_mfa_attempt(core, &user).await?;
    let now = core.clock.now();
    let checked = match factor {
        SecondFactor::Code(code) => store.verify(user.id, code.trim(), now).await.map(drop),
        SecondFactor::RecoveryCode(code) => store.spend_recovery_code(user.id, code, now).await,
    };
    count_attempt(core, factor_method(factor), &checked);
    match checked {
        Ok(()) => {}
        Err(
            MfaStoreError::InvalidCode
            | MfaStoreError::Replayed
            | MfaStoreError::InvalidRecoveryCode
            | MfaStoreError::NotEnrolled,
        ) => {
            return Err(wrong_code(core, mfa_token, &user, meta).await);
        }
        Err(other) => return Err(fail_closed(&other)),
    }
    core.kv.clear_mfa_attempts(user.id).await?;
    // Single use: of two completions at once (two right codes), one gets the session.
    if core.kv.take_mfa_login(&digest(mfa_token)).await?.is_none() {
        return Err(AuthError::InvalidTotp);
    }
    let method = match factor {
        SecondFactor::Code(_) => "totp",
        SecondFactor::RecoveryCode(_) => "recovery",
    };
    core.audit(
        Event::success("mfa_succeeded")
            .by_user(user.id)
            .details(Details::new().code("method", method)),
        Some(meta),
    )
    .await;
    if matches!(factor, SecondFactor::RecoveryCode(_)) {
        recovery_code_used(core, &user, meta).await?;
    }
    conclude(
        core,
        &user,
        meta,
        previous_session,
        &[pending_login.first.amr(), OTP_AMR],
    )
    .await
}

/// Shows the secret of a new TOTP enrolment to the pending login of `mfa_token` (a realm
/// that requires TOTP, an account without it); a second call replaces the first enrolment.
pub async fn begin_enrolment(core: &Core, mfa_token: &str) -> Result<TotpEnrolment, AuthError> {
    let store = super::mfa::store(core)?;
    let (mut pending, user) = pending(core, mfa_token, Stage::Enrol).await?;
    core.limits
        .check_subject(Route::Mfa, Subject::User(user.id))
        .await?;
    let (shown, EnrolmentId(id)) = super::mfa::new_enrolment(core, store, &user).await?;
    pending.enrolment = Some(id);
    let json = serde_json::to_string(&pending).map_err(|e| AuthError::Internal(e.to_string()))?;
    if !core.kv.replace_mfa_login(&digest(mfa_token), &json).await? {
        return Err(AuthError::InvalidTotp);
    }
    Ok(shown)
}

/// Confirms the enrolment shown to the pending login of `mfa_token` with a first `code` and
/// completes the login (amr `pwd otp`); returns it with the new recovery codes (shown once).
/// Every other session of the account ends, as after an enrolment from the account page.
pub async fn confirm_enrolment(
    core: &Core,
    mfa_token: &str,
    code: &str,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<(LoginOutcome, Vec<RecoveryCode>), AuthError> {
    let store = super::mfa::store(core)?;
    let (pending, user) = pending(core, mfa_token, Stage::Enrol).await?;
    core.limits
        .check_subject(Route::Mfa, Subject::User(user.id))
        .await?;
    begin_mfa_attempt(core, &user).await?;
    let enrolment = pending.enrolment.ok_or(AuthError::NoPendingEnrolment)?;
    let ttl = time::Duration::try_from(super::mfa::ENROLMENT_TTL)
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    let confirmed = store
        .confirm(
            user.id,
            EnrolmentId(enrolment),
            code.trim(),
            core.clock.now(),
            ttl,
        )
        .await;
    count_attempt(core, MfaMethod::Totp, &confirmed);
    match confirmed {
        Ok(_) => {}
        Err(MfaStoreError::InvalidCode | MfaStoreError::Replayed) => {
            return Err(wrong_code(core, mfa_token, &user, meta).await);
        }
        Err(MfaStoreError::NoPendingEnrolment | MfaStoreError::EnrolmentExpired) => {
            return Err(AuthError::NoPendingEnrolment);
        }
        Err(other) => return Err(fail_closed(&other)),
    }
    // TOTP is on from here: every session and refresh family from before it ends first,
    // before anything else can fail and leave them alive.
    let epoch = core
        .db
        .raise_credential_epoch(user.id, core.clock.now())
        .await?;
    core.end_sessions(user.id, None).await?;
    core.kv.clear_mfa_attempts(user.id).await?;
    if core.kv.take_mfa_login(&digest(mfa_token)).await?.is_none() {
        return Err(AuthError::InvalidTotp);
    }
    let codes = super::mfa::enrolled(core, store, &user, meta).await?;
    let user = UserRecord {
        credential_epoch: epoch,
        ..user
    };
    let outcome = conclude(
        core,
        &user,
        meta,
        previous_session,
        &[pending.first.amr(), OTP_AMR],
    )
    .await?;
    Ok((outcome, codes))
}

/// The metric's method of `factor`.
fn factor_method(factor: &SecondFactor) -> MfaMethod {
    match factor {
        SecondFactor::Code(_) => MfaMethod::Totp,
        SecondFactor::RecoveryCode(_) => MfaMethod::Recovery,
    }
}

/// Counts a second-factor attempt in `portcullis_mfa_attempts_total`; a store failure is no
/// attempt (it is counted as a store error).
pub(super) fn count_attempt<T>(core: &Core, method: MfaMethod, checked: &Result<T, MfaStoreError>) {
    let result = match checked {
        Ok(_) => MfaResult::Success,
        Err(MfaStoreError::Replayed) => MfaResult::Replay,
        Err(
            MfaStoreError::InvalidCode
            | MfaStoreError::InvalidRecoveryCode
            | MfaStoreError::NotEnrolled,
        ) => MfaResult::Failure,
        Err(_) => return,
    };
    core.metrics.mfa_attempt(method, result);
}

/// A recovery code was spent: audited, and the owner told how many remain.
async fn recovery_code_used(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let remaining = match core.mfa.as_ref() {
        Some(store) => {
            store
                .status(user.id)
                .await
                .map_err(|e| fail_closed(&e))?
                .recovery_codes_remaining
        }
        None => 0,
    };
    core.audit(
        Event::success("recovery_code_used")
            .by_user(user.id)
            .details(Details::new().int("remaining", i64::from(remaining))),
        Some(meta),
    )
    .await;
    core.tell(user, Notice::RecoveryCodeUsed { remaining })
        .await;
    Ok(())
}

/// Begins a second-factor attempt of `user` on the account's own lockout counter: refused
/// while it is locked (`account_locked`, as the password lockout answers), counted until a
/// right factor clears it.
pub(super) async fn begin_mfa_attempt(core: &Core, user: &UserRecord) -> Result<(), AuthError> {
    let limits = core.lockout_rules().limits();
    match core
        .kv
        .begin_mfa_attempt(user.id, core.clock.now_ms(), &limits)
        .await?
    {
        crate::store::kv::Attempt::Locked { retry_after_ms } => Err(core.locked(retry_after_ms)),
        crate::store::kv::Attempt::Allowed { .. } => Ok(()),
    }
}

/// A wrong second factor of `user` on the account's lockout counter: a lock it starts is
/// counted, audited and (per the realm) told to the owner. Any store error is returned.
pub(super) async fn fail_mfa_attempt(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let limits = core.lockout_rules().limits();
    let lock = core
        .kv
        .fail_mfa_attempt(user.id, core.clock.now_ms(), &limits)
        .await?;
    if let Some(lock_ms) = lock {
        core.metrics.lockouts.inc();
        core.audit(
            Event::failure("lockout")
                .by_user(user.id)
                .details(Details::new().int(
                    "seconds",
                    i64::try_from(lock_ms / 1_000).unwrap_or(i64::MAX),
                )),
            Some(meta),
        )
        .await;
        if core.spec().lockout.notify_user {
            core.tell(
                user,
                Notice::AccountLocked {
                    minutes: lock_ms.div_ceil(60_000),
                },
            )
            .await;
        }
    }
    Ok(())
}

/// A wrong second factor: counted against the pending login (the last allowed one ends it)
/// and into the account's second-factor lockout, audited; the answer is `invalid_totp`.
async fn wrong_code(
    core: &Core,
    mfa_token: &str,
    user: &UserRecord,
    meta: &RequestMeta,
) -> AuthError {
    let ended = core
        .kv
        .fail_mfa_login(&digest(mfa_token), MAX_ATTEMPTS)
        .await;
    core.audit(
        Event::failure("mfa_failed")
            .by_user(user.id)
            .details(Details::new().code(
                "outcome",
                if matches!(ended, Ok(MfaFailure::Ended)) {
                    "ended"
                } else {
                    "counted"
                },
            )),
        Some(meta),
    )
    .await;
    if let Err(error) = fail_mfa_attempt(core, user, meta).await {
        return error;
    }
    match ended {
        Err(error) => error.into(),
        Ok(_) => AuthError::InvalidTotp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presented_factor_never_prints_its_code() {
        let shown = format!(
            "{:?} {:?}",
            SecondFactor::Code("123456".into()),
            SecondFactor::RecoveryCode("abcd-efgh".into())
        );
        assert_eq!(shown, "Code RecoveryCode");
    }

    #[test]
    fn an_enrolment_never_prints_its_secret() {
        let enrolment = super::super::mfa::TotpEnrolment {
            secret: "JBSWY3DPEHPK3PXP".into(),
            otpauth_uri: "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP".into(),
        };
        assert!(!format!("{enrolment:?}").contains("JBSWY3DP"));
    }

    #[test]
    fn the_first_factor_goes_into_the_amr() {
        assert_eq!(FirstFactor::Password.amr(), "pwd");
        assert_eq!(FirstFactor::Federated.amr(), "fed");
        // Pending logins stored before the field existed were password logins.
        let old: PendingLogin = serde_json::from_str(
            r#"{"user_id":"7d3c1e2a-5b4f-4c6d-8e9f-0a1b2c3d4e5f","credential_epoch":0,"created_at_ms":1,"stage":"verify"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(old.first, FirstFactor::Password);
    }
}
