//! The PostgreSQL store over `authserver/migrations/0006_audit.sql`.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{
    ActorKind, AuditRow, Hash, Head, NewEvent, Outcome, RecordMeta, Rewrite, Salt, fresh_salt,
    genesis, pruned_record, seal,
};
use crate::details::Ident;
use crate::keys::AuditKeys;
use crate::store::{
    MAX_PAGE, PageQuery, Plan, Pruned, Pseudonymized, StoreError, erasure_reference,
};
use crate::verify::{Report, Verifier};

/// Most rows one `pseudonymize_user` rewrites: the head lock is held meanwhile.
pub const ERASE_BATCH: i64 = 1000;

/// Most rows one `prune_prefix` deletes: the head lock is held meanwhile.
pub const PRUNE_BATCH: i64 = MAX_PAGE;

/// Rows per page while verifying: bounded memory, few round trips.
const VERIFY_PAGE: i64 = 1000;

const LOCK_HEAD: &str =
    "SELECT seq, hash, base_seq, base_hash FROM audit_chain_head WHERE id = 1 FOR UPDATE";
const READ_HEAD: &str = "SELECT seq, hash, base_seq, base_hash FROM audit_chain_head WHERE id = 1";
const INSERT: &str = "INSERT INTO audit_events (seq, event_id, occurred_at, event_type, outcome, \
    actor_kind, client_id, details, actor_id, subject_id, ip, user_agent, salt, personal_digest, \
    pseudonym_of, key_version, prev_hash, hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
const MOVE_HEAD: &str = "UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1";
/// How long a writer waits for the head lock before failing: a session left holding it (a
/// forgotten `SELECT ... FOR UPDATE` in psql) must not stall every request of the realm.
const WRITER: &str =
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '2s'";
const MAINTENANCE: &str = "SET LOCAL portcullis.audit_maintenance = 'on'";
// The time is read as µs since the epoch, not through the `timestamptz` decoder: that decoder
// panics on `infinity` and on years past 9999, which PostgreSQL stores happily, so one planted row
// would kill every verify and export (review H4). NULL here means "not a finite instant".
macro_rules! row_columns {
    () => {
        "SELECT seq, event_id, \
         CASE WHEN isfinite(occurred_at) THEN (extract(epoch FROM occurred_at) * 1000000)::bigint END \
           AS occurred_us, event_type, outcome, actor_kind, client_id, \
         details, actor_id, subject_id, ip, user_agent, salt, personal_digest, pseudonym_of, \
         pseudonym_seq, pseudonym_mac, key_version, prev_hash, hash FROM audit_events "
    };
}
const PAGE: &str = concat!(
    row_columns!(),
    "WHERE seq > $1 \
      AND ($2::timestamptz IS NULL OR occurred_at >= $2) \
      AND ($3::uuid IS NULL OR subject_id = $3 OR (actor_kind = 'user' AND actor_id = $3::text)) \
      AND ($4::text IS NULL OR event_type = $4) \
    ORDER BY seq LIMIT $5"
);
// Every row naming the user, pseudonymised already or not: a row pseudonymised for someone else
// (X acted on Y, Y was erased) still holds this user's id (review H3).
const ROWS_OF_USER: &str = concat!(
    row_columns!(),
    "WHERE subject_id = $1 OR (actor_kind = 'user' AND actor_id = $1::text) \
     ORDER BY seq LIMIT $2 FOR UPDATE"
);
// Rows retention still has to clear: not yet pseudonymised, or pseudonymised by an erasure that
// kept an id (the erasure id, or a second person's). The chain's own records carry nothing
// personal. The condition is the partial index `audit_events_personal`'s, so a run does not
// rescan the rows earlier batches cleared.
const ROWS_BEFORE: &str = concat!(
    row_columns!(),
    "WHERE occurred_at < $1 \
       AND event_type NOT IN ('audit_pseudonymized', 'audit_pruned') \
       AND (salt IS NOT NULL OR subject_id IS NOT NULL \
            OR (actor_kind = 'user' AND actor_id IS NOT NULL)) \
     ORDER BY seq LIMIT $2 FOR UPDATE"
);
const PSEUDONYMIZE: &str = "UPDATE audit_events AS e SET \
      subject_id = u.subject_id, actor_id = u.actor_id, ip = NULL, user_agent = NULL, \
      salt = NULL, pseudonym_of = u.pseudonym_of, pseudonym_seq = u.pseudonym_seq, \
      pseudonym_mac = u.pseudonym_mac \
    FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bytea[]) \
      AS u(seq, subject_id, actor_id, pseudonym_of, pseudonym_seq, pseudonym_mac) \
    WHERE e.seq = u.seq";
