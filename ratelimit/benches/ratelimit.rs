//! Rate-limit decision overhead (protection plan §10.1): `Store::decide` called directly,
//! 20,000 sequential calls per case, p50 and p99 from per-call `Instant`; then 32 concurrent
//! tasks for 5 s → decisions/s. Cases: memory and Redis (`REDIS_URL`, as `scripts/bench.sh`
//! starts one), each with 1 and 4 buckets. Prints figures, asserts nothing about timings.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark: a panic is a failed run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_ratelimit::{Bucket, Check, Store, keys};

const SEQUENTIAL: usize = 20_000;
const TASKS: usize = 32;
const CONCURRENT_FOR: Duration = Duration::from_secs(5);
/// Distinct IPs cycled through, so the store holds a realistic spread of keys.
const CLIENTS: usize = 1_000;

fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// The keys of one request from client `n`: its IP bucket on `login`, then (for 4 buckets) the
/// user, the `all` route and the global bucket, as a login would check them.
fn request_keys(prefix: &str, n: usize, buckets: usize) -> Vec<String> {
    let ip = keys::ip_bucket(format!("10.0.{}.{}", n / 256, n % 256).parse().unwrap());
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
    // Generous limits: every decision is allowed, so each one writes (the dearer path).
    let bucket = Bucket::new(1_000_000, Duration::from_secs(1), 1_000_000);
    keys.iter().map(|key| Check { key, bucket }).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn sequential(store: &Store, prefix: &str, buckets: usize) -> (Duration, Duration) {
    let requests: Vec<Vec<String>> = (0..CLIENTS)
        .map(|n| request_keys(prefix, n, buckets))
        .collect();
    // Warm up: connection, script cache, map allocation.
    for keys in &requests {
        store.decide(now_us(), &checks(keys)).await.unwrap();
    }
    let mut times = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        let checks = checks(&requests[i % CLIENTS]);
        let start = Instant::now();
        let outcome = store.decide(now_us(), &checks).await.unwrap();
        times.push(start.elapsed());
        assert!(outcome.allowed);
    }
    times.sort();
    (percentile(&times, 0.50), percentile(&times, 0.99))
}

async fn concurrent(store: Arc<Store>, prefix: &str, buckets: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + CONCURRENT_FOR;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, done, prefix) = (store.clone(), done.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while Instant::now() < deadline {
                let keys = request_keys(&prefix, n % CLIENTS, buckets);
                store.decide(now_us(), &checks(&keys)).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                n += TASKS;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / CONCURRENT_FOR.as_secs_f64()
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
        "rate-limit decision overhead: {SEQUENTIAL} sequential calls (p50, p99), then {TASKS} tasks for {}s",
        CONCURRENT_FOR.as_secs()
    );
    for backend in ["memory", "redis"] {
        for buckets in [1, 4] {
            let store = Arc::new(match backend {
                "memory" => Store::memory(250_000),
                _ => Store::redis(connection.clone()),
            });
            let prefix = format!("bench:{run}:{backend}:{buckets}:");
            let (p50, p99) = sequential(&store, &prefix, buckets).await;
            let rate = concurrent(store, &prefix, buckets).await;
            println!(
                "  {backend:<6} {buckets} bucket(s): p50 {:>7.1} µs  p99 {:>7.1} µs  {rate:>9.0} decisions/s",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
            );
        }
    }
}
