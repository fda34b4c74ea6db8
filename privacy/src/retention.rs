//! Retention of what this crate and the audit trail keep: audit events past
//! `auditLogs.retainFor` (deleted or pseudonymised), the history of consents withdrawn longer
//! than `withdrawnConsents.retainFor`, and erasure requests whose grace period is over.
//!
//! Work goes in bounded batches (each a short transaction), so a run is safe beside traffic.
//! A dry run counts with the same conditions the real run acts on, so both report the same
//! [`Counts`]; it writes nothing. [`RetentionLock`] keeps two runs apart, and [`run`] needs it
//! held.
//!
//! The three rules run independently: one that fails (an audit row that does not verify, a
//! lock timeout) is reported in the [`Report`] and the others still run, so due erasures (which
//! have a legal deadline) are never held back by the audit step, and the counts of work done
//! are always returned.

use std::time::Duration;

use portcullis_audit::{Ident, PgAuditLog, RecordMeta};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::erasure::{self, FinishHook, KvEraser};
use crate::error::PrivacyError;

/// Rows (or requests) per batch.
pub const BATCH: i64 = 1000;

/// What happens to audit events past their retention (`auditLogs.action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    /// The oldest prefix of the chain is deleted; the chain keeps an anchor and verifies.
    Delete,
    /// Their personal fields are cleared; the rows stay and verify.
    Pseudonymize,
}

/// The rules of the realm's RetentionPolicy this module applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `auditLogs.retainFor`.
    pub audit_retain_for: Duration,
    /// `auditLogs.action`.
    pub audit_action: AuditAction,
    /// `withdrawnConsents.retainFor`.
    pub withdrawn_consents_retain_for: Duration,
}

/// What a run did, or (dry) would do. A dry run and the real run after it (nothing else
/// writing in between) report equal counts, erasure failures aside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Audit events deleted (action Delete).
    pub audit_events_deleted: i64,
    /// Audit events pseudonymised (action Pseudonymize).
    pub audit_events_pseudonymized: i64,
    /// Audit events past their retention that the run left in place (action Delete): the
    /// prune deletes only the chain's prefix before the first younger row, so one row dated in
    /// the future (a replica's clock ahead) holds back every older row after it. Non-zero
    /// needs an operator's look; the dry run reports it too.
    pub audit_events_overdue: i64,
    /// Consent history rows of withdrawals past their retention, deleted.
    pub withdrawn_consent_events: i64,
    /// Due erasure requests executed.
    pub erasures: i64,
    /// Due erasure requests that failed this time (they stay pending for the next run). Always
    /// 0 in a dry run.
    pub erasures_failed: i64,
}

/// The instant before which a record kept for `retain_for` has expired at `now`. A record is
/// past its retention when it is strictly older than `retain_for`: made at `t`, it is kept at
/// `t + retain_for` and gone at the first run after. A rule reaching back before the
/// calendar's start expires nothing.
pub fn cutoff(now: OffsetDateTime, retain_for: Duration) -> OffsetDateTime {
    time::Duration::try_from(retain_for)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .unwrap_or(time::PrimitiveDateTime::MIN.assume_utc())
}

/// Whether a record made at `at` has expired at `now` under `retain_for`.
pub fn expired(at: OffsetDateTime, now: OffsetDateTime, retain_for: Duration) -> bool {
    at < cutoff(now, retain_for)
}

// The audit crate's prune: the longest prefix of the chain before the cut-off (or the whole
// chain when no row is that recent), past the anchor. Same statement as the crate's, so the
// dry run counts what the prune deletes.
const PRUNE_COUNT: &str = "SELECT count(*) FROM audit_events WHERE seq <= COALESCE(\
      (SELECT min(seq) - 1 FROM audit_events WHERE occurred_at >= $1), \
      (SELECT max(seq) FROM audit_events))";
// Rows before the cut-off that are not in that prefix: what a prune leaves behind.
const OVERDUE_COUNT: &str = "SELECT count(*) FROM audit_events WHERE occurred_at < $1 AND seq > \
    COALESCE((SELECT min(seq) - 1 FROM audit_events WHERE occurred_at >= $1), \
             (SELECT max(seq) FROM audit_events))";
