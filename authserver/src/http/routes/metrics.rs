//! `GET /metrics`, alone on the metrics listener: the monitoring namespace reaches it and
//! nothing else.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::state::AppState;
use crate::metrics::to_text_004;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Whether the scraper asked for OpenMetrics (Prometheus does, in its `Accept` list). Anything
/// else gets the 0.0.4 text format, which every reader understands and promtool checks.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let (Some(gauge), Some(created)) = (
        &state.metrics.signing_key_age_seconds,
        state.keys.active_created(),
    ) {
        gauge.set(state.clock.now().unix_timestamp() - created);
    }
    state.metrics.set_hashing_load(state.core.hashing_load());
    let openmetrics = state.metrics.encode();
    let (body, content_type) = if wants_openmetrics(&headers) {
        (
            openmetrics,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            to_text_004(&openmetrics),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
