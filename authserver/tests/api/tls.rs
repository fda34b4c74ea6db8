//! TLS on the public listener, with a rustls client that trusts a test CA (made with rcgen, as
//! the operator makes a realm's self-signed one): the versions and suites it accepts, a
//! certificate renewed on disk as a Secret volume renews it, a broken renewal, a silent client.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_authserver::http::tls::{MODERN_SUITES, PublicTls, TlsFiles};
use portcullis_authserver::http::{ConnectionLimits, ServeLimits};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A test CA that issues serving certificates for `localhost`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A fresh serving certificate and key: (chain PEM, key PEM).
    pub fn issue(&self) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }
}

/// A directory laid out as Kubernetes mounts a Secret: `tls.crt` and `tls.key` are symlinks
/// through `..data`, a symlink to a timestamped directory that an update replaces at once.
pub struct SecretVolume {
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    pub fn new(pair: &(String, String)) -> Self {
        let mut volume = Self {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        volume.update(pair);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(
                Path::new("..data").join(name),
                volume.dir.path().join(name),
            )
            .unwrap();
        }
        volume
    }

    /// Writes a new generation and swaps `..data` to it (a rename: atomic).
    pub fn update(&mut self, (cert, key): &(String, String)) {
        self.generation += 1;
        let generation = format!("..2026_11_30_{:04}", self.generation);
        let target = self.dir.path().join(&generation);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("tls.crt"), cert).unwrap();
        std::fs::write(target.join("tls.key"), key).unwrap();
        let staged = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &staged).unwrap();
        std::fs::rename(&staged, self.dir.path().join("..data")).unwrap();
    }

    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.path().join("tls.crt"),
            key: self.dir.path().join("tls.key"),
        }
    }
}

/// A server whose public listener serves TLS from `volume`, reading it every 50 ms.
async fn start_tls(pool: PgPool, volume: &SecretVolume, limits: ServeLimits) -> TestServer {
    let tls = PublicTls::load(volume.files(), Duration::from_millis(50)).unwrap();
    start(
        pool,
        Options {
            tls: Some(tls),
            limits,
            ..Options::default()
        },
    )
    .await
}

