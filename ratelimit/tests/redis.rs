//! The Redis backend against a real Redis (`REDIS_URL`; `scripts/services.sh` starts one).
//! Every test uses its own key prefix so they run in parallel; the round-trip count takes an
//! exclusive lock because server-wide command statistics would see the others' calls.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_ratelimit::{Bucket, Check, Store, keys};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::{Barrier, RwLock};

/// Readers: ordinary tests. Writer: the test that counts server-wide command statistics.
static STATS: RwLock<()> = RwLock::const_new(());

/// A 16-digit µs time with odd low digits, as real timestamps have.
const NOW: u64 = 1_780_000_000_123_457;

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect(
        "REDIS_URL must point at a Redis server \
         (cd /work/wt-bench && source scripts/services.sh && ensure_services)",
    )
}

async fn connection() -> ConnectionManager {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
}

/// A key prefix no other test (or earlier run) shares.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:{nanos}:{test}:")
}

/// splitmix64: a seeded sequence, so a failure replays exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn the_lua_twin_and_the_memory_backend_give_identical_decisions_and_tats() {
    let _shared = STATS.read().await;
    let redis = Store::redis(connection().await);
    let memory = Store::memory(10_000);
    let prefix = prefix("twin");
    let mut rng = Rng(0x5eed_2026);
    // Eight buckets with fixed limits. Intervals and time steps are whole seconds so every key
    // still in use has at least 1 s to live on Redis's own clock: its expiry cannot differ
    // from the memory backend's, which runs on the simulated time.
    let keys: Vec<String> = (0..8).map(|i| format!("{prefix}k{i}")).collect();
    let limits: Vec<Bucket> = (0..8)
        .map(|_| Bucket::new(1, Duration::from_secs(1 + rng.below(4)), rng.below(4)))
        .collect();
    let (mut now, mut allowed, mut refused) = (NOW, 0, 0);
    for step in 0..400 {
        now += [0, 0, 0, 1_000_000, 2_000_000][rng.below(5) as usize];
        let mut chosen: Vec<usize> = (0..8).collect();
        for i in (1..8).rev() {
            chosen.swap(i, rng.below(i as u64 + 1) as usize);
        }
        chosen.truncate(1 + rng.below(8) as usize);
        let checks: Vec<Check<'_>> = chosen
            .iter()
            .map(|&i| Check {
                key: &keys[i],
                bucket: limits[i],
            })
            .collect();
        let from_redis = redis.decide(now, &checks).await.unwrap();
        let from_memory = memory.decide(now, &checks).await.unwrap();
        assert_eq!(
            from_redis, from_memory,
            "step {step} at {now} on {chosen:?}"
        );
        if from_redis.allowed {
            allowed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        allowed > 50 && refused > 50,
        "the sequence exercises both answers: {allowed} allowed, {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_burst_plus_one_of_many_concurrent_decisions_from_separate_connections_pass() {
    let _shared = STATS.read().await;
    const TASKS: usize = 32;
    let key = format!("{}bucket", prefix("concurrent"));
    let bucket = Bucket::new(1, Duration::from_secs(60), 4);
    let mut stores = Vec::new();
    for _ in 0..TASKS {
        stores.push(Arc::new(Store::redis(connection().await)));
    }
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for store in stores {
        let (key, start) = (key.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let check = Check { key: &key, bucket };
            store.decide(NOW, &[check]).await.unwrap().allowed
        }));
    }
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap());
    }
    assert_eq!(
        passed, 5,
        "burst 4 lets 5 through at once, whatever the interleaving"
    );
}

/// `calls=` of every `cmdstat_<name>` line of `INFO commandstats`.
async fn command_calls(conn: &mut ConnectionManager) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn calls_of(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(n, _)| n == name).map_or(0, |&(_, c)| c)
}

