//! Pending authorization requests: a validated request waiting while the user signs in, kept
//! as the domain's JSON under a random id for a bounded time and taken once. The browser only
//! ever carries the id, never a return URL.

use std::time::Duration;

use redis::AsyncCommands;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

impl Kv {
    /// Stores a pending request for `ttl`.
    pub async fn put_pending(&self, id: &str, json: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: () = conn
                    .pset_ex(format!("{prefix}authreq:{id}"), json, ms(ttl).max(1))
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let bound = mem.bound(ms(ttl));
                insert_bounded(
                    &mut mem.pending,
                    id,
                    json.to_owned(),
                    bound,
                    "in-memory authorization request store",
                )
            }
        }
    }

    /// A pending request, left in place.
    pub async fn pending(&self, id: &str) -> Result<Option<String>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                Ok(conn.get(format!("{prefix}authreq:{id}")).await?)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.pending, id, now).cloned())
            }
        }
    }

    /// Takes a pending request: of two takers, one gets it.
    pub async fn take_pending(&self, id: &str) -> Result<Option<String>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = format!("{prefix}authreq:{id}");
                let (json, _): (Option<String>, u32) = redis::pipe()
                    .atomic()
                    .get(&key)
                    .del(&key)
                    .query_async(&mut conn)
                    .await?;
                Ok(json)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                let json = live(&mut mem.pending, id, now).cloned();
                mem.pending.remove(id);
                Ok(json)
            }
        }
    }
}
