//! `retention run`: applies a realm's RetentionPolicy to its database — the privacy crate's
//! rules (audit trail, consent history of old withdrawals, due erasures), then expired tokens,
//! unverified and inactive accounts, withdrawn consents — or only counts with `--dry-run`.
//! The cut-offs are a pure function of the rules and the clock.

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_crds::retention::{InactiveAccountAction, RetentionRules};
use serde::Serialize;
use time::OffsetDateTime;

use portcullis_audit::PgAuditLog;
use portcullis_privacy::erasure::{FinishHook, KvEraser};
use portcullis_privacy::retention::{Failure, RetentionLock, Rules};

use crate::clock::earlier;
use crate::mail::{Mail, Mailer};
use crate::store::{Postgres, StoreError};

/// The instants before which each rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoffs {
    /// Tokens that expired, were used or revoked before this are deleted.
    pub expired_tokens: OffsetDateTime,
    /// Unverified accounts registered before this are deleted.
    pub unverified_accounts: OffsetDateTime,
    /// Withdrawn consents recorded before this are deleted.
    pub withdrawn_consents: OffsetDateTime,
    /// Inactive accounts, when the policy has the rule.
    pub inactive: Option<InactiveCutoffs>,
}

/// When inactive accounts are warned and acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InactiveCutoffs {
    /// Accounts last active before this are warned (once).
    pub warn: OffsetDateTime,
    /// Accounts last active before this are deleted or disabled...
    pub act: OffsetDateTime,
    /// ...once their warning is older than this (`warnBefore` ago): nobody is acted on
    /// without having been warned that long ahead.
    pub warned_before: OffsetDateTime,
    /// What happens to them.
    pub action: InactiveAccountAction,
}

/// The cut-offs of `rules` at `now`. A rule reaching back before the calendar applies to
/// nothing (settings are capped far below that at start).
pub fn cutoffs(rules: &RetentionRules, now: OffsetDateTime) -> Cutoffs {
    let before = |d: Duration| earlier(now, d).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Cutoffs {
        expired_tokens: before(rules.expired_sessions_and_tokens.after.as_duration()),
        unverified_accounts: before(rules.unverified_accounts.after.as_duration()),
        withdrawn_consents: before(rules.withdrawn_consents.retain_for.as_duration()),
        inactive: rules.inactive_accounts.as_ref().map(|r| InactiveCutoffs {
            warn: before(
                r.after
                    .as_duration()
                    .saturating_sub(r.warn_before.as_duration()),
            ),
            act: before(r.after.as_duration()),
            warned_before: before(r.warn_before.as_duration()),
            action: r.action,
        }),
    }
}

/// Days until an account last active at `last_active` is acted on, if warned at `now`: when
/// its inactivity reaches the rule's length, but never sooner than the warning period.
pub fn days_left(last_active: OffsetDateTime, c: &InactiveCutoffs, now: OffsetDateTime) -> i64 {
    let by_inactivity = last_active - c.act;
    let by_warning = now - c.warned_before;
    by_inactivity.max(by_warning).whole_days()
}

/// What a run did (or, dry, would do): the JSON the CronJob's pod leaves as its termination
/// message for the operator to record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Rows handled per rule.
    pub counts: BTreeMap<&'static str, i64>,
    /// Rules that do not apply in this version, with why.
    pub skipped: BTreeMap<&'static str, &'static str>,
    /// What the privacy crate's rules could not do (they stay for the next run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

/// What the privacy crate's rules need: the audit trail (its key signs what retention
/// appends), the key-value eraser and the `account.erased` hook of due erasures, and the
/// realm's rules.
pub struct PrivacyRun<'a> {
    /// The audit trail.
    pub audit: &'a PgAuditLog,
    /// Erases a due erasure's keys outside PostgreSQL.
    pub kv: &'a dyn KvEraser,
    /// Enqueues the `account.erased` notice.
    pub hook: Option<&'a dyn FinishHook>,
    /// The realm's rules for the crate.
    pub rules: Rules,
}

