//! Lockout counters: per login identifier, one counter for each client address and one for
//! the identifier as a whole, so failures from one address lock that address out while the
//! identifier locks for everyone only past a higher ceiling. A state machine run directly by
//! the in-memory store and as its Lua twin by Redis (`BEGIN_SCRIPT`, `FAIL_SCRIPT`), so both
//! stores count the same and Redis counts atomically across replicas. Parameters are plain
//! numbers (milliseconds since the epoch); the policy they come from is the domain's.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Kv;
use super::memory::{insert_bounded, live};
use crate::store::{StoreError, locked};

/// The limits the counters apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterLimits {
    /// Window in which failures count, ms.
    pub window_ms: u64,
    /// Failures from one address within the window that lock that address out.
    pub max_failures: u32,
    /// Failures from all addresses within the window that lock the identifier for everyone.
    pub max_failures_overall: u32,
    /// First lock, ms; each further lock of the same counter doubles it.
    pub base_lock_ms: u64,
    /// Longest lock, ms.
    pub max_lock_ms: u64,
    /// How long counters are kept after the last write, ms.
    pub memory_ms: u64,
}

/// The answer when an attempt begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt may proceed; it is the `number`-th (1-based) from its address within the
    /// window, counted as a failure until it succeeds.
    Allowed {
        /// 1-based attempt number of the address within the window.
        number: u32,
    },
    /// Locked for `retry_after_ms` more.
    Locked {
        /// Time left, ms.
        retry_after_ms: u64,
    },
}

/// One counter: failures in the current window and the lock they led to.
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
    fn lock_left(&self, now: u64) -> Option<u64> {
        (self.locked_until > now).then(|| self.locked_until - now)
    }

    fn open_window(&mut self, now: u64, window_ms: u64) {
        if self.failures == 0 || now.saturating_sub(self.window_start) >= window_ms {
            self.failures = 0;
            self.window_start = now;
        }
    }

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

    fn lock_if_over(&mut self, now: u64, max: u32, limits: &CounterLimits) -> Option<u64> {
        (self.lock_left(now).is_none() && self.failures >= max).then(|| self.lock(now, limits))
    }
}

/// The counters of one identifier: overall, and per client address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    /// All addresses together.
    pub overall: CounterState,
    /// Each address.
    pub sources: HashMap<String, CounterState>,
}

impl LockState {
    /// Begins an attempt from `source`: refused while the identifier or the address is locked;
    /// counted on both otherwise. An attempt past a maximum (others are still in flight) locks
    /// at once.
    pub fn begin(&mut self, now: u64, source: &str, limits: &CounterLimits) -> Attempt {
        if let Some(retry_after_ms) = self.overall.lock_left(now) {
            return Attempt::Locked { retry_after_ms };
        }
        let src = self.sources.entry(source.to_owned()).or_default();
        if let Some(retry_after_ms) = src.lock_left(now) {
            return Attempt::Locked { retry_after_ms };
        }
        self.overall.open_window(now, limits.window_ms);
        src.open_window(now, limits.window_ms);
        if self.overall.failures >= limits.max_failures_overall {
            let retry_after_ms = self.overall.lock(now, limits);
            return Attempt::Locked { retry_after_ms };
        }
        if src.failures >= limits.max_failures {
            let retry_after_ms = src.lock(now, limits);
            return Attempt::Locked { retry_after_ms };
        }
        self.overall.failures += 1;
        src.failures += 1;
        Attempt::Allowed {
            number: src.failures,
        }
    }

    /// Records that an attempt from `source` failed; locks a counter that reached its maximum.
    /// Returns the longest lock this failure started.
    pub fn fail(&mut self, now: u64, source: &str, limits: &CounterLimits) -> Option<u64> {
        let overall = self
            .overall
            .lock_if_over(now, limits.max_failures_overall, limits);
        let src = self.sources.entry(source.to_owned()).or_default();
        let own = src.lock_if_over(now, limits.max_failures, limits);
        overall.max(own)
    }

