//! Rate-limit decision overhead (protection plan §10.1): `Store::decide` called directly, with
//! the default-like limits of a login (so keys live for seconds, as in production), p50 and
//! p99 from per-call `Instant` over 20,000 sequential calls per case:
//!
//! - allowed: 20,000 distinct clients, each on its second request (its keys exist: GET + SET);
//! - refused: 100 clients past their burst (GET only, nothing written; the few that come
//!   back to one allowed request during the run are counted);
//! - memory full: a 250,000-bucket map full of live buckets, each decision a new client that
//!   evicts (the flood case of the review's F1/F2);
//!
//! then 32 concurrent tasks for 5 s over the same clients → decisions/s (mostly refused once
//! the bursts run out; the share allowed is printed). Backends: memory and Redis (`REDIS_URL`,
//! as `scripts/bench.sh` starts one: loopback, on the same host and cores as the bench, so p99
//! includes co-scheduling). Prints figures, asserts nothing about timings.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark: a panic is a failed run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_ratelimit::{Bucket, Check, Store, keys};

const SEQUENTIAL: usize = 20_000;
const TASKS: usize = 32;
const CONCURRENT_FOR: Duration = Duration::from_secs(5);
/// Distinct clients of the allowed case: one warm-up and one timed request each.
const CLIENTS: usize = SEQUENTIAL;
/// Clients of the refused case, each pushed past its burst first.
const REFUSED_CLIENTS: usize = 100;
/// The memory store's capacity (plan §2.2), filled completely in the full-map case.
const CAPACITY: usize = 250_000;
const MIN: Duration = Duration::from_secs(60);

fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// The limits of one login, in check order: per IP 30/min burst 10, per user 10/min burst 4,
/// all routes per IP 600/min burst 200, and a global ceiling that never refuses here.
fn limits() -> [Bucket; 4] {
    [
        Bucket::new(30, MIN, 10),
        Bucket::new(10, MIN, 4),
        Bucket::new(600, MIN, 200),
        Bucket::new(1_000_000, MIN, 1_000_000),
    ]
}

/// The keys of one request from client `n`: its IP bucket on `login`, then (for 4 buckets) the
/// user, the `all` route and the global bucket, as a login would check them.
fn request_keys(prefix: &str, n: usize, buckets: usize) -> Vec<String> {
    let ip = keys::ip_bucket(
        format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255)
            .parse()
            .unwrap(),
    );
    let user = keys::identifier_digest(&format!("user{n}@example.com"));
    let all = [
        keys::bucket_key(prefix, "login", "ip", &ip),
        keys::bucket_key(prefix, "login", "user", &user),
        keys::bucket_key(prefix, "all", "ip", &ip),
        keys::bucket_key(prefix, "all", "global", keys::GLOBAL),
    ];
    all[..buckets].to_vec()
}

fn checks(keys: &[String]) -> Vec<Check<'_>> {
    keys.iter()
        .zip(limits())
        .map(|(key, bucket)| Check { key, bucket })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Times one decision per request, in order; returns p50, p99 and how many were allowed.
async fn timed(store: &Store, requests: &[Vec<String>]) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(SEQUENTIAL);
    let mut allowed = 0;
    for i in 0..SEQUENTIAL {
        let checks = checks(&requests[i % requests.len()]);
        let start = Instant::now();
        let outcome = store.decide(now_us(), &checks).await.unwrap();
        times.push(start.elapsed());
        allowed += usize::from(outcome.allowed);
    }
    times.sort();
    (percentile(&times, 0.50), percentile(&times, 0.99), allowed)
}

async fn allowed_case(store: &Store, prefix: &str, buckets: usize) -> (Duration, Duration) {
    let requests: Vec<Vec<String>> = (0..CLIENTS)
        .map(|n| request_keys(prefix, n, buckets))
        .collect();
    // Warm-up and first request: connection, script cache, map allocation, keys created.
    for keys in &requests {
        assert!(store.decide(now_us(), &checks(keys)).await.unwrap().allowed);
    }
    let (p50, p99, allowed) = timed(store, &requests).await;
    assert_eq!(allowed, SEQUENTIAL, "every client is on its second request");
    (p50, p99)
}

