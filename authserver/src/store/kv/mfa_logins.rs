//! Logins waiting for their second factor: the domain's JSON and a count of wrong codes,
//! keyed by the SHA-256 of the `mfa_token` (the token itself is never stored), for a bounded
//! time. A wrong code is counted and the entry dies at the limit in one atomic step; a right
//! one takes the entry, so of two replicas completing it at once, one does.

use std::time::Duration;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

fn key(digest: &str) -> String {
    format!("mfalogin:{digest}")
}

/// Counts a wrong code; deletes the entry when the count reaches `ARGV[1]`. Answers the new
/// count, or -1 when the entry does not exist (expired, taken or killed).
const FAIL_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n >= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return n
";

/// Takes the entry: its JSON, and it is gone.
const TAKE_SCRIPT: &str = r"
local json = redis.call('HGET', KEYS[1], 'record')
redis.call('DEL', KEYS[1])
return json
";

/// What a wrong code did to a pending login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaFailure {
    /// Counted; the login still waits.
    Counted(u32),
    /// The limit was reached (or the entry was already gone): the login is dead.
    Ended,
}

impl Kv {
    /// Stores a pending login under `digest` for `ttl`, with no wrong code yet.
    pub async fn put_mfa_login(
        &self,
        digest: &str,
        json: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = key(digest);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = format!("{prefix}{key}");
                let _: () = redis::pipe()
                    .atomic()
                    .hset_multiple(&key, &[("record", json), ("attempts", "0")])
                    .ignore()
                    .pexpire(&key, i64::try_from(ms(ttl).max(1)).unwrap_or(i64::MAX))
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let bound = mem.bound(ms(ttl));
                insert_bounded(
                    &mut mem.mfa_logins,
                    &key,
                    (json.to_owned(), 0),
                    bound,
                    "in-memory MFA login store",
                )
            }
        }
    }

    /// A pending login's JSON, left in place.
    pub async fn mfa_login(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let key = key(digest);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                Ok(
                    redis::AsyncCommands::hget(&mut conn, format!("{prefix}{key}"), "record")
                        .await?,
                )
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.mfa_logins, &key, now).map(|(json, _)| json.clone()))
            }
        }
    }

    /// Counts a wrong code against a pending login; at `max` it ends.
    pub async fn fail_mfa_login(&self, digest: &str, max: u32) -> Result<MfaFailure, StoreError> {
        let key = key(digest);
        let count: i64 = match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                redis::Script::new(FAIL_SCRIPT)
                    .key(format!("{prefix}{key}"))
                    .arg(max)
                    .invoke_async(&mut conn)
                    .await?
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                match live(&mut mem.mfa_logins, &key, now) {
                    None => -1,
                    Some((_, attempts)) => {
                        *attempts += 1;
                        let n = *attempts;
                        if n >= max {
                            mem.mfa_logins.remove(&key);
                        }
                        i64::from(n)
                    }
                }
            }
        };
        Ok(match u32::try_from(count) {
            Ok(n) if n < max => MfaFailure::Counted(n),
            _ => MfaFailure::Ended,
        })
    }

    /// Takes a pending login: of two takers, one gets it.
    pub async fn take_mfa_login(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let key = key(digest);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                Ok(redis::Script::new(TAKE_SCRIPT)
                    .key(format!("{prefix}{key}"))
                    .invoke_async(&mut conn)
                    .await?)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                let json = live(&mut mem.mfa_logins, &key, now).map(|(json, _)| json.clone());
                mem.mfa_logins.remove(&key);
                Ok(json)
            }
        }
    }

    /// Replaces a pending login's JSON, keeping its deadline and count; returns whether it
    /// still waited.
    pub async fn replace_mfa_login(&self, digest: &str, json: &str) -> Result<bool, StoreError> {
        let key = key(digest);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let replaced: i64 = redis::Script::new(
                    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
                     redis.call('HSET', KEYS[1], 'record', ARGV[1]) return 1",
                )
                .key(format!("{prefix}{key}"))
                .arg(json)
                .invoke_async(&mut conn)
                .await?;
                Ok(replaced == 1)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(match live(&mut mem.mfa_logins, &key, now) {
                    Some((stored, _)) => {
                        json.clone_into(stored);
                        true
                    }
                    None => false,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn kv() -> (Kv, Clock) {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        (Kv::memory(clock.clone()), clock)
    }

    #[tokio::test]
    async fn the_fifth_wrong_code_ends_a_pending_login() {
        let (kv, _) = kv();
        kv.put_mfa_login("d", "{}", Duration::from_secs(300))
            .await
            .unwrap();
        for n in 1..5 {
            assert_eq!(
                kv.fail_mfa_login("d", 5).await.unwrap(),
                MfaFailure::Counted(n)
            );
        }
        assert_eq!(kv.fail_mfa_login("d", 5).await.unwrap(), MfaFailure::Ended);
        assert_eq!(kv.mfa_login("d").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_pending_login_is_taken_once_and_expires() {
        let (kv, clock) = kv();
        kv.put_mfa_login("a", "{\"x\":1}", Duration::from_secs(300))
            .await
            .unwrap();
        assert_eq!(
            kv.take_mfa_login("a").await.unwrap().as_deref(),
            Some("{\"x\":1}")
        );
        assert_eq!(kv.take_mfa_login("a").await.unwrap(), None);
        kv.put_mfa_login("b", "{}", Duration::from_secs(300))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(301));
        assert_eq!(kv.mfa_login("b").await.unwrap(), None);
        assert_eq!(kv.fail_mfa_login("b", 5).await.unwrap(), MfaFailure::Ended);
    }
}
