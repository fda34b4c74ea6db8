//! What the OpenID Connect provider keeps in the database: the grant a refresh-token family
//! carries, revoking one family or one app's families, and remembered OAuth consents. Each
//! behaviour is checked on PostgreSQL and on the in-memory twin, which must agree.

use std::time::Duration;

use portcullis_authserver::store::{Db, FamilyGrant, NewFamily, NewUser, RotateOutcome};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

fn t0() -> OffsetDateTime {
    // Microseconds only: what PostgreSQL stores.
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

fn both(pool: PgPool) -> [(&'static str, Db); 2] {
    [("postgres", Db::from_pool(pool)), ("memory", Db::memory())]
}

async fn user(db: &Db, email: &str) -> Uuid {
    let id = Uuid::new_v4();
    db.insert_user(&NewUser {
        id,
        email,
        email_canonical: email,
        display_name: None,
        password_hash: Some("h"),
        pepper_version: "v1",
        email_verified: true,
        now: t0(),
    })
    .await
    .unwrap();
    id
}

fn oidc_grant() -> FamilyGrant {
    FamilyGrant {
        scope: "openid email offline_access".into(),
        auth_time: Some(t0() - Duration::from_secs(30)),
        amr: vec!["pwd".into()],
        acr: Some("urn:portcullis:acr:pwd".into()),
        offline: true,
    }
}

/// Starts an offline_access family of `client` for `user`; returns its id and first token
/// hash.
async fn family(db: &Db, user: Uuid, client: &str, session: &str) -> (Uuid, Vec<u8>) {
    family_with(db, user, client, session, oidc_grant()).await
}

/// Starts a family of `client` for `user` carrying `grant`.
async fn family_with(
    db: &Db,
    user: Uuid,
    client: &str,
    session: &str,
    grant: FamilyGrant,
) -> (Uuid, Vec<u8>) {
    let id = Uuid::new_v4();
    let token = Uuid::new_v4().as_bytes().to_vec();
    let started = db
        .start_refresh_family(&NewFamily {
            family_id: id,
            user_id: user,
            session_id: session,
            client_id: Some(client),
            credential_epoch: 0,
            token_hash: &token,
            issued_at: t0(),
            token_expires_at: t0() + Duration::from_secs(3_600),
            expires_at: t0() + Duration::from_secs(86_400),
            grant,
        })
        .await
        .unwrap();
    assert!(started);
    (id, token)
}

async fn rotate(db: &Db, token: &[u8]) -> RotateOutcome {
    let next = Uuid::new_v4().as_bytes().to_vec();
    let now = t0() + Duration::from_secs(60);
    db.rotate_refresh_token(token, &next, now, now + Duration::from_secs(3_600))
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_family_hands_back_its_grant_and_id_at_every_rotation(pool: PgPool) {
    for (name, db) in both(pool) {
        let alice = user(&db, "alice@example.com").await;
        let (id, token) = family(&db, alice, "shop-web", "s1").await;
        match rotate(&db, &token).await {
            RotateOutcome::Rotated {
                family_id,
                client_id,
                grant,
                ..
            } => {
                assert_eq!(family_id, id, "{name}");
                assert_eq!(client_id.as_deref(), Some("shop-web"), "{name}");
                assert_eq!(grant, oidc_grant(), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_revoked_family_names_its_session_once_and_its_tokens_stop_working(pool: PgPool) {
    for (name, db) in both(pool) {
        let alice = user(&db, "alice@example.com").await;
        let (id, token) = family(&db, alice, "shop-web", "s1").await;
        let (_, other_token) = family(&db, alice, "shop-web", "s2").await;
        assert_eq!(
            db.revoke_family(id, t0()).await.unwrap().as_deref(),
            Some("s1"),
            "{name}"
        );
        assert_eq!(db.revoke_family(id, t0()).await.unwrap(), None, "{name}");
        assert_eq!(db.revoke_family(Uuid::new_v4(), t0()).await.unwrap(), None);
        assert_eq!(rotate(&db, &token).await, RotateOutcome::Invalid, "{name}");
        assert!(
            matches!(
                rotate(&db, &other_token).await,
                RotateOutcome::Rotated { .. }
            ),
            "{name}: another family of the same client lives on"
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn revoking_an_app_ends_only_that_users_families_of_that_client(pool: PgPool) {
    for (name, db) in both(pool) {
        let alice = user(&db, "alice@example.com").await;
        let bob = user(&db, "bob@example.com").await;
        let (first, a1) = family(&db, alice, "shop-web", "s1").await;
        let (second, a2) = family(&db, alice, "shop-web", "s2").await;
        let (_, other_client) = family(&db, alice, "blog", "s1").await;
        let (_, other_user) = family(&db, bob, "shop-web", "s3").await;
        let mut revoked = db
            .revoke_client_families(alice, "shop-web", t0())
            .await
            .unwrap();
        revoked.sort();
        let mut expected = vec![first, second];
        expected.sort();
        assert_eq!(revoked, expected, "{name}");
        assert_eq!(rotate(&db, &a1).await, RotateOutcome::Invalid, "{name}");
        assert_eq!(rotate(&db, &a2).await, RotateOutcome::Invalid, "{name}");
        assert!(matches!(
            rotate(&db, &other_client).await,
            RotateOutcome::Rotated { .. }
        ));
        assert!(matches!(
            rotate(&db, &other_user).await,
            RotateOutcome::Rotated { .. }
        ));
        assert!(
            db.revoke_client_families(alice, "shop-web", t0())
                .await
                .unwrap()
                .is_empty(),
            "{name}: nothing left to revoke"
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_consent_widens_per_client_and_is_withdrawn_whole(pool: PgPool) {
    for (name, db) in both(pool) {
        let alice = user(&db, "alice@example.com").await;
        assert_eq!(db.oauth_consent(alice, "shop-web").await.unwrap(), None);
        db.grant_oauth_consent(alice, "shop-web", &["openid", "email"], t0())
            .await
            .unwrap();
        let later = t0() + Duration::from_secs(10);
        db.grant_oauth_consent(alice, "shop-web", &["profile", "openid"], later)
            .await
            .unwrap();
        db.grant_oauth_consent(alice, "blog", &["openid"], later)
            .await
            .unwrap();
        let consent = db.oauth_consent(alice, "shop-web").await.unwrap().unwrap();
        assert_eq!(consent.scopes, ["email", "openid", "profile"], "{name}");
        assert_eq!(
            (consent.granted_at, consent.updated_at),
            (t0(), later),
            "{name}"
        );
        let clients: Vec<String> = db
            .oauth_consents(alice)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(clients, ["blog", "shop-web"], "{name}");
        assert!(db.revoke_oauth_consent(alice, "shop-web").await.unwrap());
        assert!(!db.revoke_oauth_consent(alice, "shop-web").await.unwrap());
        assert_eq!(db.oauth_consent(alice, "shop-web").await.unwrap(), None);
        assert!(db.oauth_consent(alice, "blog").await.unwrap().is_some());
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_erased_account_takes_its_oauth_consents_with_it(pool: PgPool) {
    let db = Db::from_pool(pool.clone());
    let alice = user(&db, "alice@example.com").await;
    db.grant_oauth_consent(alice, "shop-web", &["openid"], t0())
        .await
        .unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(alice)
        .execute(&pool)
        .await
        .unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM oauth_consents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn signing_a_session_out_keeps_its_offline_families_which_end_only_on_their_own(
    pool: PgPool,
) {
    for (store, db) in both(pool) {
        let alice = user(&db, "alice@example.com").await;
        let online = FamilyGrant {
            offline: false,
            ..oidc_grant()
        };
        let (_, online_token) = family_with(&db, alice, "web", "s1", online).await;
        let (offline, offline_token) = family(&db, alice, "web", "s1").await;
        db.revoke_refresh_by_session("s1", t0()).await.unwrap();
        assert_eq!(
            rotate(&db, &online_token).await,
            RotateOutcome::Invalid,
            "{store}"
        );
        let RotateOutcome::Rotated { family_id, .. } = rotate(&db, &offline_token).await else {
            panic!("{store}: the offline family outlives the session");
        };
        assert_eq!(family_id, offline);
        assert_eq!(
            db.revoke_offline_families(alice, t0()).await.unwrap(),
            [offline],
            "{store}"
        );
        assert!(
            db.revoke_offline_families(alice, t0())
                .await
                .unwrap()
                .is_empty(),
            "{store}"
        );
    }
}
