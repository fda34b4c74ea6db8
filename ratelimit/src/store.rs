//! Where bucket TATs live: Redis, shared by every replica, or a map in this process. Both run
//! the same rule ([`gcra::decide`]; in Redis as its Lua twin), atomically, in one step per
//! decision. Timeouts and the Open/Closed failure mode belong to the caller.

use std::collections::{BTreeSet, HashMap};
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
    /// The in-memory store cannot hold even the buckets of this one decision (its capacity is
    /// smaller than their number). A full map otherwise evicts, see [`Store::memory`].
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

/// How many expired entries one decision drops at most. Bounding the sweep keeps every
/// decision O(log n) even when a whole flood expires at once; the rest go on later decisions
/// or, when the map is full, by eviction (which takes the soonest expiry, so expired first).
const SWEEP_PER_DECISION: usize = 16;

/// The map and its expiry index, always changed together under one lock.
#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<String, Entry>,
    /// `(expires_us, key)` of every entry of `map`, so the next to expire is the first.
    by_expiry: BTreeSet<(u64, String)>,
}

impl Buckets {
    /// Drops up to [`SWEEP_PER_DECISION`] expired entries.
    fn sweep(&mut self, now_us: u64) {
        for _ in 0..SWEEP_PER_DECISION {
            match self.by_expiry.first() {
                Some((expires_us, _)) if *expires_us <= now_us => {}
                _ => return,
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.map.remove(&key);
            }
        }
    }