const PRUNE_THROUGH: &str = "SELECT COALESCE(\
      (SELECT min(seq) - 1 FROM audit_events WHERE occurred_at >= $1), \
      (SELECT max(seq) FROM audit_events))";
const PREFIX: &str = concat!(row_columns!(), "WHERE seq <= $1 ORDER BY seq");
const HASH_OF: &str = "SELECT hash FROM audit_events WHERE seq = $1";
const DELETE_THROUGH: &str = "DELETE FROM audit_events WHERE seq <= $1";
const SET_ANCHOR: &str = "UPDATE audit_chain_head SET base_seq = $1, base_hash = $2 WHERE id = 1";
const SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// The audit log in PostgreSQL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgAuditLog {
    pool: PgPool,
    keys: Arc<AuditKeys>,
    realm: String,
}

impl PgAuditLog {
    /// The log of `realm` (its genesis) in `pool`, signing with `keys`.
    pub fn new(pool: PgPool, keys: Arc<AuditKeys>, realm: impl Into<String>) -> Self {
        Self {
            pool,
            keys,
            realm: realm.into(),
        }
    }

    /// A transaction for a writer: READ COMMITTED whatever the role's default (a waiter must
    /// read the head its predecessor committed, not fail to serialise), and a lock timeout.
    async fn begin_writer(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(WRITER).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// Appends `event` as the next row, under a fresh random salt.
    ///
    /// The head row's lock serialises appenders across replicas; READ COMMITTED (set here, not
    /// left to the role's default) lets a waiter read the head its predecessor committed instead
    /// of failing to serialise. Waiting for the lock fails after 2 s.
    pub async fn append(&self, event: &NewEvent) -> Result<AuditRow, StoreError> {
        let mut tx = self.begin_writer().await?;
        let head = lock_head(&mut tx).await?;
        let row = self.append_locked(&mut tx, &head, event).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Inserts the row after `head` and moves the head; the caller holds the head lock.
    async fn append_locked(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        head: &Head,
        event: &NewEvent,
    ) -> Result<AuditRow, StoreError> {
        let prev = head.hash.unwrap_or_else(|| genesis(&self.realm));
        let seq = next_seq(head.seq)?;
        let row = seal(event, seq, prev, fresh_salt(), &self.keys);
        sqlx::query(INSERT)
            .bind(row.seq)
            .bind(row.event_id)
            .bind(row.occurred_at)
            .bind(&row.event_type)
            .bind(row.outcome.as_str())
            .bind(row.actor_kind.as_str())
            .bind(&row.client_id)
            .bind(&row.details)
            .bind(&row.actor_id)
            .bind(row.subject_id)
            .bind(&row.ip)
            .bind(&row.user_agent)
            .bind(row.salt.map(|s| s.to_vec()))
            .bind(row.personal_digest.to_vec())
            .bind(&row.pseudonym_of)
            .bind(&row.key_version)
            .bind(row.prev_hash.to_vec())
            .bind(row.hash.to_vec())
            .execute(&mut **tx)
            .await?;
        sqlx::query(MOVE_HEAD)
            .bind(row.seq)
            .bind(row.hash.to_vec())
            .execute(&mut **tx)
            .await?;
        Ok(row)
    }

    /// The chain head as committed.
    pub async fn head(&self) -> Result<Head, StoreError> {
        let row = sqlx::query(READ_HEAD).fetch_one(&self.pool).await?;
        decode_head(&row)
    }

    /// One page of events by ascending seq.
    pub async fn page(&self, query: &PageQuery) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(PAGE)
            .bind(query.after)
            .bind(query.since)
            .bind(query.user_id)
            .bind(&query.event_type)
            .bind(query.clamped_limit())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| decode_row(r, Shape::Strict).map(|(row, _)| row))
            .collect()
    }

