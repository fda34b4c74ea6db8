//! Lockout counters: a state machine per key (a hash of the login identifier), run directly by
//! the in-memory store and as its Lua twin by Redis (`BEGIN_SCRIPT`, `FAIL_SCRIPT`), so both
//! stores count the same and Redis counts atomically across replicas. Parameters are plain
//! numbers (milliseconds since the epoch); the policy they come from is the domain's.

use sha2::{Digest, Sha256};

use super::Kv;
use super::memory::{Expiring, live};
use crate::store::{StoreError, locked};

/// The limits a counter applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterLimits {
    /// Window in which failures count, ms.
    pub window_ms: u64,
    /// Failures within the window that lock.
    pub max_failures: u32,
    /// First lock, ms; each further lock doubles it.
    pub base_lock_ms: u64,
    /// Longest lock, ms.
    pub max_lock_ms: u64,
    /// How long counters are kept after the last write, ms.
    pub memory_ms: u64,
}

/// The answer when an attempt begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt may proceed; it is the `number`-th (1-based) within the window, counted as a
    /// failure until it succeeds.
    Allowed {
        /// 1-based attempt number within the window.
        number: u32,
    },
    /// Locked for `retry_after_ms` more.
    Locked {
        /// Time left, ms.
        retry_after_ms: u64,
    },
}

/// Counters of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterState {
    /// Attempts counted in the current window (each counts until it succeeds).
    pub failures: u32,
    /// Start of the current window.
    pub window_start: u64,
    /// End of the current lock (0: none).
    pub locked_until: u64,
    /// Locks so far (doubles the next one).
    pub lockouts: u32,
}

impl CounterState {
    fn lock(&mut self, now: u64, limits: &CounterLimits) -> u64 {
        let factor = 1u64 << self.lockouts.min(31);
        let duration = limits
            .base_lock_ms
            .saturating_mul(factor)
            .min(limits.max_lock_ms);
        self.locked_until = now.saturating_add(duration);
        self.lockouts = self.lockouts.saturating_add(1);
        self.failures = 0;
        self.window_start = now;
        duration
    }

    /// Begins an attempt: refuses while locked, counts the attempt otherwise. An attempt past
    /// `max_failures` (others are still in flight) locks at once.
    pub fn begin(&mut self, now: u64, limits: &CounterLimits) -> Attempt {
        if self.locked_until > now {
            return Attempt::Locked {
                retry_after_ms: self.locked_until - now,
            };
        }
        if self.failures == 0 || now.saturating_sub(self.window_start) >= limits.window_ms {
            self.failures = 0;
            self.window_start = now;
        }
        if self.failures >= limits.max_failures {
            let retry_after_ms = self.lock(now, limits);
            return Attempt::Locked { retry_after_ms };
        }
        self.failures += 1;
        Attempt::Allowed {
            number: self.failures,
        }
    }

    /// Records that an attempt failed; locks when the window's failures reach the maximum.
    /// Returns the lock length when this failure started a lock.
    pub fn fail(&mut self, now: u64, limits: &CounterLimits) -> Option<u64> {
        if self.locked_until > now {
            return None;
        }
        (self.failures >= limits.max_failures).then(|| self.lock(now, limits))
    }
}

/// `CounterState::begin` in Lua. KEYS[1]: the counter hash. ARGV: now, window, max_failures,
/// base_lock, max_lock, memory (ms). Returns {1, attempt} when allowed, {0, retry_after}.
const BEGIN_SCRIPT: &str = r"
local now, window, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local base, maxl, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'f', 'ws', 'lu', 'lo')
local f, ws, lu, lo = tonumber(h[1]) or 0, tonumber(h[2]) or now, tonumber(h[3]) or 0, tonumber(h[4]) or 0
if lu > now then return {0, lu - now} end
if f == 0 or now - ws >= window then f = 0; ws = now end
if f >= max then
  local d = math.min(base * math.pow(2, math.min(lo, 31)), maxl)
  redis.call('HSET', KEYS[1], 'f', 0, 'ws', now, 'lu', now + d, 'lo', lo + 1)
  redis.call('PEXPIRE', KEYS[1], memory + d)
  return {0, d}
end
f = f + 1
redis.call('HSET', KEYS[1], 'f', f, 'ws', ws, 'lu', lu, 'lo', lo)
redis.call('PEXPIRE', KEYS[1], memory)
return {1, f}
";

/// `CounterState::fail` in Lua; same KEYS/ARGV as `BEGIN_SCRIPT`. Returns the lock length when
/// this failure started a lock, else 0.
const FAIL_SCRIPT: &str = r"
local now, max = tonumber(ARGV[1]), tonumber(ARGV[3])
local base, maxl, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'f', 'lu', 'lo')
local f, lu, lo = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
if lu > now or f < max then return 0 end
local d = math.min(base * math.pow(2, math.min(lo, 31)), maxl)
redis.call('HSET', KEYS[1], 'f', 0, 'ws', now, 'lu', now + d, 'lo', lo + 1)
redis.call('PEXPIRE', KEYS[1], memory + d)
return d
";

