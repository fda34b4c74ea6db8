//! Forgetting an account's keys (the erasure's key-value step, issue 13): its sessions and
//! their index, the TOTP enrolments and second-factor counter of those sessions and of the
//! account, logins pending for it (second factor, consent), its unredeemed authorization codes,
//! and its lockout counter. Idempotent: a key already gone is no error.

use redis::AsyncCommands;
use uuid::Uuid;

use super::Kv;
use super::lockout::{counter_key, mfa_key};
use crate::store::{StoreError, locked};

/// Patterns of keys whose value names their account by id (JSON with a `user_id`), with how
/// the value is read: the hash field that holds it, or `None` for a plain string.
const BY_VALUE: [(&str, Option<&str>); 3] = [
    ("mfalogin:*", Some("record")),
    ("consentlogin:*", None),
    // Authorization codes are hashes of `rec` (the record) and `exp`.
    ("code:*", Some("rec")),
];

impl Kv {
    /// Deletes every key of the account `user` (see the module doc); `email_canonical` names
    /// its lockout counter when the account row still exists.
    pub async fn erase_user(
        &self,
        user: Uuid,
        email_canonical: Option<&str>,
    ) -> Result<(), StoreError> {
        let needle = user.to_string();
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let index = format!("{prefix}usess:{user}");
                let sessions: Vec<String> = conn.smembers(&index).await?;
                let mut doomed: Vec<String> = vec![index, format!("{prefix}{}", mfa_key(user))];
                for sid in &sessions {
                    doomed.push(format!("{prefix}sess:{sid}"));
                    doomed.push(format!("{prefix}mfaenrol:{sid}"));
                }
                if let Some(email) = email_canonical {
                    doomed.push(format!("{prefix}{}", counter_key(email)));
                }
                let escaped = glob_escape(prefix);
                for (pattern, field) in BY_VALUE {
                    let keys: Vec<String> = {
                        let mut iter: redis::AsyncIter<'_, String> =
                            conn.scan_match(format!("{escaped}{pattern}")).await?;
                        let mut keys = Vec::new();
                        while let Some(key) = iter.next_item().await {
                            keys.push(key?);
                        }
                        keys
                    };
                    for key in keys {
                        let value: redis::RedisResult<Option<String>> = match field {
                            Some(field) => conn.hget(&key, field).await,
                            None => conn.get(&key).await,
                        };
                        match value {
                            Ok(value) if value.as_deref().is_some_and(|v| v.contains(&needle)) => {
                                doomed.push(key);
                            }
                            Ok(_) => {}
                            // A key of another shape (a newer replica's) must not stop the
                            // erasure: these keys all die by their TTL within minutes.
                            Err(error) if error.code() == Some("WRONGTYPE") => {
                                tracing::warn!(%error, "erasure: a key of an unexpected type skipped");
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
                let _: u64 = conn.del(doomed).await?;
                Ok(())
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                mem.sessions.retain(|_, e| e.value.user_id != user);
                mem.mfa_logins.retain(|_, e| !e.value.0.contains(&needle));
                mem.pending.retain(|key, e| {
                    !(key.starts_with("consentlogin:") && e.value.contains(&needle))
                });
                mem.locks.remove(&mfa_key(user));
                if let Some(email) = email_canonical {
                    mem.locks.remove(&counter_key(email));
                }
                Ok(())
            }
        }
    }
}

/// `prefix` with Redis glob metacharacters escaped, so a SCAN matches it literally.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
