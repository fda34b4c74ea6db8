//! The outbox against a real PostgreSQL (`DATABASE_URL`; each test gets a fresh database with
//! the auth server's migrations) and a real webhook receiver on 127.0.0.1 that checks every
//! delivery with `portcullis_webhook::Verifier`, the receiver rule of docs/webhooks.md.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use portcullis_notify::{
    Channel, Claimed, Clock, Deliver, DeliverFuture, NewNotice, Observe, Outbox, Outcome, Recorded,
    StoreError, WebhookChannel, WebhookError, WebhookOptions, Worker, WorkerConfig,
};
use portcullis_webhook::{
    AccountErased, AccountLocked, DEFAULT_WINDOW, EVENT_ID_HEADER, Envelope, Event, MAX_ATTEMPTS,
    PasswordChangeMethod, PasswordChanged, SIGNATURE_HEADER, Verifier,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::watch;
use uuid::Uuid;

const SECRETS: &str = "old-secret-line\nwhsec-current-line\n";
const REALM: &str = "acme";
// The receiver listens on 127.0.0.1: loopback is allowed as under the server's --dev.
const DEV: WebhookOptions = WebhookOptions {
    allow_loopback: true,
};
const T0: OffsetDateTime = datetime!(2026-11-30 12:00:00 UTC);

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another test binary thread may have won the race; either way a provider is there.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

// ---------------------------------------------------------------------------------------------
// A manual clock shared by the workers and the receiver.

#[derive(Clone)]
struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    fn at(t: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(t)))
    }

    fn advance(&self, secs: i64) {
        let mut now = self.0.lock().unwrap();
        *now += time::Duration::seconds(secs);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver.

/// How the receiver answers a delivery that verified.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Take it: 204.
    Accept,
    /// Answer this status (and forget the id, as a failed hand-off must) this many times, then
    /// accept.
    Fail { status: u16, times: usize },
    /// Always answer this status.
    Always(u16),
}

struct ReceiverState {
    clock: ManualClock,
    verifier: Mutex<Verifier>,
    mode: Mutex<Mode>,
    delay: Duration,
    /// Every request to /hook.
    hits: AtomicUsize,
    /// Every request to /moved.
    redirect_hits: AtomicUsize,
    /// Ids handed off, in order.
    accepted: Mutex<Vec<Uuid>>,
    /// Refusal reasons, in order.
    refused: Mutex<Vec<&'static str>>,
    /// The signature `t` of every verified request.
    timestamps: Mutex<Vec<i64>>,
    /// The last accepted request: its headers and body.
    captured: Mutex<Option<(HeaderMap, Bytes)>>,
}

#[derive(Clone)]
struct Receiver {
    state: Arc<ReceiverState>,
    base: String,
}

impl Receiver {
    async fn start(clock: &ManualClock, mode: Mode) -> Self {
        Self::start_with_delay(clock, mode, Duration::ZERO).await
    }

    async fn start_with_delay(clock: &ManualClock, mode: Mode, delay: Duration) -> Self {
        let state = Arc::new(ReceiverState {
            clock: clock.clone(),
            verifier: Mutex::new(Verifier::new(DEFAULT_WINDOW, 100_000)),
            mode: Mutex::new(mode),
            delay,
            hits: AtomicUsize::new(0),
            redirect_hits: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            timestamps: Mutex::new(Vec::new()),
            captured: Mutex::new(None),
        });
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/moved", post(moved))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, base }
    }

    fn url(&self) -> String {
        format!("{}/hook", self.base)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> Vec<Uuid> {
        self.state.accepted.lock().unwrap().clone()
    }

    fn refused(&self) -> Vec<&'static str> {
        self.state.refused.lock().unwrap().clone()
    }

    fn timestamps(&self) -> Vec<i64> {
        self.state.timestamps.lock().unwrap().clone()
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn hook(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let now = state.clock.now().unix_timestamp();
    let signature = header_str(&headers, SIGNATURE_HEADER);
    let checked = state
        .verifier
        .lock()
        .unwrap()
        .check(SECRETS, signature, &body, now);
    let received = match checked {
        Ok(received) => received,
        Err(refusal) => {
            state.refused.lock().unwrap().push(refusal.reason());
            return StatusCode::from_u16(refusal.status()).unwrap();
        }
    };
    let t: i64 = signature
        .split(',')
        .find_map(|e| e.strip_prefix("t="))
        .unwrap()
        .parse()
        .unwrap();
    state.timestamps.lock().unwrap().push(t);
    // The header is a convenience; the signed body's id is the one that counts, and they agree.
    assert_eq!(
        header_str(&headers, EVENT_ID_HEADER),
        received.id().to_string()
    );
    assert_eq!(header_str(&headers, "content-type"), "application/json");
    assert!(header_str(&headers, "user-agent").starts_with("portcullis/"));
    let fail = {
        let mut mode = state.mode.lock().unwrap();
        match *mode {
            Mode::Accept => None,
            Mode::Always(status) => Some(status),
            Mode::Fail { status, times } => {
                *mode = if times > 1 {
                    Mode::Fail {
                        status,
                        times: times - 1,
                    }
                } else {
                    Mode::Accept
                };
                Some(status)
            }
        }
    };
    if let Some(status) = fail {
        // The hand-off failed: forget the id so the sender's retry is taken.
        state.verifier.lock().unwrap().forget(received.id());
        return StatusCode::from_u16(status).unwrap();
    }
    state.accepted.lock().unwrap().push(received.id());
    *state.captured.lock().unwrap() = Some((headers, body));
    StatusCode::NO_CONTENT
}

async fn moved(
    State(state): State<Arc<ReceiverState>>,
) -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    state.redirect_hits.fetch_add(1, Ordering::SeqCst);
    (StatusCode::FOUND, [(header::LOCATION, "/hook")])
}

// ---------------------------------------------------------------------------------------------
// The observer, the worker and the database.

#[derive(Default)]
struct Counts(
    Mutex<Vec<(Channel, String, Recorded)>>,
    Mutex<Vec<Claim>>,
    Mutex<Vec<OffsetDateTime>>,
    AtomicUsize,
);

/// One claim as the observer saw it: how many outcomes were recorded before it, and its rows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Claim {
    recorded_before: usize,
    rows: usize,
}

