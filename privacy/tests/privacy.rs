//! The crate against a real PostgreSQL (`DATABASE_URL`; each test gets a fresh database with
//! the auth server's migrations) and a controlled clock. One test binary, to save link time.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_audit::{ActorKind, AuditKeys, Details, NewEvent, Outcome, PageQuery, PgAuditLog};
use portcullis_privacy::PrivacyError;
use portcullis_privacy::consent::{
    self, ConsentChange, IpPrefix, Policy, Purpose, Source, reconsent_needed,
};
use portcullis_privacy::erasure::{
    self, ErasedAccount, ErasureRequest, FinishHook, HookFuture, KvEraser, KvFuture, KvSubject,
    RequestedBy,
};
use portcullis_privacy::export::{
    self, COVERED_TABLES, ExportExtras, ExportedSession, Notification, OneTimeToken,
    PendingErasure, RecoveryCode, SCHEMA_VERSION, TotpEnrolment,
};
use portcullis_privacy::retention::{self, AuditAction, Counts, RetentionLock, Rule, Rules};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

const KEYS: &str = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;
const DAY: i64 = 86_400;

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn audit(pool: &PgPool) -> PgAuditLog {
    PgAuditLog::new(
        pool.clone(),
        Arc::new(AuditKeys::parse(KEYS).unwrap()),
        "acme",
    )
}

fn policy(version: &str) -> Policy {
    Policy {
        version: version.into(),
        purposes: vec![
            Purpose {
                name: "terms".into(),
                required: true,
            },
            Purpose {
                name: "analytics".into(),
                required: false,
            },
        ],
    }
}

const PASSWORD_HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

async fn add_user(pool: &PgPool, email: &str, now: OffsetDateTime) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, email, email_canonical, display_name, password_hash, \
         pepper_version, email_verified, created_at, updated_at, last_login_at) \
         VALUES ($1, $2, lower($2), 'Ada', $3, 'p1', true, $4, $4, $5)",
    )
    .bind(id)
    .bind(email)
    .bind(PASSWORD_HASH)
    .bind(now)
    .bind(now + time::Duration::hours(1))
    .execute(pool)
    .await
    .unwrap();
    id
}

fn event(user: Uuid, kind: &'static str, occurred_at: OffsetDateTime) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        occurred_at,
        event_type: kind,
        outcome: Outcome::Success,
        actor_kind: ActorKind::User,
        actor_id: Some(user.hyphenated().to_string()),
        subject_id: Some(user),
        client_id: None,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("Firefox/140".into()),
        details: Details::new().code("method", "password"),
    }
}

fn change(user: Uuid, purpose: &str, granted: bool) -> ConsentChange {
    ConsentChange {
        user,
        purpose: purpose.into(),
        granted,
        policy_version: "2".into(),
        source: Source::Api,
        ip_prefix: Some(IpPrefix::of("203.0.113.77".parse().unwrap())),
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The Redis side as the server implements it: sessions by id with their user, and a record
/// of every erase call; fails while `fail` is set. `racing_login` is a session a login stores
/// right after the first erase call (a login that had checked the password before the
/// request).
#[derive(Default)]
struct RecordingKv {
    erased: Mutex<Vec<(Uuid, Option<String>)>>,
    sessions: Mutex<Vec<(String, Uuid)>>,
    racing_login: Mutex<Option<(String, Uuid)>>,
    fail: AtomicBool,
}

impl RecordingKv {
    fn with_sessions(sessions: &[(&str, Uuid)]) -> Self {
        let kv = Self::default();
        *kv.sessions.lock().unwrap() = sessions.iter().map(|(s, u)| (s.to_string(), *u)).collect();
        kv
    }

    fn sessions(&self) -> Vec<(String, Uuid)> {
        self.sessions.lock().unwrap().clone()
    }
}

impl KvEraser for RecordingKv {
    fn erase<'a>(&'a self, subject: KvSubject<'a>) -> KvFuture<'a> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err("redis: connection refused".into());
            }
            self.erased
                .lock()
                .unwrap()
                .push((subject.user_id, subject.email_canonical.map(str::to_owned)));
            let mut sessions = self.sessions.lock().unwrap();
            sessions.retain(|(_, u)| *u != subject.user_id);
            if let Some(s) = self.racing_login.lock().unwrap().take() {
                sessions.push(s);
            }
            Ok(())
        })
    }
}

