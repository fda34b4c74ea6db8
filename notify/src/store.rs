//! The PostgreSQL outbox over `authserver/migrations/0008_notifications.sql`.
//!
//! Every statement is one round trip and needs no transaction of its own: the claim locks the
//! rows it takes with `FOR UPDATE SKIP LOCKED` and leases them in the same `UPDATE`, so two
//! replicas never take the same row at once and a crashed worker's rows come back when the
//! lease ends. Recording an outcome is fenced by the attempt number the claim returned.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{PgExecutor, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::notice::{Channel, Claimed, DELETE_WHEN_FINISHED, NewNotice};

/// The longest `last_error` stored; a receiver's error is not a log.
pub const MAX_ERROR_LEN: usize = 500;

/// Claims after which a row whose outcome was never recorded is given up: the 12 attempts of
/// the backoff, and 3 lost to crashes or failed recording.
pub const MAX_CLAIMS: u32 = portcullis_webhook::MAX_ATTEMPTS + 3;

/// The most rows one claim or one prune batch may touch.
pub const MAX_BATCH: u32 = 10_000;

const INSERT: &str = "INSERT INTO notification_outbox \
    (id, channel, event, user_id, recipient, payload, created_at, next_attempt_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
// One channel per claim: a worker takes only rows it has a channel for (a replica without the
// webhook channel, or an older version that does not know a newer channel, leaves them alone),
// and the `notification_outbox_due` index (channel, next_attempt_at) serves it in order.
/// The claim statement (`$1` now, `$2` the lease's end, `$3` the limit, `$4` the channel,
/// `$5` [`MAX_CLAIMS`]); public so a test can check its plan.
pub const CLAIM: &str = "UPDATE notification_outbox SET locked_until = $2, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM notification_outbox \
        WHERE delivered_at IS NULL AND dead_at IS NULL AND channel = $4 AND next_attempt_at <= $1 \
          AND attempts < $5 \
          AND (locked_until IS NULL OR locked_until <= $1) \
        ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
    RETURNING id, channel, event, user_id, recipient, payload, created_at, attempts, next_attempt_at";
// Rows claimed MAX_CLAIMS times without an outcome ever recorded (a worker crashing on them, or
// an outcome that cannot be stored): given up, so they are neither sent for ever nor left
// pending for ever.
const GIVE_UP: &str = "UPDATE notification_outbox \
    SET dead_at = $1, locked_until = NULL, last_error = 'claimed too often without an outcome', \
        recipient = NULL, payload = CASE WHEN channel = 'email' THEN '{}'::jsonb ELSE payload END \
    WHERE delivered_at IS NULL AND dead_at IS NULL AND channel = $2 AND next_attempt_at <= $1 \
      AND attempts >= $3 AND (locked_until IS NULL OR locked_until <= $1) \
    RETURNING event";
// Delivered is the truth whoever holds the lease now, so it is not fenced by the attempt; a row
// already finished is left alone.
const DELETE_DELIVERED: &str = "DELETE FROM notification_outbox \
    WHERE id = $1 AND event = ANY($2) AND delivered_at IS NULL AND dead_at IS NULL";
// A finished mail row keeps neither its address nor its payload: nothing reads them again, and
// they would otherwise sit in the table and its backups until pruned.
const DELIVERED: &str = "UPDATE notification_outbox \
    SET delivered_at = $2, locked_until = NULL, last_error = NULL, recipient = NULL, \
        payload = CASE WHEN channel = 'email' THEN '{}'::jsonb ELSE payload END \
    WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL";
const RETRY: &str = "UPDATE notification_outbox \
    SET next_attempt_at = $3, locked_until = NULL, last_error = $4 \
    WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND dead_at IS NULL";
const DEAD: &str = "UPDATE notification_outbox \
    SET dead_at = $3, locked_until = NULL, last_error = $4, recipient = NULL, \
        payload = CASE WHEN channel = 'email' THEN '{}'::jsonb ELSE payload END \
    WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND dead_at IS NULL";
const DELETE_DEAD: &str = "DELETE FROM notification_outbox \
    WHERE id = $1 AND attempts = $2 AND event = ANY($3) AND delivered_at IS NULL AND dead_at IS NULL";
const PRUNE: &str = "DELETE FROM notification_outbox WHERE id IN (\
    SELECT id FROM notification_outbox WHERE delivered_at < $1 \
    UNION ALL \
    SELECT id FROM notification_outbox WHERE dead_at < $1 \
    LIMIT $2)";
