//! The realm's secrets, one file per key in the secrets dir (a mounted Secret in Kubernetes).
//! Outside `--dev` a missing secret stops the server with its name; `--dev` generates the
//! missing ones into the dir and says so. The key formats are the domain's (`auth::keys`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use portcullis_audit::AuditKeys;
use portcullis_crds::RealmSettings;
use portcullis_crds::client::ClientType;
use time::OffsetDateTime;

use crate::auth::keys::{Pepper, SigningKey, decode_base64};
use crate::random::Random;

/// File names in the secrets dir, shared with the operator (which writes them as the keys of
/// the realm's Secret): defined once, in `portcullis_crds`.
pub use portcullis_crds::secrets_dir as files;

/// Why the secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A required secret file is missing.
    #[error(
        "secret {name} is missing from {dir} (run `portcullis-authserver keys generate --secrets-dir {dir}` or use --dev)"
    )]
    Missing {
        /// File name.
        name: String,
        /// The secrets dir.
        dir: String,
    },
    /// A secret file has the wrong format.
    #[error("secret {name} is invalid: {reason}")]
    Invalid {
        /// File name.
        name: String,
        /// What is wrong (never the value).
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file that `keys generate` would write exists already.
    #[error("{0} exists: refusing to overwrite a secret")]
    Exists(PathBuf),
}

/// Every secret the server uses. `Debug` prints names only.
#[derive(Clone)]
pub struct Secrets {
    /// Signing keys, the active one first.
    pub signing_keys: Vec<SigningKey>,
    /// Fernet keys (32 bytes each), the encrypting one first.
    pub fernet_keys: Vec<Vec<u8>>,
    /// Peppers, the current one first.
    pub peppers: Vec<Pepper>,
    /// Key for CSRF tokens and signed cookies.
    pub cookie_key: Vec<u8>,
    /// Admin API bearer token.
    pub admin_token: String,
    /// The audit chain's MAC keys (`audit-key`), the signing one first.
    pub audit_keys: Arc<AuditKeys>,
    /// The same `audit-key` lines as versioned keys, for their fingerprints
    /// (`auth::key_fingerprints`): [`AuditKeys`] never hands out key bytes.
    pub audit_key_lines: Vec<Pepper>,
    /// Client secrets by client id.
    pub client_secrets: BTreeMap<String, String>,
    /// Social provider client secrets by provider name.
    pub social_secrets: BTreeMap<String, String>,
    /// CA certificates (PEM) the social providers are verified against instead of the
    /// platform's roots, when the secrets dir has `social-ca.crt`.
    pub social_ca: Option<String>,
    /// SMTP URL, when mail goes out by SMTP.
    pub smtp_url: Option<String>,
    /// Webhook URL and signing key, when notifications go to a webhook.
    pub webhook: Option<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("signing_keys", &self.signing_keys)
            .field("clients", &self.client_secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The content of a generated secret file.
fn generate(name: &str, random: &Random, now: OffsetDateTime) -> String {
    match name {
        files::SIGNING_KEYS => {
            let key = SigningKey::generate(random, now);
            serde_json::json!({ "keys": [key.private_jwk()] }).to_string()
        }
        files::FERNET_KEYS => format!("{}\n", URL_SAFE.encode(random.bytes(32))),
        // The audit key has the pepper's format: `VERSION:BASE64` of 32 bytes.
        files::PEPPER | files::AUDIT_KEY => Pepper::generate_line(random),
        files::COOKIE_KEY => format!("{}\n", STANDARD.encode(random.bytes(32))),
        // Admin tokens and client secrets: 256 bits, URL-safe.
        _ => format!("{}\n", random.token(32)),
    }
}

/// The files every realm needs, plus one per confidential client and social provider, and the
/// SMTP URL when the realm sends mail (except in `--dev`, which writes mail to a directory).
fn required_files(settings: &RealmSettings, dev: bool) -> Vec<String> {
    let mut names: Vec<String> = [
        files::SIGNING_KEYS,
        files::FERNET_KEYS,
        files::PEPPER,
        files::COOKIE_KEY,
        files::ADMIN_TOKEN,
        files::AUDIT_KEY,
    ]
    .map(String::from)
    .to_vec();
    for client in &settings.clients {
        if client.client_type == ClientType::Confidential {
            names.push(files::client_secret(&client.client_id));
        }
    }
    for provider in &settings.spec.social_providers {
        names.push(files::social_client_secret(&provider.name));
    }
    let smtp = settings
        .spec
        .notifications
        .as_ref()
        .is_some_and(|n| n.smtp.is_some());
    if smtp && !dev {
        names.push(files::SMTP_URL.to_owned());
    }
    names
}

/// Writes a complete fresh set of the core secrets into `dir`, refusing to overwrite any.
pub fn generate_keys(
    dir: &Path,
    random: &Random,
    now: OffsetDateTime,
) -> Result<Vec<PathBuf>, SecretsError> {
    let names = [
        files::SIGNING_KEYS,
        files::FERNET_KEYS,
        files::PEPPER,
        files::COOKIE_KEY,
        files::ADMIN_TOKEN,
        files::AUDIT_KEY,
    ];
    for name in names {
        let path = dir.join(name);
        if path.exists() {
            return Err(SecretsError::Exists(path));
        }
    }
    names
        .iter()
        .map(|name| write_secret(dir, name, &generate(name, random, now)))
        .collect()
}

fn write_secret(dir: &Path, name: &str, content: &str) -> Result<PathBuf, SecretsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SecretsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut file, content.as_bytes()).map_err(io(&path))?;
    Ok(path)
}

