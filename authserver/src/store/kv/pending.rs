//! Pending requests: a validated authorization request waiting while the user signs in, or a
//! logout waiting for the user's confirmation, kept as the domain's JSON under a random id for
//! a bounded time and taken once. The two kinds live under separate keys, so an id of one is
//! never found as the other. The browser only ever carries the id, never a return URL.

use std::time::Duration;

use redis::AsyncCommands;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

/// Which kind of pending request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingKind {
    /// An authorization request waiting for login or consent.
    Authorization,
    /// An RP-initiated logout waiting for confirmation.
    Logout,
    /// A TOTP enrolment shown to a session, waiting for its first code (keyed by session id).
    MfaEnrolment,
    /// A social sign-in between its start and the provider's callback (keyed by the digest
    /// of the browser's cookie).
    SocialSignIn,
    /// A sign-in (or social sign-up) waiting for the privacy policy's acceptance (keyed by
    /// the digest of its `consent_token`).
    ConsentLogin,
}

impl PendingKind {
    fn key(self, id: &str) -> String {
        match self {
            PendingKind::Authorization => format!("authreq:{id}"),
            PendingKind::Logout => format!("logoutreq:{id}"),
            PendingKind::MfaEnrolment => format!("mfaenrol:{id}"),
            PendingKind::SocialSignIn => format!("social:{id}"),
            PendingKind::ConsentLogin => format!("consentlogin:{id}"),
        }
    }
}

impl Kv {
    /// Stores a pending request for `ttl`.
    pub async fn put_pending(
        &self,
        kind: PendingKind,
        id: &str,
        json: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = kind.key(id);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: () = conn
                    .pset_ex(format!("{prefix}{key}"), json, ms(ttl).max(1))
                    .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let bound = mem.bound(ms(ttl));
                insert_bounded(
                    &mut mem.pending,
                    &key,
                    json.to_owned(),
                    bound,
                    "in-memory pending request store",
                )
            }
        }
    }

    /// Replaces a pending request that still waits, keeping its deadline; returns whether it
    /// did (one already taken or expired stays gone: `SET … XX KEEPTTL` is one atomic step).
    pub async fn replace_pending(
        &self,
        kind: PendingKind,
        id: &str,
        json: &str,
    ) -> Result<bool, StoreError> {
        let key = kind.key(id);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let answer: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}{key}"))
                    .arg(json)
                    .arg("XX")
                    .arg("KEEPTTL")
                    .query_async(&mut conn)
                    .await?;
                Ok(answer.is_some())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(match live(&mut mem.pending, &key, now) {
                    Some(value) => {
                        json.clone_into(value);
                        true
                    }
                    None => false,
                })
            }
        }
    }

    /// A pending request, left in place.
    pub async fn pending(&self, kind: PendingKind, id: &str) -> Result<Option<String>, StoreError> {
        let key = kind.key(id);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                Ok(conn.get(format!("{prefix}{key}")).await?)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.pending, &key, now).cloned())
            }
        }
    }

    /// Takes a pending request: of two takers, one gets it.
    pub async fn take_pending(
        &self,
        kind: PendingKind,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = kind.key(id);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = format!("{prefix}{key}");
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
                let json = live(&mut mem.pending, &key, now).cloned();
                mem.pending.remove(&key);
                Ok(json)
            }
        }
    }
}
