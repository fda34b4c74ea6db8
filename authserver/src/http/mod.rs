//! HTTP: routers, extractors, middleware, cookies, the listeners and the one error mapping.
//! `public_router`, `admin_router` and `metrics_router` build the listeners' apps from state;
//! `serve` runs them.

pub mod caller;
pub mod client_auth;
pub mod client_ip;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod listener;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod tls;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;

use error::ApiError;
use extract::BODY_LIMIT;
pub use listener::ConnectionLimits;
pub use middleware::RequestLimits;
use state::AppState;
use tokio::net::TcpListener;

async fn not_found() -> impl IntoResponse {
    ApiError::not_found()
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::method_not_allowed()
}

/// Which listener an app serves: only the public one is rate limited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Public,
    Internal,
}

fn with_layers(
    router: Router<AppState>,
    state: AppState,
    limits: RequestLimits,
    listener: Listener,
) -> Router {
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |request, next| {
            middleware::deadlines(limits, request, next)
        }))
        .layer(axum::middleware::from_fn(
            middleware::problem_for_every_error,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(middleware::body_limit));
    // Inside `observe` (which counts and logs its 429s) and before any body is read.
    let router = if listener == Listener::Public {
        router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::enforce,
        ))
    } else {
        router
    };
    router
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

fn public_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    utoipa_axum::router::OpenApiRouter::with_openapi(openapi::skeleton())
        .merge(openapi::router())
        .merge(routes::accounts::router())
        .merge(routes::me::router())
        .merge(routes::privacy::router())
        .merge(routes::oauth::router())
        .merge(routes::oidc::router())
        .merge(crate::ui::router())
        .split_for_parts()
}

/// The operations the public listener serves (before the served document's additions).
pub fn public_openapi() -> utoipa::openapi::OpenApi {
    public_routes().1
}

/// The public listener's app, and the OpenAPI document of exactly its routes.
pub fn public_router(state: AppState, limits: RequestLimits) -> Router {
    let (routes, api) = public_routes();
    let document = std::sync::Arc::new(openapi::document(&api, &state.web.issuer));
    with_layers(
        routes.layer(axum::Extension(document)),
        state,
        limits,
        Listener::Public,
    )
}

/// The admin listener's app: health, readiness and the admin API (never exposed by the
/// Ingress).
pub fn admin_router(state: AppState, limits: RequestLimits) -> Router {
    let routes = Router::new()
        .merge(routes::health::router())
        .merge(routes::admin::router());
    with_layers(routes, state, limits, Listener::Internal)
}

/// The metrics listener's app: `/metrics` only.
pub fn metrics_router(state: AppState, limits: RequestLimits) -> Router {
    with_layers(routes::metrics::router(), state, limits, Listener::Internal)
}

/// The three listeners.
#[derive(Debug)]
pub struct Listeners {
    /// Public API.
    pub public: TcpListener,
    /// TLS on the public listener (`None`: plain HTTP, e.g. behind a terminating proxy in
    /// development). The admin and metrics listeners stay plain HTTP inside the pod network.
    pub public_tls: Option<tls::PublicTls>,
    /// Health, readiness, admin API.
    pub admin: TcpListener,
    /// Metrics.
    pub metrics: TcpListener,
}

/// Connection and request limits of the listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// The public listener's connections.
    pub public: ConnectionLimits,
    /// The admin and metrics listeners' connections (each).
    pub internal: ConnectionLimits,
    /// Every request's deadlines.
    pub requests: RequestLimits,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            public: ConnectionLimits::PUBLIC,
            internal: ConnectionLimits::INTERNAL,
            requests: RequestLimits::default(),
        }
    }
}

/// File descriptors kept free of the listeners: PostgreSQL and Redis pools, mail, logs.
const RESERVED_FILES: u64 = 256;

impl ServeLimits {
    /// These limits within `open_files` file descriptors (`None`: unlimited): the admin and
    /// metrics listeners and [`RESERVED_FILES`] keep theirs, and the public listener gets at
    /// most the rest (at least 16). Returns whether the public cap was lowered.
    pub fn fit_to(mut self, open_files: Option<u64>) -> (Self, bool) {
        let Some(open_files) = open_files else {
            return (self, false);
        };
        let internal = u64::try_from(self.internal.max_connections).unwrap_or(u64::MAX);
        let room = open_files
            .saturating_sub(RESERVED_FILES)
            .saturating_sub(internal.saturating_mul(2))
            .max(16);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let lowered = self.public.max_connections > room;
        self.public.max_connections = self.public.max_connections.min(room);
        (self, lowered)
    }
}

/// Serves the three apps until `shutdown` resolves, then drains in-flight requests. With
/// TLS, the public listener's certificate files are read again meanwhile.
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tls::TlsError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let public_tls = match &listeners.public_tls {
        Some(public) => Some(listener::Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(public.server_config()?),
            metrics: state.metrics.clone(),
        }),
        None => None,
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let reload = {
        let (public, metrics, rx) = (listeners.public_tls, state.metrics.clone(), rx.clone());
        async move {
            if let Some(public) = public {
                public.watch(metrics, rx).await;
            }
        }
    };
    let requests = limits.requests;
    tokio::join!(
        listener::serve_limited(
            listeners.public,
            public_router(state.clone(), requests),
            limits.public,
            public_tls,
            rx.clone(),
        ),
        listener::serve_limited(
            listeners.admin,
            admin_router(state.clone(), requests),
            limits.internal,
            None,
            rx.clone(),
        ),
        listener::serve_limited(
            listeners.metrics,
            metrics_router(state, requests),
            limits.internal,
            None,
            rx,
        ),
        reload,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_cap_fits_under_the_open_file_limit_and_the_others_keep_theirs() {
        let limits = ServeLimits::default();
        assert_eq!(limits.fit_to(None), (limits, false));
        assert_eq!(limits.fit_to(Some(1_048_576)), (limits, false));
        let (fitted, lowered) = limits.fit_to(Some(1_024));
        assert!(lowered);
        assert_eq!(fitted.public.max_connections, 1_024 - 256 - 2 * 64);
        assert_eq!(limits.fit_to(Some(4_096)), (limits, false));
        assert_eq!(fitted.internal, limits.internal);
        assert_eq!(limits.fit_to(Some(100)).0.public.max_connections, 16);
    }
}
