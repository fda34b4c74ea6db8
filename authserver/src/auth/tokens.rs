//! Tokens: ES256 JWT access and ID tokens with `kid`, the JWKS (current and previous keys),
//! and opaque refresh tokens (only their SHA-256 is stored).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::EncodePrivateKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use super::keys::SigningKey;
use crate::random::Random;

/// Claims of an access token (RFC 9068 profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience: the issuer's own API, or a client id.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique id.
    pub jti: String,
    /// Public id of the session the token belongs to.
    pub sid: String,
    /// OAuth client the token was issued to, when not the realm's own API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
}

/// Claims of an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience: the client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Session id.
    pub sid: String,
    /// Email address.
    pub email: String,
    /// Whether it is verified.
    pub email_verified: bool,
}

struct RingKey {
    kid: String,
    decoding: DecodingKey,
}

/// The signing keys: the first signs, all verify.
pub struct KeyRing {
    kid: String,
    created: Option<i64>,
    encoding: EncodingKey,
    keys: Vec<RingKey>,
    jwks: serde_json::Value,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Builds the ring from the loaded keys.
    pub fn new(keys: &[SigningKey]) -> Result<Self, AuthError> {
        let active = keys
            .first()
            .ok_or_else(|| AuthError::Internal("no signing key".into()))?;
        let der = active
            .secret
            .to_pkcs8_der()
            .map_err(|e| AuthError::Internal(format!("signing key encoding: {e}")))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut ring = Vec::new();
        let mut public = Vec::new();
        for key in keys {
            let jwk = key.public_jwk();
            let (x, y) = (
                jwk["x"].as_str().unwrap_or_default(),
                jwk["y"].as_str().unwrap_or_default(),
            );
            let decoding = DecodingKey::from_ec_components(x, y)
                .map_err(|e| AuthError::Internal(format!("verification key {}: {e}", key.kid)))?;
            ring.push(RingKey {
                kid: key.kid.clone(),
                decoding,
            });
            public.push(jwk);
        }
        Ok(Self {
            kid: active.kid.clone(),
            created: active.created,
            encoding,
            keys: ring,
            jwks: serde_json::json!({ "keys": public }),
        })
    }

    /// The public JWK set.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Creation time (Unix seconds) of the active key, when its JWK records one.
    pub fn active_created(&self) -> Option<i64> {
        self.created
    }

    /// `kid` of the active key.
    pub fn active_kid(&self) -> &str {
        &self.kid
    }

    /// Signs claims with the active key; `typ` is the JOSE header type (`at+jwt`, `JWT`).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Internal(format!("signing: {e}")))
    }

    /// Verifies an access token: ES256 only, known `kid`, `typ` `at+jwt`, signature, issuer,
    /// audience, and `exp`/`nbf` against `now` (the server's clock, not the system's).
    pub fn verify_access(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Unauthenticated)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some("at+jwt") {
            return Err(AuthError::Unauthenticated);
        }
        let kid = header.kid.ok_or(AuthError::Unauthenticated)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(AuthError::Unauthenticated)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        // Time is checked below against the server clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| AuthError::Unauthenticated)?
            .claims;
        let now = now.unix_timestamp();
        if now >= claims.exp || now < claims.nbf {
            return Err(AuthError::Unauthenticated);
        }
        Ok(claims)
    }
}

/// What an access token is about: whose, which session, for which client, what scope.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    /// The user.
    pub user: Uuid,
    /// Public id of the session the token belongs to.
    pub sid: &'a str,
    /// OAuth client, when not the realm's own API.
    pub client_id: Option<&'a str>,
    /// Granted scopes, space-separated.
    pub scope: &'a str,
}

