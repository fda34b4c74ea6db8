//! The operator's own HTTP endpoints: `/metrics`, `/healthz`, `/readyz`. Three GET routes
//! over HTTP/1.1 need no framework.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// State the endpoints report.
pub struct Health {
    /// The API server answered and the controllers are running (or standing by).
    pub ready: AtomicBool,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
}

/// Status line, content type and body for a request line.
pub fn respond(request_line: &str, health: &Health) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != "GET" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            health.metrics.encode(),
        ),
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", "ready\n".into())
        }
        "/readyz" => ("503 Service Unavailable", "text/plain", "starting\n".into()),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

/// Serves the endpoints until the process ends.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut filled = 0;
            // Read the request head (bounded), then answer and close.
            while filled < buffer.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read(&mut buffer[filled..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => filled += n,
                }
                if buffer[..filled].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buffer[..filled]);
            let line = head.lines().next().unwrap_or_default();
            let (status, content_type, body) = respond(line, &health);
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn health(ready: bool) -> Health {
        Health {
            ready: AtomicBool::new(ready),
            metrics: Arc::new(Metrics::default()),
        }
    }

    #[test]
    fn readiness_follows_the_flag() {
        assert_eq!(
            respond("GET /readyz HTTP/1.1", &health(false)).0,
            "503 Service Unavailable"
        );
        assert_eq!(respond("GET /readyz HTTP/1.1", &health(true)).0, "200 OK");
        assert_eq!(respond("GET /healthz HTTP/1.1", &health(false)).0, "200 OK");
    }

    #[tokio::test]
    async fn metrics_are_served_over_http() {
        let h = Arc::new(health(true));
        h.metrics.observe(
            "AuthRealm",
            "Reconciled",
            std::time::Duration::from_millis(3),
            false,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, h));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains(
                "portcullis_operator_reconciles_total{kind=\"AuthRealm\",reason=\"Reconciled\"} 1"
            ),
            "{response}"
        );
    }
}