fn invalid(name: &str, reason: &str) -> SecretsError {
    SecretsError::Invalid {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The Fernet keys of a `fernet-keys` file: base64url 32-byte keys, one per line.
fn parse_fernet_keys(text: &str) -> Result<Vec<Vec<u8>>, SecretsError> {
    let keys = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            URL_SAFE
                .decode(line.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| {
                    invalid(
                        files::FERNET_KEYS,
                        "each line must be a base64url 32-byte Fernet key",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(invalid(files::FERNET_KEYS, "no key"));
    }
    Ok(keys)
}

fn parse_peppers(text: &str) -> Result<Vec<Pepper>, SecretsError> {
    Pepper::parse_lines(text).map_err(|r| invalid(files::PEPPER, r))
}

/// The keys that protect stored data, the peppers and the Fernet keys, from `dir`
/// (`keys fingerprint`).
pub fn load_data_keys(dir: &Path) -> Result<(Vec<Pepper>, Vec<Vec<u8>>), SecretsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SecretsError::Missing {
                name: name.to_owned(),
                dir: dir.display().to_string(),
            },
            _ => SecretsError::Io { path, source },
        })
    };
    Ok((
        parse_peppers(&read(files::PEPPER)?)?,
        parse_fernet_keys(&read(files::FERNET_KEYS)?)?,
    ))
}

/// The `audit-key` secret of `dir`: the keys, and their lines as versioned keys for their
/// fingerprints (`keys fingerprint`, `audit verify`).
pub fn load_audit_keys(dir: &Path) -> Result<(AuditKeys, Vec<Pepper>), SecretsError> {
    let path = dir.join(files::AUDIT_KEY);
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SecretsError::Missing {
            name: files::AUDIT_KEY.to_owned(),
            dir: dir.display().to_string(),
        },
        _ => SecretsError::Io { path, source },
    })?;
    let keys = AuditKeys::parse(&text).map_err(|e| invalid(files::AUDIT_KEY, &e.to_string()))?;
    let lines = Pepper::parse_lines(&text).map_err(|r| invalid(files::AUDIT_KEY, r))?;
    Ok((keys, lines))
}

