//! Login, lockout, sessions, logout and password change.

use std::time::{Duration, Instant};

use portcullis_authserver::auth::hashing::bcrypt_cost;
use portcullis_crds::GoDuration;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn login_returns_tokens_and_a_hardened_session_cookie(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let login = server.login("Alice@Example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    for field in ["user_id", "access_token", "refresh_token", "csrf_token"] {
        assert!(login.body[field].is_string(), "{field}");
    }
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 600);
    let cookie = login.header("set-cookie").unwrap();
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        [
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=43200"
        ]
    );
    assert!(cookie.starts_with("__Host-portcullis_session="));
    assert_eq!(
        login.session_cookie().unwrap().len(),
        43,
        "256-bit id, base64url"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn wrong_password_and_unknown_account_get_the_same_answer(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let wrong = server.login("alice@example.com", OTHER_PASSWORD).await;
    let unknown = server.login("nobody@example.com", OTHER_PASSWORD).await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    assert_eq!(
        wrong.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn unknown_accounts_cost_a_bcrypt_verification_too(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let before = server.hasher.verifications();
    server.login("nobody@example.com", PASSWORD).await;
    assert_eq!(server.hasher.verifications(), before + 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn five_failures_lock_known_and_unknown_identifiers_alike(pool: PgPool) {
    // A stopped clock: both locks are equally far from their end when compared.
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock,
            ..Options::default()
        },
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    for email in ["alice@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            assert_eq!(server.login(email, OTHER_PASSWORD).await.status, 401);
        }
        let locked = server.login(email, PASSWORD).await;
        assert_eq!(
            (locked.status, locked.code()),
            (429, "account_locked"),
            "{email}: even the right password"
        );
        assert_eq!(locked.header("retry-after"), Some("60"));
        assert!(
            locked.header("ratelimit-policy").is_some() && locked.header("ratelimit").is_some()
        );
    }
    let known = server.login("alice@example.com", PASSWORD).await;
    let unknown = server.login("nobody@example.com", PASSWORD).await;
    assert_eq!(
        known.body, unknown.body,
        "the locked answer does not tell accounts apart"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn twenty_parallel_wrong_passwords_get_at_most_five_tries(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let before = server.hasher.verifications();
    let answers = server
        .parallel(20, |http, base| {
            http.post(format!("{base}/api/v1/login"))
                .json(&json!({"email": "alice@example.com", "password": OTHER_PASSWORD}))
        })
        .await;
    let tried = answers.iter().filter(|a| a.status == 401).count();
    let locked = answers.iter().filter(|a| a.status == 429).count();
    // Past the hashing queue (2 runs + 16 waiting here) a request is told to come back.
    let busy = answers.iter().filter(|a| a.status == 503).count();
    assert_eq!(tried + locked + busy, 20);
    assert!(tried <= 5, "{tried} passwords were checked");
    assert_eq!(server.hasher.verifications() - before, tried as u64);
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        429
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_successful_login_resets_the_failure_count(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    for _ in 0..4 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
    for _ in 0..4 {
        assert_eq!(
            server
                .login("alice@example.com", OTHER_PASSWORD)
                .await
                .status,
            401
        );
    }
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_admin_can_unlock_an_account(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let user_id = server.register("alice@example.com", PASSWORD).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        429
    );
    let unauthorized = read(
        server
            .http
            .post(format!("{}/admin/v1/users/{user_id}/unlock", server.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unauthorized.status, 401);
    let found = server
        .admin_call(Method::GET, "/admin/v1/users?email=alice@example.com")
        .await;
    assert_eq!(found.body["user_id"], user_id.as_str());
    assert_eq!(
        server
            .admin_call(Method::POST, &format!("/admin/v1/users/{user_id}/unlock"))
            .await
            .status,
        204
    );
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn lockout_notifies_the_owner_by_mail(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    for _ in 0..5 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
    let mails = server.mails_settled(1).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("temporarily locked") && m.contains("To: alice@example.com")),
        "{mails:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn progressive_delay_slows_answers_after_the_configured_failures(pool: PgPool) {
    let server = start(
        pool,
        Options::spec(|s| {
            s.lockout.progressive_delay.after_failures = 2;
            s.lockout.progressive_delay.base = GoDuration::parse("400ms").unwrap();
            s.lockout.progressive_delay.max = GoDuration::parse("400ms").unwrap();
        }),
    )
    .await;
    for _ in 0..2 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
    let started = Instant::now();
    server.login("alice@example.com", OTHER_PASSWORD).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "took {:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn login_replaces_a_presented_session_instead_of_reusing_it(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let first = server.user("alice@example.com").await;
    let old = first.session_cookie().unwrap();
    let response = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .header("cookie", format!("__Host-portcullis_session={old}"))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second = read(response).await;
    let new = second.session_cookie().unwrap();
    assert_ne!(new, old, "session id rotates at login");
    assert_eq!(
        server
            .get("/api/v1/me", &Cred::Cookie(old, None))
            .await
            .status,
        401
    );
    assert_eq!(
        server
            .get("/api/v1/me", &Cred::Cookie(new, None))
            .await
            .status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn me_answers_with_cookie_or_bearer_and_401_otherwise(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    for cred in [cookie(&login), bearer(&login)] {
        let me = server.get("/api/v1/me", &cred).await;
        assert_eq!(me.status, 200);
        assert_eq!(me.body["email"], "alice@example.com");
        assert_eq!(me.body["email_verified"], true);
        assert_eq!(
            me.body["mfa"],
            json!({"totp": false, "recovery_codes_left": 0})
        );
        assert_eq!(me.body["user_id"], login.body["user_id"]);
    }
    let anonymous = server.get("/api/v1/me", &Cred::None).await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "unauthenticated")
    );
    assert!(anonymous.header("www-authenticate").is_some());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn sessions_end_after_the_idle_timeout(pool: PgPool) {
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
    clock.advance(minutes(29));
    assert_eq!(
        server.get("/api/v1/me", &cookie(&login)).await.status,
        200,
        "activity extends the session"
    );
    clock.advance(minutes(29));
    assert_eq!(server.get("/api/v1/me", &cookie(&login)).await.status, 200);
    clock.advance(minutes(31));
    assert_eq!(server.get("/api/v1/me", &cookie(&login)).await.status, 401);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn logout_ends_the_session_its_tokens_and_the_cookie(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let out = server
        .call(Method::POST, "/api/v1/logout", None, &cookie(&login))
        .await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(server.get("/api/v1/me", &cookie(&login)).await.status, 401);
    assert_eq!(server.get("/api/v1/me", &bearer(&login)).await.status, 401);
    assert_eq!(
        server
            .refresh(login.body["refresh_token"].as_str().unwrap())
            .await
            .status,
        400
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn cookie_state_changes_need_the_csrf_token_or_same_origin(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let forged = server
        .call(
            Method::POST,
            "/api/v1/logout",
            None,
            &cookie_without_csrf(&login),
        )
        .await;
    assert_eq!((forged.status, forged.code()), (403, "csrf_failed"));
    let wrong = Cred::Cookie(
        login.session_cookie().unwrap(),
        Some("bm90LXRoZS10b2tlbg".into()),
    );
    assert_eq!(
        server
            .call(Method::POST, "/api/v1/logout", None, &wrong)
            .await
            .status,
        403
    );
    let same_origin = server
        .http
        .post(format!("{}/api/v1/logout", server.base))
        .header(
            "cookie",
            format!(
                "__Host-portcullis_session={}",
                login.session_cookie().unwrap()
            ),
        )
        .header("origin", "http://auth.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 204);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn changing_the_password_ends_other_sessions_only(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let here = server.user("alice@example.com").await;
    let elsewhere = server.login("alice@example.com", PASSWORD).await;
    let wrong = server
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": OTHER_PASSWORD, "new_password": OTHER_PASSWORD})),
            &cookie(&here),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    let same = server
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            &cookie(&here),
        )
        .await;
    assert_eq!(same.violation_codes(), ["password_unchanged"]);
    let changed = server
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD})),
            &cookie(&here),
        )
        .await;
    assert_eq!(changed.status, 204, "{changed:?}");
    assert_eq!(
        server.get("/api/v1/me", &cookie(&here)).await.status,
        200,
        "this session stays"
    );
    assert_eq!(
        server.get("/api/v1/me", &cookie(&elsewhere)).await.status,
        401
    );
    assert_eq!(
        server.get("/api/v1/me", &bearer(&elsewhere)).await.status,
        401
    );
    assert_eq!(
        server
            .refresh(elsewhere.body["refresh_token"].as_str().unwrap())
            .await
            .status,
        400
    );
    assert_eq!(
        server
            .refresh(here.body["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    assert!(
        server
            .mails_settled(1)
            .await
            .iter()
            .any(|m| m.contains("password was changed"))
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn sessions_are_listed_and_revocable(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let here = server.user("alice@example.com").await;
    let other = server.login("alice@example.com", PASSWORD).await;
    let list = server.get("/api/v1/me/sessions", &cookie(&here)).await;
    let sessions = list.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&serde_json::Value> =
        sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    for field in ["id", "created_at", "last_seen_at", "ip", "user_agent"] {
        assert!(sessions[0][field].is_string(), "{field}");
    }
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    let other_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = server
        .call(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other_id}"),
            None,
            &cookie(&here),
        )
        .await;
    assert_eq!(revoked.status, 204);
    assert_eq!(server.get("/api/v1/me", &cookie(&other)).await.status, 401);
    let again = server
        .call(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other_id}"),
            None,
            &cookie(&here),
        )
        .await;
    assert_eq!((again.status, again.code()), (404, "not_found"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn two_instances_share_sessions_and_lockouts(pool: PgPool) {
    let a = start(pool.clone(), Options::default()).await;
    let prefix = a.redis_prefix.clone();
    let b = start_sharing(
        pool,
        Options {
            redis_prefix: prefix,
            ..Options::default()
        },
        Some(&a),
    )
    .await;
    let login = a.user("alice@example.com").await;
    assert_eq!(
        b.get("/api/v1/me", &cookie(&login)).await.status,
        200,
        "a session from A works at B"
    );
    assert_eq!(b.get("/api/v1/me", &bearer(&login)).await.status, 200);
    for _ in 0..3 {
        a.login("bob@example.com", PASSWORD).await;
    }
    for _ in 0..2 {
        b.login("bob@example.com", PASSWORD).await;
    }
    assert_eq!(
        a.login("bob@example.com", PASSWORD).await.status,
        429,
        "failures at A and B add up"
    );
    assert_eq!(
        b.call(Method::POST, "/api/v1/logout", None, &cookie(&login))
            .await
            .status,
        204
    );
    assert_eq!(
        a.get("/api/v1/me", &cookie(&login)).await.status,
        401,
        "logout at B ends the session at A"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_hash_made_with_a_lower_cost_is_upgraded_at_login(pool: PgPool) {
    let old = start(pool.clone(), Options::default()).await;
    old.register("alice@example.com", PASSWORD).await;
    // Same secrets (pepper), higher cost: what a realm update rolls out.
    let stronger = start_sharing(
        pool.clone(),
        Options::spec(|s| s.password_policy.bcrypt_cost = 11),
        Some(&old),
    )
    .await;
    assert_eq!(
        stronger.login("alice@example.com", PASSWORD).await.status,
        200
    );
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bcrypt_cost(&hash), Some(11));
    assert_eq!(
        stronger.login("alice@example.com", PASSWORD).await.status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_disabled_account_cannot_log_in_and_loses_its_sessions(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let id = login.body["user_id"].as_str().unwrap();
    assert_eq!(
        server
            .admin_call(Method::POST, &format!("/admin/v1/users/{id}/disable"))
            .await
            .status,
        204
    );
    assert_eq!(server.get("/api/v1/me", &cookie(&login)).await.status, 401);
    let again = server.login("alice@example.com", PASSWORD).await;
    assert_eq!((again.status, again.code()), (403, "account_disabled"));
}

/// The `ip` the session list shows for a login sent with `forwarded` (one header per entry) by
/// a peer in the realm's trusted proxies.
async fn session_ip_behind_a_proxy(server: &TestServer, forwarded: &[&str]) -> String {
    let mut request = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .json(&json!({"email": "alice@example.com", "password": PASSWORD}));
    for value in forwarded {
        request = request.header("x-forwarded-for", *value);
    }
    let login = read(request.send().await.unwrap()).await;
    assert_eq!(login.status, 200, "{login:?}");
    let list = server.get("/api/v1/me/sessions", &cookie(&login)).await;
    let current = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    current["ip"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_spoofed_leftmost_forwarded_address_never_wins(pool: PgPool) {
    let server = start(
        pool,
        Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()]),
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    assert_eq!(
        session_ip_behind_a_proxy(&server, &["6.6.6.6, 198.51.100.7"]).await,
        "198.51.100.7"
    );
    assert_eq!(
        session_ip_behind_a_proxy(&server, &["6.6.6.6, not-an-address"]).await,
        "127.0.0.1",
        "an unreadable entry stops the walk at the proxy that wrote it"
    );
    assert_eq!(
        session_ip_behind_a_proxy(&server, &["6.6.6.6", "198.51.100.7"]).await,
        "198.51.100.7",
        "every X-Forwarded-For header counts, in order"
    );
}

/// Logs in with `password` as a client at `ip` behind the trusted local proxy.
async fn login_from(server: &TestServer, ip: &str, email: &str, password: &str) -> Answer {
    let request = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}));
    read(request.send().await.unwrap()).await
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn failures_from_one_address_do_not_lock_the_owner_out_elsewhere(pool: PgPool) {
    let server = start(
        pool,
        Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()]),
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    for _ in 0..5 {
        let failed = login_from(&server, "203.0.113.66", "alice@example.com", OTHER_PASSWORD).await;
        assert_eq!(failed.status, 401);
    }
    let attacker = login_from(&server, "203.0.113.66", "alice@example.com", PASSWORD).await;
    assert_eq!((attacker.status, attacker.code()), (429, "account_locked"));
    let owner = login_from(&server, "198.51.100.7", "alice@example.com", PASSWORD).await;
    assert_eq!(owner.status, 200, "{owner:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn many_addresses_together_still_lock_an_identifier(pool: PgPool) {
    // One failure per address allowed; the identifier's own ceiling is 20 times that.
    let server = start(
        pool,
        Options::spec(|s| {
            s.trusted_proxies = vec!["127.0.0.1/32".into()];
            s.lockout.max_failures = 1;
        }),
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    for n in 0..20 {
        let ip = format!("203.0.113.{n}");
        let failed = login_from(&server, &ip, "alice@example.com", OTHER_PASSWORD).await;
        assert_eq!(failed.status, 401, "{ip}");
    }
    let owner = login_from(&server, "198.51.100.7", "alice@example.com", PASSWORD).await;
    assert_eq!((owner.status, owner.code()), (429, "account_locked"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_full_hashing_queue_answers_503_with_retry_after(pool: PgPool) {
    let server = start(
        pool,
        Options {
            hash_permits: 1,
            ..Options::default()
        },
    )
    .await;
    let answers = server
        .parallel(60, |http, base| {
            http.post(format!("{base}/api/v1/login")).json(
                &json!({"email": format!("{}@example.com", uuid::Uuid::new_v4()), "password": PASSWORD}),
            )
        })
        .await;
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(!busy.is_empty(), "every login was queued");
    for answer in &busy {
        assert_eq!(answer.code(), "server_busy");
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
        assert!(answer.header("retry-after").is_some());
    }
    assert!(answers.iter().all(|a| a.status == 503 || a.status == 401));
}

/// An SMTP server that accepts connections and never says anything.
async fn silent_smtp_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_lockout_notice_does_not_delay_the_answer(pool: PgPool) {
    let server = start(
        pool,
        Options {
            smtp_url: Some(silent_smtp_server().await),
            ..Options::default()
        },
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    for _ in 0..4 {
        server.login("alice@example.com", OTHER_PASSWORD).await;
    }
    let started = Instant::now();
    let locking = server.login("alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(locking.status, 401);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the locking failure waited {:?} for the mail server",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_login_in_flight_when_the_account_is_disabled_gets_no_session(pool: PgPool) {
    let server = std::sync::Arc::new(
        start(
            pool,
            Options {
                hash_permits: 1,
                ..Options::default()
            },
        )
        .await,
    );
    let user_id = server.register("alice@example.com", PASSWORD).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Fill the one hashing slot's queue so alice's login waits between reading her account
    // and checking her password.
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .login(&format!("{}@example.com", uuid::Uuid::new_v4()), PASSWORD)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move { server.login("alice@example.com", PASSWORD).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let disabled = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{user_id}/disable"))
        .await;
    assert_eq!(disabled.status, 204);
    let login = in_flight.await.unwrap();
    for request in flood {
        request.await.unwrap();
    }
    if login.status == 200 {
        let sessions = server.get("/api/v1/me/sessions", &cookie(&login)).await;
        assert_eq!(
            sessions.status, 401,
            "a session created after the account was disabled works"
        );
    }
}
