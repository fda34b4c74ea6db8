//! TLS benchmark: prints figures, asserts nothing. Needs no servers (in-memory stores: it
//! measures the listener, not the database). Run: `cargo bench -p portcullis-authserver
//! --bench tls` (release build).
//!
//! 1. full handshake latency (new connection, TLS 1.3 and TLS 1.2, ECDSA P-256), p50 and p99;
//! 2. requests per second for `GET /.well-known/jwks.json` over keep-alive connections, plain
//!    HTTP vs TLS 1.3, the same client load on both.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_authserver::http::tls::{PublicTls, TlsFiles};
use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::{http, wiring};
use portcullis_crds::{RealmSettings, parse_manifests};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: bench}
spec:
  issuer: http://bench.localhost
  database: {secretRef: {name: db}}
  passwordPolicy: {breachCheck: {mode: Disabled}}
  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@bench.localhost}}
";

const CONNECTIONS: usize = 16;
const REQUESTS_PER_CONNECTION: usize = 500;
const HANDSHAKES: usize = 300;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A server on loopback with in-memory stores; TLS from `tls` when given.
async fn serve(tls: Option<PublicTls>) -> std::net::SocketAddr {
    let manifests = parse_manifests(REALM).unwrap();
    let settings = RealmSettings::from_manifests(&manifests).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (clock, random) = (wiring::system_clock(), wiring::os_random());
    let (secrets, _) =
        secrets_dir::load(dir.path(), &settings, Some((&random, clock.now()))).unwrap();
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db: Db::memory(),
        kv: Kv::memory(clock.clone()),
        clock,
        random,
        mail_dir: Some(dir.path().join("mail")),
        breach_list: None,
        hash_permits: 2,
        rate_limiting: false,
        webhook_loopback: true,
    })
    .unwrap();
    std::mem::forget(dir);
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = public.local_addr().unwrap();
    let listeners = http::Listeners {
        public,
        public_tls: tls,
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        metrics: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    tokio::spawn(http::serve(
        service.state,
        listeners,
        http::ServeLimits::default(),
        std::future::pending(),
    ));
    address
}

/// Sends `count` keep-alive GETs of the JWKS on `stream`, reading each answer whole.
async fn requests<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, count: usize) {
    let request = b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut buffer = vec![0u8; 64 * 1024];
    for _ in 0..count {
        stream.write_all(request).await.unwrap();
        let mut read = 0;
        loop {
            let n = stream.read(&mut buffer[read..]).await.unwrap();
            assert!(n > 0, "closed");
            read += n;
            let text = &buffer[..read];
            if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&text[..end])
                    .unwrap()
                    .to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if read >= end + 4 + length {
                    break;
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    portcullis_authserver::install_crypto_provider();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);

    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.cert, format!("{}{ca_pem}", cert.pem())).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let tls = PublicTls::load(files, Duration::from_secs(10)).unwrap();

    let plain_address = serve(None).await;
    let tls_address = serve(Some(tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let connector = |version: &'static rustls::SupportedProtocolVersion| {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let name = ServerName::try_from("localhost").unwrap();

    println!(
        "Portcullis public listener, TLS vs plain ({cores} cores, loopback, client and server in one process)"
    );

    // 1. Handshakes: TCP connect + full handshake, no resumption (a new client config each).
    for (label, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        let mut samples = Vec::with_capacity(HANDSHAKES);
        for _ in 0..HANDSHAKES {
            let connector = connector(version);
            let started = Instant::now();
            let tcp = TcpStream::connect(tls_address).await.unwrap();
            let stream = connector.connect(name.clone(), tcp).await.unwrap();
            samples.push(started.elapsed());
            drop(stream);
        }
        println!(
            "  {label} connect + full handshake (ECDSA P-256): p50 {:.2} ms, p99 {:.2} ms ({HANDSHAKES} connections)",
            ms(percentile(&mut samples, 0.5)),
            ms(percentile(&mut samples, 0.99)),
        );
    }
    let mut samples = Vec::with_capacity(HANDSHAKES);
    for _ in 0..HANDSHAKES {
        let started = Instant::now();
        let tcp = TcpStream::connect(plain_address).await.unwrap();
        samples.push(started.elapsed());
        drop(tcp);
    }
    println!(
        "  plain TCP connect, for comparison: p50 {:.3} ms, p99 {:.3} ms",
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99)),
    );

    // 2. Throughput over keep-alive connections.
    let total = CONNECTIONS * REQUESTS_PER_CONNECTION;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(plain_address).await.unwrap();
            requests(&mut tcp, REQUESTS_PER_CONNECTION).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let plain = total as f64 / started.elapsed().as_secs_f64();
    let tls13 = connector(&rustls::version::TLS13);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (tls13, name) = (tls13.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(tls_address).await.unwrap();
            let mut stream = tls13.connect(name, tcp).await.unwrap();
            requests(&mut stream, REQUESTS_PER_CONNECTION).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tls = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "  GET /.well-known/jwks.json, {CONNECTIONS} keep-alive connections x {REQUESTS_PER_CONNECTION}: plain {plain:.0} req/s, TLS 1.3 {tls:.0} req/s ({:.0}% of plain)",
        tls / plain * 100.0
    );
}
