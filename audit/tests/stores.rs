//! The stores: PostgreSQL against a real server (`DATABASE_URL`; each test gets a fresh
//! database with the auth server's migrations), and the in-memory twin through the same
//! scenarios, so both give the same results.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use portcullis_audit::pg::{ERASE_BATCH, PRUNE_BATCH};
use portcullis_audit::{
    ActorKind, AuditKeys, AuditLog, Details, Finding, Ident, MemoryAuditLog, NewEvent, Outcome,
    PageQuery, PgAuditLog, RecordMeta, StoreError,
};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const KEYS: &str = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn keys() -> Arc<AuditKeys> {
    Arc::new(AuditKeys::parse(KEYS).unwrap())
}

fn log(pool: &PgPool) -> AuditLog {
    PgAuditLog::new(pool.clone(), keys(), "acme").into()
}

/// Runs one scenario against PostgreSQL (`NAME::postgres`) and in memory (`NAME::memory`).
macro_rules! both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[sqlx::test(migrations = "../authserver/migrations")]
            async fn postgres(pool: sqlx::PgPool) {
                super::$scenario(super::log(&pool)).await;
            }

            #[tokio::test]
            async fn memory() {
                let log = super::MemoryAuditLog::new(super::keys(), "acme");
                super::$scenario(log.into()).await;
            }
        }
    };
}

fn login(n: u128, user: Uuid, at: OffsetDateTime) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(n),
        occurred_at: at,
        event_type: "login",
        outcome: Outcome::Success,
        actor_kind: ActorKind::User,
        actor_id: Some(user.hyphenated().to_string()),
        subject_id: Some(user),
        client_id: None,
        ip: Some(format!("192.0.2.{}", n % 250)),
        user_agent: Some("Firefox/140".into()),
        details: Details::new().code("method", "password"),
    }
}

fn meta(n: u128) -> RecordMeta {
    RecordMeta {
        event_id: Uuid::from_u128(0xf000 + n),
        occurred_at: datetime!(2026-12-31 00:00 UTC),
    }
}

/// Appends `n` logins of alternating users, a day apart from 2026-01-01 (nanoseconds included,
/// so the µs truncation is exercised).
async fn fill(log: &AuditLog, n: u128, users: [Uuid; 2]) {
    for i in 1..=n {
        let at = datetime!(2026-01-01 00:00:00.000000789 UTC) + time::Duration::days(i as i64);
        log.append(&login(i, users[(i % 2) as usize], at))
            .await
            .unwrap();
    }
}

