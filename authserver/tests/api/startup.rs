//! What the server refuses to start with: features this version does not have yet, durations
//! past what time arithmetic supports, and proxy settings that would trust everyone.

use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::wiring;
use portcullis_crds::realm::AuthRealmSpec;
use portcullis_crds::{GoDuration, RealmSettings};
use sqlx::PgPool;

use crate::support::settings;

/// The startup error for `settings`, or `None` when the server would start.
fn refusal(pool: PgPool, settings: RealmSettings) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let (clock, random) = (wiring::system_clock(), wiring::os_random());
    let (secrets, _) =
        secrets_dir::load(dir.path(), &settings, Some((&random, clock.now()))).unwrap();
    startup::build(ServiceParts {
        settings,
        secrets,
        db: Db::from_pool(pool),
        kv: Kv::memory(clock.clone()),
        clock,
        random,
        mail_dir: Some(dir.path().join("mail")),
        breach_list: None,
        hash_permits: 1,
    })
    .err()
    .map(|e| e.to_string())
}

fn refusal_of(pool: PgPool, customize: impl FnOnce(&mut AuthRealmSpec)) -> Option<String> {
    refusal(pool, settings(customize))
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_that_requires_totp_refuses_to_start_naming_the_feature(pool: PgPool) {
    let error = refusal_of(pool, |s| s.mfa.totp.required = true).expect("refused");
    assert!(error.contains("mfa.totp.required"), "{error}");
    assert!(error.contains("not implemented"), "{error}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_with_oidc_clients_or_social_login_refuses_to_start(pool: PgPool) {
    let clients = serde_json::from_value(serde_json::json!([
        {"clientId": "web", "type": "Public", "redirectUris": ["https://app.example.com/cb"]}
    ]))
    .unwrap();
    let error = refusal_of(pool.clone(), move |s| s.clients = clients).expect("refused");
    assert!(error.contains("spec.clients"), "{error}");
    let providers = serde_json::from_value(serde_json::json!([
        {"name": "github", "type": "GitHub", "clientId": "x",
         "clientSecretRef": {"name": "gh", "key": "secret"}}
    ]))
    .unwrap();
    let error = refusal_of(pool, move |s| s.social_providers = providers).expect("refused");
    assert!(error.contains("spec.socialProviders"), "{error}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_with_a_rate_limit_policy_refuses_to_start_naming_the_policy(pool: PgPool) {
    let yaml = format!(
        "{}\n---\n{}",
        crate::support::BASE_REALM,
        "apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: strict}
spec:
  targetRef: {kind: AuthRealm, name: test}
  rules:
    - name: login
      routes: [Login]
      limits: [{key: Ip, requests: 10, period: 1m}]
"
    );
    let manifests = portcullis_crds::parse_manifests(&yaml).unwrap();
    let settings = RealmSettings::from_manifests(&manifests).unwrap();
    let error = refusal(pool, settings).expect("refused");
    assert!(error.contains("RateLimitPolicy strict"), "{error}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_default_realm_starts(pool: PgPool) {
    assert_eq!(refusal_of(pool, |_| {}), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_duration_past_what_dates_can_hold_is_refused_naming_the_field(pool: PgPool) {
    let huge = GoDuration::parse("4000000d").unwrap();
    let error = refusal_of(pool, move |s| s.sessions.absolute_timeout = huge).expect("refused");
    assert!(error.contains("sessions.absoluteTimeout"), "{error}");
    assert!(error.contains("4000000d"), "{error}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn trusting_every_address_as_a_proxy_is_refused(pool: PgPool) {
    for all in ["0.0.0.0/0", "::/0"] {
        let error = refusal_of(pool.clone(), move |s| {
            s.trusted_proxies = vec![all.to_owned()]
        })
        .expect("refused");
        assert!(error.contains(all), "{error}");
    }
}
