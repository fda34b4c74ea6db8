//! Revoked session ids: access tokens carry their session's id (`sid`) and stop working when
//! it is revoked, until they would have expired anyway.

use std::time::Duration;

use redis::AsyncCommands;

use super::memory::{Expiring, live};
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
                let expires_ms = mem.now_ms().saturating_add(ms(ttl));
                mem.revoked.insert(
                    sid.to_owned(),
                    Expiring {
                        value: (),
                        expires_ms,
                    },
                );
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
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.revoked, sid, now).is_some())
            }
        }
    }
}
