//! Where bucket TATs live: Redis, shared by every replica, or a map in this process. Both run
//! the same rule ([`gcra::decide`]; in Redis as its Lua twin), atomically, in one step per
//! decision. Timeouts and the Open/Closed failure mode belong to the caller.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use redis::aio::ConnectionManager;

use crate::gcra::{self, Bucket, MAX_BUCKETS, Outcome};

/// The largest `T` or `τ` a store keeps, about 35.7 years; larger ones are clamped to it in both
/// backends alike. Together with [`MAX_NOW_US`] this keeps every number the script handles below
/// 2^53, where Lua's doubles are exact.
pub const MAX_INTERVAL_US: u64 = 1 << 50;

/// The latest `now_us` a store accepts (2^52 µs after the epoch, in the year 2112).
pub const MAX_NOW_US: u64 = 1 << 52;

/// What a store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The in-memory store is still full after dropping expired buckets.
    #[error("the in-memory rate-limit store is full ({capacity} buckets)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// More buckets than one decision may check.
    #[error("a decision checks at most {MAX_BUCKETS} buckets, not {0}")]
    TooManyBuckets(usize),
    /// `now_us` is past [`MAX_NOW_US`].
    #[error("the time {0} µs is out of range")]
    TimeOutOfRange(u64),
    /// The script answered something other than `{allowed, tat_1..tat_n}`.
    #[error("unexpected reply from the rate-limit script: {0}")]
    Reply(String),
}

/// One bucket of a decision: its key (see [`crate::keys`]) and its limit. The bucket's `tat_us`
/// is ignored: the store's own state replaces it.
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    /// The bucket's key, e.g. `portcullis:main:rl:login:ip:192.0.2.7`.
    pub key: &'a str,
    /// The bucket's limit (`t_us`, `tau_us`).
    pub bucket: Bucket,
}

/// The Lua twin of [`gcra::decide`], run with EVALSHA: `KEYS[i]` is bucket i, `ARGV[1]` now (µs),
/// `ARGV[2i]`, `ARGV[2i+1]` its `T` and `τ` (µs). Returns `{allowed, tat_1..tat_n}`.
/// Numbers are written with `%d`, exact below 2^53: Lua's own number-to-string (`%.14g`, as in
/// `tostring` or `..`) would round a 16-digit µs TAT to 100 µs.
/// `GET` of a missing key is `false`, and `tonumber(false)` is nil, so `or now` applies.
const GCRA_LUA: &str = r"
local now = tonumber(ARGV[1])
local tats, ok = {}, 1
for i = 1, #KEYS do
  local tau = tonumber(ARGV[2*i+1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if tat - now > tau then ok = 0 end
  tats[i] = tat
end
if ok == 1 then
  for i = 1, #KEYS do
    tats[i] = tats[i] + tonumber(ARGV[2*i])
    redis.call('SET', KEYS[i], string.format('%d', tats[i]),
               'PX', string.format('%d', math.ceil((tats[i] - now) / 1000)))
  end
end
return {ok, unpack(tats)}
";

/// Built once so its SHA-1 is computed once; `invoke_async` sends EVALSHA and loads the script
/// only on NOSCRIPT (after a Redis restart: 3 round trips once, then 1).
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));

/// A map entry: the TAT and when it expires, both in the caller's µs (as `PX` in Redis).
#[derive(Clone, Copy, Debug)]
struct Entry {
    tat_us: u64,
    expires_us: u64,
}

/// The in-process backend: bounded, for one replica.
#[derive(Debug)]
pub struct Memory {
    capacity: usize,
    map: Mutex<HashMap<String, Entry>>,
}

/// The rate-limit store.
#[derive(Debug)]
pub enum Store {
    /// Shared by every replica: one EVALSHA per decision over a single-node connection.
    /// Redis Cluster is not supported (a multi-key script would need one hash slot).
    Redis(ConnectionManager),
    /// In this process only.
    Memory(Memory),
}

impl Store {
    /// A store on Redis.
    pub fn redis(connection: ConnectionManager) -> Self {
        Self::Redis(connection)
    }

    /// An in-process store holding at most `capacity` buckets.
    pub fn memory(capacity: usize) -> Self {
        Self::Memory(Memory {
            capacity,
            map: Mutex::new(HashMap::new()),
        })
    }

