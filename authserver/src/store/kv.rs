//! Shared short-lived state: sessions, revoked session ids and lockout counters. Redis when
//! the realm has it (shared by replicas, atomic through Lua scripts); memory otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::StoreError;
use super::lockout_state::LockState;
use crate::auth::lockout::{AttemptDecision, LockoutRules};
use crate::auth::sessions::SessionRecord;

/// Begins a login attempt (see `LockState::begin`). KEYS[1]: the counter hash.
/// ARGV: now_ms, window_ms, max_failures, base_ms, max_lock_ms, memory_ms.
/// Returns {1, attempt} when allowed, {0, retry_after_ms} when locked.
const BEGIN_SCRIPT: &str = r"
local now, window, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local base, maxl, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'f', 'ws', 'lu', 'lo')
local f, ws, lu, lo = tonumber(h[1]) or 0, tonumber(h[2]) or now, tonumber(h[3]) or 0, tonumber(h[4]) or 0
if lu > now then return {0, lu - now} end
if f == 0 or now - ws >= window then f = 0; ws = now end
if f >= max then
  local d = math.min(base * math.pow(2, math.min(lo, 31)), maxl)
  redis.call('HSET', KEYS[1], 'f', 0, 'ws', now, 'lu', now + d, 'lo', lo + 1)
  redis.call('PEXPIRE', KEYS[1], memory + d)
  return {0, d}
end
f = f + 1
redis.call('HSET', KEYS[1], 'f', f, 'ws', ws, 'lu', lu, 'lo', lo)
redis.call('PEXPIRE', KEYS[1], memory)
return {1, f}
";

/// Records a failed attempt (see `LockState::fail`). Same KEYS/ARGV as `BEGIN_SCRIPT`.
/// Returns the lock length in ms when this failure started a lock, else 0.
const FAIL_SCRIPT: &str = r"
local now, max = tonumber(ARGV[1]), tonumber(ARGV[3])
local base, maxl, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'f', 'lu', 'lo')
local f, lu, lo = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
if lu > now or f < max then return 0 end
local d = math.min(base * math.pow(2, math.min(lo, 31)), maxl)
redis.call('HSET', KEYS[1], 'f', 0, 'ws', now, 'lu', now + d, 'lo', lo + 1)
redis.call('PEXPIRE', KEYS[1], memory + d)
return d
";

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Lockout counters are keyed by a hash of the identifier, so Redis holds no email addresses.
fn lock_key(identifier: &str) -> String {
    let digest: String = Sha256::digest(identifier.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("lock:{digest}")
}

/// The store.
#[derive(Clone)]
pub enum Kv {
    /// Redis, shared by every replica.
    Redis {
        /// Connection with automatic reconnects.
        conn: ConnectionManager,
        /// Key prefix (one realm per Redis database, or tests side by side).
        prefix: String,
    },
    /// Process memory (single replica, `--dev`).
    Memory(Arc<Mutex<Memory>>),
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kv::Redis { prefix, .. } => write!(f, "Kv::Redis({prefix})"),
            Kv::Memory(_) => write!(f, "Kv::Memory"),
        }
    }
}

/// In-memory state. Expiry is checked on read against the wall clock.
#[derive(Default)]
pub struct Memory {
    sessions: HashMap<String, (SessionRecord, std::time::Instant)>,
    revoked: HashMap<String, std::time::Instant>,
    locks: HashMap<String, LockState>,
}

