//! What the server refuses to start with: features this version does not have yet, durations
//! past their maxima, and proxy settings that would trust everyone; and how it reads a config
//! a newer operator wrote.

use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::wiring;
use portcullis_crds::RealmSettings;
use portcullis_crds::realm::AuthRealmSpec;
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
        rate_limiting: false,
        webhook_loopback: true,
    })
    .err()
    .map(|e| e.to_string())
}

fn refusal_of(pool: PgPool, customize: impl FnOnce(&mut AuthRealmSpec)) -> Option<String> {
    refusal(pool, settings(customize))
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_that_requires_totp_starts(pool: PgPool) {
    assert_eq!(refusal_of(pool, |s| s.mfa.totp.required = true), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_with_clients_or_social_login_starts_and_one_signing_with_rs256_refuses(
    pool: PgPool,
) {
    let client = |first_party: bool| {
        format!(
            "{}\n---\napiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {{name: web, namespace: shop}}
spec:
  realmRef: {{name: test}}
  clientId: shop-web
  type: Public
  firstParty: {first_party}
  redirectUris: [\"https://app.example.com/cb\"]
",
            crate::support::BASE_REALM
        )
    };
    let settings = |yaml: String| {
        RealmSettings::from_manifests(&portcullis_crds::parse_manifests(&yaml).unwrap()).unwrap()
    };
    assert_eq!(refusal(pool.clone(), settings(client(true))), None);
    assert_eq!(refusal(pool.clone(), settings(client(false))), None);
    let providers = serde_json::from_value(serde_json::json!([
        {"name": "github", "type": "GitHub", "clientId": "x",
         "clientSecretRef": {"name": "gh", "key": "secret"}}
    ]))
    .unwrap();
    assert_eq!(
        refusal_of(pool.clone(), move |s| s.social_providers = providers),
        None
    );
    let error = refusal_of(pool, |s| {
        s.tokens.signing_algorithm = portcullis_crds::realm::SigningAlgorithm::RS256;
    })
    .expect("refused");
    assert!(error.contains("spec.tokens.signingAlgorithm"), "{error}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_with_a_rate_limit_policy_starts_and_enforces_it(pool: PgPool) {
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
    assert_eq!(settings.rate_limits.policies, ["strict"]);
    assert_eq!(refusal(pool, settings), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_default_realm_starts(pool: PgPool) {
    assert_eq!(refusal_of(pool, |_| {}), None);
}

#[test]
fn a_duration_past_its_maximum_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("realm.yaml");
    let yaml = crate::support::BASE_REALM.replace(
        "  lockout: {progressiveDelay: {afterFailures: 0}}",
        "  lockout: {progressiveDelay: {afterFailures: 0}}\n  sessions: {absoluteTimeout: 4000000d}",
    );
    std::fs::write(&path, yaml).unwrap();
    let error = startup::load_settings(&[path], startup::Reading::Tolerant)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("sessions.absoluteTimeout must be at most 400d"),
        "{error}"
    );
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

/// A realm config as a newer operator might write it: a defaulted field this version does not
/// know in every kind (and at several depths), and a kind it does not know.
pub const NEWER_OPERATORS_CONFIG: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: test, namespace: auth}
spec:
  issuer: http://auth.localhost
  database: {secretRef: {name: db}}
  emailVerification: {required: false}
  passwordPolicy: {bcryptCost: 10, breachCheck: {mode: Disabled}, futureHashing: argon2}
  lockout: {maxFailures: 5, futureCaptcha: {enabled: true}}
  futureTopLevel: 1
---
apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {name: keep, namespace: auth}
spec:
  targetRef: {kind: AuthRealm, name: test}
  schedule: \"0 3 * * *\"
  rules: {auditLogs: {retainFor: 30d, futureArchive: true}}
  futureWindow: 1h
---
apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: strict, namespace: auth}
spec:
  targetRef: {kind: AuthRealm, name: test}
  rules:
    - name: login
      routes: [Login]
      limits: [{key: Ip, requests: 10, period: 1m, futureJitter: 1s}]
  futureShadowMode: true
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: web, namespace: auth}
spec:
  realmRef: {name: test}
  clientId: web
  type: Public
  redirectUris: [\"https://app.example.com/cb\"]
  futureDpop: required
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthFutureThing
metadata: {name: later, namespace: auth}
spec: {anything: 1}
";

#[test]
fn unknown_fields_of_every_kind_are_left_out_when_serving_and_refused_when_checking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("realm.yaml");
    std::fs::write(&path, NEWER_OPERATORS_CONFIG).unwrap();
    let paths = [path];
    let loaded = startup::load_settings(&paths, startup::Reading::Tolerant).unwrap();
    let ignored: Vec<String> = loaded
        .ignored
        .iter()
        .map(|i| format!("{} {}", i.kind, i.path))
        .collect();
    let expected = [
        "AuthRealm spec.passwordPolicy.futureHashing",
        "AuthRealm spec.lockout.futureCaptcha",
        "AuthRealm spec.futureTopLevel",
        "RetentionPolicy spec.rules.auditLogs.futureArchive",
        "RetentionPolicy spec.futureWindow",
        "RateLimitPolicy spec.rules[0].limits[0].futureJitter",
        "RateLimitPolicy spec.futureShadowMode",
        "AuthClient spec.futureDpop",
        "AuthFutureThing ",
    ];
    for field in expected {
        assert!(ignored.iter().any(|i| i == field), "{field}: {ignored:?}");
    }
    assert_eq!(ignored.len(), expected.len(), "{ignored:?}");
    // What is known is read as written.
    let settings = loaded.settings;
    assert_eq!(settings.spec.password_policy.bcrypt_cost, 10);
    assert_eq!(settings.spec.lockout.max_failures, 5);
    assert_eq!(settings.retention.as_ref().unwrap().policy, "keep");
    assert_eq!(settings.rate_limits.policies, ["strict"]);
    assert_eq!(settings.clients[0].client_id, "web");

    // check-config reads files a person wrote: each unknown field is a typo, all named.
    let error = startup::load_settings(&paths, startup::Reading::Strict)
        .unwrap_err()
        .to_string();
    for field in [
        "spec.passwordPolicy.futureHashing",
        "spec.futureWindow",
        "spec.rules[0].limits[0].futureJitter",
        "spec.futureDpop",
        "AuthFutureThing",
    ] {
        assert!(error.contains(field), "{field}: {error}");
    }
}

#[test]
fn a_wrong_value_in_a_known_field_is_refused_even_when_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("realm.yaml");
    let broken = NEWER_OPERATORS_CONFIG.replace("bcryptCost: 10", "bcryptCost: ten");
    std::fs::write(&path, broken).unwrap();
    let error = startup::load_settings(&[path], startup::Reading::Tolerant)
        .unwrap_err()
        .to_string();
    assert!(error.contains("AuthRealm \"test\" is invalid"), "{error}");
    assert!(error.contains("\"ten\""), "{error}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_with_a_webhook_but_no_webhook_secrets_refuses_to_start(pool: PgPool) {
    let error = refusal_of(pool, |s| {
        if let Some(n) = s.notifications.as_mut() {
            n.webhook = Some(portcullis_crds::realm::WebhookSpec {
                url_secret_ref: serde_json::from_value(serde_json::json!({"name": "hook"}))
                    .unwrap(),
            });
        }
    })
    .expect("refused");
    assert!(error.contains("webhook-url and webhook-secret"), "{error}");
}
