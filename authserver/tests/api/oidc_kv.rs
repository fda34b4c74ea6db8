//! Authorization codes and access-token revocations in Redis, checked against the in-memory
//! twin: both must agree, and Redis must hand a code out once however many exchanges race.

use std::time::Duration;

use portcullis_authserver::clock::Clock;
use portcullis_authserver::store::kv::{CodeRecord, Kv, PendingKind, REPLAY_WINDOW, Redeemed};

use crate::support::stopped_clock;

fn record() -> CodeRecord {
    CodeRecord {
        client_id: "shop-web".into(),
        redirect_uri: "https://shop.example.com/cb?x=1".into(),
        user_id: uuid::Uuid::from_u128(7),
        sid: "sid".into(),
        scope: "openid email".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: 1_900_000_000,
        amr: vec!["pwd".into()],
        acr: Some("urn:portcullis:acr:pwd".into()),
        credential_epoch: 3,
    }
}

async fn both(clock: &Clock) -> [(&'static str, Kv); 2] {
    let url = std::env::var("REDIS_URL").unwrap();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    [
        ("redis", Kv::redis(&url, &prefix).await.unwrap()),
        ("memory", Kv::memory(clock.clone())),
    ]
}

#[tokio::test]
async fn a_code_gives_its_record_once_and_a_replay_names_what_the_first_exchange_issued() {
    let clock = stopped_clock();
    for (name, kv) in both(&clock).await {
        let now = clock.now_ms();
        kv.put_code("h1", &record(), now, now + 60_000)
            .await
            .unwrap();
        assert_eq!(
            kv.redeem_code("h1", now).await.unwrap(),
            Redeemed::Fresh(Box::new(record())),
            "{name}"
        );
        assert!(!kv.record_code_issue("h1", "gid-1", "jti-1").await.unwrap());
        assert_eq!(
            kv.redeem_code("h1", now).await.unwrap(),
            Redeemed::Replayed {
                gid: Some("gid-1".into()),
                jti: Some("jti-1".into())
            },
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_replay_before_the_first_exchange_recorded_its_tokens_is_reported_to_it() {
    let clock = stopped_clock();
    for (name, kv) in both(&clock).await {
        let now = clock.now_ms();
        kv.put_code("h2", &record(), now, now + 60_000)
            .await
            .unwrap();
        assert!(matches!(
            kv.redeem_code("h2", now).await.unwrap(),
            Redeemed::Fresh(_)
        ));
        assert_eq!(
            kv.redeem_code("h2", now).await.unwrap(),
            Redeemed::Replayed {
                gid: None,
                jti: None
            },
            "{name}"
        );
        assert!(
            kv.record_code_issue("h2", "gid-2", "jti-2").await.unwrap(),
            "{name}: the first exchange learns it must revoke what it issued"
        );
    }
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime_on_the_injected_clock() {
    let clock = stopped_clock();
    for (name, kv) in both(&clock).await {
        let now = clock.now_ms();
        kv.put_code("h3", &record(), now, now + 60_000)
            .await
            .unwrap();
        assert_eq!(
            kv.redeem_code("h3", now + 60_000).await.unwrap(),
            Redeemed::Expired,
            "{name}"
        );
        assert_eq!(
            kv.redeem_code("nope", now).await.unwrap(),
            Redeemed::Unknown
        );
    }
}

#[tokio::test]
async fn a_used_code_is_remembered_in_redis_for_the_replay_window_only() {
    let url = std::env::var("REDIS_URL").unwrap();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let kv = Kv::redis(&url, &prefix).await.unwrap();
    let now = stopped_clock().now_ms();
    kv.put_code("h4", &record(), now, now + 60_000)
        .await
        .unwrap();
    kv.redeem_code("h4", now).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}code:h4"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let window = i64::try_from(REPLAY_WINDOW.as_millis()).unwrap();
    assert!(ttl > window - 5_000 && ttl <= window, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_racing_exchanges_of_one_code_exactly_one_gets_it() {
    let url = std::env::var("REDIS_URL").unwrap();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let kv = Kv::redis(&url, &prefix).await.unwrap();
    let now = stopped_clock().now_ms();
    kv.put_code("race", &record(), now, now + 60_000)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.redeem_code("race", now).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            Redeemed::Fresh(_) => fresh += 1,
            Redeemed::Replayed { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fresh, 1);
}

#[tokio::test]
async fn an_access_token_is_revoked_by_its_session_its_grant_or_its_own_id() {
    let clock = stopped_clock();
    for (name, kv) in both(&clock).await {
        let ttl = Duration::from_secs(600);
        assert!(
            !kv.is_access_revoked(Some("s"), Some("g"), "j")
                .await
                .unwrap()
        );
        kv.revoke_gid("g", ttl).await.unwrap();
        assert!(
            kv.is_access_revoked(None, Some("g"), "j").await.unwrap(),
            "{name}"
        );
        assert!(
            !kv.is_access_revoked(Some("s"), Some("g2"), "j")
                .await
                .unwrap(),
            "{name}"
        );
        kv.revoke_jti("j", ttl).await.unwrap();
        assert!(
            kv.is_access_revoked(None, None, "j").await.unwrap(),
            "{name}"
        );
        kv.revoke_sid("s", ttl).await.unwrap();
        assert!(
            kv.is_access_revoked(Some("s"), None, "j2").await.unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_authorization_pending_is_never_found_or_taken_as_a_logout_pending() {
    let clock = stopped_clock();
    for (name, kv) in both(&clock).await {
        let ttl = Duration::from_secs(600);
        kv.put_pending(PendingKind::Authorization, "p", "{}", ttl)
            .await
            .unwrap();
        assert_eq!(
            kv.pending(PendingKind::Logout, "p").await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            kv.take_pending(PendingKind::Logout, "p").await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            kv.pending(PendingKind::Authorization, "p")
                .await
                .unwrap()
                .as_deref(),
            Some("{}"),
            "{name}: left in place"
        );
    }
}

#[tokio::test]
async fn replacing_a_taken_pending_does_not_bring_it_back() {
    let clock = stopped_clock();
    for (name, kv) in both(&clock).await {
        let kind = PendingKind::Authorization;
        let ttl = Duration::from_secs(600);
        kv.put_pending(kind, "waits", "1", ttl).await.unwrap();
        assert!(
            kv.replace_pending(kind, "waits", "2").await.unwrap(),
            "{name}"
        );
        assert_eq!(
            kv.pending(kind, "waits").await.unwrap().as_deref(),
            Some("2")
        );
        kv.put_pending(kind, "taken", "1", ttl).await.unwrap();
        kv.take_pending(kind, "taken").await.unwrap();
        assert!(
            !kv.replace_pending(kind, "taken", "2").await.unwrap(),
            "{name}"
        );
        assert_eq!(kv.pending(kind, "taken").await.unwrap(), None, "{name}");
    }
}
