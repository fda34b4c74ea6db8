//! Revoked session, grant and token ids: access tokens carry their session's id (`sid`), their
//! grant's (`gid`, a refresh-token family) and their own (`jti`), and stop working when any of
//! them is revoked, until they would have expired anyway. Revocations live for the access-token
//! lifetime. In memory the three kinds share one map, under `sid:`-less session ids (hex) and
//! `gid:` / `jti:` prefixed keys.

use std::time::Duration;

use redis::AsyncCommands;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

impl Kv {
    /// Marks a session id revoked for `ttl` (the access-token lifetime).
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
                let mut mem = locked(m)?;
                let bound = mem.bound(ms(ttl));
                insert_bounded(
                    &mut mem.revoked,
                    sid,
                    (),
                    bound,
                    "in-memory revocation store",
                )
            }
        }
    }

    /// Marks a grant id (a refresh-token family) revoked for `ttl`: its access tokens stop.
    pub async fn revoke_gid(&self, gid: &str, ttl: Duration) -> Result<(), StoreError> {
        self.revoke_key("rgid:", "gid:", gid, ttl).await
    }

    /// Marks one access token (by `jti`) revoked for `ttl`.
    pub async fn revoke_jti(&self, jti: &str, ttl: Duration) -> Result<(), StoreError> {
        self.revoke_key("rjti:", "jti:", jti, ttl).await
    }

    async fn revoke_key(
        &self,
        redis_kind: &str,
        memory_kind: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: () = conn
                    .pset_ex(format!("{prefix}{redis_kind}{id}"), 1, ms(ttl).max(1))
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let bound = mem.bound(ms(ttl));
                insert_bounded(
                    &mut mem.revoked,
                    &format!("{memory_kind}{id}"),
                    (),
                    bound,
                    "in-memory revocation store",
                )
            }
        }
    }

    /// Whether an access token was revoked: its session, its grant or itself (one `EXISTS`
    /// over the three keys in Redis).
    pub async fn is_access_revoked(
        &self,
        sid: Option<&str>,
        gid: Option<&str>,
        jti: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut keys = vec![format!("{prefix}rjti:{jti}")];
                keys.extend(sid.map(|sid| format!("{prefix}rsid:{sid}")));
                keys.extend(gid.map(|gid| format!("{prefix}rgid:{gid}")));
                let found: u32 = redis::cmd("EXISTS")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                Ok(found > 0)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                let mut keys = vec![format!("jti:{jti}")];
                keys.extend(sid.map(str::to_owned));
                keys.extend(gid.map(|gid| format!("gid:{gid}")));
                Ok(keys
                    .iter()
                    .any(|key| live(&mut mem.revoked, key, now).is_some()))
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
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.revoked, sid, now).is_some())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[tokio::test]
    async fn an_access_token_is_revoked_by_its_session_its_grant_or_itself_until_the_ttl() {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(9));
        let kv = Kv::memory(clock.clone());
        let ttl = Duration::from_secs(600);
        assert!(
            !kv.is_access_revoked(Some("s"), Some("g"), "j")
                .await
                .unwrap()
        );
        kv.revoke_gid("g", ttl).await.unwrap();
        assert!(
            kv.is_access_revoked(Some("s"), Some("g"), "j")
                .await
                .unwrap()
        );
        assert!(!kv.is_access_revoked(Some("s"), None, "j").await.unwrap());
        kv.revoke_jti("j", ttl).await.unwrap();
        assert!(kv.is_access_revoked(None, None, "j").await.unwrap());
        kv.revoke_sid("s", ttl).await.unwrap();
        assert!(
            kv.is_access_revoked(Some("s"), None, "other")
                .await
                .unwrap()
        );
        assert!(!kv.is_sid_revoked("g").await.unwrap(), "kinds do not mix");
        clock.advance(ttl);
        assert!(
            !kv.is_access_revoked(Some("s"), Some("g"), "j")
                .await
                .unwrap()
        );
    }
}
