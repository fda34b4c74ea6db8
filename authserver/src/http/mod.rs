//! HTTP: routers, extractors, middleware and the one error mapping. `public_router` and
//! `admin_router` build the two listeners' apps from state, so tests drive them directly.

pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod state;

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