impl Observe for Counts {
    fn gone(&self, _: Channel, _: &str) {
        self.3.fetch_add(1, Ordering::SeqCst);
    }

    fn paused(&self, _: Channel, until: OffsetDateTime) {
        self.2.lock().unwrap().push(until);
    }

    fn claimed(&self, _: Channel, rows: usize) {
        let recorded_before = self.0.lock().unwrap().len();
        self.1.lock().unwrap().push(Claim {
            recorded_before,
            rows,
        });
    }

    fn recorded(&self, channel: Channel, event: &str, result: Recorded) {
        self.0
            .lock()
            .unwrap()
            .push((channel, event.to_owned(), result));
    }

    fn store_failed(&self, error: &StoreError) {
        panic!("no store statement should fail here: {error}");
    }
}

impl Counts {
    fn claims(&self) -> Vec<Claim> {
        self.1.lock().unwrap().clone()
    }

    fn results(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().iter().map(|(_, _, r)| *r).collect()
    }

    fn by_label(&self) -> HashMap<(Channel, String, Recorded), usize> {
        let mut map = HashMap::new();
        for key in self.0.lock().unwrap().iter() {
            *map.entry(key.clone()).or_default() += 1;
        }
        map
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_secs(60),
        batch: 5,
        poll_interval: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(15),
        ..WorkerConfig::default()
    }
}

fn webhook(url: &str, clock: &ManualClock) -> Arc<WebhookChannel> {
    install_crypto();
    Arc::new(
        WebhookChannel::with_options(url, SECRETS, REALM, Arc::new(clock.clone()), DEV).unwrap(),
    )
}

/// A worker with the webhook channel to `url`, jitter fixed at the middle of the band (so the
/// waits are exactly 30 s, 60 s, …).
fn worker(pool: &PgPool, clock: &ManualClock, url: &str, counts: &Arc<Counts>) -> Worker {
    Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config())
        .unwrap()
        .with_webhook(webhook(url, clock))
        .with_observer(Arc::clone(counts) as Arc<dyn Observe>)
        .with_jitter(|_| 0.5)
}

/// A second pool on the same database: another replica's connections.
async fn second_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap()
}

async fn user(pool: &PgPool) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at) \
         VALUES ($1, $2, $2, 'x', 'v1', $3, $3)",
    )
    .bind(id)
    .bind(format!("{id}@example.org"))
    .bind(T0)
    .execute(pool)
    .await
    .unwrap();
    id
}

fn locked(user_id: Uuid) -> NewNotice {
    NewNotice::webhook(
        &Event::AccountLocked(AccountLocked {
            user_id,
            minutes: 15,
        }),
        T0,
    )
    .unwrap()
}

async fn enqueue(pool: &PgPool, notice: &NewNotice) -> Uuid {
    Outbox::enqueue(pool, notice).await.unwrap()
}

#[derive(Debug, PartialEq)]
struct RowState {
    attempts: i32,
    next_attempt_at: OffsetDateTime,
    delivered_at: Option<OffsetDateTime>,
    dead_at: Option<OffsetDateTime>,
    last_error: Option<String>,
}