pub fn client(ca_pem: &str, versions: &[&'static SupportedProtocolVersion]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// What one TLS connection saw: the version and suite negotiated, the serving certificate,
/// and the answer to a GET of `path`.
struct Seen {
    version: ProtocolVersion,
    suite: rustls::CipherSuite,
    cert: CertificateDer<'static>,
    answer: String,
}

async fn get_over_tls(base: &str, config: ClientConfig, path: &str) -> Seen {
    let address = base.trim_start_matches("https://");
    let tcp = TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let (version, suite, cert) = {
        let connection = stream.get_ref().1;
        (
            connection.protocol_version().unwrap(),
            connection.negotiated_cipher_suite().unwrap().suite(),
            connection.peer_certificates().unwrap()[0]
                .clone()
                .into_owned(),
        )
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A close_notify or a plain close: both end the answer.
    let _ = stream.read_to_end(&mut answer).await;
    Seen {
        version,
        suite,
        cert,
        answer: String::from_utf8_lossy(&answer).into_owned(),
    }
}

fn leaf_der(pair: &(String, String)) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pair.0.as_bytes()).unwrap()
}

/// The value of the metric line starting with `series`, or 0 when absent.
async fn metric(server: &TestServer, series: &str) -> u64 {
    let text = server
        .http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

/// Waits until `series` reaches `value` (the reload runs every 50 ms).
async fn metric_reaches(server: &TestServer, series: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(server, series).await < value {
        assert!(Instant::now() < deadline, "{series} never reached {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const RELOADED_OK: &str = "portcullis_tls_certificate_reloads_total{result=\"ok\"}";
const RELOADED_ERROR: &str = "portcullis_tls_certificate_reloads_total{result=\"error\"}";

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn tls_1_3_and_1_2_handshakes_succeed_with_a_modern_suite_and_serve_the_api(pool: PgPool) {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.issue());
    let server = start_tls(pool, &volume, ServeLimits::default()).await;
    for (version, expected) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let seen = get_over_tls(
            &server.base,
            client(&ca.pem, &[version]),
            "/.well-known/jwks.json",
        )
        .await;
        assert_eq!(seen.version, expected);
        assert!(MODERN_SUITES.contains(&seen.suite), "{:?}", seen.suite);
        assert!(seen.answer.starts_with("HTTP/1.1 200"), "{}", seen.answer);
        assert!(
            seen.answer
                .to_ascii_lowercase()
                .contains("strict-transport-security: max-age="),
            "{}",
            seen.answer
        );
    }
    // The admin and metrics listeners stay plain HTTP.
    let ready = server
        .http
        .get(format!("{}/readyz", server.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_client_trusting_the_ca_logs_in_over_https_with_a_secure_session_cookie(pool: PgPool) {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.issue());
    let server = start_tls(pool, &volume, ServeLimits::default()).await;
    let port = server.base.rsplit(':').next().unwrap();
    let https = reqwest::Client::builder()
        .tls_backend_preconfigured(client(
            &ca.pem,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        ))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let register = https
        .post(format!("{base}/api/v1/register"))
        .json(&serde_json::json!({"email": "tls@example.com", "password": PASSWORD, "policy_version": "1", "consents": {"account": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    let login = https
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"email": "tls@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-portcullis_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn plain_http_to_the_tls_listener_gets_no_answer(pool: PgPool) {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.issue());
    let server = start_tls(pool, &volume, ServeLimits::default()).await;
    let mut tcp = TcpStream::connect(server.base.trim_start_matches("https://"))
        .await
        .unwrap();
    tcp.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("jwks") && !answer.starts_with(b"HTTP/1.1 200"),
        "{answer:?}"
    );
    metric_reaches(
        &server,
        "portcullis_tls_handshake_failures_total{reason=\"error\"}",
        1,
    )
    .await;
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_certificate_renewed_on_disk_is_served_to_new_connections_without_a_restart(
    pool: PgPool,
) {
    let ca = TestCa::new();
    let first = ca.issue();
    let mut volume = SecretVolume::new(&first);
    let server = start_tls(pool, &volume, ServeLimits::default()).await;
    let tls13 = || client(&ca.pem, &[&rustls::version::TLS13]);
    let seen = get_over_tls(&server.base, tls13(), "/.well-known/jwks.json").await;
    assert_eq!(seen.cert, leaf_der(&first));

    let renewed = ca.issue();
    volume.update(&renewed);
    metric_reaches(&server, RELOADED_OK, 1).await;
    let seen = get_over_tls(&server.base, tls13(), "/.well-known/jwks.json").await;
    assert_eq!(seen.cert, leaf_der(&renewed));
    assert!(seen.answer.starts_with("HTTP/1.1 200"), "{}", seen.answer);
    assert_eq!(metric(&server, RELOADED_ERROR).await, 0);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_broken_renewal_keeps_the_previous_certificate_and_is_counted(pool: PgPool) {
    let ca = TestCa::new();
    let first = ca.issue();
    let mut volume = SecretVolume::new(&first);
    let server = start_tls(pool, &volume, ServeLimits::default()).await;
    let tls12 = || client(&ca.pem, &[&rustls::version::TLS12]);

    // A new certificate with another certificate's key.
    let (new_cert, _) = ca.issue();
    let (_, other_key) = ca.issue();
    volume.update(&(new_cert, other_key));
    metric_reaches(&server, RELOADED_ERROR, 1).await;
    let seen = get_over_tls(&server.base, tls12(), "/.well-known/jwks.json").await;
    assert_eq!(seen.cert, leaf_der(&first));
    assert!(seen.answer.starts_with("HTTP/1.1 200"), "{}", seen.answer);

    // A key file that is not PEM: also refused, still the first certificate.
    volume.update(&(ca.issue().0, "not a key".to_owned()));
    metric_reaches(&server, RELOADED_ERROR, 2).await;
    let seen = get_over_tls(&server.base, tls12(), "/.well-known/jwks.json").await;
    assert_eq!(seen.cert, leaf_der(&first));
    // The refused pair is reported once, not at every look.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric(&server, RELOADED_ERROR).await, 2);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_client_that_sends_nothing_is_disconnected_after_the_handshake_timeout(pool: PgPool) {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.issue());
    let limits = ServeLimits {
        public: ConnectionLimits {
            handshake_timeout: Duration::from_millis(300),
            // Longer than the test: only the handshake timeout can close the socket.
            header_timeout: Duration::from_secs(60),
            ..ConnectionLimits::PUBLIC
        },
        ..ServeLimits::default()
    };
    let server = start_tls(pool, &volume, limits).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.base.trim_start_matches("https://"))
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buffer))
        .await
        .is_ok();
    let elapsed = started.elapsed();
    assert!(closed, "a silent client kept its connection");
    assert!(buffer.is_empty(), "{buffer:?}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    metric_reaches(
        &server,
        "portcullis_tls_handshake_failures_total{reason=\"timeout\"}",
        1,
    )
    .await;
    // A client that completes its handshake in time is served.
    let seen = get_over_tls(
        &server.base,
        client(&ca.pem, &[&rustls::version::TLS13]),
        "/.well-known/jwks.json",
    )
    .await;
    assert!(seen.answer.starts_with("HTTP/1.1 200"), "{}", seen.answer);
}

/// A real TLS scanner against the running listener (`scripts/sslyze.sh`): every protocol from
/// SSL 2.0 to TLS 1.3, every suite it knows. Skipped, saying so loudly, without PyPI.
#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_tls_scanner_finds_no_protocol_below_1_2_and_no_weak_suite(pool: PgPool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sslyze.sh");
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.issue());
    let server = start_tls(pool, &volume, ServeLimits::default()).await;
    let target = server.base.trim_start_matches("https://").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(target)
            .output()
    })
    .await
    .unwrap()
    .expect("bash runs scripts/sslyze.sh");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.code() == Some(3) {
        eprintln!("\n*** SKIPPED: the TLS scan needs python3 and sslyze from PyPI ***\n{report}");
        return;
    }
    eprintln!("{report}");
    assert!(output.status.success(), "sslyze found weak TLS:\n{report}");
    // It did scan: both current protocols answered, nothing older did.
    assert!(report.contains("tls_1_3: 3 accepted"), "{report}");
    assert!(report.contains("tls_1_2: "), "{report}");
    for legacy in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"] {
        assert!(
            report.contains(&format!("{legacy}: 0 accepted")),
            "{report}"
        );
    }
}
