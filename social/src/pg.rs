//! The PostgreSQL store of linked identities, over
//! `authserver/migrations/0011_linked_identities.sql`: links keyed by (issuer, subject), and the
//! provider's tokens sealed at rest when a feature needs them.
//!
//! Decisions that must hold across replicas are taken by the database:
//! - linking is one `INSERT ... ON CONFLICT (issuer, subject) DO NOTHING`, so of two replicas
//!   linking one identity to two users exactly one wins, and a link is never moved;
//! - unlinking locks all the user's links (`SELECT ... FOR UPDATE`) before deciding with
//!   [`may_unlink`], so two unlinks at once cannot both see the other link as the way in left;
//! - re-encrypted tokens are written by `UPDATE ... WHERE upstream_tokens = $old`, so tokens
//!   stored meanwhile are never overwritten.
//!
//! The `upstream_tokens` column holds a small JSON object (see [`SealedTokens`]): the access
//! and refresh tokens each a standard Fernet token, sealed for its own purpose
//! ([`Purpose::UpstreamAccessToken`], [`Purpose::UpstreamRefreshToken`]) and the row's id, so
//! neither can be swapped with the other or copied to another row; the expiry and scopes in
//! clear (not secret). Both are sealed under the same key, named by `upstream_tokens_key_id`.
//!
//! Time is passed in; the store reads no clock. Row ids come from the database
//! (`gen_random_uuid()`).

use portcullis_sealed::{Binding, KeyRing, Purpose};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Link, SignInMethods, SocialError, UpstreamIdentity, UpstreamTokens, may_unlink};

/// The columns of a [`Link`] (a macro: `sqlx` takes only `'static` SQL, built with `concat!`).
/// Times are read as µs since the epoch: the timestamptz decoder panics on years past 9999,
/// which PostgreSQL stores happily.
macro_rules! link_columns {
    () => {
        "id, user_id, provider, issuer, subject, email, \
         (extract(epoch FROM created_at) * 1000000)::bigint AS created_us, \
         (extract(epoch FROM last_used_at) * 1000000)::bigint AS last_used_us"
    };
}
const FIND: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM linked_identities WHERE issuer = $1 AND subject = $2"
);
const LIST: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM linked_identities WHERE user_id = $1 ORDER BY created_at, id"
);
/// Waits for a racing insert of the same identity to commit or roll back; no row when the
/// identity is linked already.
const INSERT: &str = concat!(
    "INSERT INTO linked_identities \
       (id, user_id, provider, issuer, subject, email, created_at, last_used_at) \
     VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $6) \
     ON CONFLICT ON CONSTRAINT linked_identities_issuer_subject DO NOTHING RETURNING ",
    link_columns!()
);
/// All the user's links, locked: unlinks of one user queue here.
const DELETE_USER_LINKS: &str = concat!(
    "DELETE FROM linked_identities WHERE user_id = $1 RETURNING ",
    link_columns!()
);
const LOCK_USER_LINKS: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM linked_identities WHERE user_id = $1 ORDER BY id FOR UPDATE"
);
/// READ COMMITTED whatever the role's default: after waiting for a row lock (a racing insert,
/// a racing unlink) the next statement must see what the other transaction committed, and
/// a compare-and-swap must re-check its condition rather than fail with 40001.
const READ_COMMITTED: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
/// PostgreSQL's `foreign_key_violation`.
const FOREIGN_KEY_VIOLATION: &str = "23503";
/// How often [`PgLinkStore::link`] tries again when the conflicting link vanished before it
/// could be read (an unlink racing the link).
const LINK_ATTEMPTS: usize = 3;

/// The JSON kept in `upstream_tokens`.
#[derive(Serialize, Deserialize)]
pub struct SealedTokens {
    /// The access token, sealed for [`Purpose::UpstreamAccessToken`] and the row id.
    pub access: String,
    /// The refresh token, sealed for [`Purpose::UpstreamRefreshToken`] and the row id.
    pub refresh: Option<String>,
    /// When the access token expires (Unix seconds), if the provider said.
    pub expires_at: Option<i64>,
    /// The scopes granted, if the provider said.
    pub scopes: Option<Vec<String>>,
}

