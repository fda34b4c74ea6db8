//! Retention statements (PostgreSQL only: they are set operations over whole tables). Each
//! rule exists as a count (dry run) and as the change it describes, with the same predicate.

use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use super::db::Postgres;

/// Retention statements: each rule as a count (dry run) and as the change it describes, with
/// the same predicate.
impl Postgres {
    /// Refresh tokens that expired or were used before `cutoff`, or whose family expired or
    /// was revoked before it; those families; and one-time tokens that expired or were used
    /// before it. Returns (refresh tokens, refresh families, one-time tokens).
    pub async fn purge_expired_tokens(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<(i64, i64, i64), StoreError> {
        // Tokens first: a family's deletion would take its tokens along uncounted.
        let tokens = self
            .count_or_apply(
                dry_run,
                "SELECT count(*) FROM refresh_tokens t JOIN refresh_families f USING (family_id) \
                 WHERE t.expires_at < $1 OR t.used_at < $1 OR f.expires_at < $1 OR f.revoked_at < $1",
                "WITH gone AS (DELETE FROM refresh_tokens t USING refresh_families f \
                 WHERE t.family_id = f.family_id AND (t.expires_at < $1 OR t.used_at < $1 \
                 OR f.expires_at < $1 OR f.revoked_at < $1) RETURNING 1) SELECT count(*) FROM gone",
                cutoff,
            )
            .await?;
        let families = self
            .count_or_apply(
                dry_run,
                "SELECT count(*) FROM refresh_families WHERE expires_at < $1 OR revoked_at < $1",
                "WITH gone AS (DELETE FROM refresh_families WHERE expires_at < $1 OR revoked_at < $1 \
                 RETURNING 1) SELECT count(*) FROM gone",
                cutoff,
            )
            .await?;
        let one_time = self
            .count_or_apply(
                dry_run,
                "SELECT count(*) FROM one_time_tokens WHERE expires_at < $1 OR used_at < $1",
                "WITH gone AS (DELETE FROM one_time_tokens WHERE expires_at < $1 OR used_at < $1 \
                 RETURNING 1) SELECT count(*) FROM gone",
                cutoff,
            )
            .await?;
        Ok((tokens, families, one_time))
    }

    /// Runs the counting statement (dry run) or the changing one; both take `times` as `$1`,
    /// `$2`, ... and answer one count.
    async fn count_or_apply_at(
        &self,
        dry_run: bool,
        count: &'static str,
        apply: &'static str,
        times: &[OffsetDateTime],
    ) -> Result<i64, StoreError> {
        let sql = if dry_run { count } else { apply };
        let mut query = sqlx::query_as(sql);
        for time in times {
            query = query.bind(*time);
        }
        let (n,): (i64,) = query.fetch_one(&self.pool).await?;
        Ok(n)
    }

    /// [`Self::count_or_apply_at`] with the cut-off as the only parameter.
    async fn count_or_apply(
        &self,
        dry_run: bool,
        count: &'static str,
        apply: &'static str,
        cutoff: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        self.count_or_apply_at(dry_run, count, apply, &[cutoff])
            .await
    }

    /// Accounts never verified and registered before `cutoff` (their rows cascade).
    pub async fn purge_unverified_accounts(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        self.count_or_apply(dry_run, "SELECT count(*) FROM users WHERE NOT email_verified AND created_at < $1", "WITH gone AS (DELETE FROM users WHERE NOT email_verified AND created_at < $1 RETURNING 1) \
             SELECT count(*) FROM gone", cutoff).await
    }

    /// Records of withdrawn consents older than `cutoff`.
    pub async fn purge_withdrawn_consents(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        self.count_or_apply(
            dry_run,
            "SELECT count(*) FROM consents WHERE NOT granted AND updated_at < $1",
            "WITH gone AS (DELETE FROM consents WHERE NOT granted AND updated_at < $1 RETURNING 1) \
             SELECT count(*) FROM gone",
            cutoff,
        )
        .await
    }

    /// Accounts inactive since before `warn` that were not warned yet (disabled ones only with
    /// `include_disabled`), with their address and last activity.
    pub async fn inactive_accounts_to_warn(
        &self,
        warn: OffsetDateTime,
        include_disabled: bool,
    ) -> Result<Vec<(Uuid, String, OffsetDateTime)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, email_canonical, GREATEST(created_at, last_login_at, last_active_at) FROM users \
             WHERE ($2 OR NOT disabled) AND inactivity_warned_at IS NULL \
             AND GREATEST(created_at, last_login_at, last_active_at) < $1",
        )
        .bind(warn)
        .bind(include_disabled)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that an account was warned, unless it was used since it was picked (still
    /// inactive since before `warn`): a warning that predates the use must not count.
    pub async fn mark_inactivity_warned(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        warn: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET inactivity_warned_at = $2 WHERE id = $1 \
             AND inactivity_warned_at IS NULL \
             AND GREATEST(created_at, last_login_at, last_active_at) < $3",
        )
        .bind(id)
        .bind(now)
        .bind(warn)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes accounts inactive since before `act` that were warned before `warned_before`.
    pub async fn delete_inactive_accounts(
        &self,
        act: OffsetDateTime,
        warned_before: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        self.count_or_apply_at(
            dry_run,
            "SELECT count(*) FROM users WHERE GREATEST(created_at, last_login_at, last_active_at) < $1 \
             AND inactivity_warned_at <= $2",
            "WITH gone AS (DELETE FROM users WHERE GREATEST(created_at, last_login_at, last_active_at) < $1 \
             AND inactivity_warned_at <= $2 RETURNING 1) SELECT count(*) FROM gone",
            &[act, warned_before],
        )
        .await
    }

    /// Disables accounts inactive since before `act` that were warned before `warned_before`:
    /// raises their credential epoch (their sessions fail at the next use) and revokes their
    /// refresh-token families.
    pub async fn disable_inactive_accounts(
        &self,
        act: OffsetDateTime,
        warned_before: OffsetDateTime,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        // The count takes `now` as `$3` too, unused, so both statements bind the same values.
        self.count_or_apply_at(
            dry_run,
            "SELECT count(*) FROM users WHERE NOT disabled AND GREATEST(created_at, last_login_at, last_active_at) < $1 \
             AND inactivity_warned_at <= $2 AND $3::timestamptz IS NOT NULL",
            "WITH changed AS (UPDATE users SET disabled = true, updated_at = $3, \
             credential_epoch = credential_epoch + 1 WHERE NOT disabled \
             AND GREATEST(created_at, last_login_at, last_active_at) < $1 AND inactivity_warned_at <= $2 RETURNING id), \
             revoked AS (UPDATE refresh_families SET revoked_at = $3 \
             WHERE user_id IN (SELECT id FROM changed) AND revoked_at IS NULL) \
             SELECT count(*) FROM changed",
            &[act, warned_before, now],
        )
        .await
    }
}
