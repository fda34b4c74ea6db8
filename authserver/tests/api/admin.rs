//! The admin API refuses every request without the exact admin token, on every route.

use portcullis_authserver::http::routes::admin::ROUTES;
use reqwest::Method;
use sqlx::PgPool;

use crate::support::{Options, read, start};

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn every_admin_route_refuses_a_missing_or_wrong_token(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let token = server.admin_token.clone();
    let wrong = [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {}", &token[..token.len() - 1])),
        Some(format!("Basic {token}")),
    ];
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        for authorization in &wrong {
            let mut request = server
                .http
                .request(method.clone(), format!("{}{path}", server.admin));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let answer = read(request.send().await.unwrap()).await;
            assert_eq!(answer.status, 401, "{method} {path} with {authorization:?}");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer realm=\"portcullis-admin\""),
                "{method} {path}"
            );
        }
    }
    // The scheme is case-insensitive: the right token in lowercase `bearer` is accepted.
    let accepted = read(
        server
            .http
            .get(format!("{}/admin/v1/audit/verify", server.admin))
            .header("authorization", format!("bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    // Each refusal was counted and audited.
    let refusals = ROUTES.len() * wrong.len();
    let metrics = read(
        server
            .http
            .get(format!("{}/metrics", server.metrics))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(&format!("portcullis_admin_auth_failures_total {refusals}")),
        "{text}"
    );
    let export = server
        .admin_call(
            Method::GET,
            "/admin/v1/audit?type=admin_auth_failed&limit=1000",
        )
        .await;
    let lines = export.body.as_str().unwrap_or_default().lines().count();
    assert_eq!(lines, refusals);
}
