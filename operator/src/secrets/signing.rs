//! ES256 signing keys as JSON Web Keys (RFC 7517/7518), private part included.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// One private EC P-256 JWK.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EcJwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// Public x coordinate, base64url.
    pub x: String,
    /// Public y coordinate, base64url.
    pub y: String,
    /// Private scalar, base64url.
    pub d: String,
    /// Key id.
    pub kid: String,
    /// `ES256`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Creation time (seconds since the epoch). Not a registered JWK member: the auth server
    /// reads it to export the active key's age for the rotation-overdue alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// A JWK set (`signing-keys.json`): the first key signs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<EcJwk>,
}

/// Generates a P-256 key from the CSPRNG, named `kid`.
pub fn generate_es256(rng: &mut impl CryptoRng, kid: String) -> EcJwk {
    loop {
        let mut scalar = [0u8; 32];
        rng.fill_bytes(&mut scalar);
        // A random 256-bit string is a valid scalar except with probability ~2^-32.
        let Ok(secret) = p256::SecretKey::from_slice(&scalar) else {
            continue;
        };
        let point = secret.public_key().as_affine().to_encoded_point(false);
        let bytes = point.as_bytes();
        // Uncompressed SEC1: 0x04 || x (32 bytes) || y (32 bytes).
        let (x, y) = bytes[1..].split_at(32);
        return EcJwk {
            kty: "EC".to_owned(),
            crv: "P-256".to_owned(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
            d: URL_SAFE_NO_PAD.encode(secret.to_bytes()),
            kid,
            alg: "ES256".to_owned(),
            use_: "sig".to_owned(),
            iat: None,
        };
    }
}
