//! The OpenID Connect provider's endpoints over real HTTP, with clients registered by AuthClient
//! documents: discovery, client authentication, client credentials, UserInfo, revocation and
//! introspection. The full code flow is driven by a relying-party library in `oidc_rp`.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::*;

/// A confidential first-party client `web` with every grant, a public first-party `spa`, and a
/// confidential third-party `partner` that needs the user's consent.
pub fn clients() -> Vec<String> {
    vec![
        "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: web}
spec:
  realmRef: {name: test}
  clientId: web
  type: Confidential
  firstParty: true
  redirectUris: [\"http://localhost:7777/cb\"]
  postLogoutRedirectUris: [\"http://localhost:7777/bye\"]
  grantTypes: [authorization_code, refresh_token, client_credentials]
  scopes: [openid, profile, email, offline_access, api]
"
        .to_owned(),
        "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: spa}
spec:
  realmRef: {name: test}
  clientId: spa
  type: Public
  firstParty: true
  redirectUris: [\"http://localhost:7777/spa\"]
"
        .to_owned(),
        "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: partner}
spec:
  realmRef: {name: test}
  clientId: partner
  type: Confidential
  redirectUris: [\"http://localhost:7777/cb\"]
  scopes: [openid, email, offline_access]
"
        .to_owned(),
    ]
}

pub async fn server(pool: PgPool) -> TestServer {
    start(
        pool,
        Options {
            clients: clients(),
            ..Options::default()
        },
    )
    .await
}

async fn form(
    server: &TestServer,
    path: &str,
    basic: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> Answer {
    let mut request = server
        .http
        .post(format!("{}{path}", server.base))
        .form(fields);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    read(request.send().await.unwrap()).await
}

async fn client_token(server: &TestServer) -> String {
    let secret = server.client_secret("web");
    let answer = form(
        server,
        "/oauth2/token",
        Some(("web", &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["access_token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn discovery_names_the_issuer_the_client_used_and_every_token_carries_it(pool: PgPool) {
    let server = server(pool).await;
    let metadata = server
        .get("/.well-known/openid-configuration", &Cred::None)
        .await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.body["issuer"], server.base.as_str());
    assert_eq!(
        metadata.header("cache-control"),
        Some("public, max-age=300")
    );
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
    ] {
        let url = metadata.body[endpoint].as_str().unwrap();
        assert!(url.starts_with(&server.base), "{endpoint}: {url}");
    }
    let token = client_token(&server).await;
    let introspected = form(
        &server,
        "/oauth2/introspect",
        Some(("web", &server.client_secret("web"))),
        &[("token", &token)],
    )
    .await;
    assert_eq!(introspected.body["iss"], metadata.body["issuer"]);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn client_credentials_by_basic_or_post_give_a_bare_access_token(pool: PgPool) {
    let server = server(pool).await;
    let secret = server.client_secret("web");
    let basic = form(
        &server,
        "/oauth2/token",
        Some(("web", &secret)),
        &[("grant_type", "client_credentials"), ("scope", "api")],
    )
    .await;
    let post = form(
        &server,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "web"),
            ("client_secret", &secret),
        ],
    )
    .await;
    for answer in [basic, post] {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["token_type"], "Bearer");
        assert_eq!(answer.body["scope"], "api");
        assert!(answer.body.get("refresh_token").is_none());
        assert!(answer.body.get("id_token").is_none());
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.header("pragma"), Some("no-cache"));
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_secret_or_two_methods_or_a_public_client_are_refused(pool: PgPool) {
    let server = server(pool).await;
    let secret = server.client_secret("web");
    let wrong = form(
        &server,
        "/oauth2/token",
        Some(("web", "not-the-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (wrong.status, &wrong.body["error"]),
        (401, &json!("invalid_client"))
    );
    assert!(
        wrong
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    let both = form(
        &server,
        "/oauth2/token",
        Some(("web", &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        (both.status, &both.body["error"]),
        (400, &json!("invalid_request"))
    );
    let public = form(
        &server,
        "/oauth2/token",
        None,
        &[("grant_type", "client_credentials"), ("client_id", "spa")],
    )
    .await;
    assert_eq!(
        (public.status, &public.body["error"]),
        (400, &json!("unauthorized_client"))
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_client_token_opens_neither_the_account_api_nor_userinfo(pool: PgPool) {
    let server = server(pool).await;
    let token = client_token(&server).await;
    let me = server.get("/api/v1/me", &Cred::Bearer(token.clone())).await;
    assert_eq!(me.status, 401);
    let userinfo = server.get("/oauth2/userinfo", &Cred::Bearer(token)).await;
    assert_eq!(userinfo.status, 403);
    assert!(
        userinfo
            .header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    let none = server.get("/oauth2/userinfo", &Cred::None).await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn introspection_needs_a_confidential_client_and_a_revoked_token_is_only_inactive(
    pool: PgPool,
) {
    let server = server(pool).await;
    let secret = server.client_secret("web");
    let token = client_token(&server).await;
    let public = form(
        &server,
        "/oauth2/introspect",
        None,
        &[("client_id", "spa"), ("token", &token)],
    )
    .await;
    assert_eq!(
        (public.status, &public.body["error"]),
        (401, &json!("invalid_client"))
    );
    let active = form(
        &server,
        "/oauth2/introspect",
        Some(("web", &secret)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(active.body["active"], true, "{active:?}");
    assert_eq!(active.body["client_id"], "web");
    assert_eq!(active.body["sub"], "web");
    let revoked = form(
        &server,
        "/oauth2/revoke",
        Some(("web", &secret)),
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(revoked.status, 200);
    let inactive = form(
        &server,
        "/oauth2/introspect",
        Some(("web", &secret)),
        &[("token", &token)],
    )
    .await;
    assert_eq!(inactive.body, json!({"active": false}));
    let garbage = form(
        &server,
        "/oauth2/introspect",
        Some(("web", &secret)),
        &[("token", "garbage")],
    )
    .await;
    assert_eq!(garbage.body, json!({"active": false}));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn introspection_of_another_clients_token_is_only_inactive(pool: PgPool) {
    let server = server(pool).await;
    let token = client_token(&server).await;
    let by_partner = form(
        &server,
        "/oauth2/introspect",
        Some(("partner", &server.client_secret("partner"))),
        &[("token", &token)],
    )
    .await;
    assert_eq!(by_partner.status, 200);
    assert_eq!(by_partner.body, json!({"active": false}));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn revocation_answers_200_for_unknown_tokens_and_leaves_other_clients_tokens_alone(
    pool: PgPool,
) {
    let server = server(pool).await;
    let secret = server.client_secret("web");
    let unknown = form(
        &server,
        "/oauth2/revoke",
        Some(("web", &secret)),
        &[("token", "never-issued")],
    )
    .await;
    assert_eq!(unknown.status, 200);
    let token = client_token(&server).await;
    let by_other = form(
        &server,
        "/oauth2/revoke",
        None,
        &[("client_id", "spa"), ("token", &token)],
    )
    .await;
    assert_eq!(by_other.status, 200);
    let still: Value = form(
        &server,
        "/oauth2/introspect",
        Some(("web", &secret)),
        &[("token", &token)],
    )
    .await
    .body;
    assert_eq!(still["active"], true, "another client cannot revoke it");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_refused_logout_request_is_headed_as_a_sign_out_not_a_sign_in(pool: PgPool) {
    let server = server(pool).await;
    let refused = server
        .http
        .get(format!(
            "{}/oauth2/logout?client_id=web&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("This sign-out request cannot continue"),
        "{html}"
    );
    assert!(!html.contains("sign-in request"), "{html}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_authorization_request_with_an_8_kib_state_is_refused_and_no_login_is_pending(
    pool: PgPool,
) {
    let server = server(pool).await;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", "spa")
        .append_pair("redirect_uri", "http://localhost:7777/spa")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &"s".repeat(8 * 1024))
        .finish();
    let answer = server
        .http
        .get(format!("{}/oauth2/authorize?{query}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://localhost:7777/spa?error=invalid_request"),
        "{location}"
    );
    assert!(!location.contains("/login"), "nothing pending: {location}");
    assert!(location.len() < 512, "the state is not echoed: {location}");
}
