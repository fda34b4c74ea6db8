//! Sessions by public id, and each user's index of them.

use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

/// A stored session. The secret that names it is never stored, only its public id (the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Owner.
    pub user_id: Uuid,
    /// Login time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last request seen.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The session ends at this time however active it is.
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    /// Client IP at login.
    pub ip: String,
    /// User agent at login (truncated).
    pub user_agent: String,
    /// The owner's credential epoch the session was started (or last confirmed) under.
    #[serde(default)]
    pub credential_epoch: i64,
    /// How the user authenticated (RFC 8176 methods); sessions stored before this was
    /// recorded came from a password login.
    #[serde(default = "password_amr")]
    pub amr: Vec<String>,
    /// Authentication context class asserted at login, if any.
    #[serde(default)]
    pub acr: Option<String>,
}

fn password_amr() -> Vec<String> {
    vec!["pwd".to_owned()]
}

fn encode(record: &SessionRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode(json: &str) -> Result<SessionRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// How long a user's session index outlives its last write (longer than any session).
const INDEX_TTL: Duration = Duration::from_secs(400 * 86_400);

impl Kv {
    /// Stores (or replaces) a session for `ttl`.
    pub async fn put_session(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let index = format!("{prefix}usess:{}", record.user_id);
                redis::pipe()
                    .atomic()
                    .pset_ex(
                        format!("{prefix}sess:{id}"),
                        encode(record)?,
                        ms(ttl).max(1),
                    )
                    .sadd(&index, id)
                    .pexpire(&index, i64::try_from(ms(INDEX_TTL)).unwrap_or(i64::MAX))
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let bound = mem.bound(ms(ttl));
                insert_bounded(
                    &mut mem.sessions,
                    id,
                    record.clone(),
                    bound,
                    "in-memory session store",
                )
            }
        }
    }

    /// Writes a changed session back only if it still exists (a compare-and-set on existence):
    /// a session revoked between a read and this write stays revoked. Returns whether it was
    /// written.
    pub async fn touch_session(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let written: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}sess:{id}"))
                    .arg(encode(record)?)
                    .arg("PX")
                    .arg(ms(ttl).max(1))
                    .arg("XX")
                    .query_async(&mut conn)
                    .await?;
                Ok(written.is_some())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                let expires_ms = now.saturating_add(ms(ttl));
                let Some(entry) = live(&mut mem.sessions, id, now) else {
                    return Ok(false);
                };
                *entry = record.clone();
                if let Some(stored) = mem.sessions.get_mut(id) {
                    stored.expires_ms = expires_ms;
                }
                Ok(true)
            }
        }
    }

    /// A session by public id.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json: Option<String> = conn.get(format!("{prefix}sess:{id}")).await?;
                json.as_deref().map(decode).transpose()
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.sessions, id, now).map(|r| r.clone()))
            }
        }
    }

    /// Deletes a session; returns whether it existed.
    pub async fn delete_session(&self, user: Uuid, id: &str) -> Result<bool, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (deleted, _): (u32, u32) = redis::pipe()
                    .atomic()
                    .del(format!("{prefix}sess:{id}"))
                    .srem(format!("{prefix}usess:{user}"), id)
                    .query_async(&mut conn)
                    .await?;
                Ok(deleted > 0)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                let existed = live(&mut mem.sessions, id, now).is_some();
                mem.sessions.remove(id);
                Ok(existed)
            }
        }
    }

    /// Every live session of a user, with its public id.
    pub async fn user_sessions(
        &self,
        user: Uuid,
    ) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let index = format!("{prefix}usess:{user}");
                let ids: Vec<String> = conn.smembers(&index).await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}sess:{id}")).collect();
                let values: Vec<Option<String>> = conn.mget(&keys).await?;
                let mut found = Vec::new();
                let mut stale = Vec::new();
                for (id, value) in ids.into_iter().zip(values) {
                    match value {
                        Some(json) => found.push((id, decode(&json)?)),
                        None => stale.push(id),
                    }
                }
                if !stale.is_empty() {
                    let _: u32 = conn.srem(&index, stale).await?;
                }
                Ok(found)
            }
            Kv::Memory(m) => {
                let mem = locked(m)?;
                let now = mem.now_ms();
                Ok(mem
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.value.user_id == user && e.expires_ms > now)
                    .map(|(id, e)| (id.clone(), e.value.clone()))
                    .collect())
            }
        }
    }
}