#[tokio::test]
async fn one_decision_is_exactly_one_evalsha() {
    let _alone = STATS.write().await;
    let store = Store::redis(connection().await);
    let mut stats_conn = connection().await;
    let prefix = prefix("roundtrip");
    let keys: Vec<String> = (0..4).map(|i| format!("{prefix}k{i}")).collect();
    let checks: Vec<Check<'_>> = keys
        .iter()
        .map(|key| Check {
            key,
            bucket: Bucket::new(100, Duration::from_secs(1), 1000),
        })
        .collect();
    // As after a Redis restart: the first call falls back to loading the script, and works.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut stats_conn)
        .await
        .unwrap();
    let flushed = command_calls(&mut stats_conn).await;
    assert!(store.decide(NOW, &checks).await.unwrap().allowed);
    let before = command_calls(&mut stats_conn).await;
    // The NOSCRIPT fallback really ran: the script was loaded again, once.
    assert_eq!(
        calls_of(&before, "script|load") - calls_of(&flushed, "script|load"),
        1,
        "the first call after SCRIPT FLUSH loads the script"
    );
    for i in 0..10 {
        assert!(store.decide(NOW + i, &checks).await.unwrap().allowed);
    }
    let after = command_calls(&mut stats_conn).await;
    let delta = |name: &str| calls_of(&after, name) - calls_of(&before, name);
    assert_eq!(delta("evalsha"), 10, "one EVALSHA per decision");
    assert_eq!(delta("eval"), 0);
    // Redis 7 also counts the commands the script runs: one GET and one SET per bucket. The
    // first INFO is counted once it has run. Nothing else reached the server.
    let mut changed: Vec<(String, u64)> = after
        .iter()
        .map(|(name, _)| (name.clone(), delta(name)))
        .filter(|&(_, d)| d > 0)
        .collect();
    changed.sort();
    let expected = [("evalsha", 10), ("get", 40), ("info", 1), ("set", 40)];
    let expected: Vec<(String, u64)> = expected.iter().map(|&(n, d)| (n.to_owned(), d)).collect();
    assert_eq!(changed, expected);
}

#[tokio::test]
async fn microsecond_tats_are_stored_and_returned_exactly() {
    let _shared = STATS.read().await;
    let store = Store::redis(connection().await);
    let mut conn = connection().await;
    let key = format!("{}exact", prefix("exact"));
    // T = 1_000_003 µs: the TAT's last digits would be lost to Lua's default %.14g.
    let bucket = Bucket::new(59, Duration::from_secs(59) + Duration::from_micros(177), 0);
    assert_eq!(bucket.t_us, 1_000_003);
    let out = store
        .decide(NOW, &[Check { key: &key, bucket }])
        .await
        .unwrap();
    assert!(out.allowed);
    assert_eq!(out.tats_us, vec![NOW + 1_000_003]);
    let stored: String = conn.get(&key).await.unwrap();
    assert_eq!(stored, (NOW + 1_000_003).to_string());
    let refused = store
        .decide(NOW + 1_000_002, &[Check { key: &key, bucket }])
        .await
        .unwrap();
    assert!(!refused.allowed, "one µs early is refused");
    assert_eq!(refused.tats_us, vec![NOW + 1_000_003]);
}

#[tokio::test]
async fn keys_expire_once_their_bucket_is_full_again() {
    let _shared = STATS.read().await;
    let store = Store::redis(connection().await);
    let mut conn = connection().await;
    let key = keys::bucket_key(&prefix("expiry"), "login", "ip", "192.0.2.7");
    // 25/s: T = 40 ms; three decisions at once put the TAT 120 ms ahead.
    let bucket = Bucket::new(25, Duration::from_secs(1), 2);
    for _ in 0..3 {
        let out = store
            .decide(NOW, &[Check { key: &key, bucket }])
            .await
            .unwrap();
        assert!(out.allowed);
    }
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 120, "PX follows tat - now: {ttl} ms");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exists: bool = conn.exists(&key).await.unwrap();
    assert!(!exists, "the key is gone once it no longer limits anything");
}

fn wall_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// Sleeps until `at_us` on the wall clock; returns the time it woke up at.
async fn sleep_until_us(at_us: u64) -> u64 {
    let now = wall_us();
    tokio::time::sleep(Duration::from_micros(at_us.saturating_sub(now))).await;
    wall_us()
}

