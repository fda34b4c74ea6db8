//! `GET /metrics`, alone on the metrics listener: the monitoring namespace reaches it and
//! nothing else.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let (Some(gauge), Some(created)) = (
        &state.metrics.signing_key_age_seconds,
        state.keys.active_created(),
    ) {
        gauge.set(state.clock.now().unix_timestamp() - created);
    }
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