/// Every stored row about `user`, as text: the account, every row of every table with a
/// `user_id` column, their refresh tokens and the audit rows naming them (all columns: ip,
/// user agent, subject, actor, pseudonym). Compared before and after to prove a bystander
/// untouched, byte for byte.
async fn rows_of(pool: &PgPool, user: Uuid) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'user_id' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut rows: Vec<String> = Vec::new();
    for table in tables {
        let sql = format!(
            "SELECT '{table}:' || row_to_json(t)::text FROM {table} t WHERE user_id = $1 ORDER BY 1"
        );
        rows.extend(
            // The table names come from the catalogue, not from input.
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .bind(user)
                .fetch_all(pool)
                .await
                .unwrap(),
        );
    }
    for sql in [
        "SELECT 'users:' || row_to_json(u)::text FROM users u WHERE id = $1",
        "SELECT 'refresh_tokens:' || row_to_json(r)::text FROM refresh_tokens r \
         JOIN refresh_families f USING (family_id) WHERE f.user_id = $1 ORDER BY 1",
        "SELECT 'audit_events:' || row_to_json(e)::text FROM audit_events e \
         WHERE subject_id = $1 OR actor_id = $1::text ORDER BY seq",
    ] {
        rows.extend(
            sqlx::query_scalar::<_, String>(sql)
                .bind(user)
                .fetch_all(pool)
                .await
                .unwrap(),
        );
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Consent

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_change_records_the_answer_and_a_history_row(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    consent::record_change(
        &pool,
        &policy("2"),
        &change(user, "analytics", true),
        at(T0),
    )
    .await
    .unwrap();
    let withdrawn = consent::record_change(
        &pool,
        &policy("2"),
        &change(user, "analytics", false),
        at(T0 + 60),
    )
    .await
    .unwrap();
    assert!(!withdrawn.granted);
    let current = consent::current(&pool, user).await.unwrap();
    assert_eq!(current, vec![withdrawn]);
    let history = consent::history(&pool, user).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (
                e.granted,
                e.at,
                e.source,
                e.ip_prefix.as_ref().map(|p| p.as_str())
            ))
            .collect::<Vec<_>>(),
        vec![
            (true, at(T0), Source::Api, Some("203.0.113.0/24")),
            (false, at(T0 + 60), Source::Api, Some("203.0.113.0/24")),
        ]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn withdrawing_a_required_purpose_is_refused_and_changes_nothing(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let e = consent::record_change(&pool, &policy("2"), &change(user, "terms", false), at(T0))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "consent_required");
    assert!(consent::current(&pool, user).await.unwrap().is_empty());
    assert!(consent::history(&pool, user).await.unwrap().is_empty());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_change_under_an_old_policy_version_is_refused(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let e = consent::record_change(
        &pool,
        &policy("3"),
        &change(user, "analytics", true),
        at(T0),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "policy_version_mismatch");
    assert!(consent::history(&pool, user).await.unwrap().is_empty());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_withdrawal_naming_an_old_policy_version_is_recorded_under_the_current_one(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    consent::record_change(
        &pool,
        &policy("2"),
        &change(user, "analytics", true),
        at(T0),
    )
    .await
    .unwrap();
    // The page was loaded before the policy went to version 3.
    let withdrawn = consent::record_change(
        &pool,
        &policy("3"),
        &change(user, "analytics", false),
        at(T0 + 60),
    )
    .await
    .unwrap();
    assert_eq!(
        (withdrawn.granted, withdrawn.policy_version.as_str()),
        (false, "3")
    );
    let now: Vec<(String, bool, String)> = consent::current(&pool, user)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.purpose, c.granted, c.policy_version))
        .collect();
    assert_eq!(now, vec![("analytics".into(), false, "3".into())]);
    let history = consent::history(&pool, user).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (e.granted, e.policy_version.as_str()))
            .collect::<Vec<_>>(),
        vec![(true, "2"), (false, "3")]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_purpose_dropped_from_the_policy_can_still_be_withdrawn(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let mut old = policy("2");
    old.purposes.push(Purpose {
        name: "newsletter".into(),
        required: false,
    });
    consent::record_change(&pool, &old, &change(user, "newsletter", true), at(T0))
        .await
        .unwrap();
    // Version 3 no longer has the purpose; the stored grant can still be withdrawn, ...
    consent::record_change(
        &pool,
        &policy("3"),
        &change(user, "newsletter", false),
        at(T0 + 60),
    )
    .await
    .unwrap();
    let current = consent::current(&pool, user).await.unwrap();
    assert_eq!(
        current
            .iter()
            .map(|c| (c.purpose.as_str(), c.granted))
            .collect::<Vec<_>>(),
        vec![("newsletter", false)]
    );
    // ... but not granted again, and a purpose never answered stays unknown.
    let mut regrant = change(user, "newsletter", true);
    regrant.policy_version = "3".into();
    let e = consent::record_change(&pool, &policy("3"), &regrant, at(T0 + 120))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "unknown_purpose");
    let e = consent::record_change(
        &pool,
        &policy("3"),
        &change(user, "marketing", false),
        at(T0 + 120),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "unknown_purpose");
    assert_eq!(consent::history(&pool, user).await.unwrap().len(), 2);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_change_for_an_unknown_user_is_refused(pool: PgPool) {
    let nobody = Uuid::new_v4();
    let e = consent::record_change(
        &pool,
        &policy("2"),
        &change(nobody, "analytics", true),
        at(T0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, PrivacyError::UnknownUser(u) if u == nobody),
        "{e:?}"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn accepting_a_new_policy_ends_the_need_to_reconsent(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let accepted = consent::accepted_version(&pool, user).await.unwrap();
    assert!(reconsent_needed(accepted.as_deref(), "2"));
    let choices = BTreeMap::from([
        ("terms".to_string(), true),
        ("analytics".to_string(), false),
    ]);
    consent::accept_policy(
        &pool,
        &policy("2"),
        user,
        "2",
        &choices,
        Source::ConsentPrompt,
        None,
        at(T0),
    )
    .await
    .unwrap();
    let accepted = consent::accepted_version(&pool, user).await.unwrap();
    assert_eq!(accepted.as_deref(), Some("2"));
    assert!(!reconsent_needed(accepted.as_deref(), "2"));
    assert!(
        reconsent_needed(accepted.as_deref(), "3"),
        "a bump asks again"
    );
    let current = consent::current(&pool, user).await.unwrap();
    assert_eq!(
        current
            .iter()
            .map(|c| (c.purpose.as_str(), c.granted, c.policy_version.as_str()))
            .collect::<Vec<_>>(),
        vec![("analytics", false, "2"), ("terms", true, "2")]
    );
    let history = consent::history(&pool, user).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|e| e.source == Source::ConsentPrompt && e.ip_prefix.is_none())
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn accepting_without_a_required_purpose_is_refused_and_changes_nothing(pool: PgPool) {
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let choices = BTreeMap::from([("analytics".to_string(), true)]);
    let e = consent::accept_policy(
        &pool,
        &policy("2"),
        user,
        "2",
        &choices,
        Source::Registration,
        None,
        at(T0),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, PrivacyError::ConsentRequired { ref purpose } if purpose == "terms"));
    assert_eq!(consent::accepted_version(&pool, user).await.unwrap(), None);
    assert!(consent::current(&pool, user).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Export

/// Every secret-bearing value the export test writes, in the forms a leak could take.
struct Secrets(Vec<String>);

impl Secrets {
    fn text(&mut self, s: &str) {
        self.0.push(s.to_owned());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.push(b.iter().map(|x| format!("{x:02x}")).collect());
        self.0.push(format!(
            "[{}]",
            b.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
        ));
        self.0.push(base64_std(b));
    }
}

fn base64_std(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A user with a row in every table the export reads, and their secrets.
async fn populated_user(pool: &PgPool, log: &PgAuditLog) -> (Uuid, Secrets) {
    populated_user_as(pool, log, &ADA).await
}

/// The personal values of a fixture user, each unique to them, so a search finds them and a
/// bystander's differ in every one.
struct Who {
    email: &'static str,
    display_name: &'static str,
    ip: &'static str,
    user_agent: &'static str,
    subject: &'static str,
    linked_email: &'static str,
    session_id: &'static str,
    /// Added to the fixture's token, device and code bytes (primary keys must differ).
    bytes: u8,
}

const ADA: Who = Who {
    email: "Ada@Example.org",
    display_name: "Ada Lovelace-q7x2",
    ip: "192.0.2.7",
    user_agent: "Firefox/140",
    subject: "gh-583231",
    linked_email: "ada@users.github.example",
    session_id: "sess-public-1",
    bytes: 0,
};

const BOB: Who = Who {
    email: "Bob@Example.net",
    display_name: "Bob Bystander-k4m9",
    ip: "198.51.100.23",
    user_agent: "Bystander-UA/77",
    subject: "gh-990017",
    linked_email: "bob@users.github.example",
    session_id: "sess-bob-9",
    bytes: 8,
};

fn event_of(user: Uuid, who: &Who, kind: &'static str, occurred_at: OffsetDateTime) -> NewEvent {
    let mut e = event(user, kind, occurred_at);
    e.ip = Some(who.ip.into());
    e.user_agent = Some(who.user_agent.into());
    e
}

/// [`populated_user`] with `who`'s values.
async fn populated_user_as(pool: &PgPool, log: &PgAuditLog, who: &Who) -> (Uuid, Secrets) {
    let mut secrets = Secrets(vec![PASSWORD_HASH.to_owned()]);
    let user = add_user(pool, who.email, at(T0)).await;
    sqlx::query("UPDATE users SET display_name = $2 WHERE id = $1")
        .bind(user)
        .bind(who.display_name)
        .execute(pool)
        .await
        .unwrap();
    let k = who.bytes;
    let choices = BTreeMap::from([("terms".to_string(), true), ("analytics".to_string(), true)]);
    consent::accept_policy(
        pool,
        &policy("2"),
        user,
        "2",
        &choices,
        Source::Registration,
        None,
        at(T0),
    )
    .await
    .unwrap();
    consent::record_change(
        pool,
        &policy("2"),
        &change(user, "analytics", false),
        at(T0 + 100),
    )
    .await
    .unwrap();
    let family = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO refresh_families (family_id, user_id, session_id, client_id, credential_epoch, \
         created_at, expires_at, scope, offline) VALUES ($1, $2, $5, 'shop', 0, $3, $4, \
         'openid email', true)",
    )
    .bind(family)
    .bind(user)
    .bind(at(T0 + 200))
    .bind(at(T0 + 30 * DAY))
    .bind(who.session_id)
    .execute(pool)
    .await
    .unwrap();
    let (t1, t2) = ([0xa1u8 + k; 32], [0xa2u8 + k; 32]);
    secrets.bytes(&t1);
    secrets.bytes(&t2);
    for (hash, issued, used) in [(t1, T0 + 200, Some(T0 + 900)), (t2, T0 + 900, None)] {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash.to_vec())
        .bind(family)
        .bind(at(issued))
        .bind(at(issued + 7 * DAY))
        .bind(used.map(at))
        .execute(pool)
        .await
        .unwrap();
    }
    let ott = [0xb1u8 + k; 32];
    secrets.bytes(&ott);
    sqlx::query(
        "INSERT INTO one_time_tokens (token_hash, user_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, 'password_reset', $3, $4)",
    )
    .bind(ott.to_vec())
    .bind(user)
    .bind(at(T0))
    .bind(at(T0 + 3600))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO oauth_consents (user_id, client_id, scopes, granted_at, updated_at) \
         VALUES ($1, 'shop', ARRAY['openid','email'], $2, $3)",
    )
    .bind(user)
    .bind(at(T0 + 150))
    .bind(at(T0 + 160))
    .execute(pool)
    .await
    .unwrap();
    let device = [0xc1u8 + k; 32];
    secrets.bytes(&device);
    sqlx::query(
        "INSERT INTO known_devices (user_id, device_hash, kind, first_seen_at, last_seen_at) \
         VALUES ($1, $2, 'cookie', $3, $4)",
    )
    .bind(user)
    .bind(device.to_vec())
    .bind(at(T0 + 10))
    .bind(at(T0 + 500))
    .execute(pool)
    .await
    .unwrap();
    let sealed_totp = "gAAAAABnTOTPSEALEDSECRETciphertextXYZ==";
    secrets.text(sealed_totp);
    sqlx::query(
        "INSERT INTO mfa_totp (user_id, secret, secret_key_id, params, created_at, confirmed_at, \
         last_used_step) VALUES ($1, $2, 'k1', 'SHA1:6:30:1', $3, $4, 5)",
    )
    .bind(user)
    .bind(sealed_totp)
    .bind(at(T0 + 300))
    .bind(at(T0 + 320))
    .execute(pool)
    .await
    .unwrap();
    for (n, used) in [
        (0xd1u8 + k, None),
        (0xd2 + k, Some(T0 + 400)),
        (0xd3 + k, None),
    ] {
        let digest = [n; 32];
        secrets.bytes(&digest);
        sqlx::query(
            "INSERT INTO mfa_recovery_codes (user_id, key_version, digest, created_at, used_at) \
             VALUES ($1, 1, $2, $3, $4)",
        )
        .bind(user)
        .bind(digest.to_vec())
        .bind(at(T0 + 320))
        .bind(used.map(at))
        .execute(pool)
        .await
        .unwrap();
    }
    let sealed_upstream = "gAAAAABnUPSTREAMTOKENSciphertextABC==";
    secrets.text(sealed_upstream);
    sqlx::query(
        "INSERT INTO linked_identities (id, user_id, provider, issuer, subject, email, created_at, \
         last_used_at, upstream_tokens, upstream_tokens_key_id) \
         VALUES ($1, $2, 'github', 'https://github.com', $6, $7, $3, $4, $5, 'k1')",
    )
    .bind(Uuid::new_v4())
    .bind(user)
    .bind(at(T0 + 600))
    .bind(at(T0 + 700))
    .bind(sealed_upstream)
    .bind(who.subject)
    .bind(who.linked_email)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notification_outbox (id, channel, event, user_id, recipient, payload, \
         created_at, next_attempt_at) VALUES ($1, 'email', 'login.new_device', $2, lower($4), \
         jsonb_build_object('ip', $5::text), $3, $3)",
    )
    .bind(Uuid::new_v4())
    .bind(user)
    .bind(at(T0 + 500))
    .bind(who.email)
    .bind(who.ip)
    .execute(pool)
    .await
    .unwrap();
    log.append(&event_of(user, who, "register", at(T0)))
        .await
        .unwrap();
    log.append(&event_of(user, who, "login", at(T0 + 3600)))
        .await
        .unwrap();
    // An administrator acting on the account: their address is not the user's data.
    let mut unlock = event(user, "admin_unlock", at(T0 + 3700));
    unlock.actor_kind = ActorKind::Admin;
    unlock.actor_id = Some("admin".into());
    unlock.ip = Some("198.51.100.99".into());
    unlock.user_agent = Some("curl/8.0".into());
    log.append(&unlock).await.unwrap();
    (user, secrets)
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_export_holds_the_users_data_field_by_field_and_no_secret(pool: PgPool) {
    let log = audit(&pool);
    let (user, secrets) = populated_user(&pool, &log).await;
    // Someone else, whose data must not appear.
    let other = add_user(&pool, "grace@example.org", at(T0)).await;
    log.append(&event(other, "login", at(T0 + 50)))
        .await
        .unwrap();
    let session = ExportedSession {
        id: "sess-public-1".into(),
        created_at: at(T0 + 200),
        last_seen_at: at(T0 + 800),
        expires_at: at(T0 + 200 + 12 * 3600),
        ip: "192.0.2.7".into(),
        user_agent: "Firefox/140".into(),
    };
    let extras = ExportExtras {
        sessions: vec![session.clone()],
    };
    let now = at(T0 + 2 * DAY);
    let doc = export::export_user(&pool, &log, user, extras, now)
        .await
        .unwrap();

    assert_eq!(doc.schema_version, SCHEMA_VERSION);
    assert_eq!(doc.exported_at, now);
    let p = &doc.profile;
    assert_eq!(
        (
            p.id,
            p.email.as_str(),
            p.display_name.as_deref(),
            p.email_verified,
            p.disabled
        ),
        (user, "Ada@Example.org", Some(ADA.display_name), true, false)
    );
    assert_eq!(
        (p.created_at, p.last_login_at),
        (at(T0), Some(at(T0 + 3600)))
    );
    assert_eq!(p.policy_version_accepted.as_deref(), Some("2"));
    assert_eq!(doc.sessions, vec![session]);
    assert_eq!(
        doc.consents
            .iter()
            .map(|c| (c.purpose.as_str(), c.granted, c.updated_at))
            .collect::<Vec<_>>(),
        vec![("analytics", false, at(T0 + 100)), ("terms", true, at(T0))]
    );
    assert_eq!(
        doc.consent_history
            .iter()
            .map(|e| (e.purpose.as_str(), e.granted, e.at, e.source))
            .collect::<Vec<_>>(),
        vec![
            ("analytics", true, at(T0), Source::Registration),
            ("terms", true, at(T0), Source::Registration),
            ("analytics", false, at(T0 + 100), Source::Api),
        ]
    );
    let [f] = doc.refresh_families.as_slice() else {
        panic!("{:?}", doc.refresh_families)
    };
    assert_eq!(
        (
            f.client_id.as_deref(),
            f.scope.as_str(),
            f.offline,
            f.created_at,
            f.last_used_at,
            f.expires_at,
            f.revoked_at
        ),
        (
            Some("shop"),
            "openid email",
            true,
            at(T0 + 200),
            Some(at(T0 + 900)),
            at(T0 + 30 * DAY),
            None
        )
    );
    assert_eq!(
        (
            f.session_id.as_str(),
            f.auth_time,
            f.amr.clone(),
            f.acr.as_deref()
        ),
        (ADA.session_id, None, vec!["pwd".to_string()], None)
    );
    assert!(!p.password_breach_noticed);
    assert_eq!(
        doc.one_time_tokens,
        vec![OneTimeToken {
            purpose: "password_reset".into(),
            created_at: at(T0),
            expires_at: at(T0 + 3600),
            used_at: None,
        }]
    );
    assert_eq!(
        doc.notifications,
        vec![Notification {
            event: "login.new_device".into(),
            channel: "email".into(),
            recipient: Some("ada@example.org".into()),
            created_at: at(T0 + 500),
            state: "pending".into(),
            payload: Some(serde_json::json!({"ip": ADA.ip})),
        }]
    );
    assert_eq!(doc.erasure_request, None);
    assert_eq!(
        doc.mfa.totp,
        Some(TotpEnrolment {
            confirmed: true,
            created_at: at(T0 + 300),
            confirmed_at: Some(at(T0 + 320)),
            // Step 5 of 30 s.
            last_used_at: Some(at(150)),
        })
    );
    assert_eq!(
        doc.mfa.recovery_codes,
        vec![
            RecoveryCode {
                created_at: at(T0 + 320),
                used_at: Some(at(T0 + 400))
            },
            RecoveryCode {
                created_at: at(T0 + 320),
                used_at: None
            },
            RecoveryCode {
                created_at: at(T0 + 320),
                used_at: None
            },
        ]
    );
    let [o] = doc.oauth_consents.as_slice() else {
        panic!("{:?}", doc.oauth_consents)
    };
    assert_eq!(
        (
            o.client_id.as_str(),
            o.scopes.clone(),
            o.granted_at,
            o.updated_at
        ),
        (
            "shop",
            vec!["openid".to_string(), "email".to_string()],
            at(T0 + 150),
            at(T0 + 160)
        )
    );
    let [d] = doc.known_devices.as_slice() else {
        panic!("{:?}", doc.known_devices)
    };
    assert_eq!(
        (d.kind.as_str(), d.first_seen_at, d.last_seen_at),
        ("cookie", at(T0 + 10), at(T0 + 500))
    );
    assert_eq!(
        (
            doc.mfa.enrolled,
            doc.mfa.confirmed_at,
            doc.mfa.recovery_codes_left
        ),
        (true, Some(at(T0 + 320)), 2)
    );
    let [l] = doc.linked_identities.as_slice() else {
        panic!("{:?}", doc.linked_identities)
    };
    assert_eq!(
        (
            l.provider.as_str(),
            l.issuer.as_str(),
            l.subject.as_str(),
            l.email.as_deref(),
            l.created_at,
            l.last_used_at
        ),
        (
            "github",
            "https://github.com",
            ADA.subject,
            Some(ADA.linked_email),
            at(T0 + 600),
            at(T0 + 700)
        )
    );
    assert_eq!(
        doc.audit_events
            .iter()
            .map(|e| (
                e.event_type.as_str(),
                e.occurred_at,
                e.outcome.as_str(),
                e.ip.as_deref(),
                e.user_agent.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![
            (
                "register",
                at(T0),
                "success",
                Some("192.0.2.7"),
                Some("Firefox/140")
            ),
            (
                "login",
                at(T0 + 3600),
                "success",
                Some("192.0.2.7"),
                Some("Firefox/140")
            ),
            ("admin_unlock", at(T0 + 3700), "success", None, None),
        ]
    );
    assert_eq!(
        doc.audit_events[0].details,
        serde_json::json!({"method": "password"})
    );

    let json = serde_json::to_string(&doc).unwrap();
    for secret in &secrets.0 {
        assert!(
            !json.contains(secret.as_str()),
            "the export holds the secret {secret}"
        );
    }
    // Nor the audit trail's salts, digests and hashes.
    let rows = sqlx::query("SELECT salt, personal_digest, hash FROM audit_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    for row in rows {
        for i in 0..3 {
            if let Some(b) = row.get::<Option<Vec<u8>>, _>(i) {
                let mut s = Secrets(Vec::new());
                s.bytes(&b);
                for needle in &s.0 {
                    assert!(
                        !json.contains(needle.as_str()),
                        "audit bytes {needle} exported"
                    );
                }
            }
        }
    }
    assert!(!json.contains("grace@example.org") && !json.contains(&other.to_string()));
    assert!(
        !json.contains("198.51.100.99") && !json.contains("curl/8.0"),
        "the admin's address and browser are not the user's"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_export_shows_a_pending_totp_enrolment_and_a_pending_erasure(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    sqlx::query(
        "INSERT INTO mfa_totp (user_id, secret, secret_key_id, params, created_at) \
         VALUES ($1, 'gAAAAABsealed', 'k1', 'SHA1:6:30:1', $2)",
    )
    .bind(user)
    .bind(at(T0 + 300))
    .execute(&pool)
    .await
    .unwrap();
    let request = erasure::request(&pool, user, RequestedBy::Admin, days(30), at(T0 + DAY))
        .await
        .unwrap()
        .request;
    let doc = export::export_user(&pool, &log, user, ExportExtras::default(), at(T0 + 2 * DAY))
        .await
        .unwrap();
    assert!(!doc.mfa.enrolled);
    assert_eq!(
        doc.mfa.totp,
        Some(TotpEnrolment {
            confirmed: false,
            created_at: at(T0 + 300),
            confirmed_at: None,
            last_used_at: None,
        })
    );
    assert_eq!(
        doc.erasure_request,
        Some(PendingErasure {
            id: request.id,
            requested_at: at(T0 + DAY),
            effective_at: at(T0 + 31 * DAY),
            requested_by: "admin".into(),
        })
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn every_table_about_users_is_covered_by_the_export(pool: PgPool) {
    let mut in_schema: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'user_id' \
         UNION SELECT 'users' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    in_schema.sort();
    let mut covered: Vec<String> = COVERED_TABLES.iter().map(|(t, _)| t.to_string()).collect();
    covered.sort();
    assert_eq!(
        covered, in_schema,
        "a table about users is not in export::COVERED_TABLES: export it or say why not"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_export_of_an_unknown_user_is_refused(pool: PgPool) {
    let nobody = Uuid::new_v4();
    let e = export::export_user(
        &pool,
        &audit(&pool),
        nobody,
        ExportExtras::default(),
        at(T0),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, PrivacyError::UnknownUser(u) if u == nobody));
}

// ---------------------------------------------------------------------------------------------
// Erasure

/// Columns (table.column), of any type (its text form: inet, bytea as hex, json, arrays),
/// of every table, whose value contains `needle`.
async fn columns_containing(pool: &PgPool, needle: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.table_name || '.' || c.column_name FROM information_schema.columns c \
         JOIN information_schema.tables t USING (table_schema, table_name) \
         WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') AND t.table_type = 'BASE TABLE' \
           AND (xpath('/row/n/text()', query_to_xml(format( \
                'SELECT count(*) AS n FROM %I.%I WHERE %I::text ILIKE %L', \
                c.table_schema, c.table_name, c.column_name, '%' || $1 || '%'), false, true, '')))[1]::text::bigint > 0 \
         ORDER BY 1",
    )
    .bind(needle)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_request_ends_access_at_once_and_asking_again_returns_it(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let first = erasure::request(&pool, user, RequestedBy::User, days(30), at(T0 + DAY))
        .await
        .unwrap();
    assert!(first.created);
    let first = first.request;
    assert_eq!((first.effective_at, first.done), (at(T0 + 31 * DAY), false));
    // Asking again (a second tab) returns it, never postponed.
    let again = erasure::request(&pool, user, RequestedBy::User, days(30), at(T0 + 2 * DAY))
        .await
        .unwrap();
    assert_eq!((again.request, again.created), (first.clone(), false));
    let (disabled, epoch): (bool, i64) =
        sqlx::query_as("SELECT disabled, credential_epoch FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((disabled, epoch), (true, 1));
    let (families, consents, requests): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL), \
         (SELECT count(*) FROM oauth_consents WHERE user_id = $1), \
         (SELECT count(*) FROM erasure_requests WHERE user_id = $1)",
    )
    .bind(user)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((families, consents, requests), (0, 0, 1));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_administrators_immediate_erasure_brings_a_pending_request_forward(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let first = erasure::request(&pool, user, RequestedBy::User, days(30), at(T0 + DAY))
        .await
        .unwrap()
        .request;
    let now = at(T0 + 2 * DAY);
    let admin = erasure::request(&pool, user, RequestedBy::Admin, days(0), now)
        .await
        .unwrap();
    assert!(!admin.created);
    assert_eq!(
        (
            admin.request.id,
            admin.request.effective_at,
            admin.request.requested_by
        ),
        (first.id, now, RequestedBy::User)
    );
    assert_eq!(erasure::get(&pool, first.id).await.unwrap(), admin.request);
    let receipt = erasure::execute(
        &pool,
        &log,
        &admin.request,
        &RecordingKv::default(),
        None,
        now,
    )
    .await
    .unwrap();
    assert!(receipt.done);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_request_leaves_every_other_account_untouched(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let (bob, _) = populated_user_as(&pool, &log, &BOB).await;
    let before = rows_of(&pool, bob).await;
    erasure::request(&pool, ada, RequestedBy::User, days(30), at(T0 + DAY))
        .await
        .unwrap();
    assert_eq!(rows_of(&pool, bob).await, before);
    let of = |u: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (bool, i64, i64, i64)>(
                "SELECT disabled, credential_epoch, \
                 (SELECT count(*) FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL), \
                 (SELECT count(*) FROM oauth_consents WHERE user_id = $1) FROM users WHERE id = $1",
            )
            .bind(u)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(of(ada).await, (true, 1, 0, 0));
    assert_eq!(of(bob).await, (false, 0, 1, 1));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_leaves_every_other_account_untouched(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let (bob, _) = populated_user_as(&pool, &log, &BOB).await;
    let before = rows_of(&pool, bob).await;
    let kv = RecordingKv::with_sessions(&[(ADA.session_id, ada), (BOB.session_id, bob)]);
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    erasure::execute(&pool, &log, &request, &kv, None, now)
        .await
        .unwrap();
    assert_eq!(rows_of(&pool, bob).await, before);
    assert_eq!(kv.sessions(), vec![(BOB.session_id.to_string(), bob)]);
    assert_erased(&pool, &log, ada, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_request_for_an_unknown_user_is_refused(pool: PgPool) {
    let e = erasure::request(&pool, Uuid::new_v4(), RequestedBy::Admin, days(0), at(T0))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "unknown_user");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM erasure_requests").await,
        0
    );
}

/// After the erasure of [`ADA`]: none of her values (email, display name, IP, user agent,
/// linked subject and email, session id, id) is left in any column of any table, only the
/// receipt (by erasure id) remains, the chain verifies, the email registers again.
async fn assert_erased(pool: &PgPool, log: &PgAuditLog, user: Uuid, erasure_id: Uuid) {
    for needle in [
        ADA.email.to_lowercase(),
        ADA.display_name.to_string(),
        ADA.ip.to_string(),
        ADA.user_agent.to_string(),
        ADA.subject.to_string(),
        ADA.linked_email.to_string(),
        ADA.session_id.to_string(),
        user.hyphenated().to_string(),
        user.simple().to_string(),
    ] {
        assert_eq!(
            columns_containing(pool, &needle).await,
            Vec::<String>::new(),
            "{needle} remains"
        );
    }
    let receipt = erasure::get(pool, erasure_id).await.unwrap();
    assert!(receipt.done && receipt.user_id.is_none() && receipt.completed_at.is_some());
    assert!(
        receipt
            .categories
            .iter()
            .any(|c| c == "audit_personal_fields")
    );
    assert_eq!(
        columns_containing(pool, &erasure_id.to_string()).await,
        vec![
            "audit_events.actor_id".to_string(),
            // The `audit_pseudonymized` record's reference.
            "audit_events.details".to_string(),
            "audit_events.pseudonym_of".to_string(),
            "audit_events.subject_id".to_string(),
            "erasure_requests.id".to_string(),
        ],
        "the erasure id is the pseudonym in the trail and the receipt's key"
    );
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    add_user(pool, "ada@example.org", at(T0 + 400 * DAY)).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_without_grace_leaves_only_the_receipt(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, user, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    let kv = RecordingKv::default();
    let receipt = erasure::execute(&pool, &log, &request, &kv, None, now)
        .await
        .unwrap();
    assert_eq!(
        (receipt.id, receipt.done, receipt.completed_at),
        (request.id, true, Some(now))
    );
    // Before the audit step and again after the deletion (a racing login's session).
    assert_eq!(
        *kv.erased.lock().unwrap(),
        vec![(user, Some("ada@example.org".to_string())); 2]
    );
    assert_erased(&pool, &log, user, request.id).await;
    // Again: the receipt, nothing else happens.
    let again = erasure::execute(&pool, &log, &request, &kv, None, at(T0 + 2 * DAY))
        .await
        .unwrap();
    assert_eq!(again, receipt);
    assert_eq!(kv.erased.lock().unwrap().len(), 2);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_with_grace_waits_for_its_period(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let request = erasure::request(&pool, user, RequestedBy::Admin, days(7), at(T0 + DAY))
        .await
        .unwrap()
        .request;
    let kv = RecordingKv::default();
    assert!(
        erasure::due(&pool, at(T0 + 8 * DAY - 1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let e = erasure::execute(&pool, &log, &request, &kv, None, at(T0 + 8 * DAY - 1))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "invalid");
    assert!(kv.erased.lock().unwrap().is_empty());
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
    let due = erasure::due(&pool, at(T0 + 8 * DAY), 10).await.unwrap();
    assert_eq!(due, vec![request.clone()]);
    erasure::execute(&pool, &log, &due[0], &kv, None, at(T0 + 8 * DAY))
        .await
        .unwrap();
    assert_erased(&pool, &log, user, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_whose_redis_step_fails_stays_pending_and_completes_next_time(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, user, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    let kv = RecordingKv::default();
    kv.fail.store(true, Ordering::SeqCst);
    let e = erasure::execute(&pool, &log, &request, &kv, None, now)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "kv_erase");
    assert!(!erasure::get(&pool, request.id).await.unwrap().done);
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
    let pseudonymised = log
        .page(&PageQuery {
            user_id: Some(user),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(pseudonymised.len(), 3, "the audit step did not run");
    kv.fail.store(false, Ordering::SeqCst);
    erasure::execute(&pool, &log, &request, &kv, None, at(T0 + DAY + 60))
        .await
        .unwrap();
    assert_erased(&pool, &log, user, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_interrupted_after_the_audit_step_completes_next_time(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, user, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    let kv = RecordingKv::default();
    // What a run that crashed after its second step left behind.
    erasure::erase_kv(&pool, &request, &kv, now).await.unwrap();
    let changed = erasure::pseudonymize_audit(&pool, &log, &request, now)
        .await
        .unwrap();
    assert_eq!(changed, 3);
    assert!(!erasure::get(&pool, request.id).await.unwrap().done);
    let receipt = erasure::execute(&pool, &log, &request, &kv, None, at(T0 + DAY + 60))
        .await
        .unwrap();
    assert!(receipt.done);
    assert_erased(&pool, &log, user, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn every_step_acts_on_the_account_stored_in_the_request_not_the_one_passed(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let (bob, _) = populated_user_as(&pool, &log, &BOB).await;
    let before = rows_of(&pool, bob).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    // A call site that mixed up its arguments: Ada's request, Bob's id.
    let forged = ErasureRequest {
        user_id: Some(bob),
        ..request.clone()
    };
    let kv = RecordingKv::with_sessions(&[(ADA.session_id, ada), (BOB.session_id, bob)]);
    erasure::erase_kv(&pool, &forged, &kv, now).await.unwrap();
    assert_eq!(
        erasure::pseudonymize_audit(&pool, &log, &forged, now)
            .await
            .unwrap(),
        3
    );
    let receipt = erasure::finish(&pool, &forged, now, None)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.done);
    assert_eq!(rows_of(&pool, bob).await, before);
    assert_eq!(kv.sessions(), vec![(BOB.session_id.to_string(), bob)]);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users").await,
        1,
        "Ada's account went, Bob's stayed"
    );
    // Done: finishing again (with any id) deletes nothing and returns the receipt.
    let again = erasure::finish(&pool, &forged, at(T0 + 2 * DAY), None)
        .await
        .unwrap();
    assert_eq!(again, Some(receipt));
    assert_eq!(rows_of(&pool, bob).await, before);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn every_step_is_refused_during_the_grace_period_and_changes_nothing(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let request = erasure::request(&pool, ada, RequestedBy::User, days(7), at(T0 + DAY))
        .await
        .unwrap()
        .request;
    let before = rows_of(&pool, ada).await;
    let early = at(T0 + 8 * DAY - 1);
    let kv = RecordingKv::with_sessions(&[(ADA.session_id, ada)]);
    let e = erasure::erase_kv(&pool, &request, &kv, early)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "invalid");
    let e = erasure::pseudonymize_audit(&pool, &log, &request, early)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "invalid");
    let e = erasure::finish(&pool, &request, early, None)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "invalid");
    assert_eq!(rows_of(&pool, ada).await, before);
    assert_eq!(kv.sessions().len(), 1);
    assert!(!erasure::get(&pool, request.id).await.unwrap().done);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_session_stored_by_a_login_racing_the_erasure_is_erased_too(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let kv = RecordingKv::with_sessions(&[(ADA.session_id, ada)]);
    // A login that checked the password before the request stores its session after step 1.
    *kv.racing_login.lock().unwrap() = Some(("sess-racing".to_string(), ada));
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    erasure::execute(&pool, &log, &request, &kv, None, now)
        .await
        .unwrap();
    assert_eq!(kv.sessions(), Vec::<(String, Uuid)>::new());
    assert_erased(&pool, &log, ada, request.id).await;
}

/// The server's `account.erased` notice: a mail to the address being erased, enqueued in the
/// deletion's transaction; then fails when `fail` is set (after writing).
struct NoticeHook {
    fail: bool,
    seen: Mutex<Vec<(Uuid, Uuid, String, RequestedBy)>>,
}

impl FinishHook for NoticeHook {
    fn run<'a>(
        &'a self,
        conn: &'a mut sqlx::PgConnection,
        account: ErasedAccount<'a>,
    ) -> HookFuture<'a> {
        Box::pin(async move {
            self.seen.lock().unwrap().push((
                account.erasure_id,
                account.user_id,
                account.email.to_owned(),
                account.requested_by,
            ));
            sqlx::query(
                "INSERT INTO notification_outbox (id, channel, event, user_id, recipient, payload, \
                 created_at, next_attempt_at) VALUES ($1, 'email', 'account.erased', NULL, $2, \
                 jsonb_build_object('erasure_id', $3::text), now(), now())",
            )
            .bind(Uuid::new_v4())
            .bind(account.email)
            .bind(account.erasure_id)
            .execute(conn)
            .await?;
            if self.fail {
                return Err("outbox: refused".into());
            }
            Ok(())
        })
    }
}

async fn erased_notices(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT recipient, payload->>'erasure_id' FROM notification_outbox \
         WHERE event = 'account.erased'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_finish_hook_writes_in_the_deletions_transaction_and_commits_with_it(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::Admin, days(0), now)
        .await
        .unwrap()
        .request;
    let hook = NoticeHook {
        fail: false,
        seen: Mutex::default(),
    };
    let receipt = erasure::execute(
        &pool,
        &log,
        &request,
        &RecordingKv::default(),
        Some(&hook),
        now,
    )
    .await
    .unwrap();
    assert!(receipt.done);
    assert_eq!(
        *hook.seen.lock().unwrap(),
        vec![(request.id, ada, ADA.email.to_string(), RequestedBy::Admin)]
    );
    assert_eq!(
        erased_notices(&pool).await,
        vec![(ADA.email.to_string(), request.id.to_string())]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 0);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_failing_finish_hook_rolls_back_its_write_and_the_deletion(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    let hook = NoticeHook {
        fail: true,
        seen: Mutex::default(),
    };
    let e = erasure::execute(
        &pool,
        &log,
        &request,
        &RecordingKv::default(),
        Some(&hook),
        now,
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "hook");
    assert_eq!(hook.seen.lock().unwrap().len(), 1);
    assert_eq!(erased_notices(&pool).await, Vec::<(String, String)>::new());
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
    assert!(!erasure::get(&pool, request.id).await.unwrap().done);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_account_deleted_during_the_grace_period_still_has_its_keys_erased_by_id(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let request = erasure::request(&pool, ada, RequestedBy::User, days(7), at(T0 + DAY))
        .await
        .unwrap()
        .request;
    // The server's own retention removed the account meanwhile (an inactive account).
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(ada)
        .execute(&pool)
        .await
        .unwrap();
    let kv = RecordingKv::with_sessions(&[(ADA.session_id, ada)]);
    let receipt = erasure::execute(&pool, &log, &request, &kv, None, at(T0 + 8 * DAY))
        .await
        .unwrap();
    assert!(receipt.done);
    assert_eq!(*kv.erased.lock().unwrap(), vec![(ada, None); 2]);
    assert_eq!(kv.sessions(), Vec::<(String, Uuid)>::new());
    assert_erased(&pool, &log, ada, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn two_executions_of_one_request_at_once_both_return_the_receipt(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let (bob, _) = populated_user_as(&pool, &log, &BOB).await;
    let before = rows_of(&pool, bob).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    // The inline API call and a retention run.
    let (kv1, kv2) = (RecordingKv::default(), RecordingKv::default());
    let (a, b) = tokio::join!(
        erasure::execute(&pool, &log, &request, &kv1, None, now),
        erasure::execute(&pool, &log, &request, &kv2, None, now),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert!(a.done);
    assert_eq!(rows_of(&pool, bob).await, before);
    assert_erased(&pool, &log, ada, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_erasure_interrupted_between_audit_batches_completes_next_time(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    // More rows than one pseudonymisation batch.
    let extra = usize::try_from(portcullis_audit::pg::ERASE_BATCH).unwrap() + 50;
    for i in 0..extra {
        let t = at(T0 + 4000 + i64::try_from(i).unwrap());
        log.append(&event_of(ada, &ADA, "login", t)).await.unwrap();
    }
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, ada, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    // A run that crashed after one batch of step 2.
    let first = log
        .pseudonymize_user(
            ada,
            request.id,
            portcullis_audit::RecordMeta {
                event_id: Uuid::new_v4(),
                occurred_at: now,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.seqs.len(),
        usize::try_from(portcullis_audit::pg::ERASE_BATCH).unwrap()
    );
    let receipt = erasure::execute(&pool, &log, &request, &RecordingKv::default(), None, now)
        .await
        .unwrap();
    assert!(receipt.done);
    assert_erased(&pool, &log, ada, request.id).await;
}

// ---------------------------------------------------------------------------------------------
// Retention

/// One retention run of realm `acme` under its lock; the run must complete.
async fn retain(
    pool: &PgPool,
    log: &PgAuditLog,
    kv: &RecordingKv,
    rules: &Rules,
    now: OffsetDateTime,
    dry_run: bool,
) -> retention::Report {
    let report = retain_report(pool, log, kv, rules, now, dry_run).await;
    assert!(report.is_complete(), "{report:?}");
    report
}

/// One retention run of realm `acme` under its lock, failures and all.
async fn retain_report(
    pool: &PgPool,
    log: &PgAuditLog,
    kv: &RecordingKv,
    rules: &Rules,
    now: OffsetDateTime,
    dry_run: bool,
) -> retention::Report {
    let lock = RetentionLock::try_acquire(pool, "acme")
        .await
        .unwrap()
        .expect("no other run");
    let report = retention::run(&lock, log, kv, None, rules, now, dry_run).await;
    lock.release().await.unwrap();
    report
}

fn rules(action: AuditAction) -> Rules {
    Rules {
        audit_retain_for: days(365),
        audit_action: action,
        withdrawn_consents_retain_for: days(90),
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn audit_events_are_deleted_on_day_366_of_365d_not_on_364_or_365(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let made = T0 + 10 * 3600;
    for i in 0..3 {
        log.append(&event(user, "login", at(made + i)))
            .await
            .unwrap();
    }
    let kv = RecordingKv::default();
    // Each run is `day` days after the first event; the others are a second or two younger.
    let run = |day: i64| at(made + day * DAY);
    for day in [364, 365] {
        let counts = retain(
            &pool,
            &log,
            &kv,
            &rules(AuditAction::Delete),
            run(day),
            false,
        )
        .await
        .counts;
        assert_eq!(counts.audit_events_deleted, 0, "day {day}");
    }
    let counts = retain(
        &pool,
        &log,
        &kv,
        &rules(AuditAction::Delete),
        run(366),
        false,
    )
    .await
    .counts;
    assert_eq!(counts.audit_events_deleted, 3);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM audit_events WHERE event_type = 'login'"
        )
        .await,
        0
    );
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn audit_events_are_pseudonymised_on_day_366_of_365d_not_on_364_or_365(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let made = T0 + 10 * 3600;
    log.append(&event(user, "login", at(made))).await.unwrap();
    let kv = RecordingKv::default();
    let rules = rules(AuditAction::Pseudonymize);
    for day in [364, 365] {
        let counts = retain(&pool, &log, &kv, &rules, at(made + day * DAY), false)
            .await
            .counts;
        assert_eq!(counts.audit_events_pseudonymized, 0, "day {day}");
    }
    let counts = retain(&pool, &log, &kv, &rules, at(made + 366 * DAY), false)
        .await
        .counts;
    assert_eq!(counts.audit_events_pseudonymized, 1);
    assert_eq!(
        columns_containing(&pool, &user.to_string()).await,
        vec!["users.id".to_string()]
    );
    assert!(log.verify(None).await.unwrap().ok);
}

/// Everything a run may change, as text, to compare before and after a dry run.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT t FROM ( \
           SELECT 'a' || row_to_json(e)::text AS t FROM audit_events e \
           UNION ALL SELECT 'h' || row_to_json(h)::text FROM audit_chain_head h \
           UNION ALL SELECT 'c' || row_to_json(c)::text FROM consent_events c \
           UNION ALL SELECT 'r' || row_to_json(r)::text FROM erasure_requests r \
           UNION ALL SELECT 'u' || row_to_json(u)::text FROM users u) x ORDER BY t",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Old audit events, an expired consent history, a recent one, a re-granted one, and a due
/// erasure; returns the run's time.
async fn retention_fixture(pool: &PgPool, log: &PgAuditLog) -> OffsetDateTime {
    let p = policy("2");
    let kept = add_user(pool, "kept@example.org", at(T0)).await;
    let leaving = add_user(pool, "leaving@example.org", at(T0)).await;
    for i in 0..5 {
        log.append(&event(kept, "login", at(T0 + i))).await.unwrap();
    }
    log.append(&event(leaving, "login", at(T0 + 10)))
        .await
        .unwrap();
    // Withdrawn on day 1: expired by day 400 (90d). 2 rows.
    consent::record_change(pool, &p, &change(kept, "analytics", true), at(T0))
        .await
        .unwrap();
    consent::record_change(pool, &p, &change(kept, "analytics", false), at(T0 + DAY))
        .await
        .unwrap();
    // Withdrawn, then granted again: kept.
    consent::record_change(pool, &p, &change(leaving, "analytics", false), at(T0))
        .await
        .unwrap();
    consent::record_change(pool, &p, &change(leaving, "analytics", true), at(T0 + DAY))
        .await
        .unwrap();
    let now = at(T0 + 400 * DAY);
    // Withdrawn recently: kept.
    consent::record_change(pool, &p, &change(kept, "terms", true), at(T0))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, granted, policy_version, at, source) \
                 VALUES ($1, 'newsletter', false, '2', $2, 'account')",
    )
    .bind(kept)
    .bind(now - time::Duration::days(10))
    .execute(pool)
    .await
    .unwrap();
    // Asked for yesterday with 30 days' grace: not due, not counted, not touched.
    let waiting = add_user(pool, "waiting@example.org", at(T0)).await;
    erasure::request(
        pool,
        waiting,
        RequestedBy::User,
        days(30),
        now - time::Duration::days(1),
    )
    .await
    .unwrap();
    erasure::request(
        pool,
        leaving,
        RequestedBy::User,
        days(0),
        now - time::Duration::days(1),
    )
    .await
    .unwrap();
    now
}

async fn dry_run_matches_real_run(pool: PgPool, action: AuditAction, expected: Counts) {
    let log = audit(&pool);
    let now = retention_fixture(&pool, &log).await;
    let kv = RecordingKv::default();
    let before = snapshot(&pool).await;
    let dry = retain(&pool, &log, &kv, &rules(action), now, true)
        .await
        .counts;
    assert_eq!(snapshot(&pool).await, before, "a dry run changes nothing");
    assert!(kv.erased.lock().unwrap().is_empty());
    let real = retain(&pool, &log, &kv, &rules(action), now, false)
        .await
        .counts;
    assert_eq!(dry, real);
    assert_eq!(real, expected);
    assert_eq!(
        kv.erased.lock().unwrap().len(),
        2,
        "one erasure, two passes"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM erasure_requests WHERE state = 'pending'"
        )
        .await,
        1,
        "the request still in its grace period"
    );
    assert!(log.verify(None).await.unwrap().ok);
    // A second real run finds nothing left.
    let again = retain(&pool, &log, &kv, &rules(action), now, false)
        .await
        .counts;
    assert_eq!(again, Counts::default());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_dry_run_reports_the_real_runs_counts_and_changes_nothing_when_deleting(pool: PgPool) {
    let expected = Counts {
        audit_events_deleted: 6,
        withdrawn_consent_events: 2,
        erasures: 1,
        ..Counts::default()
    };
    dry_run_matches_real_run(pool, AuditAction::Delete, expected).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_dry_run_reports_the_real_runs_counts_and_changes_nothing_when_pseudonymising(
    pool: PgPool,
) {
    let expected = Counts {
        audit_events_pseudonymized: 6,
        withdrawn_consent_events: 2,
        erasures: 1,
        ..Counts::default()
    };
    dry_run_matches_real_run(pool, AuditAction::Pseudonymize, expected).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn retention_keeps_histories_that_are_granted_or_recently_withdrawn(pool: PgPool) {
    let log = audit(&pool);
    let now = retention_fixture(&pool, &log).await;
    let kv = RecordingKv::default();
    retain(&pool, &log, &kv, &rules(AuditAction::Delete), now, false).await;
    let left: Vec<(String, bool)> =
        sqlx::query_as("SELECT purpose, granted FROM consent_events ORDER BY purpose")
            .fetch_all(&pool)
            .await
            .unwrap();
    // The re-granted history belonged to the erased account; the kept account's required
    // purpose and recent withdrawal stay.
    assert_eq!(
        left,
        vec![
            ("newsletter".to_string(), false),
            ("terms".to_string(), true)
        ]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_retention_run_leaves_every_other_account_untouched(pool: PgPool) {
    let log = audit(&pool);
    let (ada, _) = populated_user(&pool, &log).await;
    let (bob, _) = populated_user_as(&pool, &log, &BOB).await;
    let request = erasure::request(&pool, ada, RequestedBy::User, days(7), at(T0 + DAY))
        .await
        .unwrap()
        .request;
    let before = rows_of(&pool, bob).await;
    let kv = RecordingKv::with_sessions(&[(ADA.session_id, ada), (BOB.session_id, bob)]);
    let counts = retain(
        &pool,
        &log,
        &kv,
        &rules(AuditAction::Pseudonymize),
        at(T0 + 9 * DAY),
        false,
    )
    .await
    .counts;
    assert_eq!(counts.erasures, 1);
    assert_eq!(rows_of(&pool, bob).await, before);
    assert_eq!(kv.sessions(), vec![(BOB.session_id.to_string(), bob)]);
    assert_erased(&pool, &log, ada, request.id).await;
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn old_audit_events_held_back_by_a_future_dated_one_are_reported_overdue(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    for (i, t) in [T0, T0 + 1, T0 + 5000 * DAY, T0 + 2, T0 + 3, T0 + 4]
        .into_iter()
        .enumerate()
    {
        let kind = if i == 2 { "logout" } else { "login" };
        log.append(&event(user, kind, at(t))).await.unwrap();
    }
    let kv = RecordingKv::default();
    let now = at(T0 + 400 * DAY);
    let dry = retain(&pool, &log, &kv, &rules(AuditAction::Delete), now, true)
        .await
        .counts;
    let real = retain(&pool, &log, &kv, &rules(AuditAction::Delete), now, false)
        .await
        .counts;
    assert_eq!(dry, real);
    assert_eq!(
        (real.audit_events_deleted, real.audit_events_overdue),
        (2, 3),
        "the two rows before the future-dated one go; the three after it are overdue"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_withdrawal_is_kept_on_days_89_and_90_of_90d_and_deleted_a_second_later(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let p = policy("2");
    consent::record_change(&pool, &p, &change(user, "analytics", true), at(T0))
        .await
        .unwrap();
    let withdrawn = T0 + 10 * 3600;
    consent::record_change(&pool, &p, &change(user, "analytics", false), at(withdrawn))
        .await
        .unwrap();
    let kv = RecordingKv::default();
    for day in [89, 90] {
        let dry = retain(
            &pool,
            &log,
            &kv,
            &rules(AuditAction::Delete),
            at(withdrawn + day * DAY),
            true,
        )
        .await
        .counts;
        let real = retain(
            &pool,
            &log,
            &kv,
            &rules(AuditAction::Delete),
            at(withdrawn + day * DAY),
            false,
        )
        .await
        .counts;
        assert_eq!(
            (dry.withdrawn_consent_events, real.withdrawn_consent_events),
            (0, 0),
            "day {day}"
        );
    }
    let day_91 = at(withdrawn + 90 * DAY + 1);
    let dry = retain(&pool, &log, &kv, &rules(AuditAction::Delete), day_91, true)
        .await
        .counts;
    let real = retain(&pool, &log, &kv, &rules(AuditAction::Delete), day_91, false)
        .await
        .counts;
    assert_eq!(
        (dry.withdrawn_consent_events, real.withdrawn_consent_events),
        (2, 2)
    );
    assert!(consent::history(&pool, user).await.unwrap().is_empty());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_dry_run_matches_a_real_run_that_takes_several_batches(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    // 1,600 withdrawn histories of two rows each: more than three batches of 1,000.
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, granted, policy_version, at, source) \
         SELECT $1, 'p' || n, g, '2', $2 + (CASE WHEN g THEN 0 ELSE 1 END) * interval '1 hour', 'api' \
         FROM generate_series(1, 1600) n, (VALUES (true), (false)) AS v(g) ORDER BY n, g DESC",
    )
    .bind(user)
    .bind(at(T0))
    .execute(&pool)
    .await
    .unwrap();
    // A recent withdrawal, kept.
    consent::record_change(
        &pool,
        &policy("2"),
        &change(user, "analytics", false),
        at(T0 + 390 * DAY),
    )
    .await
    .unwrap();
    let kv = RecordingKv::default();
    let now = at(T0 + 400 * DAY);
    let dry = retain(&pool, &log, &kv, &rules(AuditAction::Delete), now, true)
        .await
        .counts;
    let real = retain(&pool, &log, &kv, &rules(AuditAction::Delete), now, false)
        .await
        .counts;
    assert_eq!(dry, real);
    assert_eq!(real.withdrawn_consent_events, 3200);
    assert_eq!(consent::history(&pool, user).await.unwrap().len(), 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_regrant_written_by_a_replica_whose_clock_is_behind_survives_retention(pool: PgPool) {
    let p = policy("2");
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    consent::record_change(&pool, &p, &change(user, "analytics", false), at(T0 + 60))
        .await
        .unwrap();
    // Granted again after the withdrawal, by a replica 50 s behind.
    consent::record_change(&pool, &p, &change(user, "analytics", true), at(T0 + 10))
        .await
        .unwrap();
    let counts = retain(
        &pool,
        &audit(&pool),
        &RecordingKv::default(),
        &rules(AuditAction::Delete),
        at(T0 + 400 * DAY),
        false,
    )
    .await
    .counts;
    assert_eq!(counts.withdrawn_consent_events, 0);
    assert_eq!(consent::history(&pool, user).await.unwrap().len(), 2);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_regranted_history_survives_retention(pool: PgPool) {
    let p = policy("2");
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    consent::record_change(&pool, &p, &change(user, "analytics", false), at(T0))
        .await
        .unwrap();
    consent::record_change(&pool, &p, &change(user, "analytics", true), at(T0 + DAY))
        .await
        .unwrap();
    let counts = retain(
        &pool,
        &audit(&pool),
        &RecordingKv::default(),
        &rules(AuditAction::Delete),
        at(T0 + 400 * DAY),
        false,
    )
    .await
    .counts;
    assert_eq!(counts.withdrawn_consent_events, 0);
    assert_eq!(consent::history(&pool, user).await.unwrap().len(), 2);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_failing_erasure_is_counted_and_left_pending(pool: PgPool) {
    let log = audit(&pool);
    let user = add_user(&pool, "ada@example.org", at(T0)).await;
    let request = erasure::request(&pool, user, RequestedBy::User, days(0), at(T0))
        .await
        .unwrap()
        .request;
    let kv = RecordingKv::default();
    kv.fail.store(true, Ordering::SeqCst);
    let report = retain_report(
        &pool,
        &log,
        &kv,
        &rules(AuditAction::Delete),
        at(T0 + 60),
        false,
    )
    .await;
    let counts = report.counts;
    assert_eq!((counts.erasures, counts.erasures_failed), (0, 1));
    let [failure] = report.failures.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(
        (failure.rule, failure.erasure_id, failure.reason),
        (Rule::Erasures, Some(request.id), "kv_erase")
    );
    assert!(!erasure::get(&pool, request.id).await.unwrap().done);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_audit_row_that_does_not_verify_holds_back_neither_consents_nor_erasures(pool: PgPool) {
    let log = audit(&pool);
    let now = retention_fixture(&pool, &log).await;
    // An old row edited behind the chain's back: the prune refuses to destroy the evidence.
    sqlx::raw_sql(
        "BEGIN; SET LOCAL portcullis.audit_maintenance = 'on'; \
         UPDATE audit_events SET user_agent = 'edited' WHERE seq = 1; COMMIT",
    )
    .execute(&pool)
    .await
    .unwrap();
    let kv = RecordingKv::default();
    let report = retain_report(&pool, &log, &kv, &rules(AuditAction::Delete), now, false).await;
    let [failure] = report.failures.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(
        (failure.rule, failure.erasure_id, failure.reason),
        (Rule::AuditLogs, None, "audit")
    );
    assert_eq!(
        (
            report.counts.withdrawn_consent_events,
            report.counts.erasures
        ),
        (2, 1),
        "the other rules ran"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM erasure_requests WHERE state = 'done'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_lock_timeout_in_one_erasure_does_not_hold_back_the_next(pool: PgPool) {
    let log = audit(&pool);
    let first = add_user(&pool, "first@example.org", at(T0)).await;
    let second = add_user(&pool, "second@example.org", at(T0)).await;
    let stuck = erasure::request(&pool, first, RequestedBy::User, days(0), at(T0))
        .await
        .unwrap()
        .request;
    let next = erasure::request(&pool, second, RequestedBy::User, days(0), at(T0 + 1))
        .await
        .unwrap()
        .request;
    // A login holds the first account's row (its record_login UPDATE, stuck).
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(first)
        .execute(&mut *holder)
        .await
        .unwrap();
    let kv = RecordingKv::default();
    let report = retain_report(
        &pool,
        &log,
        &kv,
        &rules(AuditAction::Delete),
        at(T0 + 60),
        false,
    )
    .await;
    assert_eq!(
        (report.counts.erasures, report.counts.erasures_failed),
        (1, 1)
    );
    let [failure] = report.failures.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(
        (failure.rule, failure.erasure_id, failure.reason),
        (Rule::Erasures, Some(stuck.id), "database")
    );
    assert!(erasure::get(&pool, next.id).await.unwrap().done);
    assert!(!erasure::get(&pool, stuck.id).await.unwrap().done);
    holder.rollback().await.unwrap();
    let again = retain(
        &pool,
        &log,
        &kv,
        &rules(AuditAction::Delete),
        at(T0 + 120),
        false,
    )
    .await
    .counts;
    assert_eq!(again.erasures, 1);
    assert!(erasure::get(&pool, stuck.id).await.unwrap().done);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_retention_lock_is_the_auth_servers_lock_of_the_realm(pool: PgPool) {
    // The server's CLI and admin API lock like this (authserver/src/store/retention.rs).
    let mut server = pool.acquire().await.unwrap();
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind("portcullis.retention:acme")
        .fetch_one(&mut *server)
        .await
        .unwrap();
    assert!(taken);
    assert!(
        RetentionLock::try_acquire(&pool, "acme")
            .await
            .unwrap()
            .is_none()
    );
    let other = RetentionLock::try_acquire(&pool, "globex")
        .await
        .unwrap()
        .expect("another realm's runs are independent");
    assert_eq!(other.realm(), "globex");
    other.release().await.unwrap();
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock(hashtext($1))")
        .bind("portcullis.retention:acme")
        .fetch_one(&mut *server)
        .await
        .unwrap();
    let lock = RetentionLock::try_acquire(&pool, "acme")
        .await
        .unwrap()
        .expect("released by the server");
    lock.release().await.unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_second_run_is_kept_out_while_the_first_holds_the_lock(pool: PgPool) {
    // Two replicas, each with a pool of its own and default options (the test harness's pool
    // may reset sessions on release; a server's does not).
    let replica = || async {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with((*pool.connect_options()).clone())
            .await
            .unwrap()
    };
    let (one, other) = (replica().await, replica().await);
    let first = RetentionLock::try_acquire(&one, "acme")
        .await
        .unwrap()
        .expect("free");
    assert!(
        RetentionLock::try_acquire(&other, "acme")
            .await
            .unwrap()
            .is_none()
    );
    first.release().await.unwrap();
    let again = RetentionLock::try_acquire(&other, "acme")
        .await
        .unwrap()
        .expect("released");
    again.release().await.unwrap();
    let dropped = RetentionLock::try_acquire(&one, "acme")
        .await
        .unwrap()
        .expect("free");
    drop(dropped);
    // Dropped without release (an error path): the session closes, in the background, and
    // the lock goes with it.
    let mut free = false;
    for _ in 0..60 {
        if let Some(lock) = RetentionLock::try_acquire(&other, "acme").await.unwrap() {
            lock.release().await.unwrap();
            free = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(free, "the dropped lock was never released");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_audit_event_arriving_after_the_audit_step_holds_the_deletion_back(pool: PgPool) {
    let log = audit(&pool);
    let (user, _) = populated_user(&pool, &log).await;
    let now = at(T0 + DAY);
    let request = erasure::request(&pool, user, RequestedBy::User, days(0), now)
        .await
        .unwrap()
        .request;
    erasure::pseudonymize_audit(&pool, &log, &request, now)
        .await
        .unwrap();
    // A login attempt on the disabled account, logged after step 2.
    log.append(&event(user, "login_failed", now)).await.unwrap();
    assert_eq!(
        erasure::finish(&pool, &request, now, None).await.unwrap(),
        None
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
    let kv = RecordingKv::default();
    erasure::execute(&pool, &log, &request, &kv, None, now)
        .await
        .unwrap();
    assert_erased(&pool, &log, user, request.id).await;
}

// ---------------------------------------------------------------------------------------------
// Migration 0012

/// Applies the auth server's migrations whose number is in `range`, in order.
async fn migrate(pool: &PgPool, range: std::ops::RangeInclusive<u32>) {
    let mut files: Vec<_> = std::fs::read_dir("../authserver/migrations")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n: u32 = p.file_name().unwrap().to_str().unwrap()[..4]
                .parse()
                .unwrap();
            range.contains(&n)
        })
        .collect();
    files.sort();
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrations = false)]
async fn the_migration_backfills_the_accepted_version_and_the_history_from_consents(pool: PgPool) {
    migrate(&pool, 1..=11).await;
    let with = add_user(&pool, "ada@example.org", at(T0)).await;
    let without = add_user(&pool, "grace@example.org", at(T0)).await;
    for (purpose, granted, version, when) in [
        ("terms", true, "1", T0),
        ("analytics", false, "1", T0),
        ("marketing", true, "2", T0 + DAY),
    ] {
        sqlx::query(
            "INSERT INTO consents (user_id, purpose, granted, policy_version, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(with)
        .bind(purpose)
        .bind(granted)
        .bind(version)
        .bind(at(when))
        .execute(&pool)
        .await
        .unwrap();
    }
    migrate(&pool, 12..=12).await;
    assert_eq!(
        consent::accepted_version(&pool, with)
            .await
            .unwrap()
            .as_deref(),
        Some("2"),
        "the newest answer's version"
    );
    assert_eq!(
        consent::accepted_version(&pool, without).await.unwrap(),
        None
    );
    let history = consent::history(&pool, with).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (
                e.purpose.as_str(),
                e.granted,
                e.policy_version.as_str(),
                e.at,
                e.source
            ))
            .collect::<Vec<_>>(),
        vec![
            ("analytics", false, "1", at(T0), Source::Registration),
            ("terms", true, "1", at(T0), Source::Registration),
            ("marketing", true, "2", at(T0 + DAY), Source::Registration),
        ]
    );
}
