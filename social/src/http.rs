//! The HTTP adapter that oauth2 and openidconnect call: their requests over the workspace's
//! reqwest, with a time limit and a size limit on what the provider sends back.

use std::time::Duration;

use oauth2::http::{Method, Request, header};
use oauth2::{HttpRequest, HttpResponse};
use url::Url;

/// How long one request to a provider may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body read from a provider (discovery documents, key sets and token
/// responses are a few kilobytes).
pub const MAX_BODY: usize = 1 << 20;

/// Why a request to the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, sending or receiving failed, or took longer than [`TIMEOUT`].
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    /// The response body is larger than [`MAX_BODY`].
    #[error("the response is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The response could not be passed on (an invalid header).
    #[error("unusable response: {0}")]
    Response(#[from] oauth2::http::Error),
}

/// Sends `request` with `http` and returns the whole response. Redirects are whatever `http`
/// does with them; the server's client follows none, so a provider cannot bounce a token
/// request elsewhere.
/// Takes the client by value (a cheap handle) so that the future borrows nothing, as oauth2's
/// and openidconnect's HTTP client traits want.
pub async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await?;
    let mut builder = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(builder.body(body)?)
}

/// GETs `url` with the access token as a Bearer token and returns the JSON body; any failure
/// (transport, a status other than 200, not JSON) as text for the caller's error.
pub async fn get_json(
    http: &reqwest::Client,
    url: Url,
    access_token: &str,
) -> Result<serde_json::Value, String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
        .header(header::ACCEPT, "application/json")
        // GitHub's API refuses requests without a User-Agent.
        .header(header::USER_AGENT, "portcullis")
        .body(Vec::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let response = send(http.clone(), request)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if response.status() != oauth2::http::StatusCode::OK {
        return Err(format!("GET {url} answered {}", response.status()));
    }
    serde_json::from_slice(response.body()).map_err(|e| format!("GET {url}: not JSON: {e}"))
}