    /// Decides one request against up to [`MAX_BUCKETS`] buckets at `now_us`, all or nothing,
    /// and stores the new TATs when allowed. Redis: exactly one round trip (none for no
    /// buckets). The outcome's TATs feed [`gcra::retry_after_us`], [`gcra::remaining`] and the
    /// headers.
    pub async fn decide(&self, now_us: u64, checks: &[Check<'_>]) -> Result<Outcome, Error> {
        if checks.len() > MAX_BUCKETS {
            return Err(Error::TooManyBuckets(checks.len()));
        }
        if now_us > MAX_NOW_US {
            return Err(Error::TimeOutOfRange(now_us));
        }
        if checks.is_empty() {
            return Ok(gcra::decide(now_us, &[]));
        }
        match self {
            Self::Redis(connection) => decide_redis(connection, now_us, checks).await,
            Self::Memory(memory) => memory.decide(now_us, checks),
        }
    }
}

/// The limit as both backends apply it (see [`MAX_INTERVAL_US`]).
fn clamped(bucket: Bucket) -> Bucket {
    Bucket {
        tat_us: None,
        t_us: bucket.t_us.clamp(1, MAX_INTERVAL_US),
        tau_us: bucket.tau_us.min(MAX_INTERVAL_US),
    }
}

async fn decide_redis(
    connection: &ConnectionManager,
    now_us: u64,
    checks: &[Check<'_>],
) -> Result<Outcome, Error> {
    let mut invocation = GCRA.prepare_invoke();
    invocation.arg(now_us);
    for check in checks {
        let bucket = clamped(check.bucket);
        invocation
            .key(check.key)
            .arg(bucket.t_us)
            .arg(bucket.tau_us);
    }
    // A ConnectionManager is a handle onto one multiplexed connection: cloning it is cheap.
    let mut connection = connection.clone();
    let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
    let bad = || Error::Reply(format!("{reply:?}"));
    let (&allowed, tats) = reply.split_first().ok_or_else(bad)?;
    if tats.len() != checks.len() || !(allowed == 0 || allowed == 1) {
        return Err(bad());
    }
    let tats_us = tats
        .iter()
        .map(|&t| u64::try_from(t).map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome {
        allowed: allowed == 1,
        tats_us,
    })
}

impl Memory {
    fn decide(&self, now_us: u64, checks: &[Check<'_>]) -> Result<Outcome, Error> {
        // Entries are plain numbers, always consistent: a panic elsewhere cannot corrupt them.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let buckets: Vec<Bucket> = checks
            .iter()
            .map(|c| {
                let live = map.get(c.key).filter(|e| now_us < e.expires_us);
                clamped(c.bucket).with_tat(live.map(|e| e.tat_us))
            })
            .collect();
        let outcome = gcra::decide(now_us, &buckets);
        if !outcome.allowed {
            return Ok(outcome);
        }
        let new_keys = checks.iter().filter(|c| !map.contains_key(c.key)).count();
        if map.len() + new_keys > self.capacity {
            map.retain(|_, e| now_us < e.expires_us);
            let new_keys = checks.iter().filter(|c| !map.contains_key(c.key)).count();
            if map.len() + new_keys > self.capacity {
                return Err(Error::Full {
                    capacity: self.capacity,
                });
            }
        }
        for (check, &tat_us) in checks.iter().zip(&outcome.tats_us) {
            // As the script's PX: whole milliseconds, rounded up, so it never outlives its use.
            let ttl_us = (tat_us - now_us).div_ceil(1000).saturating_mul(1000);
            let entry = Entry {
                tat_us,
                expires_us: now_us.saturating_add(ttl_us),
            };
            map.insert(check.key.to_owned(), entry);
        }
        Ok(outcome)
    }

    /// How many buckets the map holds, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the map holds no bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NOW: u64 = 1_780_000_000_000_000;

    fn check(key: &str, requests: u64, burst: u64) -> Check<'_> {
        Check {
            key,
            bucket: Bucket::new(requests, Duration::from_secs(60), burst),
        }
    }

    async fn passes(store: &Store, now: u64, checks: &[Check<'_>], n: usize) -> usize {
        let mut passed = 0;
        for _ in 0..n {
            if store.decide(now, checks).await.is_ok_and(|o| o.allowed) {
                passed += 1;
            }
        }
        passed
    }

    #[tokio::test]
    async fn memory_passes_burst_plus_one_and_refusals_change_no_bucket() {
        let store = Store::memory(100);
        assert_eq!(passes(&store, NOW, &[check("a", 30, 10)], 20).await, 11);
        // "a" is exhausted: checking it with "b" refuses and leaves "b" untouched.
        assert_eq!(
            passes(&store, NOW, &[check("b", 1, 0), check("a", 30, 10)], 5).await,
            0
        );
        assert_eq!(passes(&store, NOW, &[check("b", 1, 0)], 5).await, 1);
    }

    #[tokio::test]
    async fn memory_full_after_sweep_is_an_error_and_expired_buckets_make_room() {
        let store = Store::memory(2);
        assert_eq!(
            passes(&store, NOW, &[check("a", 60, 0), check("b", 60, 0)], 1).await,
            1
        );
        let err = store.decide(NOW, &[check("c", 60, 0)]).await;
        assert!(matches!(err, Err(Error::Full { capacity: 2 })), "{err:?}");
        // 60/min: T = 1 s, so both expire one second later and "c" fits.
        let later = NOW + 1_000_000;
        assert!(
            store
                .decide(later, &[check("c", 60, 0)])
                .await
                .is_ok_and(|o| o.allowed)
        );
        if let Store::Memory(m) = &store {
            assert_eq!(m.len(), 1);
        }
    }

    #[tokio::test]
    async fn more_than_eight_buckets_or_a_far_future_time_are_refused_as_errors() {
        let store = Store::memory(100);
        let keys: Vec<String> = (0..9).map(|i| format!("k{i}")).collect();
        let checks: Vec<_> = keys.iter().map(|k| check(k, 1, 0)).collect();
        assert!(matches!(
            store.decide(NOW, &checks).await,
            Err(Error::TooManyBuckets(9))
        ));
        assert!(
            store
                .decide(NOW, &checks[..8])
                .await
                .is_ok_and(|o| o.allowed)
        );
        assert!(matches!(
            store.decide(MAX_NOW_US + 1, &checks[..1]).await,
            Err(Error::TimeOutOfRange(_))
        ));
    }
}
