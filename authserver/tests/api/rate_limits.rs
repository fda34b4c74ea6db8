//! The realm's rate limits over HTTP: per address (trusted-proxy rule included), per identifier
//! whether or not the account exists, shared by replicas through Redis, before any hashing, and
//! the per-address mail limit.

use portcullis_crds::realm::AuthRealmSpec;
use serde_json::json;
use sqlx::PgPool;

use crate::support::{
    Cred, Options, PASSWORD, PrivateRedis, TestServer, read, start, start_sharing, stopped_clock,
};

/// A RateLimitPolicy for the test realm with one rule.
fn policy(name: &str, routes: &str, limits: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: {name}}}
spec:
  targetRef: {{kind: AuthRealm, name: test}}
  rules:
    - name: {name}
      routes: [{routes}]
      limits: [{limits}]
"
    )
}

fn with_redis(spec: &mut AuthRealmSpec) {
    spec.redis = Some(serde_json::from_value(json!({"secretRef": {"name": "redis"}})).unwrap());
}

/// Five logins per address at once (burst 4), then one an hour.
fn five_logins_per_ip() -> String {
    policy(
        "login-ip",
        "Login",
        "{key: Ip, requests: 1, period: 1h, burst: 4}",
    )
}

fn limited(options: Options) -> Options {
    Options {
        rate_limiting: true,
        clock: stopped_clock(),
        ..options
    }
}

/// A wrong-password login; its status, with the refusing bucket for a 429 (`429 login.ip`).
async fn login_from(server: &TestServer, email: &str, forwarded_for: Option<&str>) -> String {
    let mut request = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .json(&json!({"email": email, "password": "wrong password 1"}));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    let answer = read(request.send().await.unwrap()).await;
    match answer.header("ratelimit") {
        Some(limit) => format!(
            "{} {}",
            answer.status,
            limit.split(';').next().unwrap().trim_matches('"')
        ),
        None => answer.status.to_string(),
    }
}

/// Someone new each time, so no identifier limit or lockout is reached.
fn someone(i: usize) -> String {
    format!("someone{i}@example.com")
}