// Both read only their partial index's rows (pending, or dead), never the delivered bulk.
const BACKLOG: &str = "SELECT channel, count(*), \
    count(*) FILTER (WHERE next_attempt_at <= $1), min(created_at) \
    FROM notification_outbox WHERE delivered_at IS NULL AND dead_at IS NULL \
    GROUP BY channel ORDER BY channel";
const DEAD_COUNT: &str = "SELECT count(*) FROM notification_outbox WHERE dead_at IS NOT NULL";

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL failed or refused the statement.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A time went outside what PostgreSQL and `time` can hold.
    #[error("a time is out of range")]
    TimeOutOfRange,
    /// A batch size is 0 or above [`MAX_BATCH`].
    #[error("the batch size {0} is not within 1..={MAX_BATCH}")]
    InvalidBatch(u32),
    /// A statement did not finish within its budget (the pool was busy, or the database slow).
    #[error("an outbox statement timed out")]
    Timeout,
    /// A row holds a value the schema should have refused.
    #[error("the outbox row {id} is corrupt: {what}")]
    Corrupt {
        /// The row.
        id: Uuid,
        /// What is wrong.
        what: &'static str,
    },
}

impl StoreError {
    /// A stable snake_case reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Database(_) => "database",
            StoreError::TimeOutOfRange => "time_out_of_range",
            StoreError::InvalidBatch(_) => "invalid_batch",
            StoreError::Timeout => "timeout",
            StoreError::Corrupt { .. } => "corrupt_row",
        }
    }
}

/// The most batches one [`Outbox::prune`] run deletes: after a flood, the rest waits for the
/// next run rather than keeping the WAL and autovacuum busy for minutes.
pub const PRUNE_MAX_BATCHES: u64 = 1_000;

/// The pause between two prune batches, so that pruning yields to the requests.
pub const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// What one [`Outbox::prune`] run removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Rows deleted.
    pub rows: u64,
    /// Statements run (each deletes at most one batch, so no statement holds many locks).
    pub batches: u64,
    /// Whether it stopped at [`PRUNE_MAX_BATCHES`] with rows possibly left for the next run.
    pub capped: bool,
}

/// The pending rows of one channel, for the `notification_outbox_pending` and
/// `notification_outbox_oldest_seconds` gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBacklog {
    /// The channel's stored name (a channel this version does not know is listed too).
    pub channel: String,
    /// Neither delivered nor dead.
    pub pending: i64,
    /// Pending and due.
    pub due: i64,
    /// When the oldest pending row was enqueued.
    pub oldest: Option<OffsetDateTime>,
}

impl ChannelBacklog {
    /// How long the oldest pending row has waited at `now` (zero if none, or in the future).
    pub fn oldest_age(&self, now: OffsetDateTime) -> Duration {
        self.oldest
            .and_then(|t| Duration::try_from(now - t).ok())
            .unwrap_or(Duration::ZERO)
    }
}

/// Counts for the gauges: pending rows per channel, and dead rows not yet pruned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Channels with pending rows, by name.
    pub channels: Vec<ChannelBacklog>,
    /// Dead.
    pub dead: i64,
}

impl Backlog {
    /// The backlog of `channel`: zeros when it has no pending row, so a gauge falls back to 0.
    pub fn channel(&self, channel: Channel) -> ChannelBacklog {
        self.channels
            .iter()
            .find(|c| c.channel == channel.as_str())
            .cloned()
            .unwrap_or(ChannelBacklog {
                channel: channel.as_str().to_owned(),
                pending: 0,
                due: 0,
                oldest: None,
            })
    }

    /// Pending rows of all channels.
    pub fn pending(&self) -> i64 {
        self.channels.iter().map(|c| c.pending).sum()
    }

    /// Due rows of all channels.
    pub fn due(&self) -> i64 {
        self.channels.iter().map(|c| c.due).sum()
    }
}

/// The outbox table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: PgPool,
}

