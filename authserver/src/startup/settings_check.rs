//! What the auth server refuses in a realm's settings before it starts: features this version
//! does not implement yet (a realm asking for them must not run without them), durations past
//! what date arithmetic can hold, and proxy settings that would trust every address.

use portcullis_crds::{GoDuration, RealmSettings};

/// The longest duration any setting may have: 100 years. Far beyond any sensible policy, and
/// far enough from the end of the calendar that `now + duration` always fits.
pub const MAX_DURATION_DAYS: u64 = 36_500;

/// The features a realm asks for that this version does not have, each named by its field.
pub fn unimplemented_features(settings: &RealmSettings) -> Vec<String> {
    let spec = &settings.spec;
    let mut missing = Vec::new();
    if spec.mfa.totp.required {
        missing.push("mfa.totp.required (TOTP enrolment and MFA login)".to_owned());
    }
    if !spec.clients.is_empty() {
        missing
            .push("spec.clients (the OpenID Connect provider for registered clients)".to_owned());
    }
    if !spec.social_providers.is_empty() {
        missing.push("spec.socialProviders (social login)".to_owned());
    }
    for policy in &settings.rate_limits.policies {
        missing.push(format!(
            "RateLimitPolicy {policy} (application rate limits; its NGINX limits apply at the Ingress)"
        ));
    }
    missing
}

/// Every duration of the realm and its policies longer than [`MAX_DURATION_DAYS`], as
/// `field value` messages.
pub fn oversized_durations(settings: &RealmSettings) -> Vec<String> {
    let spec = &settings.spec;
    let mut fields: Vec<(&str, &GoDuration)> = vec![
        (
            "passwordPolicy.breachCheck.timeout",
            &spec.password_policy.breach_check.timeout,
        ),
        ("lockout.window", &spec.lockout.window),
        ("lockout.baseLockout", &spec.lockout.base_lockout),
        ("lockout.maxLockout", &spec.lockout.max_lockout),
        (
            "lockout.progressiveDelay.base",
            &spec.lockout.progressive_delay.base,
        ),
        (
            "lockout.progressiveDelay.max",
            &spec.lockout.progressive_delay.max,
        ),
        ("tokens.accessTokenTtl", &spec.tokens.access_token_ttl),
        ("tokens.idTokenTtl", &spec.tokens.id_token_ttl),
        ("tokens.refreshTokenTtl", &spec.tokens.refresh_token_ttl),
        ("tokens.refreshIdleTtl", &spec.tokens.refresh_idle_ttl),
        ("tokens.keyRotation.every", &spec.tokens.key_rotation.every),
        ("sessions.idleTimeout", &spec.sessions.idle_timeout),
        ("sessions.absoluteTimeout", &spec.sessions.absolute_timeout),
        ("monitoring.interval", &spec.monitoring.interval),
        (
            "monitoring.alertThresholds.certificateExpiryWarning",
            &spec.monitoring.alert_thresholds.certificate_expiry_warning,
        ),
        (
            "privacy.erasureGracePeriod",
            &spec.privacy.erasure_grace_period,
        ),
    ];
    if let Some(retention) = &settings.retention {
        let rules = &retention.rules;
        fields.extend([
            (
                "RetentionPolicy auditLogs.retainFor",
                &rules.audit_logs.retain_for,
            ),
            (
                "RetentionPolicy unverifiedAccounts.after",
                &rules.unverified_accounts.after,
            ),
            (
                "RetentionPolicy expiredSessionsAndTokens.after",
                &rules.expired_sessions_and_tokens.after,
            ),
            (
                "RetentionPolicy withdrawnConsents.retainFor",
                &rules.withdrawn_consents.retain_for,
            ),
        ]);
        if let Some(inactive) = &rules.inactive_accounts {
            fields.extend([
                ("RetentionPolicy inactiveAccounts.after", &inactive.after),
                (
                    "RetentionPolicy inactiveAccounts.warnBefore",
                    &inactive.warn_before,
                ),
            ]);
        }
    }
    let max = std::time::Duration::from_secs(MAX_DURATION_DAYS * 86_400);
    fields
        .into_iter()
        .filter(|(_, value)| value.as_duration() > max)
        .map(|(field, value)| format!("{field} {value}"))
        .collect()
}

/// Trusted proxy ranges that contain every address (`/0`): with them anyone could write the
/// client address into `X-Forwarded-For`.
pub fn trust_everyone(settings: &RealmSettings) -> Vec<String> {
    settings
        .trusted_proxies
        .iter()
        .filter(|cidr| cidr.prefix == 0)
        .map(ToString::to_string)
        .collect()
}

/// Everything wrong with `settings` for any command (durations, proxies), as one message.
pub fn check(settings: &RealmSettings) -> Result<(), String> {
    let mut problems = Vec::new();
    let durations = oversized_durations(settings);
    if !durations.is_empty() {
        problems.push(format!(
            "durations longer than {MAX_DURATION_DAYS}d: {}",
            durations.join(", ")
        ));
    }
    let everyone = trust_everyone(settings);
    if !everyone.is_empty() {
        problems.push(format!(
            "trustedProxies {} would believe X-Forwarded-For from every address; list the proxies' own ranges",
            everyone.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
