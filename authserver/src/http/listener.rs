//! The listeners: each accepts at most `max_connections` connections at once (beyond that they
//! wait in the kernel's backlog), closes a connection that sends no complete request head within
//! `header_timeout` (slow headers, and idle keep-alive connections alike) or a head larger than
//! its read buffer, and drains in-flight requests at shutdown. Each listener has its own cap, so a flood of the public listener
//! leaves the admin listener (health probes) and the metrics listener answering. With TLS (the
//! public listener, when the realm has a certificate) a connection must also complete its
//! handshake within `handshake_timeout`, holding its slot meanwhile, before the header timeout
//! starts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// How long shutdown waits for in-flight requests before it closes what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection's read buffer, which bounds a request head (hyper's default is 400 KiB): at
/// the connection cap, buffers stay within tens of megabytes.
const READ_BUFFER: usize = 32 * 1024;

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to receive a complete request head, counted from the connection's start or the
    /// end of its previous answer: also the idle timeout of keep-alive connections.
    pub header_timeout: Duration,
    /// Time to complete a TLS handshake, counted from the connection's start (TLS listeners
    /// only): a client that opens a socket and sends nothing gives its slot back then.
    pub handshake_timeout: Duration,
}

impl ConnectionLimits {
    /// The public listener's defaults: 1,024 connections, 5 s for a TLS handshake, 10 s for a
    /// request head.
    pub const PUBLIC: Self = Self {
        max_connections: 1_024,
        header_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(5),
    };

    /// The admin and metrics listeners' defaults: few clients (probes, Prometheus).
    pub const INTERNAL: Self = Self {
        max_connections: 64,
        header_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(5),
    };
}

/// TLS on a listener: the acceptor, and the metrics that count failed handshakes.
#[derive(Clone)]
pub struct Tls {
    /// Accepts TLS connections (the public listener's rustls configuration).
    pub acceptor: TlsAcceptor,
    /// Where failed handshakes are counted.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Serves `app` on `listener` within `limits`, over TLS with `tls`, until `stop` turns true,
/// then drains.
pub async fn serve_limited(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Tls>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A slot first: at the cap, connections wait in the backlog instead of taking a
        // file descriptor each.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let app = app.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, app, limits, stop).await,
                Some(tls) => {
                    if let Some(stream) = handshake(stream, &tls, limits, stop.clone()).await {
                        serve_connection(stream, peer, app, limits, stop).await;
                    }
                }
            }
            drop(slot);
        });
    }
    // Every slot back means every connection finished.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The TLS handshake of `stream`, within the handshake timeout; `None` when it failed, took
/// too long or the server is stopping.
async fn handshake(
    stream: tokio::net::TcpStream,
    tls: &Tls,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let handshake = tokio::time::timeout(limits.handshake_timeout, tls.acceptor.accept(stream));
    tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => Some(stream),
            // A scanner, an old client, a plain-HTTP request: the client's business, counted.
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "TLS handshake failed");
                tls.metrics.tls_handshake_failed("error");
                None
            }
            Err(_) => {
                tls.metrics.tls_handshake_failed("timeout");
                None
            }
        },
        () = stopped(&mut stop) => None,
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let answer = app.oneshot(request.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(answer.unwrap_or_else(|never| match never {}))
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        // Errors are a client's business (a reset, a timeout): nothing to answer any more.
        _ = connection.as_mut() => {}
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
