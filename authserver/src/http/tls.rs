//! TLS on the public listener: rustls with the ring provider (the one TLS stack of the
//! workspace), TLS 1.3 and 1.2 only, and only cipher suites with an ephemeral (EC)DH key
//! exchange and an AEAD cipher ([`MODERN_SUITES`]: no CBC, no RSA key exchange, no
//! NULL/EXPORT/RC4/3DES — rustls implements none of those, and the allow-list keeps a future
//! provider's additions out until they are reviewed).
//!
//! The certificate chain and key come from two PEM files (`--tls-cert`, `--tls-key`: the
//! realm's TLS Secret mounted as a directory). They are read again on an interval: a renewed
//! pair (a Secret volume update swaps the `..data` symlink, so both files change at once)
//! serves new connections without a restart; a pair that cannot be used (unreadable, not PEM,
//! a key of another certificate) is refused, logged and counted, and the previous pair keeps
//! serving. Open connections keep the certificate they were made with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How often the certificate files are read again: a renewal reaches new connections within
/// this (Kubernetes itself takes up to a minute to update a mounted Secret).
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// The cipher suites the public listener accepts, strongest first: TLS 1.3's three AEAD
/// suites, and TLS 1.2's ECDHE suites with AES-GCM or ChaCha20-Poly1305 (for ECDSA and RSA
/// certificates).
pub const MODERN_SUITES: [CipherSuite; 9] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Why TLS cannot be set up, or a new certificate pair is refused. Messages name files, never
/// their content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One of `--tls-cert` / `--tls-key` without the other.
    #[error(
        "--tls-cert and --tls-key go together: {given} was given without {missing} (or neither, to serve plain HTTP)"
    )]
    HalfPair {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("{path} holds no PEM certificate ({reason})")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key file holds no usable private key.
    #[error("{path} holds no usable private key (PKCS#8, SEC1 or PKCS#1 PEM): {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("the private key in {key} is not the key of the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the configuration (never with the built-in versions and suites).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The certificate chain and key files of the public listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the serving certificate first (`tls.crt`).
    pub cert: PathBuf,
    /// PEM private key (`tls.key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// From `--tls-cert` and `--tls-key`: both (TLS) or neither (plain HTTP).
    pub fn from_args(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Self { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::HalfPair {
                given: "--tls-cert",
                missing: "--tls-key",
            }),
            (None, Some(_)) => Err(TlsError::HalfPair {
                given: "--tls-key",
                missing: "--tls-cert",
            }),
        }
    }

    /// Both files' content.
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((read(&self.cert)?, read(&self.key)?))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The ring provider with only [`MODERN_SUITES`].
pub fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|suite| MODERN_SUITES.contains(&suite.suite()));
    provider
}

/// The chain and key of `cert_pem` and `key_pem` (read from `files`), checked to belong
/// together.
pub fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_path = || files.cert.display().to_string();
    let key_path = || files.key.display().to_string();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert_path(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_path(),
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: key_path(),
        reason: e.to_string(),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_path(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert_path(),
            key: key_path(),
        }),
        Err(e) => Err(TlsError::Certificate {
            path: cert_path(),
            reason: e.to_string(),
        }),
    }
}

/// What a look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what was already tried.
    Unchanged,
    /// A new pair serves new connections.
    Reloaded,
    /// The new pair cannot be used; the previous one keeps serving.
    Refused(TlsError),
}