/// On the real clock (Redis expires keys on its own), a key must hold its TAT until the TAT:
/// a key that expired early would hand out a fresh burst. Timed checks that wake up too late
/// to be meaningful start over with a new key rather than fail on a slow machine.
#[tokio::test]
async fn on_the_real_clock_a_key_limits_until_its_tat_and_is_gone_soon_after() {
    let _shared = STATS.read().await;
    let store = Store::redis(connection().await);
    let mut conn = connection().await;
    // T = 600.123 ms (a sub-ms part, so PX is rounded), burst 1: two requests at t0 put the
    // TAT at t0 + 1200.246 ms, and a third is refused until t0 + 600.123 ms.
    let bucket = Bucket::new(1, Duration::from_micros(600_123), 1);
    let (t, tau) = (bucket.t_us, bucket.tau_us);
    const MS: u64 = 1_000;
    for attempt in 0..5 {
        let key = format!("{}{attempt}", prefix("realtime"));
        let check = [Check { key: &key, bucket }];
        let t0 = wall_us();
        for _ in 0..2 {
            assert!(store.decide(t0, &check).await.unwrap().allowed);
        }
        let tat = t0 + 2 * t;
        assert!(!store.decide(t0, &check).await.unwrap().allowed);
        // Right after the SET: PTTL is at least the debt left, in whole ms, minus the time
        // spent since t0 (Redis counts PX from when it ran the script, at or after t0).
        let ttl: i64 = conn.pttl(&key).await.unwrap();
        let elapsed_ms = (wall_us() - t0).div_ceil(MS);
        let floor = i64::try_from((tat - t0).div_ceil(MS) - elapsed_ms).unwrap() - 1;
        assert!(
            ttl >= floor && ttl <= 1_201,
            "PTTL {ttl} ms, expected at least {floor} ms"
        );
        // Well into the wait, 100 ms before the bucket lets one through: still refused.
        let now = sleep_until_us(t0 + tau - 100 * MS).await;
        if now >= t0 + tau - 10 * MS {
            continue;
        }
        let out = store.decide(now, &check).await.unwrap();
        assert!(
            !out.allowed,
            "refused {} ms before it may pass",
            (t0 + tau - now) / MS
        );
        assert_eq!(out.tats_us, vec![tat], "the stored TAT, not a fresh bucket");
        // 100 ms before the TAT: the key still exists and holds the TAT.
        let now = sleep_until_us(tat - 100 * MS).await;
        if now >= tat - 10 * MS {
            continue;
        }
        let stored: Option<String> = conn.get(&key).await.unwrap();
        assert_eq!(
            stored,
            Some(tat.to_string()),
            "{} ms before its TAT",
            (tat - now) / MS
        );
        // 150 ms after the TAT (PX rounds up by under 1 ms): gone.
        sleep_until_us(tat + 150 * MS).await;
        let exists: bool = conn.exists(&key).await.unwrap();
        assert!(!exists, "the key is gone once its bucket is full again");
        return;
    }
    panic!("the machine was too slow for the timed checks five times over");
}

#[tokio::test]
async fn a_repeated_key_is_one_redis_bucket_under_its_strictest_limit() {
    let _shared = STATS.read().await;
    let store = Store::redis(connection().await);
    let mut conn = connection().await;
    let key = format!("{}dup", prefix("dup"));
    let strict = Check {
        key: &key,
        bucket: Bucket::new(1, Duration::from_secs(60), 0),
    };
    let lax = Check {
        key: &key,
        bucket: Bucket::new(30, Duration::from_secs(60), 10),
    };
    let out = store.decide(NOW, &[lax, strict, lax]).await.unwrap();
    assert!(out.allowed);
    assert_eq!(out.tats_us, vec![NOW + 60_000_000; 3]);
    let stored: String = conn.get(&key).await.unwrap();
    assert_eq!(stored, (NOW + 60_000_000).to_string());
    assert!(!store.decide(NOW + 1, &[lax, strict]).await.unwrap().allowed);
}