/// Upstream tokens as read back by [`PgLinkStore::tokens`]. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if one was stored.
    pub refresh_token: Option<String>,
    /// When the access token expires, if the provider said.
    pub expires_at: Option<OffsetDateTime>,
    /// The scopes granted, if the provider said.
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// What one [`PgLinkStore::reencrypt_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Rows read: tokens labelled with a key other than the newest.
    pub examined: u32,
    /// Rows re-sealed under the newest key and written.
    pub reencrypted: u32,
    /// Rows whose tokens changed between the read and the write: left as they are.
    pub raced: u32,
    /// Rows already sealed under the newest key whose key label was stale; the label is fixed.
    pub relabelled: u32,
    /// Rows that do not open, with the reason: left untouched, for an operator to look at.
    pub failed: Vec<(Uuid, &'static str)>,
    /// Where the next batch starts (`after`), `None` once the last row has been examined.
    pub next: Option<Uuid>,
}

/// The link store in PostgreSQL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgLinkStore {
    pool: PgPool,
}

impl PgLinkStore {
    /// The store in `pool` (the realm's database: one realm per database, no realm column).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The link of the identity (issuer, subject), if any: the lookup of every social sign-in.
    pub async fn find(&self, issuer: &str, subject: &str) -> Result<Option<Link>, SocialError> {
        let row = sqlx::query(FIND)
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// The user's links, oldest first.
    pub async fn list_for_user(&self, user: Uuid) -> Result<Vec<Link>, SocialError> {
        let rows = sqlx::query(LIST).bind(user).fetch_all(&self.pool).await?;
        rows.iter().map(link_from_row).collect()
    }

    /// Removes every link of `user` and returns them: for a server that finds they were made
    /// while the account's email was unproven (its owner proves it later, by a reset).
    pub async fn unlink_all(&self, user: Uuid) -> Result<Vec<Link>, SocialError> {
        let rows = sqlx::query(DELETE_USER_LINKS)
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    /// Records a sign-in with the link at `now` (never moving the time back).
    ///
    /// # Errors
    /// [`SocialError::LinkNotFound`] for an unknown id.
    pub async fn touch(&self, id: Uuid, now: OffsetDateTime) -> Result<(), SocialError> {
        let done = sqlx::query(
            "UPDATE linked_identities SET last_used_at = GREATEST(last_used_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(SocialError::LinkNotFound);
        }
        Ok(())
    }

    /// Links `identity` to `user` at `now` and returns the link. Linking an identity already
    /// linked to the same user returns that link unchanged; of two links of one identity at
    /// once, exactly one user gets it.
    ///
    /// # Errors
    /// [`SocialError::AlreadyLinked`] when the identity is linked to another user (the link is
    /// never moved), [`SocialError::UnknownUser`], [`SocialError::InvalidLink`] for an empty
    /// provider, issuer or subject, [`SocialError::Contended`] when the conflicting link keeps
    /// vanishing before it can be read.
    pub async fn link(
        &self,
        user: Uuid,
        identity: &UpstreamIdentity,
        now: OffsetDateTime,
    ) -> Result<Link, SocialError> {
        for (field, value) in [
            ("provider", &identity.provider),
            ("issuer", &identity.issuer),
            ("subject", &identity.subject),
        ] {
            if value.is_empty() {
                return Err(SocialError::InvalidLink(field));
            }
        }
        for _ in 0..LINK_ATTEMPTS {
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(INSERT)
                .bind(user)
                .bind(&identity.provider)
                .bind(&identity.issuer)
                .bind(&identity.subject)
                .bind(identity.email.as_deref())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| {
                    if foreign_key_violation(&e) {
                        SocialError::UnknownUser
                    } else {
                        SocialError::Database(e)
                    }
                })?;
            let found = match inserted {
                Some(row) => Some(row),
                // A new statement: sees the row the racing transaction committed.
                None => {
                    sqlx::query(FIND)
                        .bind(&identity.issuer)
                        .bind(&identity.subject)
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
            tx.commit().await?;
            let Some(row) = found else {
                // Unlinked between the conflict and the read: try the insert again.
                continue;
            };
            let link = link_from_row(&row)?;
            if link.user != user {
                return Err(SocialError::AlreadyLinked);
            }
            return Ok(link);
        }
        Err(SocialError::Contended)
    }

    /// Removes the user's link `link_id` if [`may_unlink`] allows it, deciding under a lock
    /// on all the user's links so that two unlinks at once cannot leave no way in. Returns the
    /// removed link (for the "sign-in method removed" notification).
    ///
    /// `password_usable` is the caller's view of the user's password; `live_providers` the
    /// names of the providers the realm has now.
    ///
    /// # Errors
    /// [`SocialError::LinkNotFound`] for an unknown link or another user's,
    /// [`SocialError::LastSignInMethod`].
    pub async fn unlink(
        &self,
        user: Uuid,
        link_id: Uuid,
        password_usable: bool,
        live_providers: &[String],
    ) -> Result<Link, SocialError> {
        let mut tx = self.begin().await?;
        // Under READ COMMITTED a row deleted by the transaction we waited for is skipped: the
        // second of two unlinks sees the links the first left.
        let rows = sqlx::query(LOCK_USER_LINKS)
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
        let links = rows
            .iter()
            .map(link_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        may_unlink(
            &SignInMethods {
                password_usable,
                links: &links,
                live_providers,
            },
            link_id,
        )?;
        sqlx::query("DELETE FROM linked_identities WHERE id = $1 AND user_id = $2")
            .bind(link_id)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        links
            .into_iter()
            .find(|link| link.id == link_id)
            .ok_or(SocialError::LinkNotFound)
    }

    /// Stores the provider's tokens for the link `link_id`, sealed under the newest key of
    /// `ring` for the link's row, replacing any stored before. Call it only for a feature
    /// that needs to call the provider later.
    ///
    /// # Errors
    /// [`SocialError::LinkNotFound`], [`SocialError::TimeBeforeEpoch`].
    pub async fn store_tokens(
        &self,
        link_id: Uuid,
        tokens: &UpstreamTokens,
        ring: &KeyRing,
        now: OffsetDateTime,
    ) -> Result<(), SocialError> {
        let now_unix = unix_seconds(now)?;
        let expires_at = tokens.expires_in.map(|lifetime| {
            let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
            now.unix_timestamp().saturating_add(secs)
        });
        let sealed = SealedTokens {
            access: portcullis_sealed::seal(
                ring,
                access_binding(link_id),
                tokens.access_token.as_bytes(),
                now_unix,
            ),
            refresh: tokens.refresh_token.as_ref().map(|refresh| {
                portcullis_sealed::seal(
                    ring,
                    refresh_binding(link_id),
                    refresh.as_bytes(),
                    now_unix,
                )
            }),
            expires_at,
            scopes: tokens.scopes.clone(),
        };
        let json =
            serde_json::to_string(&sealed).map_err(|_| SocialError::Corrupt("token JSON"))?;
        let done = sqlx::query(
            "UPDATE linked_identities SET upstream_tokens = $2, upstream_tokens_key_id = $3 \
             WHERE id = $1",
        )
        .bind(link_id)
        .bind(&json)
        .bind(ring.current_key_id().as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(SocialError::LinkNotFound);
        }
        Ok(())
    }

    /// The provider's tokens stored for the link, opened with `ring`; `None` when none are.
    ///
    /// # Errors
    /// [`SocialError::LinkNotFound`], [`SocialError::Sealed`] (no key of the ring opens them,
    /// or they were sealed for another row), [`SocialError::Corrupt`].
    pub async fn tokens(
        &self,
        link_id: Uuid,
        ring: &KeyRing,
    ) -> Result<Option<StoredTokens>, SocialError> {
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT upstream_tokens FROM linked_identities WHERE id = $1")
                .bind(link_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(json) = stored.ok_or(SocialError::LinkNotFound)? else {
            return Ok(None);
        };
        let sealed = parse_sealed(&json)?;
        let access = open_text(ring, access_binding(link_id), &sealed.access)?;
        let refresh = sealed
            .refresh
            .as_deref()
            .map(|token| open_text(ring, refresh_binding(link_id), token))
            .transpose()?;
        let expires_at = sealed
            .expires_at
            .map(|unix| {
                OffsetDateTime::from_unix_timestamp(unix)
                    .map_err(|_| SocialError::Corrupt("token expiry"))
            })
            .transpose()?;
        Ok(Some(StoredTokens {
            access_token: access,
            refresh_token: refresh,
            expires_at,
            scopes: sealed.scopes,
        }))
    }

    /// Re-seals under the newest key of `ring` up to `batch_size` rows' tokens that another
    /// key sealed, in id order after `after`. Call it again with [`ReencryptReport::next`]
    /// until that is `None`. Each row is written by compare-and-swap on the JSON read, so
    /// tokens stored meanwhile are kept (the row counts as raced). Rows that fail to open are
    /// reported and passed over.
    ///
    /// # Errors
    /// [`SocialError::InvalidBatchSize`] for 0, [`SocialError::TimeBeforeEpoch`]; database
    /// errors (the rows written so far are fine; a re-run from the same `after` is safe).
    pub async fn reencrypt_batch(
        &self,
        after: Option<Uuid>,
        batch_size: u32,
        ring: &KeyRing,
        now: OffsetDateTime,
    ) -> Result<ReencryptReport, SocialError> {
        if batch_size == 0 {
            return Err(SocialError::InvalidBatchSize);
        }
        let now_unix = unix_seconds(now)?;
        let newest = ring.current_key_id().as_str();
        let rows = sqlx::query(
            "SELECT id, upstream_tokens FROM linked_identities \
             WHERE upstream_tokens IS NOT NULL AND upstream_tokens_key_id <> $1 \
               AND ($2::uuid IS NULL OR id > $2) \
             ORDER BY id LIMIT $3",
        )
        .bind(newest)
        .bind(after)
        .bind(i64::from(batch_size))
        .fetch_all(&self.pool)
        .await?;
        let mut report = ReencryptReport::default();
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            let old: String = row.try_get("upstream_tokens")?;
            report.examined += 1;
            report.next = Some(id);
            let new = match reseal(ring, id, &old, now_unix) {
                Ok(new) => new,
                Err(e) => {
                    let reason = match &e {
                        SocialError::Sealed(sealed) => sealed.reason(),
                        other => other.code(),
                    };
                    report.failed.push((id, reason));
                    continue;
                }
            };
            let mut tx = self.begin().await?;
            // Compare-and-swap on the JSON read: a newer store_tokens is never overwritten.
            let done = sqlx::query(
                "UPDATE linked_identities SET upstream_tokens = $3, upstream_tokens_key_id = $4 \
                 WHERE id = $1 AND upstream_tokens = $2",
            )
            .bind(id)
            .bind(&old)
            .bind(new.as_deref().unwrap_or(&old))
            .bind(newest)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            match (done.rows_affected(), new.is_some()) {
                (0, _) => report.raced += 1,
                (_, true) => report.reencrypted += 1,
                (_, false) => report.relabelled += 1,
            }
        }
        if rows.len() < batch_size as usize {
            report.next = None;
        }
        Ok(report)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, SocialError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(READ_COMMITTED).execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// The row's tokens re-sealed under the ring's newest key as new JSON, or `None` when both
/// already are (only the key label is stale).
fn reseal(
    ring: &KeyRing,
    id: Uuid,
    json: &str,
    now_unix: u64,
) -> Result<Option<String>, SocialError> {
    let mut sealed = parse_sealed(json)?;
    let access = portcullis_sealed::reencrypt(ring, access_binding(id), &sealed.access, now_unix)?;
    let refresh = sealed
        .refresh
        .as_deref()
        .map(|token| portcullis_sealed::reencrypt(ring, refresh_binding(id), token, now_unix))
        .transpose()?
        .flatten();
    if access.is_none() && refresh.is_none() {
        return Ok(None);
    }
    if let Some(swap) = access {
        sealed.access = swap.new;
    }
    if let Some(swap) = refresh {
        sealed.refresh = Some(swap.new);
    }
    serde_json::to_string(&sealed)
        .map(Some)
        .map_err(|_| SocialError::Corrupt("token JSON"))
}

fn parse_sealed(json: &str) -> Result<SealedTokens, SocialError> {
    serde_json::from_str(json)
        .map_err(|_| SocialError::Corrupt("upstream_tokens is not token JSON"))
}

fn open_text(ring: &KeyRing, binding: Binding, token: &str) -> Result<String, SocialError> {
    let opened = portcullis_sealed::open(ring, binding, token)?;
    String::from_utf8(opened.plaintext.to_vec())
        .map_err(|_| SocialError::Corrupt("upstream token is not UTF-8"))
}

fn access_binding(link_id: Uuid) -> Binding {
    Binding::new(Purpose::UpstreamAccessToken, link_id)
}

fn refresh_binding(link_id: Uuid) -> Binding {
    Binding::new(Purpose::UpstreamRefreshToken, link_id)
}

fn link_from_row(row: &PgRow) -> Result<Link, SocialError> {
    Ok(Link {
        id: row.try_get("id")?,
        user: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        created_at: from_micros(row.try_get("created_us")?, "created_at")?,
        last_used_at: from_micros(row.try_get("last_used_us")?, "last_used_at")?,
    })
}

fn from_micros(us: i64, column: &'static str) -> Result<OffsetDateTime, SocialError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|_| SocialError::Corrupt(column))
}

fn unix_seconds(now: OffsetDateTime) -> Result<u64, SocialError> {
    u64::try_from(now.unix_timestamp()).map_err(|_| SocialError::TimeBeforeEpoch)
}

fn foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == FOREIGN_KEY_VIOLATION)
}