/// The serving certificate: the last good pair from the files, handed to every handshake.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The content last tried, good or not: a refused pair is reported once, not at every
    /// look.
    tried: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ReloadingCert {
    /// Loads the pair from `files`; at start an unusable pair is an error.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let (cert, key) = files.read()?;
        let current = certified_key(&files, &cert, &key)?;
        Ok(Self {
            files,
            current: RwLock::new(current),
            tried: Mutex::new((cert, key)),
        })
    }

    /// The pair new connections get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again and serves a changed, usable pair from now on.
    pub fn reload(&self) -> Reload {
        let (cert, key) = match self.files.read() {
            Ok(pair) => pair,
            Err(error) => return Reload::Refused(error),
        };
        let mut tried = match self.tried.lock() {
            Ok(tried) => tried,
            Err(poisoned) => poisoned.into_inner(),
        };
        if tried.0 == cert && tried.1 == key {
            return Reload::Unchanged;
        }
        match certified_key(&self.files, &cert, &key) {
            Ok(certified) => {
                *tried = (cert, key);
                match self.current.write() {
                    Ok(mut current) => *current = certified,
                    Err(poisoned) => *poisoned.into_inner() = certified,
                }
                Reload::Reloaded
            }
            Err(error) => {
                // Read between the two files of a renewal written one after the other (not
                // a Secret volume, which swaps both at once): wait for the next look.
                if self
                    .files
                    .read()
                    .is_ok_and(|again| again.0 != cert || again.1 != key)
                {
                    return Reload::Unchanged;
                }
                *tried = (cert, key);
                Reload::Refused(error)
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The public listener's TLS: the reloading certificate and how often its files are read.
#[derive(Clone, Debug)]
pub struct PublicTls {
    /// The serving certificate.
    pub cert: Arc<ReloadingCert>,
    /// How often the files are read again.
    pub reload_every: Duration,
}

impl PublicTls {
    /// Loads `files`, to be read again every `reload_every`.
    pub fn load(files: TlsFiles, reload_every: Duration) -> Result<Self, TlsError> {
        Ok(Self {
            cert: Arc::new(ReloadingCert::load(files)?),
            reload_every,
        })
    }

    /// The rustls configuration: TLS 1.3 and 1.2, [`MODERN_SUITES`], HTTP/1.1 over ALPN, no
    /// client certificates, the certificate from [`ReloadingCert`].
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reads the files every `reload_every` until `stop` turns true, logging and counting
    /// what changed.
    pub async fn watch(self, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.reload_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the pair was just loaded.
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let cert = self.cert.clone();
            let outcome = match tokio::task::spawn_blocking(move || cert.reload()).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(error = %error, "the TLS certificate reload failed");
                    continue;
                }
            };
            match outcome {
                Reload::Unchanged => {}
                Reload::Reloaded => {
                    tracing::info!(cert = %self.cert.files.cert.display(), "serving a renewed TLS certificate to new connections");
                    metrics.tls_reloaded("ok");
                }
                Reload::Refused(error) => {
                    tracing::error!(error = %error, "the new TLS certificate or key cannot be used; still serving the previous one");
                    metrics.tls_reloaded("error");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, (cert, key): &(String, String)) -> TlsFiles {
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    #[test]
    fn the_flags_come_in_pairs() {
        let path = || Some(PathBuf::from("x"));
        assert!(TlsFiles::from_args(None, None).unwrap().is_none());
        assert!(TlsFiles::from_args(path(), path()).unwrap().is_some());
        let error = TlsFiles::from_args(path(), None).unwrap_err().to_string();
        assert!(
            error.contains("--tls-cert was given without --tls-key"),
            "{error}"
        );
        let error = TlsFiles::from_args(None, path()).unwrap_err().to_string();
        assert!(
            error.contains("--tls-key was given without --tls-cert"),
            "{error}"
        );
    }

    #[test]
    fn only_forward_secret_aead_suites_are_offered() {
        let offered: Vec<String> = provider()
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(offered.len(), MODERN_SUITES.len(), "{offered:?}");
        for name in &offered {
            let tls13 = name.starts_with("TLS13_");
            let ecdhe = name.starts_with("TLS_ECDHE_");
            let aead = name.contains("_GCM_") || name.contains("CHACHA20_POLY1305");
            assert!((tls13 || ecdhe) && aead, "{name}");
            assert!(!name.contains("CBC"), "{name}");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair("a.test");
        let (_, other_key) = pair("b.test");
        let files = files(dir.path(), &(cert, other_key));
        let error = ReloadingCert::load(files).unwrap_err();
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
        assert!(error.to_string().contains("tls.key"), "{error}");
        assert!(error.to_string().contains("tls.crt"), "{error}");
    }

    #[test]
    fn a_file_without_pem_is_refused_without_echoing_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = pair("a.test");
        let files = files(dir.path(), &("secret-looking garbage".to_owned(), key));
        let error = ReloadingCert::load(files).unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        assert!(!error.contains("garbage"), "{error}");
    }

    #[test]
    fn a_renewed_pair_replaces_the_served_one_and_a_broken_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let first = pair("a.test");
        let reloading = ReloadingCert::load(files(dir.path(), &first)).unwrap();
        let served = |r: &ReloadingCert| r.current().cert[0].clone();
        let original = served(&reloading);
        assert!(matches!(reloading.reload(), Reload::Unchanged));

        let second = pair("a.test");
        files(dir.path(), &second);
        assert!(matches!(reloading.reload(), Reload::Reloaded));
        let renewed = served(&reloading);
        assert_ne!(renewed, original);

        // A new certificate with the old key: refused once, the renewed pair still served.
        files(dir.path(), &(pair("a.test").0, second.1.clone()));
        assert!(matches!(
            reloading.reload(),
            Reload::Refused(TlsError::Mismatch { .. })
        ));
        assert_eq!(served(&reloading), renewed);
        assert!(matches!(reloading.reload(), Reload::Unchanged));

        // Files gone: refused, still serving; back: served again.
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        assert!(matches!(
            reloading.reload(),
            Reload::Refused(TlsError::Read { .. })
        ));
        assert_eq!(served(&reloading), renewed);
        files(dir.path(), &first);
        assert!(matches!(reloading.reload(), Reload::Reloaded));
        assert_eq!(served(&reloading), original);
    }
}