async fn refused_case(store: &Store, prefix: &str, buckets: usize) -> (Duration, Duration, usize) {
    let requests: Vec<Vec<String>> = (0..REFUSED_CLIENTS)
        .map(|n| request_keys(&format!("{prefix}refused:"), n, buckets))
        .collect();
    // 11 pass per IP (burst 10), 5 per user: 20 each leaves every client refused for seconds.
    for keys in &requests {
        for _ in 0..20 {
            store.decide(now_us(), &checks(keys)).await.unwrap();
        }
    }
    let (p50, p99, allowed) = timed(store, &requests).await;
    // A client comes round every REFUSED_CLIENTS calls; when the run outlasts T = 2 s, it gets
    // one request through and is refused again: a small share, counted rather than hidden.
    assert!(
        allowed * 20 < SEQUENTIAL,
        "{allowed} allowed: not the refused path"
    );
    (p50, p99, allowed)
}

/// A memory store with every slot taken by a live bucket (20 min to live, as a password
/// reset's per-user bucket), then new clients that each need an eviction.
async fn full_memory_case(buckets: usize) -> (Duration, Duration) {
    let store = Store::memory(CAPACITY);
    let reset = Bucket::new(3, Duration::from_secs(3600), 0);
    for n in 0..CAPACITY {
        let key = format!("flood:reset:user:{n}");
        let check = Check {
            key: &key,
            bucket: reset,
        };
        assert!(store.decide(now_us(), &[check]).await.unwrap().allowed);
    }
    let requests: Vec<Vec<String>> = (0..SEQUENTIAL)
        .map(|n| request_keys("fresh:", n, buckets))
        .collect();
    let (p50, p99, allowed) = timed(&store, &requests).await;
    assert_eq!(
        allowed, SEQUENTIAL,
        "a full map still decides for new clients"
    );
    if let Store::Memory(memory) = &store {
        assert_eq!(memory.len(), CAPACITY, "still full: every decision evicted");
    }
    (p50, p99)
}

async fn concurrent(store: Arc<Store>, prefix: &str, buckets: usize) -> (f64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let allowed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + CONCURRENT_FOR;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, done, allowed) = (store.clone(), done.clone(), allowed.clone());
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while Instant::now() < deadline {
                let keys = request_keys(&prefix, n % CLIENTS, buckets);
                let outcome = store.decide(now_us(), &checks(&keys)).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                allowed.fetch_add(u64::from(outcome.allowed), Ordering::Relaxed);
                n += TASKS;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let done = done.load(Ordering::Relaxed) as f64;
    (
        done / CONCURRENT_FOR.as_secs_f64(),
        allowed.load(Ordering::Relaxed) as f64 / done,
    )
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let redis_url = std::env::var("REDIS_URL").expect(
        "REDIS_URL must point at a Redis server (scripts/bench.sh starts one via scripts/services.sh)",
    );
    let connection = redis::Client::open(redis_url)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let run = now_us();
    println!(
        "rate-limit decision overhead ({SEQUENTIAL} sequential calls: p50 / p99 µs; then {TASKS} tasks for {}s; Redis on loopback, same host)",
        CONCURRENT_FOR.as_secs()
    );
    for backend in ["memory", "redis"] {
        for buckets in [1, 4] {
            let store = Arc::new(match backend {
                "memory" => Store::memory(CAPACITY),
                _ => Store::redis(connection.clone()),
            });
            let prefix = format!("bench:{run}:{backend}:{buckets}:");
            let (a50, a99) = allowed_case(&store, &prefix, buckets).await;
            let (r50, r99, slipped) = refused_case(&store, &prefix, buckets).await;
            let (rate, share) = concurrent(store, &prefix, buckets).await;
            println!(
                "  {backend:<6} {buckets} bucket(s): allowed {:>6.1} / {:>6.1}  refused {:>6.1} / {:>6.1} ({slipped} allowed)  concurrent {rate:>8.0} decisions/s ({:.0}% allowed)",
                us(a50),
                us(a99),
                us(r50),
                us(r99),
                share * 100.0,
            );
        }
    }
    for buckets in [1, 4] {
        let (p50, p99) = full_memory_case(buckets).await;
        println!(
            "  memory {buckets} bucket(s), map full ({CAPACITY} live buckets), every decision evicts: {:>6.1} / {:>6.1}",
            us(p50),
            us(p99),
        );
    }
}
