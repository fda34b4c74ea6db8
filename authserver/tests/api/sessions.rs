//! Sessions in Redis under concurrent use: what one request writes must not undo what another
//! just ended.

use std::sync::Arc;
use std::time::Duration;

use portcullis_authserver::auth::core::Core;
use portcullis_authserver::auth::principal::RequestMeta;
use portcullis_authserver::auth::registration::{Registration, register};
use portcullis_authserver::auth::{account, login, session_auth};
use portcullis_authserver::clock::Clock;
use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::wiring;

use crate::support::{PASSWORD, settings, stopped_clock};

/// The use cases over Redis (and an in-memory account database), on `clock`.
async fn core_on_redis(clock: &Clock) -> Arc<Core> {
    portcullis_authserver::install_crypto_provider();
    let settings = settings(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let random = wiring::os_random();
    let (secrets, _) =
        secrets_dir::load(dir.path(), &settings, Some((&random, clock.now()))).unwrap();
    let redis_url = std::env::var("REDIS_URL").unwrap();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db: Db::memory(),
        kv: Kv::redis(&redis_url, &prefix).await.unwrap(),
        clock: clock.clone(),
        random,
        mail_dir: Some(dir.path().join("mail")),
        breach_list: None,
        hash_permits: 2,
        rate_limiting: false,
        webhook_loopback: true,
    })
    .unwrap();
    service.state.core
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_touched_while_it_is_revoked_stays_revoked() {
    let clock = stopped_clock();
    let core = core_on_redis(&clock).await;
    let registration = Registration {
        email: "alice@example.com".into(),
        password: PASSWORD.into(),
        consents: [("account".to_owned(), true)].into(),
        policy_version: Some("1".into()),
        display_name: None,
        pending_request: None,
        meta: RequestMeta::default(),
    };
    register(&core, registration).await.unwrap();
    let meta = RequestMeta::default();
    for round in 0..50 {
        let login::LoginOutcome::Signed(session) =
            login::login(&core, "alice@example.com", PASSWORD, &meta, None)
                .await
                .unwrap()
        else {
            panic!("no second factor was set up");
        };
        // Due for a touch (written back at most once a minute).
        clock.advance(Duration::from_secs(61));
        let principal = session_auth::authenticate_session(&core, &session.session_secret)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(61));
        let (touching, revoking) = {
            let (a, b) = (core.clone(), core.clone());
            let secret = session.session_secret.clone();
            let principal = principal.clone();
            let meta = meta.clone();
            tokio::join!(
                tokio::spawn(async move { session_auth::authenticate_session(&a, &secret).await }),
                tokio::spawn(async move { account::logout(&b, &principal, &meta).await })
            )
        };
        let _ = touching.unwrap();
        revoking.unwrap().unwrap();
        assert!(
            session_auth::authenticate_session(&core, &session.session_secret)
                .await
                .is_err(),
            "round {round}: the touch brought a logged-out session back"
        );
    }
}