/// Loads the secrets for `settings` from `dir`. With `generate` (`--dev`: a generator and
/// the time), missing files are created first and their names returned.
pub fn load(
    dir: &Path,
    settings: &RealmSettings,
    generate_missing: Option<(&Random, OffsetDateTime)>,
) -> Result<(Secrets, Vec<String>), SecretsError> {
    let mut generated = Vec::new();
    for name in required_files(settings, generate_missing.is_some()) {
        if !dir.join(&name).exists() {
            let Some((random, now)) = generate_missing else {
                return Err(SecretsError::Missing {
                    name,
                    dir: dir.display().to_string(),
                });
            };
            write_secret(dir, &name, &generate(&name, random, now))?;
            generated.push(name);
        }
    }
    let read = |name: &str| -> Result<Option<String>, SecretsError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretsError::Io { path, source }),
        }
    };
    let require = |name: &str| -> Result<String, SecretsError> {
        read(name)?.ok_or_else(|| SecretsError::Missing {
            name: name.to_owned(),
            dir: dir.display().to_string(),
        })
    };

    let signing_keys = SigningKey::parse_set(&require(files::SIGNING_KEYS)?)
        .map_err(|reason| invalid(files::SIGNING_KEYS, &reason))?;
    let fernet_keys = parse_fernet_keys(&require(files::FERNET_KEYS)?)?;
    let peppers = parse_peppers(&require(files::PEPPER)?)?;
    let cookie_key = decode_base64(&require(files::COOKIE_KEY)?)
        .filter(|k| k.len() >= 32)
        .ok_or_else(|| invalid(files::COOKIE_KEY, "must be base64 of at least 32 bytes"))?;
    let audit_text = require(files::AUDIT_KEY)?;
    let audit_keys =
        AuditKeys::parse(&audit_text).map_err(|e| invalid(files::AUDIT_KEY, &e.to_string()))?;
    let audit_key_lines =
        Pepper::parse_lines(&audit_text).map_err(|r| invalid(files::AUDIT_KEY, r))?;
    let admin_token = require(files::ADMIN_TOKEN)?;
    if admin_token.len() < 32 || admin_token.chars().any(char::is_whitespace) {
        return Err(invalid(
            files::ADMIN_TOKEN,
            "must be at least 32 characters without spaces",
        ));
    }
    let mut client_secrets = BTreeMap::new();
    for client in &settings.clients {
        let name = files::client_secret(&client.client_id);
        if let Some(secret) = read(&name)? {
            client_secrets.insert(client.client_id.clone(), secret);
        }
    }
    let mut social_secrets = BTreeMap::new();
    for provider in &settings.spec.social_providers {
        let name = files::social_client_secret(&provider.name);
        if let Some(secret) = read(&name)? {
            social_secrets.insert(provider.name.clone(), secret);
        }
    }
    let social_ca = read(files::SOCIAL_CA)?;
    let smtp_url = read(files::SMTP_URL)?;
    let webhook = match (read(files::WEBHOOK_URL)?, read(files::WEBHOOK_SECRET)?) {
        (Some(url), Some(secret)) => Some((url, secret)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                files::WEBHOOK_URL,
                "webhook-url and webhook-secret go together",
            ));
        }
    };
    Ok((
        Secrets {
            signing_keys,
            fernet_keys,
            peppers,
            cookie_key,
            admin_token,
            audit_keys: Arc::new(audit_keys),
            audit_key_lines,
            client_secrets,
            social_secrets,
            social_ca,
            smtp_url,
            webhook,
        },
        generated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random() -> Random {
        use rand_chacha::rand_core::SeedableRng;
        Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(4))
    }

    fn dev() -> Option<(&'static Random, OffsetDateTime)> {
        static RANDOM: std::sync::OnceLock<Random> = std::sync::OnceLock::new();
        Some((RANDOM.get_or_init(random), OffsetDateTime::UNIX_EPOCH))
    }

    fn settings() -> RealmSettings {
        let yaml = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: t}
spec:
  issuer: https://auth.example.com
  database: {secretRef: {name: db}}
  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@example.com}}
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: web}
spec: {realmRef: {name: t}, clientId: web, type: Confidential, redirectUris: [\"https://a.example.com/cb\"]}
";
        RealmSettings::from_manifests(&portcullis_crds::parse_manifests(yaml).unwrap()).unwrap()
    }

    #[test]
    fn a_missing_secret_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path(), &settings(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("secret signing-keys.json is missing"),
            "{err}"
        );
    }

    #[test]
    fn dev_mode_generates_every_missing_secret_once() {
        let dir = tempfile::tempdir().unwrap();
        let (secrets, generated) = load(dir.path(), &settings(), dev()).unwrap();
        assert!(generated.contains(&"client-secret-web".to_owned()));
        assert_eq!(generated.len(), 7);
        assert!(generated.contains(&files::AUDIT_KEY.to_owned()));
        assert!(secrets.client_secrets.contains_key("web"));
        let (again, generated) = load(dir.path(), &settings(), dev()).unwrap();
        assert!(generated.is_empty());
        assert_eq!(again.signing_keys[0].kid, secrets.signing_keys[0].kid);
    }

    #[test]
    fn a_realm_with_smtp_needs_the_smtp_url_outside_dev() {
        let dir = tempfile::tempdir().unwrap();
        load(dir.path(), &settings(), dev()).unwrap();
        assert!(
            !dir.path().join(files::SMTP_URL).exists(),
            "dev mode never invents an SMTP server"
        );
        let err = load(dir.path(), &settings(), None).unwrap_err();
        assert!(
            err.to_string().contains("secret smtp-url is missing"),
            "{err}"
        );
        std::fs::write(
            dir.path().join(files::SMTP_URL),
            "smtp://mail.example.com:587",
        )
        .unwrap();
        assert!(load(dir.path(), &settings(), None).is_ok());
    }

    #[test]
    fn generate_keys_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            generate_keys(dir.path(), &random(), OffsetDateTime::UNIX_EPOCH)
                .unwrap()
                .len(),
            6
        );
        assert!(dir.path().join(files::AUDIT_KEY).exists());
        assert!(matches!(
            generate_keys(dir.path(), &random(), OffsetDateTime::UNIX_EPOCH),
            Err(SecretsError::Exists(_))
        ));
    }

    #[test]
    fn a_malformed_pepper_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        load(dir.path(), &settings(), dev()).unwrap();
        std::fs::write(
            dir.path().join(files::SMTP_URL),
            "smtp://mail.example.com:587",
        )
        .unwrap();
        std::fs::write(dir.path().join(files::PEPPER), "hunter2-secret-value").unwrap();
        let err = load(dir.path(), &settings(), None).unwrap_err().to_string();
        assert!(err.contains("secret pepper is invalid"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_missing_or_malformed_audit_key_stops_the_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        load(dir.path(), &settings(), dev()).unwrap();
        std::fs::write(
            dir.path().join(files::SMTP_URL),
            "smtp://mail.example.com:587",
        )
        .unwrap();
        std::fs::remove_file(dir.path().join(files::AUDIT_KEY)).unwrap();
        let err = load(dir.path(), &settings(), None).unwrap_err().to_string();
        assert!(err.contains("secret audit-key is missing"), "{err}");
        std::fs::write(dir.path().join(files::AUDIT_KEY), "v1:c2hvcnQ=").unwrap();
        let err = load(dir.path(), &settings(), None).unwrap_err().to_string();
        assert!(err.contains("secret audit-key is invalid"), "{err}");
    }
}
