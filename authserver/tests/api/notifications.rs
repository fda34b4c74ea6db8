//! Security notices through the notification seam: a sign-in from a new device, and a
//! breached password found at login (checked in the background against a local server
//! speaking the HaveIBeenPwned range format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use portcullis_authserver::auth::breach::sha1_hex;
use portcullis_crds::GoDuration;
use portcullis_crds::realm::{BreachCheckMode, FailurePolicy, NotificationEvent};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use portcullis_authserver::clock::Clock;

use crate::support::*;

/// Logs alice in as `user_agent`, sending `device` as the device cookie; returns the answer.
async fn login_as(server: &TestServer, user_agent: &str, device: Option<&str>) -> Answer {
    let mut request = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .header("user-agent", user_agent)
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}));
    if let Some(device) = device {
        request = request.header("cookie", format!("__Host-portcullis_device={device}"));
    }
    let answer = read(request.send().await.unwrap()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
}

/// The device cookie an answer sets, if any.
fn device_cookie(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-portcullis_device="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

fn with_subject(mails: &[String], subject: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.lines().any(|l| l == format!("Subject: {subject}")))
        .count()
}

const NEW_DEVICE: &str = "New sign-in to your test account";
const BREACHED: &str = "Your test password appears in a data breach";

/// The rows of `event_type` in the audit export.
async fn audit_rows(server: &TestServer, event_type: &str) -> Vec<Value> {
    let export = server
        .admin_call(
            Method::GET,
            &format!("/admin/v1/audit?type={event_type}&limit=1000"),
        )
        .await;
    match export.body {
        Value::Null => Vec::new(),
        Value::String(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        row => vec![row],
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_new_device_is_told_but_not_the_first_login_nor_a_known_device(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let first = login_as(&server, "browser-a/1", None).await;
    let cookie = device_cookie(&first).expect("the first login sets a device cookie");
    assert_eq!(cookie.len(), 43);
    let set = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-portcullis_device="))
        .unwrap();
    assert!(set.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=34560000"));
    // The same client without its cookie (an API client): known by user agent and network.
    login_as(&server, "browser-a/1", None).await;
    // Another user agent with the cookie: known by the cookie, and no new cookie is set.
    let with_cookie = login_as(&server, "browser-b/2", Some(&cookie)).await;
    assert_eq!(device_cookie(&with_cookie), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(with_subject(&server.mails(), NEW_DEVICE), 0);
    // A new user agent without the cookie: a new device.
    login_as(&server, "browser-c/3", None).await;
    let mails = server.mails_settled(1).await;
    assert_eq!(with_subject(&mails, NEW_DEVICE), 1, "{mails:?}");
    let mail = mails.iter().find(|m| m.contains(NEW_DEVICE)).unwrap();
    assert!(mail.contains("To: alice@example.com"), "{mail}");
    assert!(mail.contains("browser-c/3"), "{mail}");
    let rows = audit_rows(&server, "login_new_device").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user_agent"], "browser-c/3");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn two_accounts_signing_in_from_one_browser_store_different_digests(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    for email in ["alice@example.com", "bob@example.com"] {
        assert_eq!(server.register(email, PASSWORD).await.status, 201);
    }
    let first = login_as(&server, "browser-a/1", None).await;
    let cookie = device_cookie(&first).expect("a device cookie");
    // Bob signs in from the same browser: same cookie, same user agent, same network.
    let bob = read(
        server
            .http
            .post(format!("{}/api/v1/login", server.base))
            .header("user-agent", "browser-a/1")
            .header("cookie", format!("__Host-portcullis_device={cookie}"))
            .json(&json!({"email": "bob@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bob.status, 200, "{bob:?}");
    let per_user: Vec<(i64,)> =
        sqlx::query_as("SELECT count(*) FROM known_devices GROUP BY user_id ORDER BY user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        per_user,
        vec![(2,), (2,)],
        "cookie and fingerprint for each"
    );
    let (shared,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM known_devices a JOIN known_devices b USING (device_hash) \
         WHERE a.user_id <> b.user_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(shared, 0, "no stored digest links the two accounts");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_that_does_not_notify_new_devices_sends_no_notice(pool: PgPool) {
    let server = start(
        pool,
        Options::spec(|spec| {
            if let Some(n) = spec.notifications.as_mut() {
                n.events = vec![NotificationEvent::Lockout];
            }
        }),
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    login_as(&server, "browser-a/1", None).await;
    login_as(&server, "browser-c/3", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(with_subject(&server.mails(), NEW_DEVICE), 0);
    // It is still recognised and audited: only the notice is off.
    assert_eq!(audit_rows(&server, "login_new_device").await.len(), 1);
}

/// A range server that lists `password` while `listing` is set, answering after `delay`;
/// returns its URL and the number of lookups.
async fn toggled_range_server(
    password: &'static str,
    listing: Arc<AtomicBool>,
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counter = lookups.clone();
    let app = axum::Router::new().route(
        "/range/{prefix}",
        get(move |Path(prefix): Path<String>| {
            let (listing, counter) = (listing.clone(), counter.clone());
            async move {
                tokio::time::sleep(delay).await;
                counter.fetch_add(1, Ordering::SeqCst);
                let hash = sha1_hex(password);
                let mut body = String::from("0000000000000000000000000000000000A:0\r\n");
                if listing.load(Ordering::SeqCst) && hash.starts_with(&prefix) {
                    body.push_str(&format!("{}:42\r\n", &hash[5..]));
                }
                body
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, lookups)
}

fn online(url: String) -> Options {
    Options::spec(move |s| {
        let check = &mut s.password_policy.breach_check;
        check.mode = BreachCheckMode::Online;
        check.api_url = url;
        check.failure_policy = FailurePolicy::Open;
        check.timeout = GoDuration::parse("5s").unwrap();
    })
}

/// Polls `done` every 20 ms for up to five seconds.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn scrape(server: &TestServer) -> String {
    server
        .http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_breached_password_found_at_login_is_told_once_per_password(pool: PgPool) {
    let listing = Arc::new(AtomicBool::new(false));
    let (url, lookups) = toggled_range_server(PASSWORD, listing.clone(), Duration::ZERO).await;
    let server = start(pool, online(url)).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    // Clean at login: nothing is told.
    login_as(&server, "browser-a/1", None).await;
    assert!(eventually(async || lookups.load(Ordering::SeqCst) == 2).await);
    // The password turns up in a breach: told at the next login, and only once.
    listing.store(true, Ordering::SeqCst);
    login_as(&server, "browser-a/1", None).await;
    let breached = "portcullis_breach_checks_total{context=\"login\",result=\"breached\"} 1";
    assert!(
        eventually(async || scrape(&server).await.contains(breached)).await,
        "{}",
        scrape(&server).await
    );
    assert!(
        eventually(async || audit_rows(&server, "password_breach_detected").await.len() == 1).await
    );
    // Already told for this password: the next login is not looked up at all.
    login_as(&server, "browser-a/1", None).await;
    let skipped = "portcullis_breach_checks_total{context=\"login\",result=\"skipped\"} 1";
    assert!(
        eventually(async || scrape(&server).await.contains(skipped)).await,
        "{}",
        scrape(&server).await
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 3, "no lookup once told");
    assert!(
        scrape(&server)
            .await
            .contains("portcullis_breach_checks_total{context=\"login\",result=\"clean\"} 1")
    );
    let mails = server.mails_settled(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(with_subject(&server.mails(), BREACHED), 1, "{mails:?}");
    let rows = audit_rows(&server, "password_breach_detected").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "failure");
    assert_eq!(rows[0]["details"]["context"], "login");
    assert_eq!(rows[0]["ip"], "127.0.0.1");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_breach_check_at_login_never_delays_the_login(pool: PgPool) {
    let listing = Arc::new(AtomicBool::new(false));
    let (url, lookups) = toggled_range_server(PASSWORD, listing, Duration::from_secs(2)).await;
    let server = start(pool, online(url)).await;
    // Registration waits for its check (2 s); the login must not.
    server.register("alice@example.com", PASSWORD).await;
    let started = Instant::now();
    login_as(&server, "browser-a/1", None).await;
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert!(eventually(async || lookups.load(Ordering::SeqCst) == 2).await);
}

/// Both database twins keep the 50 most recently seen devices, and mark a breach notice once
/// per credential epoch.
#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn devices_are_capped_and_breach_notices_marked_once_per_epoch(pool: PgPool) {
    use portcullis_authserver::store::{Db, DeviceKind, NewUser};
    use time::OffsetDateTime;
    for db in [Db::from_pool(pool.clone()), Db::memory()] {
        let user = uuid::Uuid::new_v4();
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        db.insert_user(&NewUser {
            id: user,
            email: "alice@example.com",
            email_canonical: "alice@example.com",
            display_name: None,
            password_hash: Some("x"),
            pepper_version: "v1",
            email_verified: true,
            now: start,
        })
        .await
        .unwrap();
        for i in 0..55u8 {
            let at = start + time::Duration::seconds(i64::from(i));
            db.remember_devices(user, &[([i; 32], DeviceKind::Cookie)], at, 50)
                .await
                .unwrap();
        }
        // Seen again: the oldest is now the most recent and stays.
        db.remember_devices(
            user,
            &[([5; 32], DeviceKind::Cookie)],
            start + time::Duration::hours(1),
            50,
        )
        .await
        .unwrap();
        db.remember_devices(
            user,
            &[([99; 32], DeviceKind::Fingerprint)],
            start + time::Duration::hours(2),
            50,
        )
        .await
        .unwrap();
        let mut known = db.known_devices(user).await.unwrap();
        known.sort();
        let mut expected: Vec<[u8; 32]> = (7..55u8).map(|i| [i; 32]).collect();
        expected.extend([[5; 32], [99; 32]]);
        expected.sort();
        assert_eq!(known, expected, "{db:?}");
        assert!(db.mark_breach_noticed(user, 0).await.unwrap());
        assert!(!db.mark_breach_noticed(user, 0).await.unwrap(), "once");
        assert!(
            !db.mark_breach_noticed(user, 1).await.unwrap(),
            "not an epoch the account is at"
        );
    }
}

// ---- The durable outbox: mail and signed webhooks delivered by the worker ----

const HOOK_KEY: &str = "whsec-test-key-0123456789abcdef";

/// A webhook receiver verifying with `portcullis_webhook::Verifier` on `clock` (the server's),
/// answering 503 to the first `fail` requests and waiting `delay` before each answer.
#[derive(Clone)]
struct Receiver {
    url: String,
    received: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    hits: Arc<AtomicUsize>,
}

async fn receiver(clock: Clock, fail: usize, delay: Duration) -> Receiver {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let verifier = Arc::new(std::sync::Mutex::new(portcullis_webhook::Verifier::new(
        portcullis_webhook::DEFAULT_WINDOW,
        1000,
    )));
    let (kept, counted) = (received.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (kept, counted, verifier, clock) = (
                kept.clone(),
                counted.clone(),
                verifier.clone(),
                clock.clone(),
            );
            async move {
                tokio::time::sleep(delay).await;
                if counted.fetch_add(1, Ordering::SeqCst) < fail {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let header = headers
                    .get(portcullis_webhook::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let checked = verifier.lock().unwrap().check(
                    HOOK_KEY,
                    header,
                    &body,
                    clock.now().unix_timestamp(),
                );
                match checked {
                    Ok(portcullis_webhook::Received::Known(envelope)) => {
                        let json: Value = serde_json::from_slice(&body).unwrap();
                        kept.lock()
                            .unwrap()
                            .push((envelope.event.type_name().to_owned(), json));
                        StatusCode::NO_CONTENT
                    }
                    _ => StatusCode::UNAUTHORIZED,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        received,
        hits,
    }
}

impl Receiver {
    fn events(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }
}

fn with_webhook(clock: Clock, url: &str) -> Options {
    Options {
        clock,
        webhook: Some((url.to_owned(), HOOK_KEY.to_owned())),
        ..Options::default()
    }
}

async fn lock_out(server: &TestServer) {
    for _ in 0..5 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
}

async fn outbox_rows(pool: &PgPool, channel: &str) -> Vec<(String, Option<uuid::Uuid>)> {
    sqlx::query_as("SELECT event, user_id FROM notification_outbox WHERE channel = $1")
        .bind(channel)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_lockout_enqueues_a_mail_row_that_the_worker_delivers(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    lock_out(&server).await;
    let rows = outbox_rows(&pool, "email").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "account.locked");
    // No webhook configured: no webhook row.
    assert!(outbox_rows(&pool, "webhook").await.is_empty());
    let mails = server.mails_settled(1).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("temporarily locked") && m.contains("To: alice@example.com")),
        "{mails:?}"
    );
    let delivered = eventually(async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM notification_outbox WHERE delivered_at IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    assert!(delivered, "the row is marked delivered");
    assert!(scrape(&server).await.contains(
        "portcullis_notifications_total{channel=\"email\",event=\"account.locked\",result=\"delivered\"} 1"
    ));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_lockout_posts_a_signed_event_with_the_user_id_and_no_address(pool: PgPool) {
    let clock = Clock::reading(time::OffsetDateTime::now_utc);
    let hook = receiver(clock.clone(), 0, Duration::ZERO).await;
    let server = start(pool.clone(), with_webhook(clock, &hook.url)).await;
    server.register("alice@example.com", PASSWORD).await;
    lock_out(&server).await;
    assert!(eventually(async || !hook.events().is_empty()).await);
    let events = hook.events();
    assert_eq!(events.len(), 1);
    let (kind, body) = &events[0];
    assert_eq!(kind, "account.locked");
    let user_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(body["data"]["user_id"], user_id.to_string());
    assert_eq!(body["realm"], "test");
    let text = body.to_string();
    assert!(!text.contains("alice"), "{text}");
    // The mail went too, as a row of its own.
    assert_eq!(outbox_rows(&pool, "email").await.len(), 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_receiver_that_fails_first_gets_the_event_after_the_backoff(pool: PgPool) {
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let hook = receiver(clock.clone(), 1, Duration::ZERO).await;
    let server = start(pool.clone(), with_webhook(clock.clone(), &hook.url)).await;
    server.register("alice@example.com", PASSWORD).await;
    lock_out(&server).await;
    assert!(eventually(async || hook.hits.load(Ordering::SeqCst) == 1).await);
    let retried = eventually(async || {
        scrape(&server).await.contains(
            "portcullis_notifications_total{channel=\"webhook\",event=\"account.locked\",result=\"retried\"} 1",
        )
    })
    .await;
    assert!(retried, "{}", scrape(&server).await);
    assert!(hook.events().is_empty());
    // The first retry is due about 30 s later (±20 %): past it, the next poll delivers.
    clock.advance(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(15);
    while hook.events().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = hook.events();
    assert_eq!(
        events.len(),
        1,
        "hits: {}",
        hook.hits.load(Ordering::SeqCst)
    );
    assert_eq!(events[0].0, "account.locked");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_request_that_caused_a_notice_does_not_wait_for_a_slow_receiver(pool: PgPool) {
    let clock = Clock::reading(time::OffsetDateTime::now_utc);
    let hook = receiver(clock.clone(), 0, Duration::from_secs(3)).await;
    let server = start(pool.clone(), with_webhook(clock, &hook.url)).await;
    server.register("alice@example.com", PASSWORD).await;
    for _ in 0..4 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
    let started = Instant::now();
    server.login("alice@example.com", OTHER_PASSWORD).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outbox_rows(&pool, "webhook").await.len(), 1);
    assert!(eventually(async || !hook.events().is_empty()).await);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_that_does_not_notify_lockouts_enqueues_nothing(pool: PgPool) {
    let clock = Clock::reading(time::OffsetDateTime::now_utc);
    let hook = receiver(clock.clone(), 0, Duration::ZERO).await;
    let mut options = with_webhook(clock, &hook.url);
    options.spec = Box::new(|spec| {
        if let Some(n) = spec.notifications.as_mut() {
            n.events = vec![NotificationEvent::NewDevice];
        }
    });
    let server = start(pool.clone(), options).await;
    server.register("alice@example.com", PASSWORD).await;
    lock_out(&server).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}