const FIVE_THEN_REFUSED: [&str; 6] = ["401", "401", "401", "401", "401", "429 login.ip"];

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_spraying_run_is_stopped_before_twenty_hashes(pool: PgPool) {
    let server = start(pool, limited(Options::default())).await;
    let before = server.hasher.verifications();
    let mut refused = Vec::new();
    for i in 0..200 {
        let answer = server
            .post(
                "/api/v1/login",
                json!({"email": format!("user{i}@example.com"), "password": "Spring2026!"}),
            )
            .await;
        match answer.status {
            401 => assert!(refused.is_empty(), "a login passed after a refusal"),
            429 => refused.push(answer),
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    // Default (Login, Ip) 30/min with burst 10: eleven at once, then nothing on a stopped clock.
    assert_eq!(server.hasher.verifications() - before, 11);
    assert_eq!(refused.len(), 189);
    let first = &refused[0];
    assert_eq!(first.code(), "rate_limited");
    assert_eq!(first.header("retry-after"), Some("2"));
    assert_eq!(first.header("ratelimit"), Some("\"login.ip\";r=0;t=2"));
    let policy = first.header("ratelimit-policy").unwrap();
    assert!(
        policy.contains(
            "\"login.ip\";q=30;w=60;portcullis-burst=10;portcullis-rule=\"default/login\""
        ),
        "{policy}"
    );
    assert!(policy.contains("\"all.ip\";q=600;w=60"), "{policy}");
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("application/problem+json")
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn forwarded_for_from_an_untrusted_peer_does_not_escape_the_ip_limit(pool: PgPool) {
    let options = Options {
        policies: vec![five_logins_per_ip()],
        ..Options::default()
    };
    let server = start(pool, limited(options)).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let spoofed = format!("203.0.113.{i}");
        statuses.push(login_from(&server, &someone(i), Some(&spoofed)).await);
    }
    assert_eq!(statuses, FIVE_THEN_REFUSED);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn garbage_forwarded_for_behind_a_trusted_proxy_is_keyed_to_the_proxy(pool: PgPool) {
    let options = Options {
        policies: vec![five_logins_per_ip()],
        ..Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()])
    };
    let server = start(pool, limited(options)).await;
    // Addresses the proxy vouches for are clients of their own: six distinct ones all pass.
    for i in 0..6 {
        let client = format!("198.51.100.{i}");
        assert_eq!(login_from(&server, &someone(i), Some(&client)).await, "401");
    }
    // Garbage stops the walk at the proxy: every such request counts against 127.0.0.1.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let garbage = format!("not-an-address-{i}");
        statuses.push(login_from(&server, &someone(10 + i), Some(&garbage)).await);
    }
    assert_eq!(statuses, FIVE_THEN_REFUSED);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_limit_holds_across_two_instances_sharing_redis(pool: PgPool) {
    let clock = stopped_clock();
    let options = || Options {
        policies: vec![five_logins_per_ip()],
        rate_limiting: true,
        clock: clock.clone(),
        ..Options::spec(with_redis)
    };
    let a = start(pool.clone(), options()).await;
    let b = start_sharing(
        pool,
        Options {
            redis_prefix: a.redis_prefix.clone(),
            ..options()
        },
        Some(&a),
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let server = if i % 2 == 0 { &a } else { &b };
        statuses.push(login_from(server, &someone(i), None).await);
    }
    statuses.push(login_from(&a, &someone(5), None).await);
    assert_eq!(statuses, FIVE_THEN_REFUSED);
    assert_eq!(login_from(&b, &someone(6), None).await, "429 login.ip");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_subject_limit_applies_whether_or_not_the_account_exists(pool: PgPool) {
    let options = Options {
        policies: vec![policy(
            "login-user",
            "Login",
            "{key: User, requests: 1, period: 1h, burst: 1}",
        )],
        ..Options::default()
    };
    let server = start(pool.clone(), limited(options)).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let before = server.hasher.verifications();
    for email in ["alice@example.com", "nobody@example.com"] {
        let statuses = [
            login_from(&server, email, None).await,
            login_from(&server, email, None).await,
        ];
        assert_eq!(statuses, ["401", "401"], "{email}");
        // The identifier is spelled differently, canonically the same.
        let third = server
            .post(
                "/api/v1/login",
                json!({"email": format!(" {} ", email.to_uppercase()), "password": "x"}),
            )
            .await;
        assert_eq!(third.status, 429, "{email}: {third:?}");
        assert_eq!(third.header("ratelimit"), Some("\"login.user\";r=0;t=3600"));
    }
    // Refused before hashing: two verifications per identifier.
    assert_eq!(server.hasher.verifications() - before, 4);
    // And not counted towards a lockout (maxFailures 5): a replica sharing the lockout
    // counters but with limits of its own takes two more wrong passwords, four failures in
    // all, and then the right one. Had the 429 counted, the fifth would have locked.
    let replica = start_sharing(
        pool,
        Options {
            redis_prefix: server.redis_prefix.clone(),
            ..Options::default()
        },
        Some(&server),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(login_from(&replica, "alice@example.com", None).await, "401");
    }
    let owner = replica.login("alice@example.com", PASSWORD).await;
    assert_eq!(owner.status, 200, "{owner:?}");
}

/// Two logins per identifier and source at once (burst 1), then one an hour; addresses come
/// from a trusted proxy's `X-Forwarded-For`.
fn two_logins_per_identifier_behind_a_proxy() -> Options {
    Options {
        policies: vec![policy(
            "login-user",
            "Login",
            "{key: User, requests: 1, period: 1h, burst: 1}",
        )],
        ..Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()])
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn one_address_flooding_an_identifier_does_not_stop_its_owner_elsewhere(pool: PgPool) {
    let server = start(pool, limited(two_logins_per_identifier_behind_a_proxy())).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let attacker = Some("203.0.113.7");
    let statuses = [
        login_from(&server, "alice@example.com", attacker).await,
        login_from(&server, "alice@example.com", attacker).await,
        login_from(&server, "alice@example.com", attacker).await,
    ];
    assert_eq!(statuses, ["401", "401", "429 login.user"]);
    let owner = read(
        server
            .http
            .post(format!("{}/api/v1/login", server.base))
            .header("x-forwarded-for", "198.51.100.9")
            .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(owner.status, 200, "{owner:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn guessing_one_identifier_from_many_addresses_is_still_capped(pool: PgPool) {
    let server = start(pool, limited(two_logins_per_identifier_behind_a_proxy())).await;
    let before = server.hasher.verifications();
    let mut statuses = Vec::new();
    for i in 0..30 {
        let source = format!("203.0.113.{i}");
        statuses.push(login_from(&server, "target@example.com", Some(&source)).await);
    }
    // The ceiling across sources is 20 times the per-source limit: 21 at once (burst 20).
    let mut expected = vec!["401".to_owned(); 21];
    expected.extend(std::iter::repeat_n("429 login.user_all".to_owned(), 9));
    assert_eq!(statuses, expected);
    assert_eq!(server.hasher.verifications() - before, 21);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_mail_bomb_through_reset_is_suppressed(pool: PgPool) {
    let loose = policy(
        "loose-reset",
        "PasswordReset",
        "{key: Ip, requests: 100, period: 1m, burst: 100}, {key: User, requests: 100, period: 1m, burst: 100}",
    );
    let options = Options {
        policies: vec![loose],
        ..Options::default()
    };
    let server = start(pool, limited(options)).await;
    assert_eq!(
        server.register("victim@example.com", PASSWORD).await.status,
        201
    );
    for _ in 0..12 {
        assert_eq!(server.request_reset("victim@example.com").await.status, 202);
    }
    // The built-in per-address limit: five at once (burst 4), the rest dropped without a word.
    let mails = server.mails_settled(5).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(server.mails().len(), 5, "{mails:?}");
    let text = server
        .http
        .get(format!("{}/metrics", server.metrics))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("portcullis_mails_suppressed_total{reason=\"address_limit\"} 7"),
        "{text}"
    );
    // A drained bucket cannot silence a security notice: the owner still hears of the change.
    let token = server.mailed_code("Reset code:").await;
    let confirmed = server
        .confirm_reset(&token, "Cobalt-Meadow-58-Whistle")
        .await;
    assert_eq!(confirmed.status, 204, "{confirmed:?}");
    let mails = server.mails_settled(6).await;
    assert_eq!(mails.len(), 6);
    assert!(
        mails.iter().any(|m| m.contains("password was changed")),
        "{mails:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registrations_for_a_victims_mailbox_do_not_silence_their_reset_mail(pool: PgPool) {
    let loose = policy(
        "loose-register",
        "Register",
        "{key: Ip, requests: 100, period: 1m, burst: 100}",
    );
    let options = Options {
        policies: vec![loose],
        ..Options::spec(|s| s.email_verification.required = true)
    };
    let server = start(pool, limited(options)).await;
    assert_eq!(
        server.register("victim@example.com", PASSWORD).await.status,
        202
    );
    // The attacker registers spellings of the victim's mailbox until its signup mail is spent.
    for i in 1..=8 {
        let spelling = format!("victim+{i}@example.com");
        assert_eq!(server.register(&spelling, PASSWORD).await.status, 202);
    }
    let signups = server.mails_settled(5).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(server.mails().len(), 5, "{signups:?}");
    // The victim's own reset request still gets its mail.
    assert_eq!(server.request_reset("victim@example.com").await.status, 202);
    let mails = server.mails_settled(6).await;
    assert_eq!(mails.len(), 6, "{mails:?}");
    assert!(server.mailed_code("Reset code:").await.len() > 10);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn reset_mail_requested_from_many_addresses_is_still_capped_per_mailbox(pool: PgPool) {
    let options = Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()]);
    let server = start(pool, limited(options)).await;
    assert_eq!(
        server.register("victim@example.com", PASSWORD).await.status,
        201
    );
    for i in 0..20 {
        let answer = server
            .http
            .post(format!("{}/api/v1/password-reset", server.base))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": "victim@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
    }
    // The mailbox's recovery ceiling is three times the per-requester limit: 13 at once
    // (burst 12), the rest dropped.
    server.mails_settled(13).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(server.mails().len(), 13);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn many_lockouts_from_many_addresses_send_one_lock_notice_per_window(pool: PgPool) {
    let options = Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()]);
    let server = start(pool, limited(options)).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    // Five failures lock an address; four addresses make four locks.
    let mut locked = 0;
    for source in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"] {
        for _ in 0..6 {
            let status = login_from(&server, "alice@example.com", Some(source)).await;
            locked += usize::from(status != "401");
        }
    }
    assert_eq!(locked, 4, "each address is refused once it is locked");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let notices: Vec<String> = server
        .mails()
        .into_iter()
        .filter(|m| m.contains("temporarily locked"))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn many_lockouts_from_many_addresses_enqueue_one_lock_webhook_per_window(pool: PgPool) {
    let options = Options {
        // Never delivered (nothing listens): only the enqueued rows are counted.
        webhook: Some((
            "http://127.0.0.1:9/hook".to_owned(),
            "whsec-test-key-0123456789abcdef".to_owned(),
        )),
        ..Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()])
    };
    let server = start(pool.clone(), limited(options)).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    for source in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"] {
        for _ in 0..6 {
            login_from(&server, "alice@example.com", Some(source)).await;
        }
    }
    let events: Vec<(String,)> = sqlx::query_as(
        "SELECT event FROM notification_outbox WHERE channel = 'webhook' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(events, vec![("account.locked".to_owned(),)]);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn rotating_the_low_bits_of_an_ipv6_prefix_does_not_escape_the_lockout(pool: PgPool) {
    let loose = policy(
        "loose-login",
        "Login",
        "{key: User, requests: 100, period: 1m, burst: 100}",
    );
    let options = Options {
        policies: vec![loose],
        ..Options::spec(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()])
    };
    let server = start(pool, limited(options)).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let mut statuses = Vec::new();
    for i in 1..=6 {
        // A fresh /64 of one /56 for every guess.
        let source = format!("2001:db8:0:{i:x}::{i:x}");
        statuses.push(login_from(&server, "alice@example.com", Some(&source)).await);
    }
    assert_eq!(statuses, ["401", "401", "401", "401", "401", "429 lockout"]);
}