/// Builds access-token claims valid for `ttl` from `now`, with `jti` as its unique id.
pub fn access_claims(
    issuer: &str,
    audience: &str,
    grant: &Grant<'_>,
    now: OffsetDateTime,
    ttl: Duration,
    jti: Uuid,
) -> AccessClaims {
    let iat = now.unix_timestamp();
    AccessClaims {
        iss: issuer.to_owned(),
        sub: grant.user.to_string(),
        aud: audience.to_owned(),
        exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        iat,
        nbf: iat,
        jti: jti.to_string(),
        sid: grant.sid.to_owned(),
        client_id: grant.client_id.map(str::to_owned),
        scope: grant.scope.to_owned(),
    }
}

/// A new opaque refresh token and the hash that is stored.
pub fn new_refresh_token(random: &Random) -> (String, Vec<u8>) {
    let token = random.token(32);
    let hash = hash_opaque(&token);
    (token, hash)
}

/// SHA-256 of an opaque token (refresh, verification, reset), as stored.
pub fn hash_opaque(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random() -> Random {
        use rand_chacha::rand_core::SeedableRng;
        Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(11))
    }

    fn key(random: &Random) -> SigningKey {
        SigningKey::generate(random, OffsetDateTime::UNIX_EPOCH)
    }

    fn new_ring(random: &Random) -> KeyRing {
        KeyRing::new(&[key(random)]).unwrap()
    }

    fn claims(now: OffsetDateTime, ttl: u64) -> AccessClaims {
        let grant = Grant {
            user: Uuid::nil(),
            sid: "sid",
            client_id: None,
            scope: "openid",
        };
        access_claims(
            "https://auth.example.com",
            "https://auth.example.com",
            &grant,
            now,
            Duration::from_secs(ttl),
            Uuid::nil(),
        )
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn token(ring: &KeyRing, now: OffsetDateTime) -> String {
        ring.sign("at+jwt", &claims(now, 600)).unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let ring = new_ring(&random());
        let t = token(&ring, at(1_000_000));
        let iss = "https://auth.example.com";
        assert!(ring.verify_access(&t, iss, iss, at(1_000_599)).is_ok());
        assert!(
            ring.verify_access(&t, iss, iss, at(1_000_600)).is_err(),
            "expired"
        );
        assert!(
            ring.verify_access(&t, iss, iss, at(999_999)).is_err(),
            "not yet valid"
        );
        assert!(
            ring.verify_access(&t, "https://other.example.com", iss, at(1_000_001))
                .is_err(),
            "issuer"
        );
        assert!(
            ring.verify_access(&t, iss, "other-audience", at(1_000_001))
                .is_err(),
            "audience"
        );
    }

    #[test]
    fn a_token_from_another_key_or_tampered_is_refused() {
        let random = random();
        let ring = new_ring(&random);
        let other = new_ring(&random);
        let iss = "https://auth.example.com";
        let t = token(&other, at(1_000_000));
        assert!(ring.verify_access(&t, iss, iss, at(1_000_001)).is_err());
        let mut tampered = token(&ring, at(1_000_000));
        tampered.insert(tampered.len() - 5, 'A');
        assert!(
            ring.verify_access(&tampered, iss, iss, at(1_000_001))
                .is_err()
        );
    }

    #[test]
    fn previous_keys_still_verify_and_the_jwks_lists_all() {
        let random = random();
        let old = key(&random);
        let new = key(&random);
        let old_ring = KeyRing::new(std::slice::from_ref(&old)).unwrap();
        let rotated = KeyRing::new(&[new.clone(), old.clone()]).unwrap();
        let t = token(&old_ring, at(1_000_000));
        let iss = "https://auth.example.com";
        assert!(rotated.verify_access(&t, iss, iss, at(1_000_001)).is_ok());
        assert_eq!(rotated.active_kid(), new.kid);
        let kids: Vec<&str> = rotated.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [new.kid.as_str(), old.kid.as_str()]);
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let ring = new_ring(&random());
        let iss = "https://auth.example.com";
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let claims = serde_json::to_string(&claims(at(1_000_000), 60)).unwrap();
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"at+jwt"}"#),
            b64(&claims)
        );
        assert!(ring.verify_access(&none, iss, iss, at(1_000_001)).is_err());
    }
}
