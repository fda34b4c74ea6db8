//! What the second factor's building blocks cost: prints figures, asserts nothing but that
//! every operation succeeds (a bench of failing calls would measure the wrong path).
//! 1. Pure, one thread: a TOTP code checked over its window of one step either side, a
//!    recovery code's keyed hash, a TOTP secret sealed and opened with a 1-key and a 3-key
//!    Fernet ring (opened with the oldest key, the last one tried), and the QR code SVG of an
//!    otpauth URI.
//! 2. Against a real PostgreSQL (`DATABASE_URL`'s server, a scratch database with the auth
//!    server's migrations), through [`PgMfaStore`]: `verify` (read, open, check, then the
//!    compare-and-set that accepts the step) with 1 task and with 16 tasks on distinct users,
//!    `spend_recovery_code` (out of 10 unspent codes), `confirm`, and `reencrypt_batch` over
//!    10,000 enrolments moving from an old key to a new one, 500 rows a batch.
//!
//! The TOTP check the store runs is crate-private on purpose (a match alone is not a fresh
//! second factor), so line 1 times what it computes through the public API: `generate` at the
//! three steps of the window, three HMAC-SHA1s each on a signer built for the call (the check
//! builds one signer for the three: this is an upper bound, by one signer's setup per step).
//! The store's `verify` line includes the real check.
//!
//! Run: `cargo bench -p portcullis-mfa --bench mfa` with `DATABASE_URL` set, e.g.
//! `source scripts/services.sh; ensure_services; trap services_stop EXIT; cargo bench ...`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_mfa::*;
use portcullis_sealed::{Binding, KeyRing, Purpose};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;
use uuid::Uuid;

const REALM: &str = "bench";
/// 2026-01-01T00:00:15Z, the middle of a 30-second step.
const T0: i64 = 1_767_225_615;
const TTL: time::Duration = time::Duration::minutes(15);
const PURE_RUNS: usize = 20_000;
const PURE_WARMUP: usize = 1_000;
const QR_RUNS: usize = 2_000;
/// Sequential `verify` calls, and per task with 16 tasks.
const VERIFIES: usize = 2_000;
const VERIFIES_PER_TASK: usize = 250;
const TASKS: usize = 16;
const RECOVERY_USERS: usize = 100;
const CODES_PER_USER: u32 = 10;
const CONFIRMS: usize = 1_000;
const REENCRYPT_ROWS: usize = 10_000;
const REENCRYPT_BATCH: u32 = 500;
const WARMUP: usize = 50;

// ---------------------------------------------------------------------------------------------
// Figures.

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// One table line: `n`, p50, p99 and max in `unit` (1e-6 for µs, 1e-3 for ms), and the
/// throughput over `wall` (the samples' sum when `None`: one caller in sequence).
fn line(name: &str, samples: &mut [Duration], wall: Option<Duration>, unit: f64) {
    samples.sort();
    let total = wall.unwrap_or_else(|| samples.iter().sum());
    let show = |d: Duration| d.as_secs_f64() / unit;
    let rate = samples.len() as f64 / total.as_secs_f64();
    let decimals = if rate < 100.0 { 2 } else { 0 };
    println!(
        "  {name:<50} {:>6} {:>9.2} {:>9.2} {:>9.2} {rate:>10.decimals$}",
        samples.len(),
        show(percentile(samples, 0.5)),
        show(percentile(samples, 0.99)),
        show(percentile(samples, 1.0)),
    );
}

fn header(title: &str, unit: &str) {
    println!("\n{title}");
    println!(
        "  {:<50} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "",
        "n",
        format!("p50 {unit}"),
        format!("p99 {unit}"),
        format!("max {unit}"),
        "ops/s"
    );
}

/// Times `op` `PURE_RUNS` times after a warm-up; `op` gets the run's index.
fn time_pure<T>(mut op: impl FnMut(usize) -> T) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(PURE_RUNS);
    for i in 0..(PURE_WARMUP + PURE_RUNS) {
        let started = Instant::now();
        black_box(op(i));
        if i >= PURE_WARMUP {
            samples.push(started.elapsed());
        }
    }
    samples
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn key(first: u8) -> Vec<u8> {
    (first..first + 32).collect()
}