async fn state(pool: &PgPool, id: Uuid) -> RowState {
    let (attempts, next_attempt_at, delivered_at, dead_at, last_error) = sqlx::query_as(
        "SELECT attempts, next_attempt_at, delivered_at, dead_at, last_error \
         FROM notification_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    RowState {
        attempts,
        next_attempt_at,
        delivered_at,
        dead_at,
        last_error,
    }
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notification_outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn undelivered(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notification_outbox WHERE delivered_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[sqlx::test(migrations = "../authserver/migrations")]
async fn two_workers_on_two_pools_deliver_each_row_exactly_once(pool: PgPool) {
    let clock = ManualClock::at(T0);
    // A little latency per request, so the two workers' rounds overlap.
    let receiver =
        Receiver::start_with_delay(&clock, Mode::Accept, Duration::from_millis(15)).await;
    let other = second_pool(&pool).await;
    let user_id = user(&pool).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(enqueue(&pool, &locked(user_id)).await);
    }
    let counts = Arc::new(Counts::default());
    let a = worker(&pool, &clock, &receiver.url(), &counts);
    let b = worker(&other, &clock, &receiver.url(), &counts);
    let (stop, stopped) = watch::channel(false);
    let runs = [
        tokio::spawn(a.run(stopped.clone())),
        tokio::spawn(b.run(stopped)),
    ];
    tokio::time::timeout(Duration::from_secs(30), async {
        while undelivered(&pool).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all rows delivered");
    stop.send(true).unwrap();
    for run in runs {
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the worker stops on shutdown")
            .unwrap();
    }

    let mut accepted = receiver.accepted();
    assert_eq!(receiver.hits(), 40, "one request per row, none twice");
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
    accepted.sort();
    ids.sort();
    assert_eq!(accepted, ids);
    assert_eq!(counts.results(), vec![Recorded::Delivered; 40]);
    for id in ids {
        assert_eq!(state(&pool, id).await.attempts, 1);
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_failing_receiver_is_retried_with_backoff_then_delivered(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(
        &clock,
        Mode::Fail {
            status: 500,
            times: 2,
        },
    )
    .await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let id = enqueue(&pool, &locked(user(&pool).await)).await;

    assert_eq!(w.tick().await.unwrap(), 1);
    let after_one = state(&pool, id).await;
    assert_eq!(after_one.attempts, 1);
    assert_eq!(after_one.next_attempt_at, T0 + secs(30));
    assert_eq!(after_one.last_error.as_deref(), Some("status 500"));
    assert_eq!(after_one.delivered_at, None);

    // Not due before its time.
    clock.advance(29);
    assert_eq!(w.tick().await.unwrap(), 0);
    clock.advance(1);
    assert_eq!(w.tick().await.unwrap(), 1);
    let after_two = state(&pool, id).await;
    assert_eq!(after_two.attempts, 2);
    assert_eq!(after_two.next_attempt_at, T0 + secs(30 + 60));

    clock.advance(59);
    assert_eq!(w.tick().await.unwrap(), 0);
    clock.advance(1);
    assert_eq!(w.tick().await.unwrap(), 1);
    let done = state(&pool, id).await;
    assert_eq!(done.attempts, 3);
    assert_eq!(done.delivered_at, Some(T0 + secs(90)));
    assert_eq!(done.last_error, None);

    assert_eq!(receiver.accepted(), vec![id]);
    // Each attempt was signed afresh with the clock of its time.
    let t0 = T0.unix_timestamp();
    assert_eq!(receiver.timestamps(), vec![t0, t0 + 30, t0 + 90]);
    assert_eq!(
        counts.results(),
        vec![Recorded::Retried, Recorded::Retried, Recorded::Delivered]
    );
    assert_eq!(
        w.tick().await.unwrap(),
        0,
        "a delivered row is never claimed again"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_is_dead_after_twelve_failed_attempts(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Always(503)).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let id = enqueue(&pool, &locked(user(&pool).await)).await;

    for attempt in 1..=MAX_ATTEMPTS {
        assert_eq!(w.tick().await.unwrap(), 1, "attempt {attempt}");
        // Longer than the longest wait (1 h + 20 %).
        clock.advance(2 * 3600);
    }
    let dead = state(&pool, id).await;
    assert_eq!(dead.attempts, 12);
    assert_eq!(dead.delivered_at, None);
    assert!(dead.dead_at.is_some());
    assert_eq!(
        dead.last_error.as_deref(),
        Some("gave up after 12 attempts: status 503")
    );
    assert_eq!(
        w.tick().await.unwrap(),
        0,
        "a dead row is never claimed again"
    );
    assert_eq!(receiver.hits(), 12);
    let mut want = vec![Recorded::Retried; 11];
    want.push(Recorded::Dead);
    assert_eq!(counts.results(), want);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_410_gone_is_dead_at_once(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Always(410)).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let id = enqueue(&pool, &locked(user(&pool).await)).await;

    assert_eq!(w.tick().await.unwrap(), 1);
    let dead = state(&pool, id).await;
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.dead_at, Some(T0));
    assert!(dead.last_error.unwrap().contains("410"));
    clock.advance(24 * 3600);
    assert_eq!(w.tick().await.unwrap(), 0);
    assert_eq!(counts.results(), vec![Recorded::Dead]);
    assert_eq!(counts.3.load(Ordering::SeqCst), 1, "counted as gone");
    let labels = counts.by_label();
    assert_eq!(
        labels.get(&(
            Channel::Webhook,
            "account.locked".to_owned(),
            Recorded::Dead
        )),
        Some(&1)
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_expired_lease_lets_another_worker_deliver(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let id = enqueue(&pool, &locked(user(&pool).await)).await;

    // A worker on another replica claims the row and crashes before recording anything.
    let crashed = Outbox::new(second_pool(&pool).await);
    let held = crashed
        .claim(T0, Duration::from_secs(60), 10, Channel::Webhook)
        .await
        .unwrap();
    assert_eq!(held.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);

    let w = worker(&pool, &clock, &receiver.url(), &counts);
    clock.advance(59);
    assert_eq!(w.tick().await.unwrap(), 0, "the lease still holds");
    clock.advance(1);
    assert_eq!(w.tick().await.unwrap(), 1, "the lease has ended");
    let done = state(&pool, id).await;
    assert_eq!(done.attempts, 2, "the lost attempt counts");
    assert_eq!(done.delivered_at, Some(T0 + secs(60)));
    assert_eq!(receiver.accepted(), vec![id]);

    // The crashed worker coming back cannot overwrite the newer outcome.
    let stale = &held[0];
    assert!(!crashed.retry(stale, T0 + secs(90), "late").await.unwrap());
    assert!(!crashed.dead(stale, T0 + secs(90), "late").await.unwrap());
    assert_eq!(state(&pool, id).await, done);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_stale_retry_does_not_undo_a_newer_claim(pool: PgPool) {
    let outbox = Outbox::new(pool.clone());
    let id = enqueue(&pool, &locked(user(&pool).await)).await;
    let first = outbox
        .claim(T0, Duration::from_secs(60), 10, Channel::Webhook)
        .await
        .unwrap();
    let second = outbox
        .claim(T0 + secs(61), Duration::from_secs(60), 10, Channel::Webhook)
        .await
        .unwrap();
    assert_eq!((first[0].attempts, second[0].attempts), (1, 2));
    assert!(!outbox.retry(&first[0], T0 + secs(62), "old").await.unwrap());
    assert!(
        outbox
            .retry(&second[0], T0 + secs(300), "new")
            .await
            .unwrap()
    );
    let row = state(&pool, id).await;
    assert_eq!(row.next_attempt_at, T0 + secs(300));
    assert_eq!(row.last_error.as_deref(), Some("new"));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_claim_takes_due_rows_oldest_first_up_to_the_limit(pool: PgPool) {
    let outbox = Outbox::new(pool.clone());
    let user_id = user(&pool).await;
    let mut ids = Vec::new();
    for n in [3, 1, 2] {
        let notice = NewNotice::webhook(
            &Event::AccountLocked(AccountLocked {
                user_id,
                minutes: 15,
            }),
            T0 + secs(n),
        )
        .unwrap();
        ids.push((n, enqueue(&pool, &notice).await));
    }
    let future = NewNotice::webhook(
        &Event::AccountLocked(AccountLocked {
            user_id,
            minutes: 15,
        }),
        T0 + secs(100),
    )
    .unwrap();
    enqueue(&pool, &future).await;
    ids.sort();
    let claimed = outbox
        .claim(T0 + secs(10), Duration::from_secs(60), 2, Channel::Webhook)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[0].1, ids[1].1]
    );
    let rest = outbox
        .claim(T0 + secs(10), Duration::from_secs(60), 10, Channel::Webhook)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[2].1]
    );
    assert!(matches!(
        outbox
            .claim(T0, Duration::from_secs(60), 0, Channel::Webhook)
            .await,
        Err(StoreError::InvalidBatch(0))
    ));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn prune_removes_old_finished_rows_in_batches_and_keeps_pending_ones(pool: PgPool) {
    let outbox = Outbox::new(pool.clone());
    let user_id = user(&pool).await;
    let week = Duration::from_secs(7 * 24 * 3600);
    let mut old = Vec::new();
    for _ in 0..5 {
        old.push(enqueue(&pool, &locked(user_id)).await);
    }
    let recent = enqueue(&pool, &locked(user_id)).await;
    let old_dead = enqueue(&pool, &locked(user_id)).await;
    let pending = enqueue(&pool, &locked(user_id)).await;
    let retrying = enqueue(&pool, &locked(user_id)).await;
    for row in outbox
        .claim(T0, Duration::from_secs(60), 100, Channel::Webhook)
        .await
        .unwrap()
    {
        let done = match row.id {
            id if old.contains(&id) => outbox.delivered(&row, T0).await,
            id if id == recent => outbox.delivered(&row, T0 + secs(6 * 24 * 3600)).await,
            id if id == old_dead => outbox.dead(&row, T0, "HTTP 410").await,
            id if id == retrying => outbox.retry(&row, T0 + secs(30), "status 500").await,
            // `pending` stays claimed: a worker is on it.
            _ => Ok(true),
        };
        assert!(done.unwrap());
    }
    assert_eq!(rows(&pool).await, 9);
    let backlog = outbox.backlog(T0 + secs(60)).await.unwrap();
    // `pending` (still leased) and `retrying` are pending and due; `old_dead` is dead.
    assert_eq!((backlog.pending(), backlog.due(), backlog.dead), (2, 2, 1));
    let hooks = backlog.channel(Channel::Webhook);
    assert_eq!((hooks.pending, hooks.due, hooks.oldest), (2, 2, Some(T0)));
    assert_eq!(hooks.oldest_age(T0 + secs(60)), Duration::from_secs(60));
    assert_eq!(backlog.channel(Channel::Email).pending, 0);
    assert_eq!(outbox.backlog(T0).await.unwrap().due(), 1);

    let now = T0 + secs(8 * 24 * 3600);
    let pruned = outbox.prune(now, week, 2).await.unwrap();
    // 6 old rows in batches of 2: three full batches, and a fourth that finds none left.
    assert_eq!((pruned.rows, pruned.batches, pruned.capped), (6, 4, false));
    let mut left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM notification_outbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    left.sort();
    let mut want = vec![recent, pending, retrying];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(outbox.prune(now, week, 2).await.unwrap().rows, 0);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_notice_survives_the_erasure_and_is_deleted_once_delivered(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let user_id = user(&pool).await;
    let pending = enqueue(&pool, &locked(user_id)).await;
    let erased = NewNotice::webhook(&Event::AccountErased(AccountErased { user_id }), T0).unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let erased_id = Outbox::enqueue(&mut *tx, &erased).await.unwrap();
    tx.commit().await.unwrap();

    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM notification_outbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![erased_id],
        "the user's pending {pending} went with them"
    );

    // Not before every lease on the user's other notices has run out.
    assert_eq!(w.tick().await.unwrap(), 0);
    clock.advance(299);
    assert_eq!(w.tick().await.unwrap(), 0);
    clock.advance(1);
    assert_eq!(w.tick().await.unwrap(), 1);
    assert_eq!(receiver.accepted(), vec![erased_id]);
    assert_eq!(rows(&pool).await, 0, "delivered, then deleted");
    assert_eq!(counts.results(), vec![Recorded::Delivered]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_enqueue_in_a_rolled_back_transaction_leaves_no_row(pool: PgPool) {
    let user_id = user(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    Outbox::enqueue(&mut *tx, &locked(user_id)).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(rows(&pool).await, 0);

    let mut tx = pool.begin().await.unwrap();
    let id = Outbox::enqueue(&mut *tx, &locked(user_id)).await.unwrap();
    tx.commit().await.unwrap();
    let row = state(&pool, id).await;
    assert_eq!((row.attempts, row.next_attempt_at), (0, T0));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_receiver_accepts_a_delivery_and_rejects_its_exact_replay(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let user_id = user(&pool).await;
    let notice = NewNotice::webhook(
        &Event::PasswordChanged(PasswordChanged {
            user_id,
            method: PasswordChangeMethod::Reset,
        }),
        T0,
    )
    .unwrap();
    let id = enqueue(&pool, &notice).await;
    assert_eq!(w.tick().await.unwrap(), 1);
    assert_eq!(receiver.accepted(), vec![id]);

    // The body is the documented envelope, built from the row.
    let (headers, body) = receiver.state.captured.lock().unwrap().clone().unwrap();
    let envelope = Envelope::from_body(&body).unwrap();
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.time, T0);
    assert_eq!(envelope.realm.as_str(), REALM);
    assert_eq!(envelope.event.type_name(), "password.changed");
    // One v1 per secret line.
    assert_eq!(
        header_str(&headers, SIGNATURE_HEADER)
            .matches(",v1=")
            .count(),
        2
    );

    // An attacker replays the captured request byte for byte, a minute later and after the
    // window: refused as a duplicate, then as too old; never handed off again.
    let replay = |at: i64| {
        clock.advance(at);
        let headers = headers.clone();
        let body = body.clone();
        let url = receiver.url();
        async move {
            install_crypto();
            let client = reqwest::Client::new();
            client
                .post(url)
                .header(SIGNATURE_HEADER, header_str(&headers, SIGNATURE_HEADER))
                .header(EVENT_ID_HEADER, header_str(&headers, EVENT_ID_HEADER))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(replay(60).await, 204);
    assert_eq!(replay(300).await, 401);
    assert_eq!(receiver.refused(), vec!["duplicate", "window"]);
    assert_eq!(receiver.accepted(), vec![id]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_redirect_is_not_followed_and_counts_as_a_retry(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let moved = format!("{}/moved", receiver.base);
    let w = worker(&pool, &clock, &moved, &counts);
    let id = enqueue(&pool, &locked(user(&pool).await)).await;

    assert_eq!(w.tick().await.unwrap(), 1);
    assert_eq!(receiver.state.redirect_hits.load(Ordering::SeqCst), 1);
    assert_eq!(receiver.hits(), 0, "the Location was not followed");
    let row = state(&pool, id).await;
    assert_eq!(row.delivered_at, None);
    assert_eq!(row.next_attempt_at, T0 + secs(30));
    assert_eq!(row.last_error.as_deref(), Some("status 302"));
    assert_eq!(counts.results(), vec![Recorded::Retried]);
}

#[tokio::test]
async fn a_plain_http_or_internal_url_is_refused_and_loopback_needs_dev() {
    install_crypto();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(T0));
    let new = |url: &str| WebhookChannel::new(url, SECRETS, REALM, Arc::clone(&clock));
    assert!(matches!(
        new("http://hooks.example.org/portcullis"),
        Err(WebhookError::InsecureUrl)
    ));
    assert!(matches!(
        new("http://192.0.2.10:8080/hook"),
        Err(WebhookError::ForbiddenHost("documentation"))
    ));
    assert!(new("https://hooks.example.org/portcullis").is_ok());
    assert!(matches!(
        new("http://127.0.0.1:9/hook"),
        Err(WebhookError::ForbiddenHost("loopback"))
    ));
    assert!(matches!(
        new("https://10.0.0.1/hook"),
        Err(WebhookError::ForbiddenHost("private"))
    ));
    assert!(
        WebhookChannel::with_options(
            "http://127.0.0.1:9/hook",
            SECRETS,
            REALM,
            Arc::clone(&clock),
            DEV
        )
        .is_ok()
    );
    assert!(matches!(
        WebhookChannel::new("https://h.example.org/", "\n \n", REALM, Arc::clone(&clock)),
        Err(WebhookError::Secret(_))
    ));
    assert!(matches!(
        WebhookChannel::new("https://h.example.org/", SECRETS, "Not A Label", clock),
        Err(WebhookError::InvalidRealm)
    ));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_unreachable_receiver_is_retried_with_the_network_error(pool: PgPool) {
    let clock = ManualClock::at(T0);
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let counts = Arc::new(Counts::default());
    let w = worker(
        &pool,
        &clock,
        &format!("http://127.0.0.1:{port}/hook?token=SECRET"),
        &counts,
    );
    let id = enqueue(&pool, &locked(user(&pool).await)).await;
    assert_eq!(w.tick().await.unwrap(), 1);
    let row = state(&pool, id).await;
    assert_eq!(
        row.last_error.as_deref(),
        Some("connect_refused"),
        "{row:?}"
    );
    assert_eq!(counts.results(), vec![Recorded::Retried]);
}

/// The email channel as the server will implement it: here it records what it was given.
#[derive(Default)]
struct Mailbox(Mutex<Vec<(Option<String>, serde_json::Value)>>);

impl Deliver for Mailbox {
    fn deliver<'a>(&'a self, notice: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push((notice.recipient.clone(), notice.payload.clone()));
            Outcome::Delivered
        })
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn each_row_goes_to_its_own_channel_and_a_missing_channel_is_left_alone(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let mailbox = Arc::new(Mailbox::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts)
        .with_email(Arc::clone(&mailbox) as Arc<dyn Deliver>);
    let user_id = user(&pool).await;
    let mail = NewNotice::email(
        "account.locked",
        Some(user_id),
        "ada@example.org",
        serde_json::json!({"minutes": 15}),
        T0,
    )
    .unwrap();
    let mail_id = enqueue(&pool, &mail).await;
    let hook_id = enqueue(&pool, &locked(user_id)).await;
    assert_eq!(w.tick().await.unwrap(), 2);
    assert_eq!(
        *mailbox.0.lock().unwrap(),
        vec![(
            Some("ada@example.org".to_owned()),
            serde_json::json!({"minutes": 15})
        )]
    );
    assert_eq!(receiver.accepted(), vec![hook_id]);
    assert!(state(&pool, mail_id).await.delivered_at.is_some());
    let labels = counts.by_label();
    for channel in [Channel::Email, Channel::Webhook] {
        assert_eq!(
            labels.get(&(channel, "account.locked".to_owned(), Recorded::Delivered)),
            Some(&1)
        );
    }

    // A worker without an email channel leaves mail rows to a replica that has one.
    let no_mail = worker(&pool, &clock, &receiver.url(), &counts);
    let orphan = enqueue(&pool, &mail).await;
    assert_eq!(no_mail.tick().await.unwrap(), 0);
    let row = state(&pool, orphan).await;
    assert_eq!((row.attempts, row.dead_at, row.last_error), (0, None, None));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_wake_delivers_without_waiting_for_the_poll(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let config = WorkerConfig {
        poll_interval: Duration::from_secs(3600),
        ..config()
    };
    let w = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config)
        .unwrap()
        .with_webhook(webhook(&receiver.url(), &clock))
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>);
    let wake = w.waker();
    let user_id = user(&pool).await;
    let first = enqueue(&pool, &locked(user_id)).await;
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(w.run(stopped));
    // The first row is delivered and recorded, then the loop claims once more, finds nothing
    // and has nothing in flight: from here only a wake, the hour's poll or shutdown moves it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !counts
            .claims()
            .iter()
            .any(|c| c.recorded_before >= 1 && c.rows == 0)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the loop goes idle after the first row");
    assert_eq!(receiver.accepted(), vec![first]);
    let second = enqueue(&pool, &locked(user_id)).await;
    wake.wake();
    tokio::time::timeout(Duration::from_secs(10), async {
        while receiver.accepted().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("woken, not polled");
    assert_eq!(receiver.accepted(), vec![first, second]);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_schema_refuses_rows_the_types_would_not_build(pool: PgPool) {
    let insert = |channel: &'static str,
                  event: &'static str,
                  recipient: Option<&'static str>,
                  payload: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO notification_outbox (id, channel, event, recipient, payload, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5::jsonb, $6, $6)",
            )
            .bind(Uuid::new_v4())
            .bind(channel)
            .bind(event)
            .bind(recipient)
            .bind(payload)
            .bind(T0)
            .execute(&pool)
            .await
            .is_ok()
        }
    };
    assert!(insert("webhook", "account.locked", None, "{}").await);
    assert!(insert("email", "account.locked", Some("a@b.c"), "{}").await);
    assert!(!insert("sms", "account.locked", None, "{}").await);
    assert!(!insert("webhook", "Account Locked", None, "{}").await);
    assert!(!insert("webhook", "account.locked", Some("a@b.c"), "{}").await);
    assert!(!insert("email", "account.locked", None, "{}").await);
    assert!(!insert("webhook", "account.locked", None, "[1]").await);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn concurrent_claims_on_two_pools_never_take_a_row_twice(pool: PgPool) {
    let user_id = user(&pool).await;
    for _ in 0..300 {
        enqueue(&pool, &locked(user_id)).await;
    }
    let other = second_pool(&pool).await;
    // Eight claimers, four per pool, racing in small batches until nothing is due.
    let claimers = (0..8).map(|n| {
        let outbox = Outbox::new(if n % 2 == 0 {
            pool.clone()
        } else {
            other.clone()
        });
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let rows = outbox
                    .claim(T0, Duration::from_secs(60), 3, Channel::Webhook)
                    .await
                    .unwrap();
                if rows.is_empty() {
                    return got;
                }
                got.extend(rows.into_iter().map(|r| (r.id, r.attempts)));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in claimers.collect::<Vec<_>>() {
        all.extend(claimer.await.unwrap());
    }
    assert_eq!(all.len(), 300, "every row claimed exactly once");
    assert!(all.iter().all(|(_, attempts)| *attempts == 1));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 300);
}

/// A channel that never answers.
struct Hangs;

impl Deliver for Hangs {
    fn deliver<'a>(&'a self, _: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_delivery_that_never_answers_is_cut_off_and_retried(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let counts = Arc::new(Counts::default());
    let config = WorkerConfig {
        attempt_timeout: Duration::from_millis(200),
        ..config()
    };
    let w = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config)
        .unwrap()
        .with_email(Arc::new(Hangs))
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>)
        .with_jitter(|_| 0.5);
    let mail = NewNotice::email(
        "password.changed",
        Some(user(&pool).await),
        "ada@example.org",
        serde_json::json!({}),
        T0,
    )
    .unwrap();
    let id = enqueue(&pool, &mail).await;
    let round = tokio::time::timeout(Duration::from_secs(5), w.tick()).await;
    assert_eq!(round.expect("the round is bounded").unwrap(), 1);
    let row = state(&pool, id).await;
    assert_eq!(row.last_error.as_deref(), Some("timeout"));
    assert_eq!(row.next_attempt_at, T0 + secs(30));
    assert_eq!(counts.results(), vec![Recorded::Retried]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_dead_erasure_notice_is_deleted_too(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Always(410)).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let erased = NewNotice::webhook(
        &Event::AccountErased(AccountErased {
            user_id: Uuid::new_v4(),
        }),
        T0,
    )
    .unwrap();
    enqueue(&pool, &erased).await;
    let kept = enqueue(&pool, &locked(user(&pool).await)).await;
    clock.advance(300);
    assert_eq!(w.tick().await.unwrap(), 2);
    assert_eq!(counts.results(), vec![Recorded::Dead; 2]);
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM notification_outbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec![kept], "other dead rows stay until pruned");
}

/// A channel that holds each delivery until released, counting the calls.
struct Gate {
    calls: AtomicUsize,
    open: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Deliver for Gate {
    fn deliver<'a>(&'a self, _: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _permit = self.open.acquire().await.unwrap();
            Outcome::Delivered
        })
    }
}

/// A channel whose renderer panics.
struct Panics;

impl Deliver for Panics {
    fn deliver<'a>(&'a self, _: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(async { panic!("the renderer met a payload it did not expect") })
    }
}

fn mail(user_id: Option<Uuid>, at: OffsetDateTime) -> NewNotice {
    NewNotice::email(
        "account.locked",
        user_id,
        "ada@example.org",
        serde_json::json!({"minutes": 15}),
        at,
    )
    .unwrap()
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_hanging_webhook_does_not_hold_up_mail(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let counts = Arc::new(Counts::default());
    let mailbox = Arc::new(Mailbox::default());
    let hook = Arc::new(Gate::default());
    // One slot, a 2 min attempt cap and an hour's poll: if mail shared the webhook's slot or
    // claim, it would wait for the hanging webhook far beyond the 10 s this test allows.
    let config = WorkerConfig {
        lease: Duration::from_secs(300),
        batch: 1,
        poll_interval: Duration::from_secs(3600),
        attempt_timeout: Duration::from_secs(120),
        ..config()
    };
    let w = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config)
        .unwrap()
        .with_webhook(Arc::clone(&hook) as Arc<dyn Deliver>)
        .with_email(Arc::clone(&mailbox) as Arc<dyn Deliver>)
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>);
    let user_id = user(&pool).await;
    // The webhook row is older, so a shared claim ordered by due time would take it first.
    let hook_id = enqueue(&pool, &locked(user_id)).await;
    let mail_id = enqueue(&pool, &mail(Some(user_id), T0 + secs(1))).await;
    clock.advance(1);
    let (_stop, stopped) = watch::channel(false);
    let run = tokio::spawn(w.run(stopped));

    wait_until("the mail goes out while the webhook hangs", || async {
        state(&pool, mail_id).await.delivered_at.is_some()
    })
    .await;
    assert_eq!(mailbox.0.lock().unwrap().len(), 1);
    wait_until("the webhook attempt has started", || async {
        hook.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let hanging = state(&pool, hook_id).await;
    assert_eq!((hanging.attempts, hanging.delivered_at), (1, None));
    assert_eq!(
        counts.by_label().get(&(
            Channel::Email,
            "account.locked".to_owned(),
            Recorded::Delivered
        )),
        Some(&1)
    );
    assert_eq!(
        counts.results().len(),
        1,
        "nothing recorded for the webhook yet"
    );
    run.abort();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_panicking_channel_is_a_retry_and_the_loop_goes_on(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let counts = Arc::new(Counts::default());
    let w = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config())
        .unwrap()
        .with_email(Arc::new(Panics))
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>)
        .with_jitter(|_| 0.5);
    let user_id = Some(user(&pool).await);
    let first = enqueue(&pool, &mail(user_id, T0)).await;
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(w.run(stopped));
    wait_until("the first panic is recorded", || async {
        counts.results().len() == 1
    })
    .await;
    // The loop survived: a row enqueued after the panic is still attempted.
    let second = enqueue(&pool, &mail(user_id, T0)).await;
    wait_until("the second row is attempted", || async {
        counts.results().len() == 2
    })
    .await;
    for id in [first, second] {
        let row = state(&pool, id).await;
        assert_eq!(row.last_error.as_deref(), Some("panic"));
        assert_eq!((row.attempts, row.dead_at), (1, None));
        assert_eq!(row.next_attempt_at, T0 + secs(30));
    }
    assert_eq!(counts.results(), vec![Recorded::Retried; 2]);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stops on shutdown")
        .expect("the worker loop did not panic");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_worker_without_the_webhook_channel_never_touches_webhook_rows(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let counts = Arc::new(Counts::default());
    let mailbox = Arc::new(Mailbox::default());
    // An old replica: configured for mail only, during the rollout that adds a webhook.
    let old = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config())
        .unwrap()
        .with_email(Arc::clone(&mailbox) as Arc<dyn Deliver>)
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>);
    let user_id = user(&pool).await;
    let hook_id = enqueue(&pool, &locked(user_id)).await;
    let mail_id = enqueue(&pool, &mail(Some(user_id), T0)).await;
    assert_eq!(old.tick().await.unwrap(), 1, "the mail row only");
    for _ in 0..3 {
        clock.advance(3600);
        assert_eq!(old.tick().await.unwrap(), 0);
    }
    assert!(state(&pool, mail_id).await.delivered_at.is_some());
    let untouched = state(&pool, hook_id).await;
    assert_eq!(
        (untouched.attempts, untouched.dead_at, untouched.last_error),
        (0, None, None)
    );
    // A new replica with the webhook then delivers it on its first attempt.
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let new = worker(&pool, &clock, &receiver.url(), &counts);
    assert_eq!(new.tick().await.unwrap(), 1);
    assert_eq!(receiver.accepted(), vec![hook_id]);
    assert_eq!(state(&pool, hook_id).await.attempts, 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_from_a_newer_version_is_retried_not_killed(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let user_id = user(&pool).await;
    let insert = |event: &'static str, payload: serde_json::Value| {
        let pool = pool.clone();
        async move {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO notification_outbox (id, channel, event, user_id, payload, created_at, next_attempt_at) \
                 VALUES ($1, 'webhook', $2, $3, $4, $5, $5)",
            )
            .bind(id)
            .bind(event)
            .bind(user_id)
            .bind(sqlx::types::Json(payload))
            .bind(T0)
            .execute(&pool)
            .await
            .unwrap();
            id
        }
    };
    // A type this version does not know, and a known type with a value it does not know.
    let new_type = insert("identity.unlinked", serde_json::json!({"user_id": user_id})).await;
    let new_value = insert(
        "mfa.added",
        serde_json::json!({"user_id": user_id, "method": "webauthn"}),
    )
    .await;
    assert_eq!(w.tick().await.unwrap(), 2);
    for id in [new_type, new_value] {
        let row = state(&pool, id).await;
        assert_eq!(row.last_error.as_deref(), Some("unsupported_event"));
        assert_eq!((row.attempts, row.dead_at), (1, None));
    }
    assert_eq!(receiver.hits(), 0);
    // Nobody upgraded for five hours: only then is it given up, with the reason.
    for _ in 2..=MAX_ATTEMPTS {
        clock.advance(2 * 3600);
        assert_eq!(w.tick().await.unwrap(), 2);
    }
    let dead = state(&pool, new_type).await;
    assert_eq!(dead.attempts, 12);
    assert!(dead.dead_at.is_some());
    assert_eq!(
        dead.last_error.as_deref(),
        Some("gave up after 12 attempts: unsupported_event")
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_of_an_unknown_channel_does_not_fail_the_claim(pool: PgPool) {
    // A newer version added a channel (and widened the check).
    sqlx::query(
        "ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_channel_check",
    )
    .execute(&pool)
    .await
    .unwrap();
    let sms = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO notification_outbox (id, channel, event, payload, created_at, next_attempt_at) \
         VALUES ($1, 'sms', 'account.locked', '{}', $2, $2)",
    )
    .bind(sms)
    .bind(T0)
    .execute(&pool)
    .await
    .unwrap();
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let w =
        worker(&pool, &clock, &receiver.url(), &counts).with_email(Arc::new(Mailbox::default()));
    let hook_id = enqueue(&pool, &locked(user(&pool).await)).await;
    assert_eq!(w.tick().await.unwrap(), 1);
    assert_eq!(receiver.accepted(), vec![hook_id]);
    let untouched = state(&pool, sms).await;
    assert_eq!((untouched.attempts, untouched.dead_at), (0, None));
    let backlog = Outbox::new(pool.clone()).backlog(T0).await.unwrap();
    assert_eq!(backlog.channels.len(), 1);
    assert_eq!(
        (
            backlog.channels[0].channel.as_str(),
            backlog.channels[0].pending
        ),
        ("sms", 1)
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_delivered_mail_row_keeps_no_address_or_payload(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let counts = Arc::new(Counts::default());
    let w = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config())
        .unwrap()
        .with_email(Arc::new(Mailbox::default()))
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>);
    let id = enqueue(&pool, &mail(Some(user(&pool).await), T0)).await;
    assert_eq!(w.tick().await.unwrap(), 1);
    let (recipient, payload, delivered): (
        Option<String>,
        serde_json::Value,
        Option<OffsetDateTime>,
    ) = sqlx::query_as(
        "SELECT recipient, payload, delivered_at FROM notification_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(delivered, Some(T0));
    assert_eq!(recipient, None);
    assert_eq!(payload, serde_json::json!({}));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_delivery_outliving_its_lease_is_sent_twice_and_recorded_once(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let counts = Arc::new(Counts::default());
    let slow = Arc::new(Gate::default());
    let fast = Arc::new(Mailbox::default());
    let a = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config())
        .unwrap()
        .with_email(Arc::clone(&slow) as Arc<dyn Deliver>)
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>);
    let b = Worker::new(
        Outbox::new(second_pool(&pool).await),
        Arc::new(clock.clone()),
        config(),
    )
    .unwrap()
    .with_email(Arc::clone(&fast) as Arc<dyn Deliver>)
    .with_observer(Arc::clone(&counts) as Arc<dyn Observe>);
    let id = enqueue(&pool, &mail(Some(user(&pool).await), T0)).await;

    let a_round = tokio::spawn(async move { a.tick().await.unwrap() });
    wait_until("A is delivering", || async {
        slow.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // A's delivery hangs on; B's clock passes the end of A's 60 s lease.
    clock.advance(59);
    assert_eq!(b.tick().await.unwrap(), 0, "the lease still holds");
    clock.advance(1);
    assert_eq!(b.tick().await.unwrap(), 1, "the lease has ended");
    assert_eq!(fast.0.lock().unwrap().len(), 1);
    let done = state(&pool, id).await;
    assert_eq!((done.attempts, done.delivered_at), (2, Some(T0 + secs(60))));

    // A's receiver answers at last: it was a second delivery (at least once), and its late
    // record neither fails nor changes the row.
    clock.advance(5);
    slow.open.add_permits(1);
    assert_eq!(a_round.await.unwrap(), 1);
    assert_eq!(state(&pool, id).await, done);
    assert_eq!(counts.results(), vec![Recorded::Delivered]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_claim_reads_the_due_index_in_order(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    // The test table is empty and would be scanned sequentially: ask for the index path.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let explain = sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) {}",
        portcullis_notify::store::CLAIM
    ));
    let (plan,): (serde_json::Value,) = sqlx::query_as(explain)
        .bind(T0)
        .bind(T0 + secs(60))
        .bind(20_i64)
        .bind("email")
        .bind(15_i64)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let text = plan.to_string();
    assert!(text.contains("notification_outbox_due"), "{text}");
    assert!(
        !text.contains("\"Sort\""),
        "the index supplies the order: {text}"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_claimed_too_often_without_an_outcome_is_given_up(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Accept).await;
    let counts = Arc::new(Counts::default());
    let w = worker(&pool, &clock, &receiver.url(), &counts);
    let user_id = user(&pool).await;
    // Claimed 15 times by workers that crashed (or could not record) each time.
    let poison = enqueue(&pool, &locked(user_id)).await;
    sqlx::query("UPDATE notification_outbox SET attempts = $2 WHERE id = $1")
        .bind(poison)
        .bind(i32::try_from(portcullis_notify::store::MAX_CLAIMS).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let fine = enqueue(&pool, &locked(user_id)).await;
    assert_eq!(w.tick().await.unwrap(), 1);
    assert_eq!(receiver.accepted(), vec![fine]);
    let dead = state(&pool, poison).await;
    assert_eq!(dead.dead_at, Some(T0));
    assert_eq!(
        dead.last_error.as_deref(),
        Some("claimed too often without an outcome")
    );
    let mut results = counts.results();
    results.sort_by_key(|r| r.as_str());
    assert_eq!(results, vec![Recorded::Dead, Recorded::Delivered]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn prune_takes_dead_rows_past_the_batch_limit_too(pool: PgPool) {
    let outbox = Outbox::new(pool.clone());
    let user_id = user(&pool).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(enqueue(&pool, &locked(user_id)).await);
    }
    let claimed = outbox
        .claim(T0, Duration::from_secs(60), 100, Channel::Webhook)
        .await
        .unwrap();
    // One delivered, six dead: most of what is pruned lies in the second arm of the UNION.
    for (n, row) in claimed.iter().enumerate() {
        let done = if n == 0 {
            outbox.delivered(row, T0).await
        } else {
            outbox.dead(row, T0, "status 410").await
        };
        assert!(done.unwrap());
    }
    let later = T0 + secs(8 * 24 * 3600);
    let pruned = outbox
        .prune(later, Duration::from_secs(7 * 24 * 3600), 3)
        .await
        .unwrap();
    assert_eq!((pruned.rows, pruned.batches), (7, 3));
    assert_eq!(rows(&pool).await, 0);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_failing_receiver_pauses_the_channel_instead_of_burning_every_row(pool: PgPool) {
    let clock = ManualClock::at(T0);
    let receiver = Receiver::start(&clock, Mode::Always(503)).await;
    let counts = Arc::new(Counts::default());
    let config = WorkerConfig {
        batch: 1,
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_secs(60),
        ..config()
    };
    let w = Worker::new(Outbox::new(pool.clone()), Arc::new(clock.clone()), config)
        .unwrap()
        .with_webhook(webhook(&receiver.url(), &clock))
        .with_observer(Arc::clone(&counts) as Arc<dyn Observe>)
        .with_jitter(|_| 0.5);
    let user_id = user(&pool).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            enqueue(
                &pool,
                &NewNotice::webhook(
                    &Event::AccountLocked(AccountLocked {
                        user_id,
                        minutes: 15,
                    }),
                    T0 + secs(n),
                )
                .unwrap(),
            )
            .await,
        );
    }
    clock.advance(10);
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(w.run(stopped));
    wait_until("the breaker opens", || async {
        !counts.2.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*counts.2.lock().unwrap(), vec![T0 + secs(70)]);
    assert_eq!(receiver.hits(), 3, "three failures, then no more requests");
    // While it is open (twenty polls), the other rows are not claimed and keep their attempts.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.hits(), 3);
    for id in &ids[3..] {
        assert_eq!(state(&pool, *id).await.attempts, 0);
    }
    // The receiver recovers; after the cool-down a probe succeeds and the rest follow.
    *receiver.state.mode.lock().unwrap() = Mode::Accept;
    clock.advance(60);
    wait_until("all rows are delivered", || async {
        receiver.accepted().len() >= 6
    })
    .await;
    assert_eq!(receiver.accepted().len(), 6);
    for id in &ids[..3] {
        assert_eq!(
            state(&pool, *id).await.attempts,
            2,
            "failed once, then delivered"
        );
    }
    for id in &ids[3..] {
        assert_eq!(
            state(&pool, *id).await.attempts,
            1,
            "never burnt while paused"
        );
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_clock_skew_to_the_database_is_measured(pool: PgPool) {
    let outbox = Outbox::new(pool);
    let in_step = outbox.clock_skew(OffsetDateTime::now_utc()).await.unwrap();
    assert!(in_step.abs() < 5.0, "{in_step}");
    let ahead = outbox
        .clock_skew(OffsetDateTime::now_utc() + secs(3600))
        .await
        .unwrap();
    assert!((ahead - 3600.0).abs() < 5.0, "{ahead}");
}
