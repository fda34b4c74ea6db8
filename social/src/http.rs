//! The HTTP client of every request to a provider ([`HttpClient`], built here so that it is
//! safe whoever calls the crate) and the adapter that oauth2 and openidconnect call: their
//! requests over it, with a time limit and a size limit on what the provider sends back, and
//! any redirect refused.

use std::time::Duration;

use oauth2::http::{Method, Request, header};
use oauth2::{HttpRequest, HttpResponse};
use url::Url;

use crate::SocialError;

/// How long one request to a provider may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to a provider may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response body read from a provider (discovery documents, key sets and token
/// responses are a few kilobytes).
pub const MAX_BODY: usize = 1 << 20;

/// The client every provider request goes through: it follows no redirects (a token endpoint
/// answering 307 would otherwise have the code, the PKCE verifier and a `client_secret_post`
/// secret re-posted to wherever it points), ignores the `HTTP(S)_PROXY` environment, and has
/// connect and whole-request timeouts. Only this crate builds one, so a server cannot hand
/// [`crate::Provider::discover`] a client that does otherwise.
#[derive(Clone, Debug)]
pub struct HttpClient(reqwest::Client);

impl HttpClient {
    /// A client trusting the platform's root certificates (rustls with the process's default
    /// crypto provider, which the server installs at start).
    pub fn new() -> Result<Self, SocialError> {
        Self::build(builder())
    }

    /// A client trusting only the CA certificates in `ca_pem` (PEM, one or more): a provider
    /// behind a private CA, or a test provider.
    pub fn trusting(ca_pem: &str) -> Result<Self, SocialError> {
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|e| SocialError::HttpClient(e.to_string()))?;
        Self::build(builder().tls_certs_only(certs))
    }

    fn build(builder: reqwest::ClientBuilder) -> Result<Self, SocialError> {
        builder
            .build()
            .map(Self)
            .map_err(|e| SocialError::HttpClient(e.to_string()))
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
}

/// Whether `url` may be a provider endpoint: HTTPS, or plain HTTP to a loopback host when the
/// issuer (or, for GitHub, its API base) is itself plain HTTP on loopback (a provider on the
/// same machine, in tests). An HTTPS issuer never hands out plain HTTP endpoints: the client
/// secret and the tokens would travel in clear.
pub(crate) fn endpoint_allowed(issuer: &Url, endpoint: &Url) -> bool {
    match endpoint.scheme() {
        "https" => true,
        "http" => issuer.scheme() == "http" && is_loopback(issuer) && is_loopback(endpoint),
        _ => false,
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

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
    /// The provider answered with a redirect, which is never followed.
    #[error("the provider answered {0}, a redirect, which is not followed")]
    Redirect(reqwest::StatusCode),
}

/// Sends `request` with `http` and returns the whole response; a redirect is an error (the
/// client follows none, and this refuses it again, so a provider cannot bounce a token
/// request elsewhere).
/// Takes the client by value (a cheap handle) so that the future borrows nothing, as oauth2's
/// and openidconnect's HTTP client traits want.
pub async fn send(http: HttpClient, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut response = http
        .0
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await?;
    if response.status().is_redirection() {
        return Err(HttpError::Redirect(response.status()));
    }
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
    http: &HttpClient,
    url: Url,
    access_token: &str,
) -> Result<serde_json::Value, String> {
    get(http, url, Some(access_token)).await
}

/// GETs a public JSON document at `url` (no credentials), such as an OpenID Connect discovery
/// document; failures as for [`get_json`].
pub async fn get_public_json(http: &HttpClient, url: Url) -> Result<serde_json::Value, String> {
    get(http, url, None).await
}

/// The one JSON GET: status 200 only, the body parsed as JSON.
async fn get(
    http: &HttpClient,
    url: Url,
    access_token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .header(header::ACCEPT, "application/json")
        // GitHub's API refuses requests without a User-Agent.
        .header(header::USER_AGENT, "portcullis");
    if let Some(token) = access_token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn https_endpoints_are_allowed_for_any_issuer() {
        for issuer in ["https://id.example.com", "http://127.0.0.1:8080"] {
            assert!(endpoint_allowed(
                &url(issuer),
                &url("https://id.example.com/token")
            ));
        }
    }

    #[test]
    fn plain_http_endpoints_are_refused_for_an_https_issuer() {
        let issuer = url("https://localhost:8443");
        for endpoint in [
            "http://id.example.com/token",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8443/token",
        ] {
            assert!(!endpoint_allowed(&issuer, &url(endpoint)), "{endpoint}");
        }
    }

    #[test]
    fn plain_http_is_allowed_only_from_loopback_to_loopback() {
        let issuer = url("http://127.0.0.1:8080");
        assert!(endpoint_allowed(
            &issuer,
            &url("http://127.0.0.1:8080/token")
        ));
        assert!(endpoint_allowed(&issuer, &url("http://[::1]:1/jwks")));
        assert!(!endpoint_allowed(&issuer, &url("http://10.0.0.1/token")));
        assert!(!endpoint_allowed(
            &issuer,
            &url("http://internal.svc/token")
        ));
    }

    #[test]
    fn other_schemes_are_refused() {
        let issuer = url("http://127.0.0.1:8080");
        assert!(!endpoint_allowed(&issuer, &url("file:///etc/passwd")));
        assert!(!endpoint_allowed(&issuer, &url("ftp://127.0.0.1/x")));
    }
}