/// A server whose sessions and limits live on `redis` (the realm has `spec.redis`).
fn on_private_redis(redis: &PrivateRedis, policies: Vec<String>) -> Options {
    Options {
        rate_limiting: true,
        redis_url: Some(redis.url()),
        policies,
        ..Options::spec(with_redis)
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_reset_that_fails_on_redis_after_replacing_the_password_is_still_told_and_audited(
    pool: PgPool,
) {
    let mut redis = PrivateRedis::start().await;
    let options = Options {
        redis_url: Some(redis.url()),
        ..Options::spec(with_redis)
    };
    let server = start(pool.clone(), options).await;
    server.user("alice@example.com").await;
    server.request_reset("alice@example.com").await;
    let token = server.mailed_code("Reset code:").await;
    // Ending the sessions needs Redis; replacing the password does not.
    redis.stop();
    let reset = server
        .confirm_reset(&token, "Cobalt-Meadow-58-Whistle")
        .await;
    assert!(reset.status >= 500, "{reset:?}");
    let notices: Vec<(String,)> = sqlx::query_as(
        "SELECT event FROM notification_outbox WHERE channel = 'email' ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        notices.contains(&("password.changed".to_owned(),)),
        "{notices:?}"
    );
    let (audited,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_events WHERE event_type = 'password_reset'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);
    redis.start_again().await;
}

/// The value of one series in a scrape; fails the test when the series is missing, so that a
/// check for "at least one" cannot pass on an absent series.
fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {name} in {text}"))
        .parse()
        .unwrap()
}

async fn scrape(server: &TestServer) -> String {
    server
        .http
        .get(format!("{}/metrics", server.metrics))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

const DISCOVERY: &str = "/.well-known/openid-configuration";

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn redis_down_closed_refuses_with_503_then_recovers(pool: PgPool) {
    let mut redis = PrivateRedis::start().await;
    // No policy: the built-in limits, which fail closed.
    let server = start(pool, on_private_redis(&redis, Vec::new())).await;
    assert_eq!(server.get(DISCOVERY, &Cred::None).await.status, 200);
    redis.stop();
    let refused = server.get(DISCOVERY, &Cred::None).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.code(), "rate_limit_unavailable");
    assert_eq!(refused.header("retry-after"), Some("5"));
    redis.start_again().await;
    let mut status = 0;
    for _ in 0..100 {
        status = server.get(DISCOVERY, &Cred::None).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the limiter recovers once Redis is back");
    let text = scrape(&server).await;
    assert!(
        series(
            &text,
            "portcullis_rate_limit_store_failures_total{mode=\"closed\"}"
        ) >= 1
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn redis_down_open_lets_register_through_and_counts(pool: PgPool) {
    let mut redis = PrivateRedis::start().await;
    let open = policy(
        "open",
        "Register",
        "{key: Ip, requests: 10, period: 1h, burst: 5}",
    )
    .replace("  rules:", "  failureMode: Open\n  rules:");
    let server = start(pool, on_private_redis(&redis, vec![open])).await;
    redis.stop();
    let registered = server.register("open@example.com", PASSWORD).await;
    assert_eq!(registered.status, 201, "{registered:?}");
    assert_eq!(server.get(DISCOVERY, &Cred::None).await.status, 200);
    let text = scrape(&server).await;
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_rate_limit_store_failures_total{mode=\"open\"} "))
        .unwrap()
        .parse()
        .unwrap();
    // The middleware's decisions for the registration and for discovery (the registration's
    // subject check has no (Register, User) limit, so it asks the store nothing).
    assert_eq!(failures, 2, "{text}");
    assert!(series(&text, "portcullis_store_errors_total{store=\"redis\"}") >= 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_decision_costs_one_redis_round_trip(pool: PgPool) {
    let redis = PrivateRedis::start().await;
    let server = start(pool, on_private_redis(&redis, Vec::new())).await;
    // The first decision loads the script (NOSCRIPT, SCRIPT LOAD, EVALSHA).
    assert_eq!(server.get(DISCOVERY, &Cred::None).await.status, 200);
    let before = redis.calls("evalsha").await;
    for _ in 0..100 {
        assert_eq!(server.get(DISCOVERY, &Cred::None).await.status, 200);
    }
    assert_eq!(redis.calls("evalsha").await - before, 100);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn many_identifiers_failing_from_one_address_make_one_stuffing_source(pool: PgPool) {
    // Limits off: the signal is the lockout script's, whatever the limits let through.
    let server = start(
        pool,
        Options::spec(|s| {
            s.monitoring
                .alert_thresholds
                .credential_stuffing_identifiers_per_ip = 5;
        }),
    )
    .await;
    for i in 0..8 {
        assert_eq!(login_from(&server, &someone(i), None).await, "401");
    }
    // A retry of one identifier is no new identifier.
    assert_eq!(login_from(&server, &someone(0), None).await, "401");
    let text = scrape(&server).await;
    for series in [
        "portcullis_login_failed_identifiers_total 8",
        "portcullis_credential_stuffing_sources_total 1",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}

/// A token-endpoint request for `client_id`, with `secret` as HTTP Basic when given; its status
/// with the refusing bucket for a 429.
async fn token_request(server: &TestServer, client_id: &str, secret: Option<&str>) -> String {
    let mut fields = vec![("grant_type", "client_credentials")];
    let mut request = server.http.post(format!("{}/oauth2/token", server.base));
    match secret {
        Some(secret) => request = request.basic_auth(client_id, Some(secret)),
        None => {
            fields = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", client_id),
            ]
        }
    }
    let answer = read(request.form(&fields).send().await.unwrap()).await;
    match answer.header("ratelimit") {
        Some(limit) => format!(
            "{} {}",
            answer.status,
            limit.split(';').next().unwrap().trim_matches('"')
        ),
        None => answer.status.to_string(),
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn nobody_without_the_secret_can_use_up_a_clients_limit(pool: PgPool) {
    let server = start(
        pool,
        limited(Options {
            clients: crate::oidc::clients(),
            policies: vec![policy(
                "token-client",
                "Token",
                "{key: Client, requests: 1, period: 1h, burst: 2}",
            )],
            ..Options::default()
        }),
    )
    .await;
    // Wrong secrets for the confidential client and bogus grants for the public one: refused
    // as unauthenticated or invalid, never charged to the client's bucket.
    for _ in 0..6 {
        assert_eq!(
            token_request(&server, "web", Some("not-the-secret")).await,
            "401"
        );
        assert_eq!(token_request(&server, "spa", None).await, "400");
    }
    // The app itself still gets its whole allowance (burst 2: three at once), then the limit.
    let secret = server.client_secret("web");
    let answers = [
        token_request(&server, "web", Some(&secret)).await,
        token_request(&server, "web", Some(&secret)).await,
        token_request(&server, "web", Some(&secret)).await,
        token_request(&server, "web", Some(&secret)).await,
    ];
    assert_eq!(answers, ["200", "200", "200", "429 token.client"]);
}