/// Runs the rules under `lock` (the realm's retention lock, held): the privacy crate's first
/// (when `privacy` is given; its erasures delete accounts, so it goes before the account
/// rules, as the crate asks), then the server's. Warnings are mailed only on a real run, once
/// per account.
pub async fn run(
    db: &Postgres,
    lock: &RetentionLock,
    privacy: Option<PrivacyRun<'_>>,
    mailer: Option<&Mailer>,
    rules: &RetentionRules,
    now: OffsetDateTime,
    dry_run: bool,
) -> Result<Summary, StoreError> {
    let c = cutoffs(rules, now);
    let mut summary = Summary {
        dry_run,
        ..Summary::default()
    };
    match privacy {
        Some(p) => {
            let report = portcullis_privacy::retention::run(
                lock, p.audit, p.kv, p.hook, &p.rules, now, dry_run,
            )
            .await;
            let n = report.counts;
            summary
                .counts
                .insert("auditEventsDeleted", n.audit_events_deleted);
            summary
                .counts
                .insert("auditEventsPseudonymized", n.audit_events_pseudonymized);
            summary
                .counts
                .insert("auditEventsOverdue", n.audit_events_overdue);
            summary
                .counts
                .insert("withdrawnConsentEvents", n.withdrawn_consent_events);
            summary.counts.insert("erasures", n.erasures);
            summary.counts.insert("erasuresFailed", n.erasures_failed);
            for failure in &report.failures {
                tracing::error!(rule = ?failure.rule, erasure_id = ?failure.erasure_id, reason = failure.reason, message = %failure.message, "retention rule failed");
            }
            summary.failures = report.failures;
        }
        None => {
            summary.skipped.insert(
                "auditLogs",
                "no audit key for this run (give --secrets-dir): the audit trail and due erasures wait",
            );
            summary.skipped.insert(
                "erasures",
                "no audit key for this run (give --secrets-dir): the audit trail and due erasures wait",
            );
        }
    }
    let (tokens, families, one_time) = db.purge_expired_tokens(c.expired_tokens, dry_run).await?;
    summary.counts.insert("expiredRefreshTokens", tokens);
    summary.counts.insert("expiredRefreshFamilies", families);
    summary.counts.insert("expiredOneTimeTokens", one_time);
    // Rows owned by accounts go first, so account deletions (which cascade) do not make a
    // real run count differently from its dry run.
    summary.counts.insert(
        "withdrawnConsents",
        db.purge_withdrawn_consents(c.withdrawn_consents, dry_run)
            .await?,
    );
    summary.counts.insert(
        "unverifiedAccounts",
        db.purge_unverified_accounts(c.unverified_accounts, dry_run)
            .await?,
    );
    if let Some(inactive) = c.inactive {
        let action = inactive.action;
        let include_disabled = action == InactiveAccountAction::Delete;
        let to_warn = db
            .inactive_accounts_to_warn(inactive.warn, include_disabled)
            .await?;
        let mut warned = 0;
        for (id, email, last_active) in &to_warn {
            if dry_run {
                warned += 1;
                continue;
            }
            let days = days_left(*last_active, &inactive, now);
            let sent = match mailer {
                Some(mailer) => mailer
                    .send(email, &Mail::InactivityWarning { action, days })
                    .await
                    .is_ok(),
                None => false,
            };
            if sent {
                db.mark_inactivity_warned(*id, now, inactive.warn).await?;
                warned += 1;
            } else {
                tracing::error!(user_id = %id, "inactivity warning not delivered; will retry next run");
            }
        }
        summary.counts.insert("inactiveAccountsWarned", warned);
        let (act, warned_before) = (inactive.act, inactive.warned_before);
        let handled = match action {
            InactiveAccountAction::Delete => {
                db.delete_inactive_accounts(act, warned_before, dry_run)
                    .await?
            }
            InactiveAccountAction::Disable => {
                db.disable_inactive_accounts(act, warned_before, now, dry_run)
                    .await?
            }
        };
        summary.counts.insert("inactiveAccounts", handled);
    } else {
        summary
            .skipped
            .insert("inactiveAccounts", "no inactiveAccounts rule in the policy");
    }
    summary.skipped.insert(
        "expiredSessions",
        "sessions live in Redis with their own expiry",
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crds::retention::InactiveAccountRule;

    #[test]
    fn cutoffs_subtract_each_rule_from_now() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let rules = RetentionRules {
            inactive_accounts: Some(InactiveAccountRule::default()),
            ..RetentionRules::default()
        };
        let c = cutoffs(&rules, now);
        let days = |t: OffsetDateTime| (now - t).whole_days();
        assert_eq!(days(c.expired_tokens), 1);
        assert_eq!(days(c.unverified_accounts), 7);
        assert_eq!(days(c.withdrawn_consents), 90);
        let inactive = c.inactive.unwrap();
        assert_eq!(
            (
                days(inactive.act),
                days(inactive.warn),
                days(inactive.warned_before),
                inactive.action
            ),
            (730, 700, 30, InactiveAccountAction::Delete)
        );
    }

    #[test]
    fn an_account_is_told_the_later_of_its_inactivity_deadline_and_the_warning_period() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let rules = RetentionRules {
            inactive_accounts: Some(InactiveAccountRule::default()),
            ..RetentionRules::default()
        };
        let c = cutoffs(&rules, now).inactive.unwrap();
        let ago = |days: i64| now - time::Duration::days(days);
        assert_eq!(
            days_left(ago(705), &c, now),
            30,
            "warned 30 days ahead at least"
        );
        assert_eq!(
            days_left(ago(800), &c, now),
            30,
            "overdue: the warning period still"
        );
        assert_eq!(days_left(ago(690), &c, now), 40);
    }
}
