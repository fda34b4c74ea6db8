//! Revoked session ids: access tokens carry their session's id (`sid`) and stop working when
//! it is revoked, until they would have expired anyway.

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