// The audit crate's `pseudonymize_before` selection: rows before the cut-off still holding a
// personal field or a salt, the chain's own records aside.
const PSEUDONYMIZE_COUNT: &str = "SELECT count(*) FROM audit_events \
    WHERE occurred_at < $1 AND event_type NOT IN ('audit_pseudonymized', 'audit_pruned') \
      AND (salt IS NOT NULL OR subject_id IS NOT NULL \
           OR (actor_kind = 'user' AND actor_id IS NOT NULL))";
// A (user, purpose) history is past retention when its latest change is a withdrawal made
// before the cut-off; then all of it goes (a grant without its withdrawal would misstate it).
// "Latest" is by id, not by `at`: `at` comes from the writing replica's clock, while the
// changes of one (user, purpose) are written in turn under its `consents` row lock, so their
// ids follow the order they happened in.
macro_rules! expired_consent_events {
    () => {
        "SELECT e.id, e.at FROM consent_events e \
         JOIN (SELECT DISTINCT ON (user_id, purpose) user_id, purpose, granted, at \
               FROM consent_events \
               WHERE (user_id, purpose) IN \
                     (SELECT user_id, purpose FROM consent_events WHERE NOT granted AND at < $1) \
               ORDER BY user_id, purpose, id DESC) AS last \
           ON last.user_id = e.user_id AND last.purpose = e.purpose \
         WHERE NOT last.granted AND last.at < $1"
    };
}
const CONSENT_EVENTS_COUNT: &str = concat!(
    "SELECT count(*) FROM (",
    expired_consent_events!(),
    ") AS x"
);
// Oldest first, so within one history its latest row (the withdrawal that makes it expire)
// goes last and a batch cut in the middle leaves the rest still selected.
const CONSENT_EVENTS_DELETE: &str = concat!(
    "DELETE FROM consent_events WHERE id IN (SELECT id FROM (",
    expired_consent_events!(),
    ") AS x ORDER BY id LIMIT $2)"
);
const DUE_COUNT: &str =
    "SELECT count(*) FROM erasure_requests WHERE state = 'pending' AND effective_at <= $1";

/// A retention rule, as named in a [`Failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Rule {
    /// `auditLogs`: deleting or pseudonymising old audit events.
    AuditLogs,
    /// `withdrawnConsents`: deleting the history of old withdrawals.
    WithdrawnConsents,
    /// Executing due erasure requests.
    Erasures,
}

/// One thing a run could not do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The rule it belongs to.
    pub rule: Rule,
    /// The erasure request, when one request failed (it stays pending for the next run).
    pub erasure_id: Option<Uuid>,
    /// [`PrivacyError::reason`].
    pub reason: &'static str,
    /// The error, for the log (no personal data: errors name ids, not values).
    pub message: String,
}