    /// Drops the entry closest to expiry whose key is not one of `keep` (the decision's own
    /// keys, about to be written). It carries the least state: its owner gets back at most the
    /// part of its burst not yet paid off. Returns false when there is nothing to drop.
    fn evict_one(&mut self, keep: &[Check<'_>]) -> bool {
        let victim = self
            .by_expiry
            .iter()
            .find(|(_, key)| !keep.iter().any(|c| c.key == key))
            .cloned();
        match victim {
            Some(victim) => {
                self.by_expiry.remove(&victim);
                self.map.remove(&victim.1);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, key: &str, entry: Entry) {
        if let Some(old) = self.map.insert(key.to_owned(), entry) {
            self.by_expiry.remove(&(old.expires_us, key.to_owned()));
        }
        self.by_expiry.insert((entry.expires_us, key.to_owned()));
    }
}

/// The in-process backend: bounded, for one replica.
///
/// A full map never refuses a decision: it evicts the buckets closest to expiry (expired ones
/// first), so a flood of new keys costs O(log n) per decision and can at worst hand a client
/// whose bucket was about to be full again the rest of its burst. A limited client stays
/// limited as long as some other bucket expires before its own.
#[derive(Debug)]
pub struct Memory {
    capacity: usize,
    buckets: Mutex<Buckets>,
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

    /// An in-process store holding at most `capacity` buckets. When it is full, a new bucket
    /// takes the place of the one closest to expiry (see [`Memory`]); [`Error::Full`] is left
    /// only for a decision with more distinct buckets than `capacity`.
    pub fn memory(capacity: usize) -> Self {
        Self::Memory(Memory {
            capacity,
            buckets: Mutex::new(Buckets::default()),
        })
    }

    /// Decides one request against up to [`MAX_BUCKETS`] buckets at `now_us`, all or nothing,
    /// and stores the new TATs when allowed. Redis: exactly one round trip (none for no
    /// buckets). The outcome's TATs feed [`gcra::retry_after_us`], [`gcra::remaining`] and the
    /// headers.
    ///
    /// A key given more than once is one bucket, checked and charged once, under the strictest
    /// of its limits (the largest `T`, the smallest `τ`) whatever the order; each of its
    /// positions in the outcome holds that bucket's TAT. (Charging it once per position would
    /// be the other consistent reading, but a repeated key is a caller's mistake, and one
    /// state cannot honour two limits.)
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
        let Some((distinct, slots)) = merge_repeated(checks) else {
            return self.decide_distinct(now_us, checks).await;
        };
        let merged = self.decide_distinct(now_us, &distinct).await?;
        let tats_us = slots
            .iter()
            .map(|&i| merged.tats_us.get(i).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Reply(format!("{merged:?}")))?;
        Ok(Outcome {
            allowed: merged.allowed,
            tats_us,
        })
    }

    async fn decide_distinct(&self, now_us: u64, checks: &[Check<'_>]) -> Result<Outcome, Error> {
        match self {
            Self::Redis(connection) => decide_redis(connection, now_us, checks).await,
            Self::Memory(memory) => memory.decide(now_us, checks),
        }
    }
}

/// `None` when every key is distinct (the usual case, no copy). Otherwise the distinct checks,
/// a repeated key's limits merged into the strictest (largest `T`, smallest `τ`, after the
/// store's clamp), and for each original position the index of its distinct check.
fn merge_repeated<'a>(checks: &[Check<'a>]) -> Option<(Vec<Check<'a>>, Vec<usize>)> {
    let repeated = checks
        .iter()
        .enumerate()
        .any(|(i, c)| checks[..i].iter().any(|d| d.key == c.key));
    if !repeated {
        return None;
    }
    let mut distinct: Vec<Check<'a>> = Vec::with_capacity(checks.len());
    let mut slots = Vec::with_capacity(checks.len());
    for check in checks {
        let bucket = clamped(check.bucket);
        match distinct.iter().position(|d| d.key == check.key) {
            Some(i) => {
                let merged = &mut distinct[i].bucket;
                merged.t_us = merged.t_us.max(bucket.t_us);
                merged.tau_us = merged.tau_us.min(bucket.tau_us);
                slots.push(i);
            }
            None => {
                slots.push(distinct.len());
                distinct.push(Check {
                    key: check.key,
                    bucket,
                });
            }
        }
    }
    Some((distinct, slots))
}

/// The limit as both backends apply it (see [`MAX_INTERVAL_US`]), without a TAT.
fn clamped(bucket: Bucket) -> Bucket {
    bucket.clamped().with_tat(None)
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
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.sweep(now_us);
        let limits: Vec<Bucket> = checks
            .iter()
            .map(|c| {
                let live = buckets.map.get(c.key).filter(|e| now_us < e.expires_us);
                clamped(c.bucket).with_tat(live.map(|e| e.tat_us))
            })
            .collect();
        let outcome = gcra::decide(now_us, &limits);
        if !outcome.allowed {
            return Ok(outcome);
        }
        let new_keys = checks
            .iter()
            .filter(|c| !buckets.map.contains_key(c.key))
            .count();
        while buckets.map.len() + new_keys > self.capacity {
            if !buckets.evict_one(checks) {
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
            buckets.insert(check.key, entry);
        }
        Ok(outcome)
    }

    /// How many buckets the map holds, expired ones included until they are swept or evicted.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
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

    /// How many of `n` decisions pass; an error fails the test rather than counting as a
    /// refusal.
    async fn passes(store: &Store, now: u64, checks: &[Check<'_>], n: usize) -> usize {
        let mut passed = 0;
        for _ in 0..n {
            if store.decide(now, checks).await.unwrap().allowed {
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

    fn hourly(key: &str) -> Check<'_> {
        Check {
            key,
            bucket: Bucket::new(1, Duration::from_secs(3600), 0),
        }
    }

    fn len(store: &Store) -> usize {
        match store {
            Store::Memory(m) => m.len(),
            Store::Redis(_) => unreachable!("a memory store"),
        }
    }

    #[tokio::test]
    async fn a_full_map_evicts_the_bucket_closest_to_expiry_and_expired_ones_first() {
        let store = Store::memory(2);
        // 60/min: T = 1 s, 1/min: T = 1 min, 1/h: T = 1 h; "a" expires first, then "b".
        let (a, b, c) = (check("a", 60, 0), check("b", 1, 0), hourly("c"));
        assert_eq!(passes(&store, NOW, &[a], 1).await, 1);
        assert_eq!(passes(&store, NOW, &[b], 1).await, 1);
        assert_eq!(passes(&store, NOW, &[c], 1).await, 1);
        assert_eq!(len(&store), 2);
        // "b" and "c" were kept (still limited; a refusal stores nothing, evicts nothing)...
        assert_eq!(passes(&store, NOW, &[b], 1).await, 0);
        assert_eq!(passes(&store, NOW, &[c], 1).await, 0);
        // ...and "a" was evicted: a fresh burst again, which takes the place of "b".
        assert_eq!(passes(&store, NOW, &[a], 2).await, 1);
        assert_eq!(passes(&store, NOW, &[c], 1).await, 0);
        assert_eq!(passes(&store, NOW, &[b], 1).await, 1);
        // Much later every entry has expired: no live bucket is dropped for the new ones.
        let later = NOW + 3_600_000_000;
        assert_eq!(
            passes(&store, later, &[check("d", 1, 0), check("e", 1, 0)], 1).await,
            1
        );
        assert_eq!(len(&store), 2);
    }

    #[tokio::test]
    async fn full_only_when_one_decision_has_more_buckets_than_the_capacity() {
        let store = Store::memory(2);
        let three = [check("a", 60, 0), check("b", 60, 0), check("c", 60, 0)];
        let err = store.decide(NOW, &three).await;
        assert!(matches!(err, Err(Error::Full { capacity: 2 })), "{err:?}");
        assert_eq!(len(&store), 0, "a failed decision stores nothing");
        assert_eq!(passes(&store, NOW, &three[..2], 1).await, 1);
        // "a" is present: only "c" is new, and evicting "b" makes room.
        assert_eq!(
            passes(&store, NOW + 1_000_000, &[three[0], three[2]], 1).await,
            1
        );
        assert_eq!(len(&store), 2);
    }

    #[tokio::test]
    async fn a_flood_of_new_keys_never_fails_a_new_client_and_a_limited_client_stays_limited() {
        const CAPACITY: usize = 1_000;
        let store = Store::memory(CAPACITY);
        // The limited client: 1/h without burst, so its key lives an hour.
        let victim = hourly("login:ip:victim");
        assert_eq!(passes(&store, NOW, &[victim], 2).await, 1);
        // The flood: password resets with random emails, 3/h burst 0 (T = 20 min), from many
        // IPs over 19 minutes, five times the capacity.
        let reset = Bucket::new(3, Duration::from_secs(3600), 0);
        let mut now = NOW;
        for i in 0..5 * CAPACITY {
            now = NOW + i as u64 * 228_000; // 19 min over the flood
            let key = format!("reset:user:{i}");
            let out = store
                .decide(
                    now,
                    &[Check {
                        key: &key,
                        bucket: reset,
                    }],
                )
                .await;
            assert!(out.is_ok_and(|o| o.allowed), "flood key {i}");
            assert!(len(&store) <= CAPACITY);
        }
        // A new client gets a correct decision: its burst, then a refusal.
        let newcomer = check("login:ip:newcomer", 30, 10);
        assert_eq!(passes(&store, now, &[newcomer], 12).await, 11);
        // The victim's key expires after every flood key: it was never evicted.
        assert_eq!(passes(&store, now, &[victim], 1).await, 0);
    }

    #[tokio::test]
    async fn a_repeated_key_is_one_bucket_under_its_strictest_limit_whatever_the_order() {
        // 1/min without burst (T = 60 s, τ = 0) and 30/min with burst 10 (T = 2 s, τ = 20 s).
        let (strict, lax) = (check("a", 1, 0), check("a", 30, 10));
        for order in [[strict, lax], [lax, strict]] {
            let store = Store::memory(1);
            let out = store.decide(NOW, &order).await.unwrap();
            assert!(out.allowed, "{order:?}");
            assert_eq!(out.tats_us, vec![NOW + 60_000_000; 2], "{order:?}");
            assert_eq!(len(&store), 1, "one bucket, within a capacity of 1");
            // 40 s later the lax limit alone would pass (59 s − 40 s ≤ τ = 20 s); the repeated
            // key is held to the strict one, τ = 0, until the minute is over.
            let later = NOW + 40_000_000;
            assert_eq!(passes(&store, later, &order, 1).await, 0);
            assert_eq!(passes(&store, NOW + 60_000_000, &order, 1).await, 1);
            assert_eq!(passes(&store, NOW + 60_000_000, &[lax], 1).await, 0);
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
