//! What the notifications outbox costs, against a real PostgreSQL: prints figures, asserts
//! nothing but that every row arrives. In a scratch database (`DATABASE_URL`'s server, the auth
//! server's migrations):
//! 1. enqueue latency of one notice, what a request pays: alone (autocommit), and inside a
//!    transaction with another INSERT (beside the same transaction without the notice);
//! 2. worker delivery throughput of 5,000 webhook rows to an axum receiver on 127.0.0.1 that
//!    verifies every signature with `portcullis_webhook::Verifier`, with 1 and with 2 workers
//!    (each on its own pool, as two replicas);
//! 3. the same with a receiver answering 500 to the first attempt of every row: the retries
//!    are made due by moving the workers' clock past the 30 s backoff once all first attempts
//!    are recorded (the wait itself is not counted); the circuit breaker is off there, or it
//!    would pause the channel;
//! 4. claim latency (20 rows, as the worker claims) with 1,000 and with 100,000 pending rows,
//!    each claimed batch then marked delivered so the pending set stays the same size.
//!
//! Run: `cargo bench -p portcullis-notify --bench outbox` with `DATABASE_URL` set, e.g.
//! `source scripts/services.sh; ensure_services; trap services_stop EXIT; cargo bench ...`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use portcullis_notify::store::{CLAIM, MAX_CLAIMS};
use portcullis_notify::{
    Channel, Clock, NewNotice, Observe, Outbox, Recorded, StoreError, WebhookChannel,
    WebhookOptions, Worker, WorkerConfig,
};
use portcullis_webhook::{AccountLocked, DEFAULT_WINDOW, Event, SIGNATURE_HEADER, Verifier};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

const SECRETS: &str = "whsec-bench-line\n";
const REALM: &str = "bench";
// The receiver listens on 127.0.0.1: loopback is allowed as under the server's --dev.
const DEV: WebhookOptions = WebhookOptions {
    allow_loopback: true,
};
const ENQUEUES: usize = 2_000;
const ROWS: usize = 5_000;
const CLAIMS: usize = 500;
const CLAIM_BATCH: u32 = 20;
const USERS: usize = 100;
/// Connections per worker pool (one replica's share).
const POOL: u32 = 10;
/// Past the first retry's backoff (30 s, +20 % jitter at most).
const RETRY_SKIP_SECS: i64 = 40;
/// A run that takes longer has gone wrong: stop with what was counted.
const GIVE_UP: Duration = Duration::from_secs(600);

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// p50 / p99 / max in ms.
fn summary(samples: &mut [Duration]) -> String {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    let max = percentile(samples, 1.0);
    format!("{p50:>7.3} {p99:>8.3} {max:>8.3}")
}

// ---------------------------------------------------------------------------------------------
// The system clock plus an offset the bench moves forward (to make retries due).

#[derive(Clone, Default)]
struct SkipClock(Arc<AtomicI64>);

