//! Access tokens, the JWKS and the refresh-token grant.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use portcullis_authserver::auth::tokens::AccessClaims;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_jwks_verifies_issued_access_tokens(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let jwks = server.get("/.well-known/jwks.json", &Cred::None).await;
    assert_eq!(jwks.status, 200);
    assert!(jwks.header("cache-control").unwrap().contains("max-age"));
    let set: JwkSet = serde_json::from_value(jwks.body.clone()).unwrap();
    assert!(
        jwks.body["keys"][0].get("d").is_none(),
        "no private parts in the JWKS"
    );
    let token = login.body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid is in the JWKS");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&["http://auth.localhost"]);
    validation.set_audience(&["http://auth.localhost"]);
    let claims = jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims.sub, login.body["user_id"].as_str().unwrap());
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(claims.nbf, claims.iat);
    assert!(!claims.jti.is_empty() && claims.sid.as_deref().is_some_and(|s| !s.is_empty()));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_expired_access_token_is_rejected(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let login = server.user("alice@example.com").await;
    clock.advance(Duration::from_secs(599));
    assert_eq!(server.get("/api/v1/me", &bearer(&login)).await.status, 200);
    clock.advance(Duration::from_secs(1));
    assert_eq!(server.get("/api/v1/me", &bearer(&login)).await.status, 401);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_forged_or_unsigned_token_is_rejected(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let token = login.body["access_token"].as_str().unwrap();
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.rsplit_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged_claims = b64.encode(json!({"iss": "http://auth.localhost", "aud": "http://auth.localhost", "sub": uuid::Uuid::new_v4().to_string(), "exp": 4_000_000_000i64, "iat": 0, "nbf": 0, "jti": "x", "sid": "x", "scope": ""}).to_string());
    for forged in [
        format!("{head}.{forged_claims}.{signature}"),
        format!(
            "{}.{forged_claims}.",
            b64.encode(r#"{"alg":"none","typ":"at+jwt"}"#)
        ),
    ] {
        assert_eq!(
            server.get("/api/v1/me", &Cred::Bearer(forged)).await.status,
            401
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_refresh_rotates_the_token_and_a_replay_kills_the_family(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let first = login.body["refresh_token"].as_str().unwrap().to_owned();
    let rotated = server.refresh(&first).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let second = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(rotated.body["token_type"], "Bearer");
    assert_eq!(
        server
            .get(
                "/api/v1/me",
                &Cred::Bearer(rotated.body["access_token"].as_str().unwrap().into())
            )
            .await
            .status,
        200
    );
    let replay = server.refresh(&first).await;
    assert_eq!((replay.status, replay.code()), (400, "invalid_grant"));
    assert_eq!(
        replay.body["error"], "invalid_grant",
        "OAuth clients read `error`"
    );
    let successor = server.refresh(&second).await;
    assert_eq!(
        successor.status, 400,
        "the whole family is revoked after a replay"
    );
    assert_eq!(
        server.get("/api/v1/me", &cookie(&login)).await.status,
        401,
        "and the session that started it"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn two_concurrent_uses_of_one_refresh_token_let_one_win_and_kill_the_family(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let token = login.body["refresh_token"].as_str().unwrap().to_owned();
    let answers = server
        .parallel(2, |http, base| {
            http.post(format!("{base}/oauth2/token")).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ])
        })
        .await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 400]);
    let winner = answers.iter().find(|a| a.status == 200).unwrap();
    let after = server
        .refresh(winner.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        after.status, 400,
        "the winner's new token died with the family"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn refresh_tokens_expire_when_idle(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let login = server.user("alice@example.com").await;
    clock.advance(Duration::from_secs(7 * 86_400));
    let late = server
        .refresh(login.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!((late.status, late.code()), (400, "invalid_grant"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_token_endpoint_refuses_other_grants_and_missing_fields(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let post = |form: Vec<(&'static str, &'static str)>| {
        let request = server
            .http
            .post(format!("{}/oauth2/token", server.base))
            .form(&form);
        async move { read(request.send().await.unwrap()).await }
    };
    let other = post(vec![("grant_type", "password")]).await;
    assert_eq!(
        (other.status, other.code()),
        (400, "unsupported_grant_type")
    );
    let missing = post(vec![("grant_type", "refresh_token")]).await;
    assert_eq!((missing.status, missing.code()), (400, "invalid_request"));
    let unknown = post(vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", "nope"),
    ])
    .await;
    assert_eq!((unknown.status, unknown.code()), (400, "invalid_grant"));
}

/// Waits until `n` statements of this database wait for a lock.
async fn until_lock_waiters(pool: &PgPool, n: i64) {
    for _ in 0..500 {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} statements waited for a lock");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_logout_during_a_rotation_also_ends_the_rotated_token(pool: PgPool) {
    use sha2::Digest;
    let server = std::sync::Arc::new(start(pool.clone(), Options::default()).await);
    let login = server.user("alice@example.com").await;
    let token = login.body["refresh_token"].as_str().unwrap().to_owned();
    // Hold the presented token's row so the rotation stops half-way; the logout then runs
    // while the rotation's transaction is open.
    let mut hold = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
        .bind(sha2::Sha256::digest(token.as_bytes()).to_vec())
        .execute(&mut *hold)
        .await
        .unwrap();
    let rotating = {
        let server = server.clone();
        tokio::spawn(async move { server.refresh(&token).await })
    };
    until_lock_waiters(&pool, 1).await;
    let logging_out = {
        let (server, cred) = (server.clone(), cookie(&login));
        tokio::spawn(async move {
            server
                .call(reqwest::Method::POST, "/api/v1/logout", None, &cred)
                .await
        })
    };
    until_lock_waiters(&pool, 2).await;
    hold.commit().await.unwrap();
    let rotated = rotating.await.unwrap();
    assert_eq!(logging_out.await.unwrap().status, 204);
    if rotated.status == 200 {
        let successor = server
            .refresh(rotated.body["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(
            successor.status, 400,
            "the token rotated during the logout outlived it"
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn token_endpoint_errors_are_rfc_6749_json_and_an_unknown_client_is_401_basic(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let answer = read(
        server
            .http
            .post(format!("{}/oauth2/token", server.base))
            .basic_auth("nobody", Some("secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.body["error"], "invalid_client");
    assert!(answer.body["error_description"].is_string());
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Basic realm=\"portcullis\"")
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let repeated = read(
        server
            .http
            .post(format!("{}/oauth2/token", server.base))
            .body("grant_type=client_credentials&grant_type=client_credentials")
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (repeated.status, &repeated.body["error"]),
        (400, &serde_json::json!("invalid_request"))
    );
}
