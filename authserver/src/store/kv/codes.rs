//! Authorization codes (RFC 6749 §4.1.2), kept by the SHA-256 of the code: single use, live
//! until `expires_ms` on the injected clock (a Redis TTL would ignore a manual clock), and
//! kept after their use for a replay window so that a replay is recognised and can revoke what
//! the first exchange issued. Redeeming is one atomic step (`REDEEM_SCRIPT` in Redis, the
//! same state machine under the lock in memory), so of two exchanges of one code exactly one
//! gets its record; the other is a replay.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

/// How long a used code is remembered, so a replay can still be recognised.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(600);

/// What an authorization code stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request (the exchange must repeat it).
    pub redirect_uri: String,
    /// The user.
    pub user_id: Uuid,
    /// Public id of the session it came from.
    pub sid: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The request's `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge, when the request had one.
    pub code_challenge: Option<String>,
    /// When the user authenticated (Unix seconds).
    pub auth_time: i64,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// The user's credential epoch when the code was issued.
    pub credential_epoch: i64,
}

/// What redeeming a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// First use: the record, now marked used.
    Fresh(Box<CodeRecord>),
    /// Used before. The grant and access-token ids the first exchange issued, when it recorded
    /// them already (otherwise it sees the replay in [`Kv::record_code_issue`]).
    Replayed {
        /// Grant (refresh-token family) id.
        gid: Option<String>,
        /// Access token id.
        jti: Option<String>,
    },
    /// Past its lifetime, unused.
    Expired,
    /// Never issued, or forgotten.
    Unknown,
}

/// A code in memory: its record and the state the Lua script keeps in a Redis hash.
#[derive(Clone, Debug)]
pub(super) struct CodeEntry {
    record: CodeRecord,
    expires_ms: u64,
    used: bool,
    replayed: bool,
    gid: Option<String>,
    jti: Option<String>,
}

/// KEYS[1] the code; ARGV[1] now (ms), ARGV[2] the replay window (ms).
const REDEEM_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
local f = redis.call('HMGET', KEYS[1], 'rec', 'exp', 'used', 'gid', 'jti')
if f[3] == '1' then
  redis.call('HSET', KEYS[1], 'replayed', '1')
  return {'replayed', f[4] or '', f[5] or ''}
end
if tonumber(f[2]) <= tonumber(ARGV[1]) then return {'expired'} end
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'fresh', f[1]}
";

/// KEYS[1] the code; ARGV[1] gid, ARGV[2] jti. Returns 1 when the code was replayed meanwhile.
const RECORD_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'gid', ARGV[1], 'jti', ARGV[2])
if redis.call('HGET', KEYS[1], 'replayed') == '1' then return 1 end
return 0
";

