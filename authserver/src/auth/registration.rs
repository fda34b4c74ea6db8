//! Registration and email verification.

use crate::audit::Event;
use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_crds::rate_limit::Route;

use super::core::Core;
use super::identifier::canonical_email;
use super::limits::Subject;
use super::principal::RequestMeta;
use super::{AuthError, Violation, new_password, password, tokens};
use crate::mail::Mail;
use crate::metrics::{BreachContext, RegistrationOutcome};
use crate::store::{NewUser, StoreError, TokenPurpose};

/// Email verification tokens live 24 hours.
const VERIFY_TTL: Duration = Duration::from_secs(24 * 3_600);

/// A registration request.
#[derive(Clone, Default)]
pub struct Registration {
    /// Email.
    pub email: String,
    /// Password as typed.
    pub password: String,
    /// Optional display name.
    pub display_name: Option<String>,
    /// Consents by purpose.
    pub consents: BTreeMap<String, bool>,
    /// The privacy policy version the user saw.
    pub policy_version: Option<String>,
    /// The pending authorization request the hosted page registered in (its `req`), carried
    /// on the verification link.
    pub pending_request: Option<String>,
    /// Where the request came from (recorded on the audit rows).
    pub meta: RequestMeta,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The outcome of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    /// Verification mail sent (or a notice to the owner of a taken address).
    VerificationPending,
    /// Account created (verification off).
    Created(uuid::Uuid),
}

/// The violations of everything but the password: email, display name, policy version and
/// consents. Returns the canonical email when it is valid.
fn profile_violations(
    core: &Core,
    input: &Registration,
    display_name: Option<&str>,
) -> (Option<String>, Vec<Violation>) {
    let mut violations = Vec::new();
    let email = canonical_email("email", &input.email)
        .map_err(|v| violations.push(v))
        .ok();
    if display_name.is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control)) {
        violations.push(Violation::new(
            "display_name",
            "invalid_display_name",
            "at most 100 characters, no control characters",
        ));
    }
    let privacy = &core.spec().privacy;
    match input.policy_version.as_deref() {
        Some(v) if v == privacy.policy_version => {}
        Some(_) => violations.push(Violation::new(
            "policy_version",
            "policy_version_mismatch",
            format!(
                "the current privacy policy is version {}",
                privacy.policy_version
            ),
        )),
        // A realm without a policy (no URL, no purposes) asks for no acceptance.
        None if super::privacy::policy(core).is_none() => {}
        None => violations.push(Violation::new(
            "policy_version",
            "required",
            "accept the privacy policy version",
        )),
    }
    for purpose in &privacy.purposes {
        if purpose.required && input.consents.get(&purpose.name) != Some(&true) {
            violations.push(Violation::new(
                "consents",
                "consent_required",
                format!("consent to {:?} is required", purpose.name),
            ));
        }
    }
    for name in input.consents.keys() {
        if !privacy.purposes.iter().any(|p| &p.name == name) {
            violations.push(Violation::new(
                "consents",
                "unknown_purpose",
                format!("no purpose {name:?}"),
            ));
        }
    }
    (email, violations)
}

/// The privacy policy a registration accepts: its version, URL and purposes.
pub fn privacy_policy(core: &Core) -> &portcullis_crds::realm::PrivacySpec {
    &core.spec().privacy
}

/// Registers an account. With email verification on, the answer is the same whether or not
/// the address is taken (its owner gets a notice instead), and both paths hash once.
pub async fn register(core: &Core, input: Registration) -> Result<Registered, AuthError> {
    let display_name = input
        .display_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let (email, mut violations) = profile_violations(core, &input, display_name);
    // Before zxcvbn, the breach API and hashing: a flood of registrations costs none of them.
    if let Some(email) = &email {
        core.limits
            .check_subject(Route::Register, Subject::Identifier(email, None))
            .await?;
    }
    let password = password::normalize(&input.password);
    let email_for_check = email.clone().unwrap_or_default();
    if violations.is_empty() {
        violations = new_password::violations(
            core,
            BreachContext::Register,
            "password",
            &password,
            &email_for_check,
            display_name,
        )
        .await;
    } else {
        // Report the local password rules too, without asking the breach API.
        let policy = &core.spec().password_policy;
        violations.extend(password::check(
            "password",
            &password,
            policy,
            &[&email_for_check],
        ));
    }
    let Some(email) = email.filter(|_| violations.is_empty()) else {
        core.metrics.registered(RegistrationOutcome::Invalid);
        return Err(AuthError::Validation(violations));
    };

    let hash = core.hash_timed(&password).await?;
    let now = core.clock.now();
    let verification = core.spec().email_verification.required;
    let id = core.random.uuid();
    let inserted = core
        .db
        .insert_user(&NewUser {
            id,
            email: input.email.trim(),
            email_canonical: &email,
            display_name,
            password_hash: Some(&hash.hash),
            pepper_version: &hash.pepper_version,
            email_verified: !verification,
            now,
        })
        .await;
    match inserted {
        Ok(()) => {}
        Err(StoreError::Duplicate(_)) if verification => {
            core.metrics.registered(RegistrationOutcome::Duplicate);
            core.notify(&email, Mail::AlreadyRegistered).await;
            core.audit(Event::failure("register_duplicate"), Some(&input.meta))
                .await;
            return Ok(Registered::VerificationPending);
        }
        Err(StoreError::Duplicate(_)) => {
            core.metrics.registered(RegistrationOutcome::Duplicate);
            return Err(AuthError::EmailTaken);
        }
        Err(e) => return Err(e.into()),
    }
    if core.db.postgres().is_some() {
        // The accepted version, each choice and its history (source `registration`). No
        // account stays without them: one whose acceptance failed is removed again, and the
        // person can register anew.
        let accepted = super::privacy::accept_at_registration(
            core,
            id,
            input.policy_version.as_deref(),
            &input.consents,
            &input.meta,
        )
        .await;
        if let Err(error) = accepted {
            undo_account(core, id, &input.meta).await;
            return Err(error);
        }
    } else {
        let consents: Vec<(String, bool)> = input.consents.into_iter().collect();
        core.db
            .upsert_consents(id, &consents, &core.spec().privacy.policy_version, now)
            .await?;
    }
    core.audit(Event::success("register").by_user(id), Some(&input.meta))
        .await;
    if !verification {
        core.metrics.registered(RegistrationOutcome::Created);
        return Ok(Registered::Created(id));
    }
    let token = core.random.token(32);
    core.db
        .insert_one_time_token(
            &tokens::hash_opaque(&token),
            id,
            TokenPurpose::VerifyEmail,
            now,
            core.later(now, VERIFY_TTL)?,
        )
        .await?;
    core.notify(
        &email,
        Mail::VerifyEmail {
            token,
            req: input.pending_request,
        },
    )
    .await;
    core.metrics
        .registered(RegistrationOutcome::VerificationPending);
    Ok(Registered::VerificationPending)
}

