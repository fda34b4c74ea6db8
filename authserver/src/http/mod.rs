//! HTTP: routers, extractors, middleware, cookies and the one error mapping. `public_router`
//! and `admin_router` build the listeners' apps from state; `serve` runs them.

pub mod caller;
pub mod client_ip;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod state;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;

use error::ApiError;
use extract::BODY_LIMIT;
use state::AppState;

async fn not_found() -> impl IntoResponse {
    ApiError::not_found()
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::method_not_allowed()
}

fn with_layers(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(
            middleware::problem_for_every_error,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(middleware::body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .with_state(state)
}

/// The public listener's app.
pub fn public_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/openapi.json", get(openapi::serve))
        .merge(routes::accounts::router())
        .merge(routes::me::router())
        .merge(routes::oauth::router());
    with_layers(routes, state)
}

/// The admin listener's app (never exposed by the Ingress).
pub fn admin_router(state: AppState) -> Router {
    with_layers(routes::admin::router(), state)
}

/// Serves the public and admin apps until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    state: AppState,
    public: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public_app =
        public_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let admin_app = admin_router(state).into_make_service_with_connect_info::<SocketAddr>();
    let public = axum::serve(public, public_app).with_graceful_shutdown(wait(rx.clone()));
    let admin = axum::serve(admin, admin_app).with_graceful_shutdown(wait(rx));
    tokio::try_join!(public.into_future(), admin.into_future())?;
    Ok(())
}