/// Counters are keyed by a hash of the identifier, so the store holds no email addresses.
fn counter_key(identifier: &str) -> String {
    let digest: String = Sha256::digest(identifier.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("lock:{digest}")
}

fn script_args(now_ms: u64, limits: &CounterLimits) -> [u64; 6] {
    [
        now_ms,
        limits.window_ms,
        u64::from(limits.max_failures),
        limits.base_lock_ms,
        limits.max_lock_ms,
        limits.memory_ms,
    ]
}

/// Runs `step` on the in-memory counters of `identifier`, keeping them `memory_ms` (plus the
/// lock) after this write.
fn with_counter<T>(
    memory: &std::sync::Mutex<super::memory::MemoryKv>,
    identifier: &str,
    limits: &CounterLimits,
    step: impl FnOnce(&mut CounterState) -> T,
) -> Result<T, StoreError> {
    let mut mem = locked(memory)?;
    let now = mem.now_ms();
    let key = counter_key(identifier);
    let mut state = live(&mut mem.locks, &key, now).copied().unwrap_or_default();
    let answer = step(&mut state);
    let expires_ms = now
        .saturating_add(limits.memory_ms)
        .saturating_add(state.locked_until.saturating_sub(now));
    mem.locks.insert(
        key,
        Expiring {
            value: state,
            expires_ms,
        },
    );
    Ok(answer)
}

impl Kv {
    /// Begins a login attempt for a canonical identifier at `now_ms`, atomically.
    pub async fn begin_attempt(
        &self,
        identifier: &str,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Attempt, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (allowed, value): (u32, u64) = redis::Script::new(BEGIN_SCRIPT)
                    .key(format!("{prefix}{}", counter_key(identifier)))
                    .arg(&script_args(now_ms, limits)[..])
                    .invoke_async(&mut conn)
                    .await?;
                Ok(if allowed == 1 {
                    Attempt::Allowed {
                        number: u32::try_from(value).unwrap_or(u32::MAX),
                    }
                } else {
                    Attempt::Locked {
                        retry_after_ms: value,
                    }
                })
            }
            Kv::Memory(m) => with_counter(m, identifier, limits, |s| s.begin(now_ms, limits)),
        }
    }

    /// Records a failed attempt; returns the lock length (ms) if this failure started a lock.
    pub async fn fail_attempt(
        &self,
        identifier: &str,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let locked_ms: u64 = redis::Script::new(FAIL_SCRIPT)
                    .key(format!("{prefix}{}", counter_key(identifier)))
                    .arg(&script_args(now_ms, limits)[..])
                    .invoke_async(&mut conn)
                    .await?;
                Ok((locked_ms > 0).then_some(locked_ms))
            }
            Kv::Memory(m) => with_counter(m, identifier, limits, |s| s.fail(now_ms, limits)),
        }
    }

    /// Forgets an identifier's failures and lock (successful login, admin unlock).
    pub async fn clear_attempts(&self, identifier: &str) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: u32 = redis::AsyncCommands::del(
                    &mut conn,
                    format!("{prefix}{}", counter_key(identifier)),
                )
                .await?;
                Ok(())
            }
            Kv::Memory(m) => {
                locked(m)?.locks.remove(&counter_key(identifier));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The realm defaults: 5 failures in 15 minutes, locks of 1 minute doubling to 1 hour.
    const LIMITS: CounterLimits = CounterLimits {
        window_ms: 15 * 60_000,
        max_failures: 5,
        base_lock_ms: 60_000,
        max_lock_ms: 3_600_000,
        memory_ms: 2 * 3_600_000,
    };

    #[test]
    fn the_fifth_failure_locks_for_the_base_lock() {
        let mut s = CounterState::default();
        for n in 1..=5 {
            assert_eq!(s.begin(1_000, &LIMITS), Attempt::Allowed { number: n });
            let lock = s.fail(1_000, &LIMITS);
            assert_eq!(lock.is_some(), n == 5, "attempt {n}");
        }
        assert_eq!(
            s.begin(1_000, &LIMITS),
            Attempt::Locked {
                retry_after_ms: 60_000
            }
        );
        assert!(matches!(s.begin(60_999, &LIMITS), Attempt::Locked { .. }));
        assert_eq!(s.begin(61_000, &LIMITS), Attempt::Allowed { number: 1 });
    }

    #[test]
    fn concurrent_attempts_beyond_the_maximum_are_refused() {
        let mut s = CounterState::default();
        let allowed = (0..20)
            .map(|_| s.begin(0, &LIMITS))
            .filter(|d| matches!(d, Attempt::Allowed { .. }))
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut s = CounterState::default();
        for _ in 0..4 {
            s.begin(0, &LIMITS);
            s.fail(0, &LIMITS);
        }
        assert_eq!(
            s.begin(LIMITS.window_ms, &LIMITS),
            Attempt::Allowed { number: 1 }
        );
    }

    #[test]
    fn each_further_lock_doubles_up_to_the_maximum() {
        let mut s = CounterState::default();
        let mut now = 0;
        let mut locks = Vec::new();
        for _ in 0..8 {
            for _ in 0..5 {
                s.begin(now, &LIMITS);
                if let Some(d) = s.fail(now, &LIMITS) {
                    locks.push(d / 60_000);
                    now += d;
                }
            }
        }
        assert_eq!(locks, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[tokio::test]
    async fn the_memory_store_keeps_counters_on_its_clock() {
        let clock = crate::clock::Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let kv = Kv::memory(clock.clone());
        for _ in 0..5 {
            kv.begin_attempt("a@example.com", clock.now_ms(), &LIMITS)
                .await
                .unwrap();
            kv.fail_attempt("a@example.com", clock.now_ms(), &LIMITS)
                .await
                .unwrap();
        }
        assert!(matches!(
            kv.begin_attempt("a@example.com", clock.now_ms(), &LIMITS)
                .await
                .unwrap(),
            Attempt::Locked { .. }
        ));
        // Past the lock and the memory, the counters are gone: the next lock is the base one.
        clock.advance(std::time::Duration::from_millis(
            LIMITS.memory_ms + LIMITS.base_lock_ms,
        ));
        assert_eq!(
            kv.begin_attempt("a@example.com", clock.now_ms(), &LIMITS)
                .await
                .unwrap(),
            Attempt::Allowed { number: 1 }
        );
    }
}
