//! The unit tests' world: a [`Core`] on in-memory stores, a manual clock, a seeded generator
//! and a recording outbox; no PostgreSQL, Redis or network.

use std::sync::{Arc, Mutex};

use portcullis_crds::realm::AuthRealmSpec;
use portcullis_crds::{RealmSettings, parse_manifests};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use time::macros::datetime;
use uuid::Uuid;

use super::AuthError;
use super::breach::BreachChecker;
use super::core::{Core, CoreParts};
use super::hashing::{PasswordHasher, PoolSize};
use super::keys::{Pepper, SigningKey};
use super::login::{LoginOutcome, LoginSuccess};
use super::oidc::clients::ClientRegistry;
use super::principal::RequestMeta;
use super::registration::{Registration, register};
use super::tokens::KeyRing;
use crate::clock::Clock;
use crate::mail::{Mail, Outbox, Sent};
use crate::metrics::Metrics;
use crate::random::Random;
use crate::store::Db;
use crate::store::kv::Kv;

pub const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";
pub const OTHER_PASSWORD: &str = "Saffron-Canyon-97-Lantern";

const REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: unit}
spec:
  issuer: https://auth.example.com
  database: {secretRef: {name: db}}
  passwordPolicy: {breachCheck: {mode: Disabled}}
  emailVerification: {required: false}
  lockout: {progressiveDelay: {afterFailures: 0}}
  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@auth.example.com}}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {name: account, required: true, description: Run the account.}
";

pub struct Fixture {
    pub core: Core,
    pub clock: Clock,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Fixture {
    pub fn mails(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Whether the session with public id `id` is stored (not ended, not expired).
    pub async fn session_lives(&self, id: &str) -> bool {
        self.core.kv.session(id).await.unwrap().is_some()
    }

    /// The token of the newest verification or reset mail.
    pub fn mailed_token(&self) -> String {
        self.mails()
            .into_iter()
            .rev()
            .find_map(|sent| match sent.mail {
                Mail::VerifyEmail { token, .. } | Mail::PasswordReset { token } => Some(token),
                _ => None,
            })
            .expect("a mail with a token")
    }
}

/// A core for the default test realm changed by `customize`; bcrypt at its lowest cost.
pub fn fixture(customize: impl FnOnce(&mut AuthRealmSpec)) -> Fixture {
    fixture_from(REALM, customize)
}

/// The OAuth clients of [`fixture_with_clients`]: `web` (confidential, secret `web-secret`)
/// and `spa` (public), both first-party, and `partner` (public, needs consent), all
/// redirecting to `https://app.example.com/cb`.
pub const CLIENTS: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: web}
spec:
  realmRef: {name: unit}
  clientId: web
  type: Confidential
  firstParty: true
  redirectUris: [\"https://app.example.com/cb\"]
  postLogoutRedirectUris: [\"https://app.example.com/bye\"]
  grantTypes: [authorization_code, refresh_token, client_credentials]
  scopes: [openid, profile, email, offline_access, api]
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: spa}
spec:
  realmRef: {name: unit}
  clientId: spa
  type: Public
  firstParty: true
  redirectUris: [\"https://app.example.com/cb\"]
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: partner}
spec:
  realmRef: {name: unit}
  clientId: partner
  type: Public
  redirectUris: [\"https://app.example.com/cb\"]
";

/// A core for the default test realm with the clients of [`CLIENTS`].
pub fn fixture_with_clients() -> Fixture {
    fixture_from(&format!("{REALM}---\n{CLIENTS}"), |_| {})
}

fn fixture_from(yaml: &str, customize: impl FnOnce(&mut AuthRealmSpec)) -> Fixture {
    let mut manifests = parse_manifests(yaml).unwrap();
    customize(&mut manifests.realms[0].spec);
    let settings = RealmSettings::from_manifests(&manifests).unwrap();
    let secrets = settings
        .clients
        .iter()
        .map(|c| (c.client_id.clone(), format!("{}-secret", c.client_id)))
        .collect();
    let clients = ClientRegistry::new(&settings.clients, &secrets).unwrap();
    let clock = Clock::manual(datetime!(2030-01-01 0:00 UTC));
    let random = Random::new(ChaCha20Rng::seed_from_u64(42));
    let peppers = vec![Pepper {
        version: "v1".into(),
        key: vec![7; 32],
    }];
    let (outbox, sent) = Outbox::recording();
    let metrics = Arc::new(Metrics::default());
    let limits = Arc::new(crate::auth::limits::Limiter::new(
        crate::auth::limits::LimiterParts {
            limits: settings.rate_limits.clone(),
            enabled: false,
            redis: None,
            prefix: "unit:".into(),
            clock: clock.clone(),
            metrics: metrics.clone(),
        },
    ));
    let db = Db::memory();
    let audit_keys = portcullis_audit::AuditKeys::parse(&format!(
        "v1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [5u8; 32])
    ))
    .unwrap();
    let audit = db.audit_log(Arc::new(audit_keys), &settings.name);
    let core = Core::new(CoreParts {
        settings: Arc::new(settings),
        db,
        kv: Kv::memory(clock.clone()),
        hasher: PasswordHasher::new(
            peppers.clone(),
            4,
            PoolSize::with_permits(2),
            random.clone(),
        )
        .unwrap(),
        breach: BreachChecker::Disabled,
        keys: Arc::new(
            KeyRing::new(
                &[SigningKey::generate(&random, clock.now())],
                crate::wiring::signing_random(),
            )
            .unwrap(),
        ),
        outbox,
        clock: clock.clone(),
        random,
        metrics,
        csrf_key: vec![9; 32],
        clients,
        limits,
        audit,
        key_fingerprints: crate::auth::key_fingerprints::fingerprints(&peppers, &[]),
    });
    Fixture { core, clock, sent }
}

pub fn meta() -> RequestMeta {
    RequestMeta {
        ip: "192.0.2.1".into(),
        user_agent: "unit".into(),
        device: None,
    }
}

pub fn registration(email: &str, password: &str) -> Registration {
    Registration {
        email: email.into(),
        password: password.into(),
        consents: [("account".to_owned(), true)].into(),
        policy_version: Some("1".into()),
        display_name: None,
        pending_request: None,
        meta: meta(),
    }
}

/// Registers `email` with [`PASSWORD`]; returns the account id.
pub async fn registered(f: &Fixture, email: &str) -> Uuid {
    register(&f.core, registration(email, PASSWORD))
        .await
        .unwrap();
    f.core.db.user_by_email(email).await.unwrap().unwrap().id
}

/// Logs in with a password where no second factor can be asked (the in-memory database has
/// no MFA store): the session and tokens, or the refusal.
pub async fn login(
    core: &Core,
    email: &str,
    password: &str,
    meta: &RequestMeta,
    previous: Option<&str>,
) -> Result<LoginSuccess, AuthError> {
    match super::login::login(core, email, password, meta, previous).await? {
        LoginOutcome::Signed(success) => Ok(success),
        other => panic!("a second factor was asked: {other:?}"),
    }
}

/// Logs `email` in, registering it first when needed.
pub async fn signed_in(f: &Fixture, email: &str) -> LoginSuccess {
    if f.core.db.user_by_email(email).await.unwrap().is_none() {
        registered(f, email).await;
    }
    login(&f.core, email, PASSWORD, &meta(), None)
        .await
        .unwrap()
}