fn ring(keys: &[Vec<u8>]) -> Arc<KeyRing> {
    Arc::new(KeyRing::new(keys).unwrap())
}

fn recovery_ring() -> Arc<RecoveryKeyRing> {
    Arc::new(
        RecoveryKeyRing::new(vec![
            RecoveryKey::new(1, b"a realm pepper of some 32 bytes!").unwrap(),
        ])
        .unwrap(),
    )
}

/// `count` recovery codes from a xorshift stream seeded with `seed` (distinct sets for
/// distinct seeds, as a CSPRNG's would be).
fn recovery_codes(seed: u64, count: u32) -> Vec<RecoveryCode> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let random: Vec<u8> = (0..count as usize * RECOVERY_CODE_RANDOM_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    generate_recovery_codes(count, &random).unwrap()
}

fn secret_for(n: usize) -> TotpSecret {
    let mut random = [0u8; SECRET_LEN];
    random[..8].copy_from_slice(&(n as u64).to_le_bytes());
    random[8] = 0xa5;
    TotpSecret::generate(random)
}

fn code(secret: &TotpSecret, unix: i64) -> String {
    generate(&TotpParams::default(), secret, unix as u64).to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Pure.

fn pure() {
    let params = TotpParams::default();
    let secret = secret_for(1);
    let user = Uuid::from_u128(0x0192_e3a4_0000_7000_8000_0000_0000_0001);
    header("1. pure, one thread (µs)", "µs");

    let mut s = time_pure(|i| {
        // The window of a check at T0 (skew 1): the current step, the one before, the one after.
        let now = (T0 + 30 * (i as i64 % 1000)) as u64;
        (
            generate(&params, &secret, now),
            generate(&params, &secret, now - 30),
            generate(&params, &secret, now + 30),
        )
    });
    line(
        "TOTP window ±1 step (3 x generate, SHA1/6/30)",
        &mut s,
        None,
        1e-6,
    );

    let recovery = recovery_ring();
    let codes = recovery_codes(7, 10);
    let owner = user.to_string();
    let mut s = time_pure(|i| recovery.hash(REALM, &owner, &codes[i % codes.len()]));
    line("recovery code hash (HMAC-SHA256)", &mut s, None, 1e-6);
    let stored: Vec<RecoveryCodeHash> = codes
        .iter()
        .map(|c| recovery.hash(REALM, &owner, c))
        .collect();
    let typed = codes[9].as_str().to_string();
    let mut s = time_pure(|_| recovery.find(REALM, &owner, &typed, &stored).unwrap());
    line(
        "recovery code find among 10 (hash + compares)",
        &mut s,
        None,
        1e-6,
    );

    let binding = Binding::new(Purpose::TotpSecret, user);
    let (k1, k2, k3) = (key(0), key(64), key(128));
    let one = ring(std::slice::from_ref(&k3));
    let three = ring(&[k1, k2, k3]);
    let mut s = time_pure(|i| portcullis_sealed::seal(&one, binding, secret.as_bytes(), i as u64));
    line("Fernet seal, 1-key ring", &mut s, None, 1e-6);
    let mut s =
        time_pure(|i| portcullis_sealed::seal(&three, binding, secret.as_bytes(), i as u64));
    line("Fernet seal, 3-key ring", &mut s, None, 1e-6);
    // Sealed by the oldest key: the one ring's only key, the three ring's last.
    let token = portcullis_sealed::seal(&one, binding, secret.as_bytes(), T0 as u64);
    let mut s = time_pure(|_| portcullis_sealed::open(&one, binding, &token).unwrap());
    line("Fernet open, 1-key ring", &mut s, None, 1e-6);
    let mut s = time_pure(|_| portcullis_sealed::open(&three, binding, &token).unwrap());
    line("Fernet open, 3-key ring, oldest key", &mut s, None, 1e-6);

    let uri = otpauth_uri(&params, &secret, "Acme", "alice@example.com").unwrap();
    let mut s = Vec::with_capacity(QR_RUNS);
    for i in 0..(QR_RUNS + 100) {
        let started = Instant::now();
        black_box(qr_svg(&uri, "Scan this code with your authenticator app").unwrap());
        if i >= 100 {
            s.push(started.elapsed());
        }
    }
    let svg = qr_svg(&uri, "Scan this code with your authenticator app").unwrap();
    line(
        &format!(
            "QR SVG of a {}-byte otpauth URI ({} B out)",
            uri.len(),
            svg.len()
        ),
        &mut s,
        None,
        1e-6,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. PostgreSQL.

async fn scratch_database(base_url: &str) -> String {
    let admin = PgPool::connect(base_url).await.unwrap();
    let name = format!("portcullis_mfa_bench_{}", std::process::id());
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

/// `count` fresh `users` rows in one statement (their cost is not measured).
async fn users(pool: &PgPool, count: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    sqlx::query(
        "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at) \
         SELECT id, id::text || '@example.org', id::text || '@example.org', 'x', 'v1', $2, $2 \
         FROM unnest($1::uuid[]) AS id",
    )
    .bind(&ids)
    .bind(at(T0 - 3600))
    .execute(pool)
    .await
    .unwrap();
    ids
}

/// Confirmed enrolments for `ids` (at `T0 - 60`: steps from T0 on are new).
async fn enrol(store: &PgMfaStore, ids: &[Uuid], first: usize) -> Vec<TotpSecret> {
    let mut secrets = Vec::with_capacity(ids.len());
    for (n, &id) in ids.iter().enumerate() {
        let secret = secret_for(first + n);
        let enrolment = store
            .begin_enrolment(id, &secret, TotpParams::default(), at(T0 - 90))
            .await
            .unwrap();
        store
            .confirm(id, enrolment, &code(&secret, T0 - 60), at(T0 - 60), TTL)
            .await
            .unwrap();
        secrets.push(secret);
    }
    secrets
}

/// `count` verifies of one user's codes, each at the next step (so each is accepted).
async fn verify_run(
    store: &PgMfaStore,
    id: Uuid,
    secret: &TotpSecret,
    count: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let now = T0 + 30 * i as i64;
        let typed = code(secret, now);
        let started = Instant::now();
        store.verify(id, &typed, at(now)).await.unwrap();
        samples.push(started.elapsed());
    }
    samples
}

async fn database(base_url: &str) {
    let db_url = scratch_database(base_url).await;
    let pool = PgPoolOptions::new()
        .max_connections(TASKS as u32)
        .connect(&db_url)
        .await
        .unwrap();
    sqlx::migrate!("../authserver/migrations")
        .run(&pool)
        .await
        .unwrap();
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&pool)
        .await
        .unwrap();
    let commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    let old = key(0);
    let new = key(100);
    let store = PgMfaStore::new(
        pool.clone(),
        ring(std::slice::from_ref(&old)),
        recovery_ring(),
        REALM,
    );
    header(
        &format!(
            "2. PostgreSQL {version} (fsync={fsync}, synchronous_commit={commit}), pool of {TASKS}, PgMfaStore (ms)"
        ),
        "ms",
    );

    // verify, one task.
    let ids = users(&pool, 1 + TASKS).await;
    let secrets = enrol(&store, &ids, 0).await;
    let mut s = verify_run(&store, ids[0], &secrets[0], WARMUP + VERIFIES).await;
    let mut s = s.split_off(WARMUP);
    line("verify (accepts a new step), 1 task", &mut s, None, 1e-3);

    // verify, 16 tasks on distinct users at once.
    let started = Instant::now();
    let handles: Vec<_> = (1..=TASKS)
        .map(|t| {
            let (store, id, secret) = (store.clone(), ids[t], secrets[t].clone());
            tokio::spawn(async move { verify_run(&store, id, &secret, VERIFIES_PER_TASK).await })
        })
        .collect();
    let mut s = Vec::with_capacity(TASKS * VERIFIES_PER_TASK);
    for handle in handles {
        s.extend(handle.await.unwrap());
    }
    let wall = started.elapsed();
    line(
        &format!("verify, {TASKS} tasks, distinct users"),
        &mut s,
        Some(wall),
        1e-3,
    );

    // spend_recovery_code: every code of every user, the set shrinking from 10 to 1 unspent.
    let ids = users(&pool, RECOVERY_USERS).await;
    enrol(&store, &ids, 1000).await;
    let mut sets = Vec::with_capacity(ids.len());
    for (n, &id) in ids.iter().enumerate() {
        let codes = recovery_codes(n as u64 + 1, CODES_PER_USER);
        store
            .replace_recovery_codes(id, &codes, at(T0))
            .await
            .unwrap();
        sets.push(codes);
    }
    let mut s = Vec::with_capacity(ids.len() * CODES_PER_USER as usize);
    for (id, codes) in ids.iter().zip(&sets) {
        for c in codes {
            let started = Instant::now();
            store
                .spend_recovery_code(*id, c.as_str(), at(T0))
                .await
                .unwrap();
            s.push(started.elapsed());
        }
    }
    line(
        &format!("spend_recovery_code ({CODES_PER_USER} down to 1 unspent)"),
        &mut s,
        None,
        1e-3,
    );

    // confirm of a pending enrolment, each on its own user.
    let ids = users(&pool, WARMUP + CONFIRMS).await;
    let mut s = Vec::with_capacity(CONFIRMS);
    for (n, &id) in ids.iter().enumerate() {
        let secret = secret_for(5000 + n);
        let enrolment = store
            .begin_enrolment(id, &secret, TotpParams::default(), at(T0 - 30))
            .await
            .unwrap();
        let typed = code(&secret, T0);
        let started = Instant::now();
        store
            .confirm(id, enrolment, &typed, at(T0), TTL)
            .await
            .unwrap();
        if n >= WARMUP {
            s.push(started.elapsed());
        }
    }
    line("confirm (pending enrolment)", &mut s, None, 1e-3);

    // reencrypt_batch: only these rows under the old key, so the pass sees exactly them.
    sqlx::query("TRUNCATE mfa_totp, mfa_recovery_codes")
        .execute(&pool)
        .await
        .unwrap();
    let ids = users(&pool, REENCRYPT_ROWS).await;
    for (n, &id) in ids.iter().enumerate() {
        store
            .begin_enrolment(id, &secret_for(20_000 + n), TotpParams::default(), at(T0))
            .await
            .unwrap();
    }
    sqlx::query("ANALYZE mfa_totp")
        .execute(&pool)
        .await
        .unwrap();
    let rotated = PgMfaStore::new(pool.clone(), ring(&[new, old]), recovery_ring(), REALM);
    let mut s = Vec::new();
    let (mut after, mut moved, mut others) = (None, 0u32, 0usize);
    let started = Instant::now();
    loop {
        let batch = Instant::now();
        let report = rotated
            .reencrypt_batch(after, REENCRYPT_BATCH, at(T0 + 60))
            .await
            .unwrap();
        s.push(batch.elapsed());
        moved += report.reencrypted;
        others += report.raced as usize + report.relabelled as usize + report.failed.len();
        after = report.next;
        if after.is_none() {
            break;
        }
    }
    let wall = started.elapsed();
    assert_eq!((moved as usize, others), (REENCRYPT_ROWS, 0));
    line(
        &format!("reencrypt_batch, {REENCRYPT_BATCH} rows a call (per call)"),
        &mut s,
        Some(wall),
        1e-3,
    );
    println!(
        "  reencrypt: {moved} rows in {} calls (the last one finding none), {:.2} s = {:.0} rows/s",
        s.len(),
        wall.as_secs_f64(),
        f64::from(moved) / wall.as_secs_f64()
    );
    pool.close().await;
}

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("portcullis-mfa bench: {cores} cores");
    pure();
    let base_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    database(&base_url).await;
}