impl Failure {
    fn new(rule: Rule, erasure_id: Option<Uuid>, e: &PrivacyError) -> Self {
        Self {
            rule,
            erasure_id,
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

/// What a run did, and what it could not do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The work done (or, dry, that would be done), failures notwithstanding.
    pub counts: Counts,
    /// Empty when every rule ran to its end.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Whether every rule ran to its end.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Applies `rules` at `now`, or with `dry_run` only counts, on the database `lock` was taken
/// on (holding it is the proof that no other run is active). Order matters for equal counts:
/// audit events, then consent history, then erasures (which delete accounts and with them
/// their consent history). For the same reason the server's own account deletions (unverified
/// and inactive accounts) must run after this. Each rule runs whatever the one before did;
/// `hook` is passed to each erasure's [`erasure::finish`].
pub async fn run(
    lock: &RetentionLock,
    audit: &PgAuditLog,
    kv: &dyn KvEraser,
    hook: Option<&dyn FinishHook>,
    rules: &Rules,
    now: OffsetDateTime,
    dry_run: bool,
) -> Report {
    let pool = &lock.pool;
    let mut report = Report::default();
    let counts = &mut report.counts;
    if let Err(e) = audit_rule(pool, audit, rules, now, dry_run, counts).await {
        report
            .failures
            .push(Failure::new(Rule::AuditLogs, None, &e));
    }
    let counts = &mut report.counts;
    if let Err(e) = consent_rule(pool, rules, now, dry_run, counts).await {
        report
            .failures
            .push(Failure::new(Rule::WithdrawnConsents, None, &e));
    }
    if dry_run {
        match scalar(pool, DUE_COUNT, now).await {
            Ok(n) => report.counts.erasures = n,
            Err(e) => report.failures.push(Failure::new(Rule::Erasures, None, &e)),
        }
    } else {
        run_erasures(pool, audit, kv, hook, now, &mut report).await;
    }
    report
}

/// The `auditLogs` rule; adds what it did to `counts` as it goes, so an error keeps them.
async fn audit_rule(
    pool: &PgPool,
    audit: &PgAuditLog,
    rules: &Rules,
    now: OffsetDateTime,
    dry_run: bool,
    counts: &mut Counts,
) -> Result<(), PrivacyError> {
    let audit_cutoff = cutoff(now, rules.audit_retain_for);
    match (rules.audit_action, dry_run) {
        (AuditAction::Delete, true) => {
            counts.audit_events_deleted = scalar(pool, PRUNE_COUNT, audit_cutoff).await?;
        }
        (AuditAction::Delete, false) => {
            while let Some(pruned) = audit.prune_prefix(audit_cutoff, meta(now)).await? {
                counts.audit_events_deleted += pruned.rows;
            }
        }
        (AuditAction::Pseudonymize, true) => {
            counts.audit_events_pseudonymized =
                scalar(pool, PSEUDONYMIZE_COUNT, audit_cutoff).await?;
        }
        (AuditAction::Pseudonymize, false) => {
            let run = Uuid::new_v4().simple();
            for batch in 1u64.. {
                let reference = Ident::parse(&format!("retention:{run}:{batch}"))
                    .ok_or(PrivacyError::Malformed { what: "reference" })?;
                let done = audit
                    .pseudonymize_before(audit_cutoff, reference, BATCH, meta(now))
                    .await?;
                if done.seqs.is_empty() {
                    break;
                }
                counts.audit_events_pseudonymized += count(done.seqs.len());
            }
        }
    }
    if rules.audit_action == AuditAction::Delete {
        counts.audit_events_overdue = scalar(pool, OVERDUE_COUNT, audit_cutoff).await?;
    }
    Ok(())
}

/// The `withdrawnConsents` rule; adds what it did to `counts` as it goes.
async fn consent_rule(
    pool: &PgPool,
    rules: &Rules,
    now: OffsetDateTime,
    dry_run: bool,
    counts: &mut Counts,
) -> Result<(), PrivacyError> {
    let consent_cutoff = cutoff(now, rules.withdrawn_consents_retain_for);
    if dry_run {
        counts.withdrawn_consent_events =
            scalar(pool, CONSENT_EVENTS_COUNT, consent_cutoff).await?;
        return Ok(());
    }
    loop {
        let deleted = sqlx::query(CONSENT_EVENTS_DELETE)
            .bind(consent_cutoff)
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(());
        }
        counts.withdrawn_consent_events += i64::try_from(deleted).unwrap_or(i64::MAX);
    }
}

/// Executes every due erasure, a batch at a time. Any error of one request (its Redis side,
/// an audit row that does not verify, a lock timeout or deadlock in its transaction) is that
/// request's failure: reported, and the request is skipped for the rest of the run (it stays
/// pending for the next), so it cannot hold back the ones after it. Only a lost connection
/// ends the rule.
async fn run_erasures(
    pool: &PgPool,
    audit: &PgAuditLog,
    kv: &dyn KvEraser,
    hook: Option<&dyn FinishHook>,
    now: OffsetDateTime,
    report: &mut Report,
) {
    let mut failed: Vec<Uuid> = Vec::new();
    loop {
        let limit = BATCH.saturating_add(count(failed.len()));
        let batch: Vec<_> = match erasure::due(pool, now, limit).await {
            Ok(due) => due
                .into_iter()
                .filter(|r| !failed.contains(&r.id))
                .collect(),
            Err(e) => {
                report.failures.push(Failure::new(Rule::Erasures, None, &e));
                return;
            }
        };
        if batch.is_empty() {
            return;
        }
        for request in &batch {
            match erasure::execute(pool, audit, request, kv, hook, now).await {
                Ok(_) => report.counts.erasures += 1,
                Err(e) => {
                    report.counts.erasures_failed += 1;
                    report
                        .failures
                        .push(Failure::new(Rule::Erasures, Some(request.id), &e));
                    failed.push(request.id);
                    if connection_lost(&e) {
                        return;
                    }
                }
            }
        }
    }
}

/// Whether `e` means the database is out of reach (so every further request would fail too).
fn connection_lost(e: &PrivacyError) -> bool {
    matches!(
        e,
        PrivacyError::Database(
            sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed
        )
    )
}

fn meta(now: OffsetDateTime) -> RecordMeta {
    RecordMeta {
        event_id: Uuid::new_v4(),
        occurred_at: now,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn scalar(pool: &PgPool, sql: &'static str, at: OffsetDateTime) -> Result<i64, PrivacyError> {
    Ok(sqlx::query_scalar(sql).bind(at).fetch_one(pool).await?)
}

/// Keeps two retention runs of one realm apart (a CronJob and the admin API's run, or two
/// overlapping CronJob runs): a PostgreSQL session advisory lock held on a connection of its
/// own until [`RetentionLock::release`]. It is the auth server's lock: the same key text
/// ([`lock_key`]) under `hashtext`, so a run holding either excludes the other.
pub struct RetentionLock {
    conn: PoolConnection<sqlx::Postgres>,
    pool: PgPool,
    realm: String,
}

impl std::fmt::Debug for RetentionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionLock")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// The advisory-lock key text of `realm`'s retention runs, hashed by `hashtext`; the same text
/// as the auth server's (`authserver/src/store/retention.rs`).
pub fn lock_key(realm: &str) -> String {
    format!("portcullis.retention:{realm}")
}

impl RetentionLock {
    /// Takes `realm`'s lock if no other run holds it; `None` when one does (the caller reports
    /// "already running" and exits successfully).
    pub async fn try_acquire(pool: &PgPool, realm: &str) -> Result<Option<Self>, PrivacyError> {
        let mut conn = pool.acquire().await?;
        // The session is closed, never handed back to the pool, when the lock is dropped: a
        // run ending on an error path cannot leave a pooled session holding the lock.
        conn.close_on_drop();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(lock_key(realm))
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| Self {
            conn,
            pool: pool.clone(),
            realm: realm.to_owned(),
        }))
    }

    /// The realm whose runs it keeps apart.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Releases the lock (the session closes, which would release it anyway).
    pub async fn release(mut self) -> Result<(), PrivacyError> {
        sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(lock_key(&self.realm))
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn t(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 86_400)
    }

    #[test]
    fn a_record_is_kept_on_days_364_and_365_of_365d_and_expired_on_day_366() {
        let made = t(1_767_225_600 + 10 * 3600);
        let run = |day: i64| t(made.unix_timestamp() + day * DAY);
        assert!(!expired(made, run(364), days(365)));
        assert!(
            !expired(made, run(365), days(365)),
            "exactly 365d old is not past 365d"
        );
        assert!(expired(made, run(366), days(365)));
    }

    #[test]
    fn a_record_one_second_past_its_retention_is_expired() {
        let made = t(1_767_225_600);
        let now = t(made.unix_timestamp() + 365 * DAY + 1);
        assert!(expired(made, now, days(365)));
    }

    #[test]
    fn a_retention_reaching_before_the_calendar_expires_nothing() {
        let now = t(1_767_225_600);
        assert!(!expired(t(0), now, Duration::from_secs(u64::MAX)));
    }
}