/// Runs `sql` as a DBA would: with the maintenance setting that lifts the trigger.
async fn as_dba(pool: &PgPool, sql: &'static str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL portcullis.audit_maintenance = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

fn users() -> [Uuid; 2] {
    [Uuid::from_u128(0xa), Uuid::from_u128(0xb)]
}

both_stores!(concurrent_appends_form_one_contiguous_verifying_chain);
async fn concurrent_appends_form_one_contiguous_verifying_chain(log: AuditLog) {
    let tasks: Vec<_> = (0..16u128)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..8u128 {
                    let n = t * 100 + i + 1;
                    let at = OffsetDateTime::now_utc();
                    log.append(&login(n, Uuid::from_u128(t), at)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let head = log.head().await.unwrap();
    assert_eq!(head.seq, 128);
    let rows = log
        .page(&PageQuery {
            limit: 5000,
            ..PageQuery::default()
        })
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=128).collect::<Vec<_>>());
    assert!(rows.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 128);
}

both_stores!(rows_read_back_equal_what_append_returned_despite_nanosecond_non_utc_clocks);
async fn rows_read_back_equal_what_append_returned_despite_nanosecond_non_utc_clocks(
    log: AuditLog,
) {
    let mut appended = Vec::new();
    for i in 1..=3 {
        let at = datetime!(2026-01-01 02:00:00.123456789 +02:00) + time::Duration::days(i);
        appended.push(log.append(&login(i as u128, users()[0], at)).await.unwrap());
    }
    // What append hands back (and what a log line carries) is exactly what is stored.
    let read = log.page(&PageQuery::default()).await.unwrap();
    assert_eq!(read, appended);
    // Equality of times ignores the offset; the export line does not.
    let lines = |rows: &[portcullis_audit::AuditRow]| {
        rows.iter().map(|r| r.export_json()).collect::<Vec<_>>()
    };
    assert_eq!(lines(&read), lines(&appended));
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    let head = log.head().await.unwrap();
    let report = log.verify(Some((3, head.hash.unwrap()))).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn plain_updates_deletes_and_truncates_are_refused(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 2, users()).await;
    for sql in [
        "UPDATE audit_events SET ip = NULL WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
        "TRUNCATE audit_events",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(log.page(&PageQuery::default()).await.unwrap().len(), 2);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_edited_in_sql_is_named(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 4, users()).await;
    as_dba(
        &pool,
        "UPDATE audit_events SET outcome = 'failure' WHERE seq = 2",
    )
    .await;
    as_dba(
        &pool,
        "UPDATE audit_events SET ip = '203.0.113.9' WHERE seq = 3",
    )
    .await;
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [
            Finding::Changed {
                seq: 2,
                what: "mac"
            },
            Finding::Changed {
                seq: 3,
                what: "personal_fields"
            },
        ]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_inserted_in_sql_is_named(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 3, users()).await;
    // A copy of row 3 with a new seq and id, linked to row 3: everything but the key.
    sqlx::query(
        "INSERT INTO audit_events SELECT 4, gen_random_uuid(), occurred_at, event_type, outcome, \
         actor_kind, client_id, details, actor_id, subject_id, ip, user_agent, salt, \
         personal_digest, pseudonym_of, pseudonym_seq, pseudonym_mac, key_version, hash, hash FROM audit_events WHERE seq = 3",
    )
    .execute(&pool)
    .await
    .unwrap();
    let report = log.verify(None).await.unwrap();
    assert_eq!(report.findings, [Finding::Inserted { seq: 4 }]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn hashes_and_salts_of_the_wrong_length_are_named_not_fatal(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 3, users()).await;
    as_dba(
        &pool,
        "UPDATE audit_events SET hash = '\\x00' WHERE seq = 1",
    )
    .await;
    as_dba(
        &pool,
        "UPDATE audit_events SET salt = '\\x0102' WHERE seq = 3",
    )
    .await;
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [
            Finding::Changed {
                seq: 1,
                what: "mac"
            },
            // Row 2 is intact but links to row 1's real hash, which is no longer stored.
            Finding::Changed {
                seq: 2,
                what: "prev_hash"
            },
            Finding::Changed {
                seq: 3,
                what: "personal_fields"
            },
        ]
    );
    // The export refuses to show made-up bytes.
    assert!(log.page(&PageQuery::default()).await.is_err());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn rows_deleted_in_sql_are_named(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 6, users()).await;
    as_dba(&pool, "DELETE FROM audit_events WHERE seq IN (2, 6)").await;
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [
            Finding::Deleted { first: 2, last: 2 },
            Finding::Deleted { first: 6, last: 6 },
        ]
    );
}

both_stores!(pseudonymising_a_user_keeps_the_chain_verifying);
async fn pseudonymising_a_user_keeps_the_chain_verifying(log: AuditLog) {
    let [alice, bob] = users();
    fill(&log, 6, users()).await;
    let erasure = Uuid::from_u128(0xe1);
    let done = log
        .pseudonymize_user(alice, erasure, meta(1))
        .await
        .unwrap();
    assert_eq!(done.seqs, [2, 4, 6]);
    assert_eq!(done.record.as_ref().unwrap().seq, 7);
    let about_alice = log
        .page(&PageQuery {
            user_id: Some(alice),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert!(about_alice.is_empty(), "{about_alice:?}");
    let pseudonymous = log
        .page(&PageQuery {
            user_id: Some(erasure),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(pseudonymous.len(), 3);
    assert!(pseudonymous.iter().all(|r| r.ip.is_none()
        && r.user_agent.is_none()
        && r.salt.is_none()
        && r.pseudonym_of.as_deref() == Some("erasure:00000000-0000-0000-0000-0000000000e1")));
    let bobs = log
        .page(&PageQuery {
            user_id: Some(bob),
            ..PageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(bobs.len(), 3);
    assert!(bobs.iter().all(|r| r.ip.is_some()));
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    // Again: nothing left to do, nothing written.
    let again = log
        .pseudonymize_user(alice, erasure, meta(2))
        .await
        .unwrap();
    assert!(again.seqs.is_empty() && again.record.is_none());
    assert_eq!(log.head().await.unwrap().seq, 7);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn pseudonymising_in_sql_without_a_record_is_named(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 3, users()).await;
    as_dba(
        &pool,
        "UPDATE audit_events SET ip = NULL, salt = NULL, pseudonym_of = 'erasure:x' WHERE seq = 2",
    )
    .await;
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [Finding::PseudonymizedWithoutRecord { seq: 2 }]
    );
}

both_stores!(pruning_a_prefix_keeps_the_chain_verifying);
async fn pruning_a_prefix_keeps_the_chain_verifying(log: AuditLog) {
    fill(&log, 6, users()).await;
    log.pseudonymize_user(users()[0], Uuid::from_u128(0xe2), meta(1))
        .await
        .unwrap();
    // Rows 1..=3 fall on 2026-01-02..04.
    let pruned = log
        .prune_prefix(datetime!(2026-01-05 00:00 UTC), meta(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (pruned.through_seq, pruned.rows, pruned.record.seq),
        (3, 3, 8)
    );
    let head = log.head().await.unwrap();
    assert_eq!((head.seq, head.base_seq), (8, 3));
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 5);
    // Nothing older is left.
    let none = log
        .prune_prefix(datetime!(2026-01-05 00:00 UTC), meta(3))
        .await
        .unwrap();
    assert!(none.is_none());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_prefix_deleted_in_sql_is_named_even_with_a_forged_anchor(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 5, users()).await;
    as_dba(&pool, "DELETE FROM audit_events WHERE seq <= 2").await;
    sqlx::query(
        "UPDATE audit_chain_head SET base_seq = 2, \
         base_hash = (SELECT prev_hash FROM audit_events WHERE seq = 3)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let report = log.verify(None).await.unwrap();
    assert_eq!(report.findings, [Finding::Deleted { first: 1, last: 2 }]);
}

both_stores!(pages_filter_by_time_type_user_and_continue_after_a_seq);
async fn pages_filter_by_time_type_user_and_continue_after_a_seq(log: AuditLog) {
    let [alice, _] = users();
    fill(&log, 6, users()).await;
    let page = |q: PageQuery| {
        let log = log.clone();
        async move {
            log.page(&q)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    let base = PageQuery::default();
    assert_eq!(
        page(PageQuery {
            limit: 2,
            ..base.clone()
        })
        .await,
        [1, 2]
    );
    assert_eq!(
        page(PageQuery {
            after: 2,
            limit: 2,
            ..base.clone()
        })
        .await,
        [3, 4]
    );
    assert_eq!(
        page(PageQuery {
            since: Some(datetime!(2026-01-05 00:00 UTC)),
            ..base.clone()
        })
        .await,
        [4, 5, 6]
    );
    assert_eq!(
        page(PageQuery {
            user_id: Some(alice),
            ..base.clone()
        })
        .await,
        [2, 4, 6]
    );
    assert_eq!(
        page(PageQuery {
            event_type: Some("logout".into()),
            ..base.clone()
        })
        .await,
        Vec::<i64>::new()
    );
}

both_stores!(retention_pseudonymises_old_rows_in_batches_and_still_verifies);
async fn retention_pseudonymises_old_rows_in_batches_and_still_verifies(log: AuditLog) {
    fill(&log, 6, users()).await;
    // Rows 1..=3 fall on 2026-01-02..04.
    let cutoff = datetime!(2026-01-05 00:00 UTC);
    let batch = |n: u128| {
        let log = log.clone();
        async move {
            let reference = Ident::parse(&format!("retention:1:{n}")).unwrap();
            log.pseudonymize_before(cutoff, reference, 2, meta(n))
                .await
                .unwrap()
        }
    };
    let first = batch(1).await;
    assert_eq!(
        (first.seqs, first.record.map(|r| r.seq)),
        (vec![1, 2], Some(7))
    );
    let second = batch(2).await;
    assert_eq!(
        (second.seqs, second.record.map(|r| r.seq)),
        (vec![3], Some(8))
    );
    let done = batch(3).await;
    assert!(done.seqs.is_empty() && done.record.is_none());
    let rows = log.page(&PageQuery::default()).await.unwrap();
    for row in &rows[..3] {
        assert_eq!(
            (
                &row.subject_id,
                &row.actor_id,
                &row.ip,
                &row.user_agent,
                &row.salt
            ),
            (&None, &None, &None, &None, &None),
            "row {}",
            row.seq
        );
    }
    assert!(rows[3].ip.is_some() && rows[3].subject_id.is_some());
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
}

/// A copy of row `from` at `seq` with `occurred_at = time`, as a plain INSERT (no key, no GUC).
async fn insert_copy(pool: &PgPool, from: i64, seq: i64, time: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events SELECT $2, gen_random_uuid(), $3::timestamptz, event_type, \
         outcome, actor_kind, client_id, details, actor_id, subject_id, ip, user_agent, salt, \
         personal_digest, pseudonym_of, pseudonym_seq, pseudonym_mac, key_version, hash, hash FROM audit_events WHERE seq = $1",
    )
    .bind(from)
    .bind(seq)
    .bind(time)
    .execute(pool)
    .await
    .map(|_| ())
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn times_no_reader_can_hold_are_refused_by_the_table(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 3, users()).await;
    for time in ["infinity", "-infinity", "10000-01-01 00:00:00+00"] {
        let err = insert_copy(&pool, 3, 4, time).await.unwrap_err();
        assert!(
            err.to_string().contains("audit_events_occurred_at_range"),
            "{time}: {err}"
        );
    }
    let err = insert_copy(&pool, 3, i64::MAX, "2026-01-01 00:00:00+00")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit_events_seq_range"), "{err}");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn unreadable_rows_are_named_by_verify_and_refused_by_export_without_panicking(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 4, users()).await;
    // With the constraints dropped (DDL), everything PostgreSQL can store must still be survived.
    for sql in [
        "ALTER TABLE audit_events DROP CONSTRAINT audit_events_occurred_at_range",
        "ALTER TABLE audit_events DROP CONSTRAINT audit_events_seq_range",
        "ALTER TABLE audit_events DROP CONSTRAINT audit_events_outcome_check",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    as_dba(
        &pool,
        "UPDATE audit_events SET occurred_at = 'infinity' WHERE seq = 2",
    )
    .await;
    as_dba(
        &pool,
        "UPDATE audit_events SET outcome = 'maybe' WHERE seq = 3",
    )
    .await;
    insert_copy(&pool, 4, 50, "10000-01-01 00:00:00+00")
        .await
        .unwrap();
    insert_copy(&pool, 4, i64::MAX, "infinity").await.unwrap();
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [
            Finding::Changed {
                seq: 2,
                what: "mac"
            },
            Finding::Changed {
                seq: 3,
                what: "mac"
            },
            // Seqs past the head were never written: the planted rows are inserted, and the gaps
            // before them are not deletions.
            Finding::Inserted { seq: 50 },
            Finding::Inserted { seq: i64::MAX },
        ]
    );
    // The export refuses to make up a time, and does not panic.
    let err = log.page(&PageQuery::default()).await.unwrap_err();
    assert!(err.to_string().contains("occurred_at"), "{err}");
}

/// `actor` (a user) acts on `subject`.
fn acts_on(n: u128, actor: Uuid, subject: Uuid) -> NewEvent {
    NewEvent {
        event_type: "user_disabled",
        subject_id: Some(subject),
        ..login(n, actor, datetime!(2026-02-01 00:00 UTC))
    }
}

both_stores!(erasing_two_people_of_one_row_removes_both_ids);
async fn erasing_two_people_of_one_row_removes_both_ids(log: AuditLog) {
    let [x, y] = users();
    log.append(&acts_on(1, x, y)).await.unwrap();
    let (ex, ey) = (Uuid::from_u128(0xe1), Uuid::from_u128(0xe2));
    let first = log.pseudonymize_user(y, ey, meta(1)).await.unwrap();
    assert_eq!(first.seqs, [1]);
    let second = log.pseudonymize_user(x, ex, meta(2)).await.unwrap();
    assert_eq!(
        (second.seqs, second.record.map(|r| r.seq)),
        (vec![1], Some(3))
    );
    for user in [x, y] {
        let left = log
            .page(&PageQuery {
                user_id: Some(user),
                ..PageQuery::default()
            })
            .await
            .unwrap();
        assert!(left.is_empty(), "{user}: {left:?}");
    }
    let row = &log.page(&PageQuery::default()).await.unwrap()[0];
    assert_eq!(
        (row.actor_id.clone(), row.subject_id),
        (Some(ex.to_string()), Some(ey))
    );
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
}

both_stores!(an_erasure_resumed_under_the_same_id_still_verifies);
async fn an_erasure_resumed_under_the_same_id_still_verifies(log: AuditLog) {
    let [alice, _] = users();
    fill(&log, 3, users()).await;
    let erasure = Uuid::from_u128(0xe1);
    log.pseudonymize_user(alice, erasure, meta(1))
        .await
        .unwrap();
    // A row about alice written while her erasure ran, then the erasure resumes.
    log.append(&login(9, alice, datetime!(2026-03-01 00:00 UTC)))
        .await
        .unwrap();
    let again = log
        .pseudonymize_user(alice, erasure, meta(2))
        .await
        .unwrap();
    assert_eq!(again.seqs, [5]);
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
}

both_stores!(retention_batches_reusing_a_reference_still_verify);
async fn retention_batches_reusing_a_reference_still_verify(log: AuditLog) {
    fill(&log, 6, users()).await;
    let cutoff = datetime!(2026-01-05 00:00 UTC);
    for n in 1..=2 {
        // A run id restarting at 1: the same reference twice.
        let reference = Ident::parse("retention:1:1").unwrap();
        let done = log
            .pseudonymize_before(cutoff, reference, 2, meta(n))
            .await
            .unwrap();
        assert!(!done.seqs.is_empty());
    }
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_pseudonymised_row_rewritten_in_sql_is_named(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 4, users()).await;
    log.pseudonymize_user(users()[0], Uuid::from_u128(0xe1), meta(1))
        .await
        .unwrap();
    as_dba(
        &pool,
        "UPDATE audit_events SET subject_id = '00000000-0000-0000-0000-0000000051c7', \
         ip = '203.0.113.66', user_agent = 'evil' WHERE seq = 2",
    )
    .await;
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [Finding::Changed {
            seq: 2,
            what: "pseudonym"
        }]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn pruning_refuses_a_prefix_that_does_not_verify(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 6, users()).await;
    as_dba(
        &pool,
        "UPDATE audit_events SET outcome = 'failure' WHERE seq = 2",
    )
    .await;
    let err = log
        .prune_prefix(datetime!(2026-01-05 00:00 UTC), meta(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unverified {
                finding: Finding::Changed {
                    seq: 2,
                    what: "mac"
                }
            }
        ),
        "{err}"
    );
    let head = log.head().await.unwrap();
    assert_eq!((head.seq, head.base_seq), (6, 0));
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [Finding::Changed {
            seq: 2,
            what: "mac"
        }]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn retention_does_not_vouch_for_a_row_edited_before(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 6, users()).await;
    as_dba(
        &pool,
        "UPDATE audit_events SET ip = '203.0.113.9' WHERE seq = 2",
    )
    .await;
    let reference = Ident::parse("retention:1:1").unwrap();
    let done = log
        .pseudonymize_before(datetime!(2026-01-05 00:00 UTC), reference, 10, meta(1))
        .await
        .unwrap();
    assert_eq!((done.seqs, done.unverified), (vec![1, 2, 3], vec![2]));
    let report = log.verify(None).await.unwrap();
    assert_eq!(
        report.findings,
        [Finding::Changed {
            seq: 2,
            what: "pseudonym"
        }]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_append_behind_a_held_head_lock_fails_after_the_lock_timeout(pool: PgPool) {
    let log = log(&pool);
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT seq FROM audit_chain_head FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = log
        .append(&login(1, users()[0], datetime!(2026-01-01 00:00 UTC)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lock timeout"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    holder.rollback().await.unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn concurrent_appends_succeed_under_a_serializable_default(pool: PgPool) {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{db}\" SET default_transaction_isolation = 'serializable'"
    )))
    .execute(&pool)
    .await
    .unwrap();
    // Fresh connections pick the default up.
    let strict = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let log = log(&strict);
    let tasks: Vec<_> = (0..8u128)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..4u128 {
                    let at = datetime!(2026-01-01 00:00 UTC);
                    log.append(&login(t * 10 + i + 1, users()[0], at))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.head().await.unwrap().seq, 32);
    strict.close().await;
}

both_stores!(large_logs_are_erased_pruned_and_verified_in_bounded_batches);
async fn large_logs_are_erased_pruned_and_verified_in_bounded_batches(log: AuditLog) {
    let [alice, _] = users();
    let n = PRUNE_BATCH as u128 + 2;
    fill(&log, n, users()).await;
    // Alice has every second row: more than one erasure batch.
    let erasure = Uuid::from_u128(0xe1);
    let mut batches = 0;
    loop {
        let done = log
            .pseudonymize_user(alice, erasure, meta(batches))
            .await
            .unwrap();
        if done.seqs.is_empty() {
            break;
        }
        assert!(done.seqs.len() as i64 <= ERASE_BATCH);
        batches += 1;
    }
    assert_eq!(batches, (n / 2).div_ceil(ERASE_BATCH as u128));
    // Verify pages through more than one page of rows.
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    let cutoff = datetime!(2100-01-01 00:00 UTC);
    let first = log.prune_prefix(cutoff, meta(100)).await.unwrap().unwrap();
    assert_eq!((first.through_seq, first.rows), (PRUNE_BATCH, PRUNE_BATCH));
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    let second = log.prune_prefix(cutoff, meta(101)).await.unwrap().unwrap();
    assert!(second.through_seq > PRUNE_BATCH);
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_head_cannot_be_moved_back_rewritten_or_removed(pool: PgPool) {
    let log = log(&pool);
    fill(&log, 3, users()).await;
    for sql in [
        "UPDATE audit_chain_head SET seq = 0, hash = NULL, base_seq = 0, base_hash = NULL",
        "UPDATE audit_chain_head SET seq = 2",
        "UPDATE audit_chain_head SET hash = '\\x00'",
        "UPDATE audit_chain_head SET base_seq = 5",
        "DELETE FROM audit_chain_head",
        "TRUNCATE audit_chain_head",
    ] {
        // Even with the maintenance setting: no legitimate step moves the head back.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL portcullis.audit_maintenance = 'on'")
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert!(
            err.to_string().contains("only moves forward"),
            "{sql}: {err}"
        );
    }
    // Appends and prunes still move it forward.
    log.prune_prefix(datetime!(2026-01-03 00:00 UTC), meta(1))
        .await
        .unwrap()
        .unwrap();
    let head = log.head().await.unwrap();
    assert_eq!((head.seq, head.base_seq), (4, 1));
    assert!(log.verify(None).await.unwrap().ok);
}

both_stores!(every_row_gets_its_own_random_salt);
async fn every_row_gets_its_own_random_salt(log: AuditLog) {
    fill(&log, 8, users()).await;
    let rows = log.page(&PageQuery::default()).await.unwrap();
    let mut salts: Vec<_> = rows.iter().map(|r| r.salt.unwrap()).collect();
    salts.sort_unstable();
    salts.dedup();
    assert_eq!(salts.len(), 8);
    assert!(!salts.contains(&[0; 16]));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn appends_erasure_retention_and_pruning_interleave_without_deadlock(pool: PgPool) {
    let log = log(&pool);
    let [alice, bob] = users();
    fill(&log, 20, users()).await;
    let appenders: Vec<_> = (0..6u128)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..10u128 {
                    let at = datetime!(2026-06-01 00:00 UTC);
                    let user = if i % 2 == 0 { alice } else { bob };
                    log.append(&login(1000 + t * 100 + i, user, at))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let maintenance = {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 0..5u128 {
                log.pseudonymize_user(alice, Uuid::from_u128(0xe1), meta(n))
                    .await
                    .unwrap();
                let reference = Ident::parse(&format!("retention:9:{n}")).unwrap();
                log.pseudonymize_before(
                    datetime!(2026-01-10 00:00 UTC),
                    reference,
                    3,
                    meta(10 + n),
                )
                .await
                .unwrap();
                log.prune_prefix(datetime!(2026-01-05 00:00 UTC), meta(50 + n))
                    .await
                    .unwrap();
            }
        })
    };
    for task in appenders {
        task.await.unwrap();
    }
    maintenance.await.unwrap();
    let report = log.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(log.head().await.unwrap().seq >= 80);
}