    /// When the counters may be forgotten: `memory_ms` after now, or after the longest lock.
    fn keep_until(&self, now: u64, limits: &CounterLimits) -> u64 {
        let last_lock = self
            .sources
            .values()
            .map(|c| c.locked_until)
            .chain([self.overall.locked_until])
            .max()
            .unwrap_or(0);
        now.max(last_lock).saturating_add(limits.memory_ms)
    }
}

/// What both scripts share: the arguments, and loading, saving and locking a counter (the
/// `CounterState` methods). KEYS[1]: the counters' hash (fields `k:*` overall, `s:<addr>:*` per
/// address). ARGV: now, window, max_failures, max_failures_overall, base_lock, max_lock,
/// memory (ms), address.
macro_rules! lua_prelude {
    () => {
        r"
local now, window, maxs, maxk = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local base, maxl, memory, sp = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), 's:' .. ARGV[8] .. ':'
local function load(p)
  local h = redis.call('HMGET', KEYS[1], p .. 'f', p .. 'ws', p .. 'lu', p .. 'lo')
  return {f = tonumber(h[1]) or 0, ws = tonumber(h[2]) or now, lu = tonumber(h[3]) or 0, lo = tonumber(h[4]) or 0}
end
local function save(p, c) redis.call('HSET', KEYS[1], p .. 'f', c.f, p .. 'ws', c.ws, p .. 'lu', c.lu, p .. 'lo', c.lo) end
local function lock(c)
  local d = math.min(base * math.pow(2, math.min(c.lo, 31)), maxl)
  c.lu = now + d; c.lo = c.lo + 1; c.f = 0; c.ws = now
  return d
end
local function keep(want)
  if redis.call('PTTL', KEYS[1]) < want then redis.call('PEXPIRE', KEYS[1], want) end
end
"
    };
}

/// `LockState::begin` in Lua. Returns {1, attempt} when allowed, {0, retry_after}.
const BEGIN_SCRIPT: &str = concat!(
    lua_prelude!(),
    r"
local function open(c) if c.f == 0 or now - c.ws >= window then c.f = 0; c.ws = now end end
local k = load('k:')
if k.lu > now then return {0, k.lu - now} end
local s = load(sp)
if s.lu > now then return {0, s.lu - now} end
open(k); open(s)
local d = 0
if k.f >= maxk then d = lock(k) elseif s.f >= maxs then d = lock(s) end
if d == 0 then k.f = k.f + 1; s.f = s.f + 1 end
save('k:', k); save(sp, s)
keep(d + memory)
if d > 0 then return {0, d} end
return {1, s.f}
"
);

/// `LockState::fail` in Lua, with the stuffing signal in the same round trip. Returns
/// `{lock, first, crossed}`: the longest lock this failure started (else 0); 1 when it is the
/// identifier's first failure in the window; 1 when, with a probe, the address's distinct
/// failing identifiers (a HyperLogLog, KEYS[2]) just reached ARGV[10] in this stuffing window
/// (once per address and window: the marker KEYS[3]). ARGV[9]: the identifier's digest;
/// ARGV[11]: how long the window's keys live, ms.
const FAIL_SCRIPT: &str = concat!(
    lua_prelude!(),
    r"
local k, s = load('k:'), load(sp)
local first = 0
if k.f == 1 then first = 1 end
local d = 0
if k.lu <= now and k.f >= maxk then d = lock(k); save('k:', k) end
if s.lu <= now and s.f >= maxs then d = math.max(d, lock(s)); save(sp, s) end
if d > 0 then keep(d + memory) end
local crossed = 0
if #KEYS >= 3 then
  redis.call('PFADD', KEYS[2], ARGV[9])
  redis.call('PEXPIRE', KEYS[2], ARGV[11])
  if redis.call('PFCOUNT', KEYS[2]) >= tonumber(ARGV[10]) and redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[11]) then
    crossed = 1
  end
end
return {d, first, crossed}
"
);

/// Built once, so its SHA-1 is computed once (EVALSHA on every failure).
static FAIL: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(FAIL_SCRIPT));

