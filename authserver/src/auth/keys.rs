//! Key material of the domain: ES256 signing keys (JWK) and password peppers, with their file
//! formats. Reading and writing the secrets dir is startup's job (`startup::secrets_dir`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::random::Random;

/// An ES256 signing key.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id (`kid`), the RFC 7638 thumbprint unless the file names one.
    pub kid: String,
    /// The private key.
    pub secret: p256::SecretKey,
    /// Creation time (Unix seconds) from the key's `iat` member, when recorded.
    pub created: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from `random`, created `now`.
    pub fn generate(random: &Random, now: OffsetDateTime) -> Self {
        let secret = random.with(|rng| p256::SecretKey::random(rng));
        Self {
            kid: thumbprint(&secret.public_key()),
            secret,
            created: Some(now.unix_timestamp()),
        }
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> serde_json::Value {
        self.jwk(&self.secret.public_key().to_jwk_string(), false)
    }

    /// The private JWK, as the secrets dir holds it (with `iat` when known).
    pub fn private_jwk(&self) -> serde_json::Value {
        self.jwk(&self.secret.to_jwk_string(), true)
    }

    fn jwk(&self, base: &str, with_created: bool) -> serde_json::Value {
        let mut jwk: serde_json::Value = serde_json::from_str(base).unwrap_or_default();
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".into(), self.kid.clone().into());
            map.insert("alg".into(), "ES256".into());
            map.insert("use".into(), "sig".into());
            if let (true, Some(created)) = (with_created, self.created) {
                map.insert("iat".into(), created.into());
            }
        }
        jwk
    }

    /// Reads a JWK set with private EC P-256 keys; the reason names the bad key, never a value.
    pub fn parse_set(text: &str) -> Result<Vec<SigningKey>, String> {
        let set: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "not a JSON JWK set".to_owned())?;
        let keys = set["keys"].as_array().ok_or("no \"keys\" array")?;
        if keys.is_empty() {
            return Err("the key set is empty".to_owned());
        }
        keys.iter()
            .enumerate()
            .map(|(i, jwk)| {
                if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
                    return Err(format!("key {i}: only EC P-256 (ES256) keys are supported"));
                }
                // The curve library reads only the key members; kid/alg/use are ours.
                let minimal = serde_json::json!({
                    "kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"], "d": jwk["d"],
                });
                let secret = p256::SecretKey::from_jwk_str(&minimal.to_string()).map_err(|_| {
                    format!("key {i}: not a valid private P-256 JWK (needs d, x, y)")
                })?;
                let kid = jwk["kid"]
                    .as_str()
                    .map_or_else(|| thumbprint(&secret.public_key()), str::to_owned);
                Ok(SigningKey {
                    kid,
                    secret,
                    created: jwk["iat"].as_i64(),
                })
            })
            .collect()
    }
}

/// RFC 7638 JWK thumbprint of a P-256 public key, base64url.
fn thumbprint(public: &p256::PublicKey) -> String {
    let jwk: serde_json::Value = serde_json::from_str(&public.to_jwk_string()).unwrap_or_default();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap_or_default(),
        jwk["y"].as_str().unwrap_or_default()
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A pepper version and its key. `Debug` shows the version only.
#[derive(Clone)]
pub struct Pepper {
    /// Version recorded with each password hash.
    pub version: String,
    /// Key bytes.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pepper({})", self.version)
    }
}

impl Pepper {
    /// A fresh pepper file's content: version `v1`, 32 random bytes.
    pub fn generate_line(random: &Random) -> String {
        format!("v1:{}\n", STANDARD.encode(random.bytes(32)))
    }

    /// Reads `VERSION:BASE64` lines (the first is current).
    pub fn parse_lines(text: &str) -> Result<Vec<Pepper>, &'static str> {
        let peppers: Vec<Pepper> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let (version, key) = line
                    .trim()
                    .split_once(':')
                    .ok_or("lines must be VERSION:BASE64")?;
                let valid_version = !version.is_empty()
                    && version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                let key = decode_base64(key).filter(|k| k.len() >= 32);
                match (valid_version, key) {
                    (true, Some(key)) => Ok(Pepper {
                        version: version.to_owned(),
                        key,
                    }),
                    _ => Err("lines must be VERSION:BASE64 with a key of at least 32 bytes"),
                }
            })
            .collect::<Result<_, _>>()?;
        if peppers.is_empty() {
            return Err("no pepper");
        }
        Ok(peppers)
    }
}

/// Base64 in any of the common alphabets (secrets are written by hand or by tools).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random() -> Random {
        use rand_chacha::rand_core::SeedableRng;
        Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(3))
    }

    #[test]
    fn the_kid_is_the_jwk_thumbprint_and_survives_the_file_format() {
        let key = SigningKey::generate(&random(), OffsetDateTime::UNIX_EPOCH);
        let jwk = key.public_jwk();
        assert_eq!(jwk["kid"], key.kid.as_str());
        assert_eq!(jwk["alg"], "ES256");
        assert!(jwk.get("d").is_none(), "no private part in the public JWK");
        let parsed =
            SigningKey::parse_set(&serde_json::json!({"keys": [key.private_jwk()]}).to_string())
                .unwrap();
        assert_eq!(parsed[0].kid, key.kid);
        assert_eq!(parsed[0].created, Some(0));
    }

    #[test]
    fn keys_from_the_same_seed_are_the_same_key() {
        let a = SigningKey::generate(&random(), OffsetDateTime::UNIX_EPOCH);
        let b = SigningKey::generate(&random(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(a.kid, b.kid);
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = SigningKey::generate(&random(), OffsetDateTime::UNIX_EPOCH);
        let pepper = Pepper {
            version: "v1".into(),
            key: vec![0xAB; 32],
        };
        let printed = format!("{key:?} {pepper:?}");
        assert!(!printed.contains("171"), "{printed}");
        assert!(!printed.to_lowercase().contains("secret"), "{printed}");
        assert_eq!(format!("{pepper:?}"), "Pepper(v1)");
    }
}