impl Outbox {
    /// The outbox in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Inserts `notice`, due at its [`NewNotice::due_at`], and returns its id (a fresh v4 UUID, which
    /// is also the webhook event id). Takes any executor, so the caller enqueues inside the
    /// transaction of the change the notice reports (`&mut *tx`) and it is sent exactly when
    /// that commits; wake the worker ([`crate::Worker::waker`]) after the commit.
    pub async fn enqueue<'e, E>(executor: E, notice: &NewNotice) -> Result<Uuid, StoreError>
    where
        E: PgExecutor<'e>,
    {
        let id = Uuid::new_v4();
        sqlx::query(INSERT)
            .bind(id)
            .bind(notice.channel().as_str())
            .bind(notice.event())
            .bind(notice.user_id())
            .bind(notice.recipient())
            .bind(Json(notice.payload()))
            .bind(micros(notice.created_at()))
            .bind(micros(notice.due_at()))
            .execute(executor)
            .await?;
        Ok(id)
    }

    /// Claims up to `limit` due rows of `channel` for `lease` from `now`: each is taken by one
    /// caller only (`FOR UPDATE SKIP LOCKED`), its attempts go up by one, and nobody else
    /// claims it until `now + lease`, after which a crashed worker's row is claimed again. The
    /// lease must outlast a delivery attempt and its recording. Oldest due first. Rows of other
    /// channels are never touched, so a worker claims only the channels it can deliver.
    pub async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        channel: Channel,
    ) -> Result<Vec<Claimed>, StoreError> {
        check_batch(limit)?;
        let until = now
            .checked_add(time::Duration::try_from(lease).map_err(|_| StoreError::TimeOutOfRange)?)
            .ok_or(StoreError::TimeOutOfRange)?;
        let rows = sqlx::query(CLAIM)
            .bind(micros(now))
            .bind(micros(until))
            .bind(i64::from(limit))
            .bind(channel.as_str())
            .bind(i64::from(MAX_CLAIMS))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| read_claimed(row).map(|c| (row_due(row), c)))
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order; hand them out oldest due first, as claimed.
        claimed.sort_by_key(|(due, _)| *due);
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    /// Gives up, at `now`, the due rows of `channel` that were claimed [`MAX_CLAIMS`] times
    /// without an outcome recorded, and returns their event types (for the dead counter).
    pub async fn give_up_overclaimed(
        &self,
        now: OffsetDateTime,
        channel: Channel,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(GIVE_UP)
            .bind(micros(now))
            .bind(channel.as_str())
            .bind(i64::from(MAX_CLAIMS))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records `row` as delivered at `now`; an event in [`DELETE_WHEN_FINISHED`] is deleted
    /// instead. Returns false if the row was already finished (delivered by a worker whose
    /// lease had run out, or gone).
    pub async fn delivered(&self, row: &Claimed, now: OffsetDateTime) -> Result<bool, StoreError> {
        let deleted = sqlx::query(DELETE_DELIVERED)
            .bind(row.id)
            .bind(DELETE_WHEN_FINISHED)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() > 0 {
            return Ok(true);
        }
        let done = sqlx::query(DELIVERED)
            .bind(row.id)
            .bind(micros(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Makes `row` due again at `next_attempt_at`, keeping `error`. Returns false if the row
    /// was claimed again since (this worker's lease ran out) or is finished: then nothing
    /// changes.
    pub async fn retry(
        &self,
        row: &Claimed,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.finish(RETRY, row, next_attempt_at, error).await
    }

    /// Gives `row` up at `now` with `error`; it is never claimed again, and an event in
    /// [`DELETE_WHEN_FINISHED`] is deleted. Fenced as [`Outbox::retry`].
    pub async fn dead(
        &self,
        row: &Claimed,
        now: OffsetDateTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        let deleted = sqlx::query(DELETE_DEAD)
            .bind(row.id)
            .bind(attempts_of(row)?)
            .bind(DELETE_WHEN_FINISHED)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() > 0 {
            return Ok(true);
        }
        self.finish(DEAD, row, now, error).await
    }

    async fn finish(
        &self,
        statement: &'static str,
        row: &Claimed,
        at: OffsetDateTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(statement)
            .bind(row.id)
            .bind(attempts_of(row)?)
            .bind(micros(at))
            .bind(truncate(error))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes rows delivered or dead before `now - keep`, `batch` rows per statement with a
    /// short pause between statements, until none is left or [`PRUNE_MAX_BATCHES`] ran.
    /// Pending rows are never touched. Run it from one replica (an advisory lock or a leader):
    /// two runs at once only wait on each other.
    pub async fn prune(
        &self,
        now: OffsetDateTime,
        keep: Duration,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        check_batch(batch)?;
        let before = now
            .checked_sub(time::Duration::try_from(keep).map_err(|_| StoreError::TimeOutOfRange)?)
            .ok_or(StoreError::TimeOutOfRange)?;
        let mut pruned = Pruned::default();
        loop {
            let done = sqlx::query(PRUNE)
                .bind(micros(before))
                .bind(i64::from(batch))
                .execute(&self.pool)
                .await?;
            pruned.batches += 1;
            pruned.rows += done.rows_affected();
            if done.rows_affected() < u64::from(batch) {
                return Ok(pruned);
            }
            if pruned.batches >= PRUNE_MAX_BATCHES {
                pruned.capped = true;
                return Ok(pruned);
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
    }

    /// How far `now` (this replica's clock) is ahead of the database's clock, in seconds
    /// (negative when behind), for a gauge: leases and due times are computed from each
    /// replica's clock, so replicas must agree to well within the lease margin; alert when
    /// this exceeds about 10 s.
    pub async fn clock_skew(&self, now: OffsetDateTime) -> Result<f64, StoreError> {
        let db: OffsetDateTime = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?;
        Ok((now - db).as_seconds_f64())
    }

    /// Pending and due counts and the oldest pending row per channel, and the dead count, for
    /// the gauges. Reads only pending and dead rows (through their partial indexes).
    pub async fn backlog(&self, now: OffsetDateTime) -> Result<Backlog, StoreError> {
        let rows = sqlx::query(BACKLOG)
            .bind(micros(now))
            .fetch_all(&self.pool)
            .await?;
        let channels = rows
            .iter()
            .map(|row| {
                Ok(ChannelBacklog {
                    channel: row.try_get(0)?,
                    pending: row.try_get(1)?,
                    due: row.try_get(2)?,
                    oldest: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let dead = sqlx::query_scalar(DEAD_COUNT).fetch_one(&self.pool).await?;
        Ok(Backlog { channels, dead })
    }
}

fn attempts_of(row: &Claimed) -> Result<i32, StoreError> {
    i32::try_from(row.attempts).map_err(|_| StoreError::Corrupt {
        id: row.id,
        what: "attempts out of range",
    })
}

fn check_batch(batch: u32) -> Result<(), StoreError> {
    if (1..=MAX_BATCH).contains(&batch) {
        Ok(())
    } else {
        Err(StoreError::InvalidBatch(batch))
    }
}

// PostgreSQL keeps microseconds; truncating here makes what is stored what was meant.
fn micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1000).unwrap_or(t)
}

// Bounded, and without control characters: PostgreSQL `text` refuses NUL, and a reason that
// can never be stored would have its row sent again at every lease.
fn truncate(error: &str) -> String {
    error
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_LEN)
        .collect()
}

fn row_due(row: &PgRow) -> Option<OffsetDateTime> {
    row.try_get("next_attempt_at").ok()
}

fn read_claimed(row: &PgRow) -> Result<Claimed, StoreError> {
    let id: Uuid = row.try_get("id")?;
    let channel: String = row.try_get("channel")?;
    let channel = Channel::parse(&channel).ok_or(StoreError::Corrupt {
        id,
        what: "unknown channel",
    })?;
    let attempts: i32 = row.try_get("attempts")?;
    let Json(payload) = row.try_get::<Json<serde_json::Value>, _>("payload")?;
    Ok(Claimed {
        id,
        channel,
        event: row.try_get("event")?,
        user_id: row.try_get("user_id")?,
        recipient: row.try_get("recipient")?,
        payload,
        created_at: row.try_get("created_at")?,
        attempts: u32::try_from(attempts).map_err(|_| StoreError::Corrupt {
            id,
            what: "negative attempts",
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_are_truncated_to_what_postgresql_keeps() {
        let t = datetime!(2026-11-30 12:00:00.123456789 UTC);
        assert_eq!(micros(t), datetime!(2026-11-30 12:00:00.123456 UTC));
    }

    #[test]
    fn stored_errors_are_bounded() {
        assert_eq!(truncate(&"é".repeat(600)).chars().count(), MAX_ERROR_LEN);
        assert_eq!(truncate("status 500"), "status 500");
        assert_eq!(truncate("550 no\0such\r\nuser"), "550 nosuchuser");
    }

    #[test]
    fn batches_are_bounded() {
        assert!(matches!(check_batch(0), Err(StoreError::InvalidBatch(0))));
        assert!(check_batch(1).is_ok());
        assert!(check_batch(MAX_BATCH).is_ok());
        assert!(check_batch(MAX_BATCH + 1).is_err());
    }
}