/// Stuffing windows: distinct failing identifiers are counted per address in 10 minutes.
pub const STUFFING_WINDOW_MS: u64 = 600_000;

/// The stuffing signal a login failure feeds: the failing address's bucket (an IPv6 /64 counts
/// as one address) and how many distinct identifiers in one window make it a source.
#[derive(Clone, Copy, Debug)]
pub struct StuffingProbe<'a> {
    /// The address's rate-limit bucket (`portcullis_ratelimit::keys::ip_bucket`).
    pub source_bucket: &'a str,
    /// The realm's `alertThresholds.credentialStuffingIdentifiersPerIp`.
    pub threshold: u32,
}

/// What a failed login changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// The lock this failure started, ms.
    pub lock_ms: Option<u64>,
    /// The identifier's first failure in the lockout window (for the spraying signal).
    pub first_failure: bool,
    /// The address just became a stuffing source in this window (once per address and window).
    pub stuffing_crossed: bool,
}

/// The stuffing keys of `bucket` at `now_ms`: the HyperLogLog and the once-marker.
fn stuffing_keys(bucket: &str, now_ms: u64) -> (String, String) {
    let window = now_ms / STUFFING_WINDOW_MS;
    (
        format!("stuff:{bucket}:{window}"),
        format!("stuffed:{bucket}:{window}"),
    )
}

/// The identifier as one element of a stuffing set: 8 bytes of its SHA-256, no address kept.
fn stuffing_element(identifier: &str) -> [u8; 8] {
    let digest = Sha256::digest(identifier.as_bytes());
    let mut element = [0; 8];
    element.copy_from_slice(&digest[..8]);
    element
}