fn code_key(prefix: &str, hash: &str) -> String {
    format!("{prefix}code:{hash}")
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl Kv {
    /// Stores a new code (by the hex SHA-256 of its value) that can be redeemed until
    /// `expires_ms`, at `now_ms`.
    pub async fn put_code(
        &self,
        hash: &str,
        record: &CodeRecord,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        // Kept past its lifetime for the replay window, whatever the clock says.
        let keep = expires_ms
            .saturating_sub(now_ms)
            .saturating_add(ms(REPLAY_WINDOW));
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json = serde_json::to_string(record)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let key = code_key(prefix, hash);
                redis::pipe()
                    .atomic()
                    .hset_multiple(&key, &[("rec", json), ("exp", expires_ms.to_string())])
                    .pexpire(&key, i64::try_from(keep).unwrap_or(i64::MAX))
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let bound = mem.bound(keep);
                let entry = CodeEntry {
                    record: record.clone(),
                    expires_ms,
                    used: false,
                    replayed: false,
                    gid: None,
                    jti: None,
                };
                insert_bounded(&mut mem.codes, hash, entry, bound, "in-memory code store")
            }
        }
    }

    /// The record of a code, used or not, without redeeming it (so its binding to a client,
    /// redirect URI and PKCE can be checked before anything changes); `None` once forgotten.
    pub async fn peek_code(
        &self,
        hash: &str,
        now_ms: u64,
    ) -> Result<Option<CodeRecord>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let json: Option<String> = redis::cmd("HGET")
                    .arg(code_key(prefix, hash))
                    .arg("rec")
                    .query_async(&mut conn)
                    .await?;
                json.map(|json| {
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose()
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                Ok(live(&mut mem.codes, hash, now_ms).map(|entry| entry.record.clone()))
            }
        }
    }

    /// Redeems a code at `now_ms`: the first use gets the record, any later one is a replay.
    pub async fn redeem_code(&self, hash: &str, now_ms: u64) -> Result<Redeemed, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let answer: Vec<String> = redis::Script::new(REDEEM_SCRIPT)
                    .key(code_key(prefix, hash))
                    .arg(now_ms)
                    .arg(ms(REPLAY_WINDOW))
                    .invoke_async(&mut conn)
                    .await?;
                let mut fields = answer.into_iter();
                Ok(match fields.next().as_deref() {
                    Some("fresh") => {
                        let json = fields.next().unwrap_or_default();
                        Redeemed::Fresh(Box::new(
                            serde_json::from_str(&json)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        ))
                    }
                    Some("replayed") => Redeemed::Replayed {
                        gid: non_empty(fields.next()),
                        jti: non_empty(fields.next()),
                    },
                    Some("expired") => Redeemed::Expired,
                    _ => Redeemed::Unknown,
                })
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let window = ms(REPLAY_WINDOW);
                let Some(entry) = live(&mut mem.codes, hash, now_ms) else {
                    return Ok(Redeemed::Unknown);
                };
                if entry.used {
                    entry.replayed = true;
                    return Ok(Redeemed::Replayed {
                        gid: entry.gid.clone(),
                        jti: entry.jti.clone(),
                    });
                }
                if entry.expires_ms <= now_ms {
                    return Ok(Redeemed::Expired);
                }
                entry.used = true;
                let record = entry.record.clone();
                if let Some(stored) = mem.codes.get_mut(hash) {
                    stored.expires_ms = now_ms.saturating_add(window);
                }
                Ok(Redeemed::Fresh(Box::new(record)))
            }
        }
    }

    /// Records what the exchange of a code issued (grant id `gid`, access token `jti`), so a
    /// later replay can revoke it; returns whether the code was replayed meanwhile (then the
    /// caller revokes what it just issued).
    pub async fn record_code_issue(
        &self,
        hash: &str,
        gid: &str,
        jti: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let replayed: u8 = redis::Script::new(RECORD_SCRIPT)
                    .key(code_key(prefix, hash))
                    .arg(gid)
                    .arg(jti)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(replayed == 1)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(match live(&mut mem.codes, hash, now) {
                    Some(entry) => {
                        entry.gid = Some(gid.to_owned());
                        entry.jti = Some(jti.to_owned());
                        entry.replayed
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

    fn record() -> CodeRecord {
        CodeRecord {
            client_id: "shop-web".into(),
            redirect_uri: "https://shop.example.com/cb".into(),
            user_id: Uuid::nil(),
            sid: "sid".into(),
            scope: "openid".into(),
            nonce: Some("n".into()),
            code_challenge: None,
            auth_time: 1,
            amr: vec!["pwd".into()],
            acr: None,
            credential_epoch: 0,
        }
    }

    fn kv() -> (Kv, Clock) {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000));
        (Kv::memory(clock.clone()), clock)
    }

    #[tokio::test]
    async fn a_code_is_redeemed_once_then_every_use_is_a_replay_naming_what_it_issued() {
        let (kv, clock) = kv();
        let now = clock.now_ms();
        kv.put_code("h", &record(), now, now + 60_000)
            .await
            .unwrap();
        assert_eq!(
            kv.redeem_code("h", now).await.unwrap(),
            Redeemed::Fresh(Box::new(record()))
        );
        assert_eq!(
            kv.redeem_code("h", now).await.unwrap(),
            Redeemed::Replayed {
                gid: None,
                jti: None
            }
        );
        assert!(
            kv.record_code_issue("h", "g", "j").await.unwrap(),
            "replayed meanwhile"
        );
        assert_eq!(
            kv.redeem_code("h", now).await.unwrap(),
            Redeemed::Replayed {
                gid: Some("g".into()),
                jti: Some("j".into())
            }
        );
    }

    #[tokio::test]
    async fn a_code_expires_on_the_injected_clock_and_a_used_one_is_remembered_for_the_window() {
        let (kv, clock) = kv();
        let now = clock.now_ms();
        kv.put_code("old", &record(), now, now + 60_000)
            .await
            .unwrap();
        kv.put_code("used", &record(), now, now + 60_000)
            .await
            .unwrap();
        assert!(matches!(
            kv.redeem_code("used", now).await.unwrap(),
            Redeemed::Fresh(_)
        ));
        assert!(!kv.record_code_issue("used", "g", "j").await.unwrap());
        clock.advance(Duration::from_secs(60));
        let now = clock.now_ms();
        assert_eq!(kv.redeem_code("old", now).await.unwrap(), Redeemed::Expired);
        assert!(matches!(
            kv.redeem_code("used", now).await.unwrap(),
            Redeemed::Replayed { .. }
        ));
        clock.advance(REPLAY_WINDOW);
        assert_eq!(
            kv.redeem_code("used", clock.now_ms()).await.unwrap(),
            Redeemed::Unknown
        );
        assert_eq!(
            kv.redeem_code("never", now).await.unwrap(),
            Redeemed::Unknown
        );
    }
}