    /// Pseudonymises every row about or by `user` under the pseudonym `erasure_id`, and appends
    /// the `audit_pseudonymized` record that vouches for them, in one transaction.
    ///
    /// Rows already pseudonymised (for another person, or by retention) that still name `user`
    /// have the id replaced too and keep their group. At most [`ERASE_BATCH`] rows per call, as
    /// the head lock is held meanwhile: call again until `seqs` is empty. Idempotent: nothing is
    /// written when no row names `user`. A row appended later that names the user (an event
    /// about the erasure itself) needs another call, so such events should name the erasure id. The reference `erasure:<erasure_id>` may be used again (a resumed erasure).
    pub async fn pseudonymize_user(
        &self,
        user: Uuid,
        erasure_id: Uuid,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        let reference = erasure_reference(erasure_id)?;
        let mut tx = self.begin_writer().await?;
        // The head first, as appenders do: one lock order, no deadlock.
        let head = lock_head(&mut tx).await?;
        let rows = sqlx::query(ROWS_OF_USER)
            .bind(user)
            .bind(ERASE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
        let rewrite = Rewrite::User {
            user,
            pseudonym: erasure_id,
        };
        let done = self
            .pseudonymize_locked(&mut tx, &head, &rows, rewrite, reference, meta)
            .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Retention's `Pseudonymize`: one bounded batch of the oldest rows before `cutoff` loses
    /// its personal fields (subject and user actor included, also in rows an erasure
    /// pseudonymised) under `reference` (`retention:<run>:<batch>`), with its
    /// `audit_pseudonymized` record, in one transaction. An empty result means the run is done.
    pub async fn pseudonymize_before(
        &self,
        cutoff: OffsetDateTime,
        reference: Ident,
        limit: i64,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        let mut tx = self.begin_writer().await?;
        let head = lock_head(&mut tx).await?;
        let rows = sqlx::query(ROWS_BEFORE)
            .bind(cutoff)
            .bind(limit.clamp(1, MAX_PAGE))
            .fetch_all(&mut *tx)
            .await?;
        let done = self
            .pseudonymize_locked(&mut tx, &head, &rows, Rewrite::All, reference, meta)
            .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Rewrites `rows` (locked, ascending) and appends their record; the caller holds the head
    /// lock. The new values and their pseudonym MACs are computed here, with the key.
    #[allow(clippy::too_many_arguments)]
    async fn pseudonymize_locked(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        head: &Head,
        rows: &[PgRow],
        rewrite: Rewrite,
        reference: Ident,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        // The record lands right after the head we hold locked.
        let record_seq = next_seq(head.seq)?;
        let mut plan = Plan::default();
        for row in rows {
            // Lenient: a row that cannot be read back is still erased (it is then not vouched
            // for, and verify keeps naming it).
            let (row, _) = decode_row(row, Shape::Lenient)?;
            plan.add(&row, rewrite, &reference, record_seq, &self.keys);
        }
        if plan.changed.is_empty() {
            return Ok(Pseudonymized::default());
        }
        sqlx::query(MAINTENANCE).execute(&mut **tx).await?;
        let changed = &plan.changed;
        sqlx::query(PSEUDONYMIZE)
            .bind(changed.iter().map(|r| r.seq).collect::<Vec<_>>())
            .bind(changed.iter().map(|r| r.subject_id).collect::<Vec<_>>())
            .bind(
                changed
                    .iter()
                    .map(|r| r.actor_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                changed
                    .iter()
                    .map(|r| r.pseudonym_of.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(changed.iter().map(|r| r.pseudonym_seq).collect::<Vec<_>>())
            .bind(
                changed
                    .iter()
                    .map(|r| r.pseudonym_mac.map(|m| m.to_vec()))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut **tx)
            .await?;
        let event = plan.record(meta, reference);
        let record = self.append_locked(tx, head, &event).await?;
        Ok(plan.done(record))
    }

    /// Deletes the longest prefix of rows older than `cutoff`, at most [`PRUNE_BATCH`] rows of
    /// it (call again until `None`), makes its last row's hash the anchor and appends the
    /// `audit_pruned` record, in one transaction. `None` when there is nothing to prune.
    ///
    /// The rows to delete are verified first: on any finding nothing is deleted and
    /// [`StoreError::Unverified`] is returned, since pruning would destroy the evidence.
    pub async fn prune_prefix(
        &self,
        cutoff: OffsetDateTime,
        meta: RecordMeta,
    ) -> Result<Option<Pruned>, StoreError> {
        let mut tx = self.begin_writer().await?;
        let head = lock_head(&mut tx).await?;
        let through: Option<i64> = sqlx::query_scalar(PRUNE_THROUGH)
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?;
        let through = match through {
            // Bounded: the head lock stalls every appender while the batch is deleted.
            Some(through) if through > head.base_seq => {
                through.min(head.base_seq.saturating_add(PRUNE_BATCH))
            }
            _ => return Ok(None),
        };
        // What is deleted must verify first, or the prune would erase the evidence of an edit.
        let prefix = sqlx::query(PREFIX)
            .bind(through)
            .fetch_all(&mut *tx)
            .await?;
        let mut verifier = Verifier::new(head, &self.keys, &self.realm);
        for row in &prefix {
            let (row, readable) = decode_row(row, Shape::Lenient)?;
            verifier.push_checked(&row, readable);
        }
        if let Some(finding) = verifier.findings().first() {
            return Err(StoreError::Unverified {
                finding: finding.clone(),
            });
        }
        let through_hash: Vec<u8> = sqlx::query_scalar(HASH_OF)
            .bind(through)
            .fetch_one(&mut *tx)
            .await?;
        let through_hash: Hash = to_hash(through_hash, through, "hash")?;
        sqlx::query(MAINTENANCE).execute(&mut *tx).await?;
        let rows = sqlx::query(DELETE_THROUGH)
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        sqlx::query(SET_ANCHOR)
            .bind(through)
            .bind(through_hash.to_vec())
            .execute(&mut *tx)
            .await?;
        let event = pruned_record(meta, through, &through_hash, rows);
        let record = self.append_locked(&mut tx, &head, &event).await?;
        tx.commit().await?;
        Ok(Some(Pruned {
            through_seq: through,
            rows,
            record,
        }))
    }

    /// Verifies the whole table against its head, on one snapshot so concurrent appends do not
    /// look like insertions. `expect_head` is a (seq, hash) recorded elsewhere (the SIEM's copy).
    pub async fn verify(&self, expect_head: Option<(i64, Hash)>) -> Result<Report, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(SNAPSHOT).execute(&mut *tx).await?;
        let head = decode_head(&sqlx::query(READ_HEAD).fetch_one(&mut *tx).await?)?;
        let mut verifier = Verifier::new(head, &self.keys, &self.realm);
        if let Some((seq, hash)) = expect_head {
            verifier = verifier.expect_head(seq, hash);
        }
        // Keyset paging from the very start: rows before the anchor must be seen to be named.
        let mut after = i64::MIN;
        loop {
            let rows = sqlx::query(PAGE)
                .bind(after)
                .bind(None::<OffsetDateTime>)
                .bind(None::<Uuid>)
                .bind(None::<String>)
                .bind(VERIFY_PAGE)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let (row, readable) = decode_row(row, Shape::Lenient)?;
                after = row.seq;
                verifier.push_checked(&row, readable);
            }
            if i64::try_from(rows.len()).unwrap_or(0) < VERIFY_PAGE {
                break;
            }
        }
        tx.commit().await?;
        Ok(verifier.finish())
    }
}

/// The seq after `seq`; a head at the end of the range (only an edited head gets there) is
/// refused rather than wrapped.
pub(crate) fn next_seq(seq: i64) -> Result<i64, StoreError> {
    seq.checked_add(1).ok_or(StoreError::Malformed {
        seq: 0,
        what: "head seq",
    })
}

async fn lock_head(tx: &mut Transaction<'static, Postgres>) -> Result<Head, StoreError> {
    let row = sqlx::query(LOCK_HEAD).fetch_one(&mut **tx).await?;
    decode_head(&row)
}

fn to_hash(bytes: Vec<u8>, seq: i64, what: &'static str) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Malformed { seq, what })
}

fn opt_hash(
    bytes: Option<Vec<u8>>,
    seq: i64,
    what: &'static str,
) -> Result<Option<Hash>, StoreError> {
    bytes.map(|b| to_hash(b, seq, what)).transpose()
}

fn decode_head(row: &PgRow) -> Result<Head, StoreError> {
    Ok(Head {
        seq: row.try_get("seq")?,
        hash: opt_hash(row.try_get("hash")?, 0, "head hash")?,
        base_seq: row.try_get("base_seq")?,
        base_hash: opt_hash(row.try_get("base_hash")?, 0, "head base_hash")?,
    })
}

/// How a byte column of the wrong length is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// As an error: pages are for export, which should not show made-up bytes.
    Strict,
    /// As zeros, which no MAC or digest matches: verify then names the row as changed instead
    /// of failing on one bad row.
    Lenient,
}

fn decode_row(row: &PgRow, shape: Shape) -> Result<(AuditRow, bool), StoreError> {
    let seq: i64 = row.try_get("seq")?;
    let malformed = |what| StoreError::Malformed { seq, what };
    let to_hash = |bytes: Vec<u8>, seq, what| match (to_hash(bytes, seq, what), shape) {
        (Err(_), Shape::Lenient) => Ok([0; 32]),
        (result, _) => result,
    };
    let occurred_us: Option<i64> = row.try_get("occurred_us")?;
    let occurred_at = occurred_us
        .and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok());
    let outcome: String = row.try_get("outcome")?;
    let actor_kind: String = row.try_get("actor_kind")?;
    let (outcome, actor_kind) = (Outcome::parse(&outcome), ActorKind::parse(&actor_kind));
    // A column that cannot be read as written: in the Lenient shape the row carries a
    // placeholder and verify names it as changed.
    let unreadable = [
        ("occurred_at", occurred_at.is_none()),
        ("outcome", outcome.is_none()),
        ("actor_kind", actor_kind.is_none()),
    ]
    .into_iter()
    .find_map(|(what, bad)| bad.then_some(what));
    if let (Some(what), Shape::Strict) = (unreadable, shape) {
        return Err(malformed(what));
    }
    let readable = unreadable.is_none();
    let occurred_at = occurred_at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let outcome = outcome.unwrap_or(Outcome::Failure);
    let actor_kind = actor_kind.unwrap_or(ActorKind::System);
    let salt: Option<Vec<u8>> = row.try_get("salt")?;
    let row = AuditRow {
        seq,
        event_id: row.try_get("event_id")?,
        occurred_at,
        event_type: row.try_get("event_type")?,
        outcome,
        actor_kind,
        client_id: row.try_get("client_id")?,
        details: row.try_get("details")?,
        actor_id: row.try_get("actor_id")?,
        subject_id: row.try_get("subject_id")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        salt: salt
            .map(|s| match (Salt::try_from(s), shape) {
                (Ok(salt), _) => Ok(salt),
                (Err(_), Shape::Lenient) => Ok([0; 16]),
                (Err(_), Shape::Strict) => Err(malformed("salt")),
            })
            .transpose()?,
        personal_digest: to_hash(row.try_get("personal_digest")?, seq, "personal_digest")?,
        pseudonym_of: row.try_get("pseudonym_of")?,
        pseudonym_seq: row.try_get("pseudonym_seq")?,
        pseudonym_mac: opt_hash(row.try_get("pseudonym_mac")?, seq, "pseudonym_mac").or_else(
            |e| match shape {
                // A tag of the wrong length vouches for nothing: verify names the row.
                Shape::Lenient => Ok(Some([0; 32])),
                Shape::Strict => Err(e),
            },
        )?,
        key_version: row.try_get("key_version")?,
        prev_hash: to_hash(row.try_get("prev_hash")?, seq, "prev_hash")?,
        hash: to_hash(row.try_get("hash")?, seq, "hash")?,
    };
    Ok((row, readable))
}