impl Kv {
    /// Connects to Redis.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            tracing::error!(error = %e, "invalid REDIS_URL");
            StoreError::Unavailable("redis")
        })?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Kv::Redis {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// An empty in-memory store.
    pub fn memory() -> Self {
        Kv::Memory(Arc::new(Mutex::new(Memory::default())))
    }

    fn mem(m: &Arc<Mutex<Memory>>) -> Result<std::sync::MutexGuard<'_, Memory>, StoreError> {
        m.lock()
            .map_err(|_| StoreError::Corrupt("memory store poisoned".into()))
    }

    /// Answers when the store is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok(())
            }
            Kv::Memory(_) => Ok(()),
        }
    }

    /// Stores (or replaces) a session for `ttl`.
    pub async fn put_session(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let json = serde_json::to_string(record)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let ttl_ms = ms(ttl).max(1);
                let mut conn = conn.clone();
                let index = format!("{prefix}usess:{}", record.user_id);
                redis::pipe()
                    .atomic()
                    .pset_ex(format!("{prefix}sess:{id}"), json, ttl_ms)
                    .sadd(&index, id)
                    .pexpire(
                        &index,
                        i64::try_from(ms(Duration::from_secs(400 * 86_400))).unwrap_or(i64::MAX),
                    )
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let until = std::time::Instant::now() + ttl;
                Self::mem(m)?
                    .sessions
                    .insert(id.to_owned(), (record.clone(), until));
                Ok(())
            }
        }
    }

    /// A session by public id.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json: Option<String> = conn.get(format!("{prefix}sess:{id}")).await?;
                json.map(|j| {
                    serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose()
            }
            Kv::Memory(m) => {
                let mut mem = Self::mem(m)?;
                match mem.sessions.get(id) {
                    Some((record, until)) if *until > std::time::Instant::now() => {
                        Ok(Some(record.clone()))
                    }
                    Some(_) => {
                        mem.sessions.remove(id);
                        Ok(None)
                    }
                    None => Ok(None),
                }
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
            Kv::Memory(m) => Ok(Self::mem(m)?.sessions.remove(id).is_some()),
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
                let mut live = Vec::new();
                let mut stale = Vec::new();
                for (id, value) in ids.into_iter().zip(values) {
                    match value {
                        Some(json) => live.push((
                            id,
                            serde_json::from_str(&json)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        )),
                        None => stale.push(id),
                    }
                }
                if !stale.is_empty() {
                    let _: u32 = conn.srem(&index, stale).await?;
                }
                Ok(live)
            }
            Kv::Memory(m) => {
                let now = std::time::Instant::now();
                Ok(Self::mem(m)?
                    .sessions
                    .iter()
                    .filter(|(_, (r, until))| r.user_id == user && *until > now)
                    .map(|(id, (r, _))| (id.clone(), r.clone()))
                    .collect())
            }
        }
    }

    /// Marks a session id revoked for `ttl` (the access-token lifetime): access tokens that
    /// carry it stop working at once.
    pub async fn revoke_sid(&self, sid: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: () = conn
                    .pset_ex(format!("{prefix}rsid:{sid}"), 1, ms(ttl).max(1))
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                Self::mem(m)?
                    .revoked
                    .insert(sid.to_owned(), std::time::Instant::now() + ttl);
                Ok(())
            }
        }
    }

    /// Whether a session id was revoked.
    pub async fn is_sid_revoked(&self, sid: &str) -> Result<bool, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                Ok(conn.exists(format!("{prefix}rsid:{sid}")).await?)
            }
            Kv::Memory(m) => {
                let now = std::time::Instant::now();
                Ok(Self::mem(m)?
                    .revoked
                    .get(sid)
                    .is_some_and(|until| *until > now))
            }
        }
    }

    fn script_args(now_ms: u64, rules: &LockoutRules) -> [u64; 6] {
        [
            now_ms,
            ms(rules.window),
            u64::from(rules.max_failures),
            ms(rules.base_lockout),
            ms(rules.max_lockout),
            ms(rules.memory()),
        ]
    }

    /// Begins a login attempt for a canonical identifier, atomically.
    pub async fn begin_attempt(
        &self,
        identifier: &str,
        now_ms: u64,
        rules: &LockoutRules,
    ) -> Result<AttemptDecision, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (allowed, value): (u32, u64) = redis::Script::new(BEGIN_SCRIPT)
                    .key(format!("{prefix}{}", lock_key(identifier)))
                    .arg(&Self::script_args(now_ms, rules)[..])
                    .invoke_async(&mut conn)
                    .await?;
                Ok(if allowed == 1 {
                    AttemptDecision::Allowed {
                        attempt: u32::try_from(value).unwrap_or(u32::MAX),
                    }
                } else {
                    AttemptDecision::Locked {
                        retry_after: Duration::from_millis(value),
                    }
                })
            }
            Kv::Memory(m) => Ok(Self::mem(m)?
                .locks
                .entry(lock_key(identifier))
                .or_default()
                .begin(now_ms, rules)),
        }
    }

    /// Records a failed attempt; returns the lock length if this failure started a lock.
    pub async fn fail_attempt(
        &self,
        identifier: &str,
        now_ms: u64,
        rules: &LockoutRules,
    ) -> Result<Option<Duration>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let locked_ms: u64 = redis::Script::new(FAIL_SCRIPT)
                    .key(format!("{prefix}{}", lock_key(identifier)))
                    .arg(&Self::script_args(now_ms, rules)[..])
                    .invoke_async(&mut conn)
                    .await?;
                Ok((locked_ms > 0).then(|| Duration::from_millis(locked_ms)))
            }
            Kv::Memory(m) => Ok(Self::mem(m)?
                .locks
                .entry(lock_key(identifier))
                .or_default()
                .fail(now_ms, rules)),
        }
    }

    /// Forgets an identifier's failures and lock (successful login, admin unlock).
    pub async fn clear_attempts(&self, identifier: &str) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: u32 = conn
                    .del(format!("{prefix}{}", lock_key(identifier)))
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                Self::mem(m)?.locks.remove(&lock_key(identifier));
                Ok(())
            }
        }
    }
}