/// Removes an account a registration (with a password or by social sign-in) has just made
/// and could not finish: its link or its policy acceptance failed. Best effort: a failure is
/// logged, and the account, without an accepted policy, gets no token until its owner
/// accepts the policy.
pub(super) async fn undo_account(core: &Core, id: uuid::Uuid, meta: &RequestMeta) {
    match core.db.delete_new_user(id).await {
        Ok(true) => {
            core.audit(Event::success("registration_undone").about(id), Some(meta))
                .await;
        }
        // Signed in to meanwhile (another sign-in linked it): it is in use, it stays.
        Ok(false) => tracing::warn!(user_id = %id, "a sign-up that failed left an account in use"),
        Err(error) => tracing::error!(%error, "a sign-up that failed left its account"),
    }
}

/// Verifies an email address with a mailed token (single use, 24 hours).
pub async fn verify_email(core: &Core, token: &str, meta: &RequestMeta) -> Result<(), AuthError> {
    let now = core.clock.now();
    let user = core
        .db
        .consume_one_time_token(&tokens::hash_opaque(token), TokenPurpose::VerifyEmail, now)
        .await?
        .ok_or(AuthError::InvalidToken)?;
    core.db.set_email_verified(user, now).await?;
    core.audit(Event::success("email_verified").by_user(user), Some(meta))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::{OTHER_PASSWORD, PASSWORD, fixture, meta, registration};
    use crate::mail::Mail;

    #[tokio::test]
    async fn without_verification_an_account_is_created_and_a_taken_email_refused() {
        let f = fixture(|s| s.email_verification.required = false);
        let created = register(&f.core, registration("alice@example.com", PASSWORD))
            .await
            .unwrap();
        assert!(matches!(created, Registered::Created(_)));
        let again = register(&f.core, registration("ALICE@example.com", OTHER_PASSWORD)).await;
        assert!(matches!(again, Err(AuthError::EmailTaken)), "{again:?}");
        assert!(f.mails().is_empty());
    }

    #[tokio::test]
    async fn with_verification_a_taken_email_gets_the_same_answer_and_its_owner_a_notice() {
        let f = fixture(|s| s.email_verification.required = true);
        for password in [PASSWORD, OTHER_PASSWORD] {
            let outcome = register(&f.core, registration("alice@example.com", password))
                .await
                .unwrap();
            assert_eq!(outcome, Registered::VerificationPending);
        }
        let mails = f.mails();
        assert!(matches!(mails[0].mail, Mail::VerifyEmail { .. }));
        assert_eq!(mails[1].mail, Mail::AlreadyRegistered);
        assert!(mails.iter().all(|m| m.to == "alice@example.com"));
    }

    #[tokio::test]
    async fn a_verification_token_works_once_and_only_within_24_hours() {
        let f = fixture(|s| s.email_verification.required = true);
        register(&f.core, registration("alice@example.com", PASSWORD))
            .await
            .unwrap();
        let token = f.mailed_token();
        verify_email(&f.core, &token, &meta()).await.unwrap();
        assert!(matches!(
            verify_email(&f.core, &token, &meta()).await,
            Err(AuthError::InvalidToken)
        ));
        register(&f.core, registration("bob@example.com", PASSWORD))
            .await
            .unwrap();
        let late = f.mailed_token();
        f.clock.advance(VERIFY_TTL);
        assert!(matches!(
            verify_email(&f.core, &late, &meta()).await,
            Err(AuthError::InvalidToken)
        ));
    }

    #[tokio::test]
    async fn every_broken_rule_is_reported_at_once() {
        let f = fixture(|_| {});
        let input = Registration {
            email: "not-an-email".into(),
            password: "short".into(),
            policy_version: Some("0".into()),
            consents: [("tracking".to_owned(), true)].into(),
            ..Registration::default()
        };
        let Err(AuthError::Validation(violations)) = register(&f.core, input).await else {
            panic!("accepted");
        };
        let codes: Vec<&str> = violations.iter().map(|v| v.code).collect();
        for code in [
            "invalid_email",
            "policy_version_mismatch",
            "consent_required",
            "unknown_purpose",
            "password_too_short",
        ] {
            assert!(codes.contains(&code), "{code} missing in {codes:?}");
        }
    }
}
