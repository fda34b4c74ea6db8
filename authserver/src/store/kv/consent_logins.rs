//! Logins waiting for the user to accept the current privacy policy: the domain's JSON, keyed
//! by the SHA-256 of the `consent_token` (the token itself is never stored), for a bounded
//! time. Taking the entry removes it, so of two completions at once one gets the session.
//! Kept in the same in-memory map as the pending second factors (their keys differ).

use std::time::Duration;

use super::memory::{insert_bounded, live};
use super::{Kv, ms};
use crate::store::{StoreError, locked};

fn key(digest: &str) -> String {
    format!("consentlogin:{digest}")
}

/// Takes the entry: its JSON, and it is gone.
const TAKE_SCRIPT: &str = r"
local json = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
return json
";

impl Kv {
    /// Stores a login waiting for consent under `digest` for `ttl`.
    pub async fn put_consent_login(
        &self,
        digest: &str,
        json: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = key(digest);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: () = redis::AsyncCommands::pset_ex(
                    &mut conn,
                    format!("{prefix}{key}"),
                    json,
                    ms(ttl).max(1),
                )
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
                    "in-memory consent login store",
                )
            }
        }
    }

    /// Takes a login waiting for consent: of two takers, one gets it.
    pub async fn take_consent_login(&self, digest: &str) -> Result<Option<String>, StoreError> {
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

    /// A login waiting for consent, left in place (the hosted page shows the policy first).
    pub async fn consent_login(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let key = key(digest);
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                Ok(redis::AsyncCommands::get(&mut conn, format!("{prefix}{key}")).await?)
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.mfa_logins, &key, now).map(|(json, _)| json.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[tokio::test]
    async fn a_consent_login_is_taken_once_and_expires() {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        let kv = Kv::memory(clock.clone());
        kv.put_consent_login("a", "{}", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            kv.take_consent_login("a").await.unwrap().as_deref(),
            Some("{}")
        );
        assert_eq!(kv.take_consent_login("a").await.unwrap(), None);
        kv.put_consent_login("b", "{}", Duration::from_secs(60))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(61));
        assert_eq!(kv.consent_login("b").await.unwrap(), None);
    }
}