/// Counters are keyed by a hash of the identifier, so the store holds no email addresses.
pub(super) fn counter_key(identifier: &str) -> String {
    let digest: String = Sha256::digest(identifier.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("lock:{digest}")
}

/// The key of an account's second-factor counter: apart from the password's, so that nothing
/// the password path does (a reset, a re-check, a right password) lifts it. Keyed by account,
/// never by login identifier.
pub(super) fn mfa_key(user_id: Uuid) -> String {
    format!("mfa:{user_id}")
}

/// The one address of the second-factor counter. Whoever reaches the second factor knows the
/// password, so a budget per address would only hand them more guesses: the account counts
/// as a whole, and its lock is that of one address (`max_failures`).
const MFA_SOURCE: &str = "account";

fn script_args(now_ms: u64, limits: &CounterLimits, source: &str) -> Vec<String> {
    [
        now_ms,
        limits.window_ms,
        u64::from(limits.max_failures),
        u64::from(limits.max_failures_overall),
        limits.base_lock_ms,
        limits.max_lock_ms,
        limits.memory_ms,
    ]
    .iter()
    .map(u64::to_string)
    .chain([source.to_owned()])
    .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The memory twin of the stuffing part of `FAIL_SCRIPT`: an exact set per address and window,
/// capped at the threshold (counting further would change nothing), and the once-marker.
fn stuff_in_memory(
    memory: &std::sync::Mutex<super::memory::MemoryKv>,
    identifier: &str,
    probe: StuffingProbe<'_>,
) -> Result<bool, StoreError> {
    let mut mem = locked(memory)?;
    let now = mem.now_ms();
    let (set_key, marker_key) = stuffing_keys(probe.source_bucket, now);
    let mut set = live(&mut mem.stuffing, &set_key, now)
        .cloned()
        .unwrap_or_default();
    let cap = usize::try_from(probe.threshold).unwrap_or(usize::MAX);
    if set.len() < cap {
        set.insert(stuffing_element(identifier));
    }
    let reached = set.len() >= cap;
    let bound = mem.bound(2 * STUFFING_WINDOW_MS);
    insert_bounded(
        &mut mem.stuffing,
        &set_key,
        set,
        bound,
        "in-memory stuffing store",
    )?;
    if !reached || live(&mut mem.stuffed, &marker_key, now).is_some() {
        return Ok(false);
    }
    insert_bounded(
        &mut mem.stuffed,
        &marker_key,
        (),
        bound,
        "in-memory stuffing store",
    )?;
    Ok(true)
}

/// The counters of the Lua scripts' hash: fields `k:<f|ws|lu|lo>` overall and
/// `s:<address>:<f|ws|lu|lo>` per address (an address may hold colons: the suffix is split
/// from the right).
fn lock_state_of(fields: &HashMap<String, u64>) -> LockState {
    let mut state = LockState::default();
    for (field, &value) in fields {
        let (counter, part) = match field.strip_prefix("k:") {
            Some(part) => (&mut state.overall, part),
            None => {
                let Some((source, part)) = field
                    .strip_prefix("s:")
                    .and_then(|rest| rest.rsplit_once(':'))
                else {
                    continue;
                };
                (state.sources.entry(source.to_owned()).or_default(), part)
            }
        };
        match part {
            "f" => counter.failures = u32::try_from(value).unwrap_or(u32::MAX),
            "ws" => counter.window_start = value,
            "lu" => counter.locked_until = value,
            "lo" => counter.lockouts = u32::try_from(value).unwrap_or(u32::MAX),
            _ => {}
        }
    }
    state
}

/// Runs `step` on the in-memory counters stored under `key`, keeping them `memory_ms` (plus
/// the lock) after this write.
fn with_counter<T>(
    memory: &std::sync::Mutex<super::memory::MemoryKv>,
    key: &str,
    limits: &CounterLimits,
    step: impl FnOnce(&mut LockState) -> T,
) -> Result<T, StoreError> {
    let mut mem = locked(memory)?;
    let now = mem.now_ms();
    let mut state = live(&mut mem.locks, key, now).cloned().unwrap_or_default();
    let answer = step(&mut state);
    let bound = mem.bound(state.keep_until(now, limits).saturating_sub(now));
    insert_bounded(&mut mem.locks, key, state, bound, "in-memory lockout store")?;
    Ok(answer)
}

impl Kv {
    /// Begins a login attempt for a canonical identifier from `source` (the client address) at
    /// `now_ms`, atomically.
    pub async fn begin_attempt(
        &self,
        identifier: &str,
        source: &str,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Attempt, StoreError> {
        self.begin_counted(&counter_key(identifier), source, now_ms, limits)
            .await
    }

    /// Begins a second-factor attempt of the account `user_id` at `now_ms`, atomically, on
    /// its own counter (see [`mfa_key`]).
    pub async fn begin_mfa_attempt(
        &self,
        user_id: Uuid,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Attempt, StoreError> {
        self.begin_counted(&mfa_key(user_id), MFA_SOURCE, now_ms, limits)
            .await
    }

    /// Records a failed second factor of the account `user_id`; returns the lock length (ms)
    /// if this failure started a lock.
    pub async fn fail_mfa_attempt(
        &self,
        user_id: Uuid,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .fail_counted(&mfa_key(user_id), MFA_SOURCE, now_ms, limits, None)
            .await?
            .lock_ms)
    }

    /// Forgets the second-factor failures and lock of the account `user_id` (a right second
    /// factor, an admin unlock; never anything the password alone does).
    pub async fn clear_mfa_attempts(&self, user_id: Uuid) -> Result<(), StoreError> {
        self.clear_counter(&mfa_key(user_id)).await
    }

    /// [`Kv::begin_attempt`] on the counters stored under `key`.
    async fn begin_counted(
        &self,
        key: &str,
        source: &str,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Attempt, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (allowed, value): (u32, u64) = redis::Script::new(BEGIN_SCRIPT)
                    .key(format!("{prefix}{key}"))
                    .arg(script_args(now_ms, limits, source))
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
            Kv::Memory(m) => with_counter(m, key, limits, |s| s.begin(now_ms, source, limits)),
        }
    }

    /// Records a failed attempt from `source`; returns the lock length (ms) if this failure
    /// started a lock.
    pub async fn fail_attempt(
        &self,
        identifier: &str,
        source: &str,
        now_ms: u64,
        limits: &CounterLimits,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .fail_login(identifier, source, now_ms, limits, None)
            .await?
            .lock_ms)
    }

    /// Records a failed login from `source` as [`Kv::fail_attempt`] does and, with a probe,
    /// feeds the address's stuffing signal, in the same round trip.
    pub async fn fail_login(
        &self,
        identifier: &str,
        source: &str,
        now_ms: u64,
        limits: &CounterLimits,
        probe: Option<StuffingProbe<'_>>,
    ) -> Result<Failure, StoreError> {
        self.fail_counted(
            &counter_key(identifier),
            source,
            now_ms,
            limits,
            probe.map(|p| (p, identifier)),
        )
        .await
    }

    /// [`Kv::fail_login`] on the counters stored under `key`; the probe comes with the
    /// identifier it counts.
    async fn fail_counted(
        &self,
        key: &str,
        source: &str,
        now_ms: u64,
        limits: &CounterLimits,
        probe: Option<(StuffingProbe<'_>, &str)>,
    ) -> Result<Failure, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut invocation = FAIL.key(format!("{prefix}{key}"));
                let mut args = script_args(now_ms, limits, source);
                if let Some((probe, identifier)) = probe {
                    let (set, marker) = stuffing_keys(probe.source_bucket, now_ms);
                    invocation
                        .key(format!("{prefix}{set}"))
                        .key(format!("{prefix}{marker}"));
                    args.extend([
                        hex(&stuffing_element(identifier)),
                        probe.threshold.to_string(),
                        (2 * STUFFING_WINDOW_MS).to_string(),
                    ]);
                }
                let (locked_ms, first, crossed): (u64, u8, u8) =
                    invocation.arg(args).invoke_async(&mut conn).await?;
                Ok(Failure {
                    lock_ms: (locked_ms > 0).then_some(locked_ms),
                    first_failure: first == 1,
                    stuffing_crossed: crossed == 1,
                })
            }
            Kv::Memory(m) => {
                let (lock_ms, first_failure) = with_counter(m, key, limits, |s| {
                    let first = s.overall.failures == 1;
                    (s.fail(now_ms, source, limits), first)
                })?;
                let stuffing_crossed = match probe {
                    Some((probe, identifier)) => stuff_in_memory(m, identifier, probe)?,
                    None => false,
                };
                Ok(Failure {
                    lock_ms,
                    first_failure,
                    stuffing_crossed,
                })
            }
        }
    }

    /// The counters of an identifier as stored (none when it has no recent failure or lock).
    pub async fn lock_state(&self, identifier: &str) -> Result<Option<LockState>, StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let fields: HashMap<String, u64> = redis::AsyncCommands::hgetall(
                    &mut conn,
                    format!("{prefix}{}", counter_key(identifier)),
                )
                .await?;
                Ok((!fields.is_empty()).then(|| lock_state_of(&fields)))
            }
            Kv::Memory(m) => {
                let mut mem = locked(m)?;
                let now = mem.now_ms();
                Ok(live(&mut mem.locks, &counter_key(identifier), now).cloned())
            }
        }
    }

    /// Forgets an identifier's password failures and locks, from every address (successful
    /// login, admin unlock, password reset). The second factor's counter is another key and
    /// stays: see [`Kv::clear_mfa_attempts`].
    pub async fn clear_attempts(&self, identifier: &str) -> Result<(), StoreError> {
        self.clear_counter(&counter_key(identifier)).await
    }

    /// Deletes the counters stored under `key`.
    async fn clear_counter(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: u32 = redis::AsyncCommands::del(&mut conn, format!("{prefix}{key}")).await?;
                Ok(())
            }
            Kv::Memory(m) => {
                locked(m)?.locks.remove(key);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_hash_reads_back_as_counters_even_for_ipv6_sources() {
        let fields: HashMap<String, u64> = [
            ("k:f", 3),
            ("k:lu", 0),
            ("s:2001:db8:aa:bb00::/56:f", 2),
            ("s:2001:db8:aa:bb00::/56:lu", 9_000),
            ("s:192.0.2.1:lo", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let state = lock_state_of(&fields);
        assert_eq!(state.overall.failures, 3);
        let v6 = state.sources["2001:db8:aa:bb00::/56"];
        assert_eq!((v6.failures, v6.locked_until), (2, 9_000));
        assert_eq!(state.sources["192.0.2.1"].lockouts, 1);
    }

    /// The realm defaults: 5 failures in 15 minutes, locks of 1 minute doubling to 1 hour;
    /// 100 failures from all addresses lock the identifier.
    const LIMITS: CounterLimits = CounterLimits {
        window_ms: 15 * 60_000,
        max_failures: 5,
        max_failures_overall: 100,
        base_lock_ms: 60_000,
        max_lock_ms: 3_600_000,
        memory_ms: 2 * 3_600_000,
    };

    const A: &str = "203.0.113.66";
    const B: &str = "198.51.100.7";

    #[test]
    fn the_fifth_failure_from_an_address_locks_it_for_the_base_lock() {
        let mut s = LockState::default();
        for n in 1..=5 {
            assert_eq!(s.begin(1_000, A, &LIMITS), Attempt::Allowed { number: n });
            let lock = s.fail(1_000, A, &LIMITS);
            assert_eq!(lock.is_some(), n == 5, "attempt {n}");
        }
        assert_eq!(
            s.begin(1_000, A, &LIMITS),
            Attempt::Locked {
                retry_after_ms: 60_000
            }
        );
        assert!(matches!(
            s.begin(60_999, A, &LIMITS),
            Attempt::Locked { .. }
        ));
        assert_eq!(s.begin(61_000, A, &LIMITS), Attempt::Allowed { number: 1 });
    }

    #[test]
    fn a_locked_address_does_not_lock_another() {
        let mut s = LockState::default();
        for _ in 0..5 {
            s.begin(0, A, &LIMITS);
            s.fail(0, A, &LIMITS);
        }
        assert!(matches!(s.begin(0, A, &LIMITS), Attempt::Locked { .. }));
        assert_eq!(s.begin(0, B, &LIMITS), Attempt::Allowed { number: 1 });
    }

    #[test]
    fn failures_from_many_addresses_lock_the_identifier_for_everyone() {
        let limits = CounterLimits {
            max_failures: 1,
            max_failures_overall: 20,
            ..LIMITS
        };
        let mut s = LockState::default();
        for n in 0..20 {
            let source = format!("203.0.113.{n}");
            assert!(matches!(
                s.begin(0, &source, &limits),
                Attempt::Allowed { .. }
            ));
            s.fail(0, &source, &limits);
        }
        assert!(matches!(s.begin(0, B, &limits), Attempt::Locked { .. }));
    }

    #[test]
    fn concurrent_attempts_beyond_the_maximum_are_refused() {
        let mut s = LockState::default();
        let allowed = (0..20)
            .map(|_| s.begin(0, A, &LIMITS))
            .filter(|d| matches!(d, Attempt::Allowed { .. }))
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut s = LockState::default();
        for _ in 0..4 {
            s.begin(0, A, &LIMITS);
            s.fail(0, A, &LIMITS);
        }
        assert_eq!(
            s.begin(LIMITS.window_ms, A, &LIMITS),
            Attempt::Allowed { number: 1 }
        );
    }

    #[test]
    fn each_further_lock_doubles_up_to_the_maximum() {
        let mut s = LockState::default();
        let mut now = 0;
        let mut locks = Vec::new();
        for _ in 0..8 {
            for _ in 0..5 {
                s.begin(now, A, &LIMITS);
                if let Some(d) = s.fail(now, A, &LIMITS) {
                    locks.push(d / 60_000);
                    now += d;
                }
            }
        }
        assert_eq!(locks, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[tokio::test]
    async fn a_full_memory_store_sweeps_expired_entries_and_then_refuses() {
        let clock = crate::clock::Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let kv = Kv::memory_with_capacity(clock.clone(), 2);
        for id in ["a@example.com", "b@example.com"] {
            kv.begin_attempt(id, A, clock.now_ms(), &LIMITS)
                .await
                .unwrap();
        }
        assert!(matches!(
            kv.begin_attempt("c@example.com", A, clock.now_ms(), &LIMITS)
                .await,
            Err(StoreError::Full(_))
        ));
        clock.advance(std::time::Duration::from_millis(LIMITS.memory_ms));
        assert!(
            kv.begin_attempt("c@example.com", A, clock.now_ms(), &LIMITS)
                .await
                .is_ok(),
            "expired counters make room"
        );
    }

    #[tokio::test]
    async fn the_memory_store_keeps_counters_on_its_clock() {
        let clock = crate::clock::Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let kv = Kv::memory(clock.clone());
        let id = "a@example.com";
        for _ in 0..5 {
            kv.begin_attempt(id, A, clock.now_ms(), &LIMITS)
                .await
                .unwrap();
            kv.fail_attempt(id, A, clock.now_ms(), &LIMITS)
                .await
                .unwrap();
        }
        assert!(matches!(
            kv.begin_attempt(id, A, clock.now_ms(), &LIMITS)
                .await
                .unwrap(),
            Attempt::Locked { .. }
        ));
        // Past the lock and the memory, the counters are gone: the next lock is the base one.
        clock.advance(std::time::Duration::from_millis(
            LIMITS.memory_ms + LIMITS.base_lock_ms,
        ));
        assert_eq!(
            kv.begin_attempt(id, A, clock.now_ms(), &LIMITS)
                .await
                .unwrap(),
            Attempt::Allowed { number: 1 }
        );
    }

    #[tokio::test]
    async fn the_second_factor_counter_locks_the_account_and_only_its_own_clear_lifts_it() {
        let clock = crate::clock::Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let kv = Kv::memory(clock.clone());
        let user = Uuid::from_u128(7);
        for _ in 0..LIMITS.max_failures {
            assert!(matches!(
                kv.begin_mfa_attempt(user, clock.now_ms(), &LIMITS)
                    .await
                    .unwrap(),
                Attempt::Allowed { .. }
            ));
            kv.fail_mfa_attempt(user, clock.now_ms(), &LIMITS)
                .await
                .unwrap();
        }
        let locked = async || {
            matches!(
                kv.begin_mfa_attempt(user, clock.now_ms(), &LIMITS)
                    .await
                    .unwrap(),
                Attempt::Locked { .. }
            )
        };
        assert!(locked().await);
        // Whatever the password path clears, it is not this counter.
        kv.clear_attempts("a@example.com").await.unwrap();
        kv.clear_attempts(&user.to_string()).await.unwrap();
        assert!(locked().await);
        kv.clear_mfa_attempts(user).await.unwrap();
        assert!(!locked().await);
    }

    #[tokio::test]
    async fn the_memory_twin_reports_first_failures_and_a_stuffing_source_once() {
        let clock = crate::clock::Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let kv = Kv::memory(clock.clone());
        let probe = StuffingProbe {
            source_bucket: A,
            threshold: 3,
        };
        let fail = async |id: &str| {
            kv.begin_attempt(id, A, clock.now_ms(), &LIMITS)
                .await
                .unwrap();
            kv.fail_login(id, A, clock.now_ms(), &LIMITS, Some(probe))
                .await
                .unwrap()
        };
        let first = fail("a@example.com").await;
        assert!(first.first_failure && !first.stuffing_crossed);
        assert!(!fail("a@example.com").await.first_failure);
        assert!(!fail("b@example.com").await.stuffing_crossed);
        let third = fail("c@example.com").await;
        assert!(third.first_failure && third.stuffing_crossed);
        assert!(
            !fail("d@example.com").await.stuffing_crossed,
            "once per window"
        );
        // The next window starts over.
        clock.advance(std::time::Duration::from_millis(STUFFING_WINDOW_MS));
        for id in ["e@example.com", "f@example.com"] {
            assert!(!fail(id).await.stuffing_crossed);
        }
        assert!(fail("g@example.com").await.stuffing_crossed);
    }
}