impl SkipClock {
    fn skip(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for SkipClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.0.load(Ordering::SeqCst))
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver: verifies, dedupes, optionally fails each row's first attempt.

struct Receiver {
    clock: SkipClock,
    verifier: Mutex<Verifier>,
    fail_first: bool,
    failed_once: Mutex<HashSet<Uuid>>,
    hits: AtomicUsize,
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

async fn hook(State(state): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    state.hits.fetch_add(1, Ordering::Relaxed);
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = state.clock.now().unix_timestamp();
    let checked = state
        .verifier
        .lock()
        .unwrap()
        .check(SECRETS, signature, &body, now);
    let received = match checked {
        Ok(received) => received,
        Err(refusal) => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::from_u16(refusal.status()).unwrap();
        }
    };
    if state.fail_first && state.failed_once.lock().unwrap().insert(received.id()) {
        // The hand-off failed: forget the id so the retry is taken.
        state.verifier.lock().unwrap().forget(received.id());
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    state.accepted.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn start_receiver(clock: &SkipClock, fail_first: bool) -> (Arc<Receiver>, String) {
    let state = Arc::new(Receiver {
        clock: clock.clone(),
        verifier: Mutex::new(Verifier::new(DEFAULT_WINDOW, 4 * ROWS)),
        fail_first,
        failed_once: Mutex::new(HashSet::new()),
        hits: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

// ---------------------------------------------------------------------------------------------
// What the workers recorded.

#[derive(Default)]
struct Tally {
    delivered: AtomicUsize,
    retried: AtomicUsize,
    dead: AtomicUsize,
    store_failed: AtomicUsize,
}

impl Observe for Tally {
    fn recorded(&self, _: Channel, _: &str, result: Recorded) {
        let counter = match result {
            Recorded::Delivered => &self.delivered,
            Recorded::Retried => &self.retried,
            Recorded::Dead => &self.dead,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn store_failed(&self, _: &StoreError) {
        self.store_failed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "delivered {}, retried {}, dead {}, store failures {}",
            self.delivered.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.dead.load(Ordering::Relaxed),
            self.store_failed.load(Ordering::Relaxed)
        )
    }
}

/// Waits until `counter` reaches `target`; returns when it did.
async fn wait_for(counter: &AtomicUsize, target: usize, tally: &Tally) -> Instant {
    let started = Instant::now();
    while counter.load(Ordering::Relaxed) < target {
        assert!(
            started.elapsed() < GIVE_UP,
            "gave up waiting: {}",
            tally.line()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Instant::now()
}

// ---------------------------------------------------------------------------------------------
// The database.

async fn scratch_database(base_url: &str) -> String {
    let admin = PgPool::connect(base_url).await.unwrap();
    let name = format!("portcullis_notify_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    match base_url.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{name}"),
        None => panic!("DATABASE_URL has no database name: {base_url}"),
    }
}

async fn pool(url: &str, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .unwrap()
}

async fn users(pool: &PgPool) -> Vec<Uuid> {
    let now = OffsetDateTime::now_utc();
    let mut ids = Vec::with_capacity(USERS);
    for _ in 0..USERS {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at) \
             VALUES ($1, $2, $2, 'x', 'v1', $3, $3)",
        )
        .bind(id)
        .bind(format!("{id}@example.org"))
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

fn notice(user_id: Uuid, now: OffsetDateTime) -> NewNotice {
    NewNotice::webhook(
        &Event::AccountLocked(AccountLocked {
            user_id,
            minutes: 15,
        }),
        now,
    )
    .unwrap()
}

async fn empty_outbox(pool: &PgPool) {
    sqlx::query("TRUNCATE notification_outbox")
        .execute(pool)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Enqueue latency.

struct Enqueue {
    alone: Vec<Duration>,
    in_tx: Vec<Duration>,
    tx_with: Vec<Duration>,
    tx_without: Vec<Duration>,
}

async fn enqueue_latency(pool: &PgPool, users: &[Uuid]) -> Enqueue {
    sqlx::query("CREATE TABLE bench_change (id uuid PRIMARY KEY, at timestamptz NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
    let mut out = Enqueue {
        alone: Vec::with_capacity(ENQUEUES),
        in_tx: Vec::with_capacity(ENQUEUES),
        tx_with: Vec::with_capacity(ENQUEUES),
        tx_without: Vec::with_capacity(ENQUEUES),
    };
    // Warm the connections and statement caches first.
    for i in 0..(ENQUEUES + 200) {
        let user = users[i % users.len()];
        let now = OffsetDateTime::now_utc();
        let one = notice(user, now);
        let started = Instant::now();
        Outbox::enqueue(pool, &one).await.unwrap();
        let alone = started.elapsed();

        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        change(&mut tx, now).await;
        let enqueued = Instant::now();
        Outbox::enqueue(&mut *tx, &notice(user, now)).await.unwrap();
        let in_tx = enqueued.elapsed();
        tx.commit().await.unwrap();
        let tx_with = started.elapsed();

        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        change(&mut tx, now).await;
        tx.commit().await.unwrap();
        let tx_without = started.elapsed();

        if i >= 200 {
            out.alone.push(alone);
            out.in_tx.push(in_tx);
            out.tx_with.push(tx_with);
            out.tx_without.push(tx_without);
        }
    }
    out
}

async fn change(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, now: OffsetDateTime) {
    sqlx::query("INSERT INTO bench_change (id, at) VALUES ($1, $2)")
        .bind(Uuid::new_v4())
        .bind(now)
        .execute(&mut **tx)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Delivery throughput.

struct Delivery {
    workers: usize,
    fail_first: bool,
    /// Time the workers were busy (for the retry path: both passes, not the skipped backoff).
    busy: Duration,
    delivered_rows: i64,
    attempts: usize,
    refused: usize,
    tally: String,
}

async fn delivery(
    db_url: &str,
    main: &PgPool,
    users: &[Uuid],
    workers: usize,
    fail_first: bool,
) -> Delivery {
    empty_outbox(main).await;
    let clock = SkipClock::default();
    let (receiver, url) = start_receiver(&clock, fail_first).await;
    // All rows first, in one transaction: what is timed is the workers alone.
    let mut tx = main.begin().await.unwrap();
    let now = clock.now();
    for i in 0..ROWS {
        Outbox::enqueue(&mut *tx, &notice(users[i % users.len()], now))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let tally = Arc::new(Tally::default());
    let config = WorkerConfig {
        // A receiver failing every first attempt would trip it and pause the channel.
        breaker_threshold: if fail_first {
            0
        } else {
            WorkerConfig::default().breaker_threshold
        },
        ..WorkerConfig::default()
    };
    let (stop, stopped) = watch::channel(false);
    let mut built = Vec::new();
    for _ in 0..workers {
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let hook =
            WebhookChannel::with_options(&url, SECRETS, REALM, Arc::clone(&clock), DEV).unwrap();
        let worker = Worker::new(Outbox::new(pool(db_url, POOL).await), clock, config)
            .unwrap()
            .with_webhook(Arc::new(hook))
            .with_observer(Arc::clone(&tally) as Arc<dyn Observe>);
        built.push(worker);
    }
    let wakers: Vec<_> = built.iter().map(Worker::waker).collect();
    let started = Instant::now();
    let handles: Vec<_> = built
        .into_iter()
        .map(|w| tokio::spawn(w.run(stopped.clone())))
        .collect();
    let busy = if fail_first {
        let first_pass = wait_for(&tally.retried, ROWS, &tally).await - started;
        clock.skip(RETRY_SKIP_SECS);
        let second = Instant::now();
        for waker in &wakers {
            waker.wake();
        }
        first_pass + (wait_for(&tally.delivered, ROWS, &tally).await - second)
    } else {
        wait_for(&tally.delivered, ROWS, &tally).await - started
    };
    stop.send(true).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    let delivered_rows = sqlx::query_scalar(
        "SELECT count(*) FROM notification_outbox WHERE delivered_at IS NOT NULL",
    )
    .fetch_one(main)
    .await
    .unwrap();
    Delivery {
        workers,
        fail_first,
        busy,
        delivered_rows,
        attempts: receiver.hits.load(Ordering::Relaxed),
        refused: receiver.refused.load(Ordering::Relaxed),
        tally: tally.line(),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Claim latency.

async fn claim_latency(main: &PgPool, pending: usize, user: Uuid) -> (Vec<Duration>, String) {
    empty_outbox(main).await;
    let now = OffsetDateTime::now_utc();
    let one = notice(user, now);
    // Due over the last `pending` ms, oldest first; bulk-inserted (the crate's enqueue is timed
    // above), with the columns `Outbox::enqueue` writes.
    sqlx::query(
        "INSERT INTO notification_outbox (id, channel, event, user_id, payload, created_at, next_attempt_at) \
         SELECT gen_random_uuid(), 'webhook', $1, $2, $3, $4 - make_interval(secs => g / 1000.0), \
                $4 - make_interval(secs => g / 1000.0) \
         FROM generate_series(1, $5::int) g",
    )
    .bind(one.event())
    .bind(user)
    .bind(Json(one.payload()))
    .bind(now)
    .bind(i32::try_from(pending).unwrap())
    .execute(main)
    .await
    .unwrap();
    sqlx::query("ANALYZE notification_outbox")
        .execute(main)
        .await
        .unwrap();
    // The planner's choice for the claim's scan, on these statistics.
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (COSTS OFF) {CLAIM}")))
            .bind(now)
            .bind(now + time::Duration::minutes(2))
            .bind(i64::from(CLAIM_BATCH))
            .bind(Channel::Webhook.as_str())
            .bind(i64::from(MAX_CLAIMS))
            .fetch_all(main)
            .await
            .unwrap_or_else(|e| vec![format!("EXPLAIN failed: {e}")]);
    // Every scan (the subquery's pick of due rows, and the outer UPDATE's match on id).
    let scans: Vec<&str> = plan
        .iter()
        .filter(|l| l.contains("Scan"))
        .map(|l| l.trim().trim_start_matches("-> "))
        .collect();
    let scan = if scans.is_empty() {
        plan.join(" / ")
    } else {
        scans.join("; ")
    };

    let outbox = Outbox::new(main.clone());
    let mut samples = Vec::with_capacity(CLAIMS);
    for i in 0..(CLAIMS + 20) {
        let now = OffsetDateTime::now_utc();
        let started = Instant::now();
        let rows = outbox
            .claim(now, Duration::from_secs(120), CLAIM_BATCH, Channel::Webhook)
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(rows.len(), CLAIM_BATCH as usize);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        // Delivered, as the worker records it, and a fresh row due: the pending set keeps its size.
        sqlx::query(
            "UPDATE notification_outbox SET delivered_at = $2, locked_until = NULL WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(now)
        .execute(main)
        .await
        .unwrap();
        for _ in 0..CLAIM_BATCH {
            Outbox::enqueue(main, &notice(user, now)).await.unwrap();
        }
        if i >= 20 {
            samples.push(took);
        }
    }
    (samples, scan)
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let db_url = scratch_database(&base_url).await;
    let main = pool(&db_url, 4).await;
    sqlx::migrate!("../authserver/migrations")
        .run(&main)
        .await
        .unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&main)
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&main)
        .await
        .unwrap();
    let users = users(&main).await;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "notifications outbox: PostgreSQL {version} (fsync={fsync}), {cores} cores, receiver and workers in this process"
    );

    let mut e = enqueue_latency(&main, &users).await;
    println!("\n1. enqueue, {ENQUEUES} each (ms)              p50      p99      max");
    println!(
        "   enqueue alone (autocommit)          {}",
        summary(&mut e.alone)
    );
    println!(
        "   enqueue statement inside a tx       {}",
        summary(&mut e.in_tx)
    );
    println!(
        "   tx: INSERT + enqueue + COMMIT       {}",
        summary(&mut e.tx_with)
    );
    println!(
        "   tx: INSERT + COMMIT (no notice)     {}",
        summary(&mut e.tx_without)
    );

    println!(
        "\n2-3. delivery of {ROWS} webhook rows (batch {}, pool {POOL} per worker)",
        WorkerConfig::default().batch
    );
    println!(
        "   receiver          workers  busy s  rows/s  attempts  attempts/s  delivered  refused"
    );
    for (fail_first, workers) in [(false, 1), (false, 2), (true, 1), (true, 2)] {
        let d = delivery(&db_url, &main, &users, workers, fail_first).await;
        let secs = d.busy.as_secs_f64();
        println!(
            "   {:<17} {:>7}  {:>6.2}  {:>6.0}  {:>8}  {:>10.0}  {:>9}  {:>7}",
            if d.fail_first { "500 then 204" } else { "204" },
            d.workers,
            secs,
            ROWS as f64 / secs,
            d.attempts,
            d.attempts as f64 / secs,
            d.delivered_rows,
            d.refused
        );
        println!("     ({})", d.tally);
    }

    println!("\n4. claim of {CLAIM_BATCH} rows, {CLAIMS} claims (ms)        p50      p99      max");
    for pending in [1_000, 100_000] {
        let (mut samples, scan) = claim_latency(&main, pending, users[0]).await;
        println!(
            "   {pending:>7} pending                   {}",
            summary(&mut samples)
        );
        println!("     plan: {scan}");
    }
    main.close().await;
}
