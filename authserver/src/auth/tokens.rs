//! Tokens: ES256 JWT access and ID tokens with `kid`, the JWKS (current and previous keys),
//! and opaque refresh tokens (only their SHA-256 is stored).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use super::keys::SigningKey;
use crate::random::{Random, SigningRandom};

/// Claims of an access token (RFC 9068 profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id, or the client id of a client-credentials token.
    pub sub: String,
    /// Audience: the issuer (its own API and userinfo).
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique id.
    pub jti: String,
    /// Public id of the session the token belongs to (none for client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Grant (refresh-token family) the token was issued under, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// OAuth client the token was issued to, when not the realm's own API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// When the user authenticated (RFC 9068 §2.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Authentication context class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods (RFC 8176).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// Claims of an ID token (OpenID Connect Core §2). Claims about the user (email, name) come
/// from userinfo, as §5.4 asks when an access token is issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience: the client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The authorization request's nonce, unchanged (absent after a refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Hash of the access token issued with it (§3.1.3.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Authentication methods (RFC 8176).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Authentication context class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Public id of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// What an ID token says besides issuer, subject, audience and time.
#[derive(Clone, Debug, Default)]
pub struct IdContext<'a> {
    /// When the user authenticated.
    pub auth_time: Option<OffsetDateTime>,
    /// The request's nonce.
    pub nonce: Option<&'a str>,
    /// The access token issued alongside, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// Authentication methods.
    pub amr: &'a [String],
    /// Authentication context class.
    pub acr: Option<&'a str>,
    /// Session id.
    pub sid: Option<&'a str>,
}

/// `at_hash` of an ES256-signed ID token: base64url of the left half of the SHA-256 of the
/// access token's ASCII (OpenID Connect Core §3.1.3.6).
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Builds ID-token claims for `client_id` about `user`, valid for `ttl` from `now`.
pub fn id_claims(
    issuer: &str,
    client_id: &str,
    user: Uuid,
    context: &IdContext<'_>,
    now: OffsetDateTime,
    ttl: Duration,
) -> IdClaims {
    let iat = now.unix_timestamp();
    IdClaims {
        iss: issuer.to_owned(),
        sub: user.to_string(),
        aud: client_id.to_owned(),
        exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        iat,
        auth_time: context
            .auth_time
            .map_or(iat, OffsetDateTime::unix_timestamp),
        nonce: context.nonce.map(str::to_owned),
        at_hash: context.access_token.map(at_hash),
        amr: context.amr.to_vec(),
        acr: context.acr.map(str::to_owned),
        sid: context.sid.map(str::to_owned),
    }
}

/// Whether a JOSE `typ` names an access token: `at+jwt`, or its full media type, in any case
/// (RFC 7515 §4.1.9, RFC 9068 §2.1).
fn is_access_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// A key that verifies: its `kid` and public point.
struct VerifyingKey {
    kid: String,
    created: Option<i64>,
    public: UnparsedPublicKey<Vec<u8>>,
}

/// The JOSE header members a token is checked by.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// The base64url JOSE header of a token of type `typ` signed by `kid` (members in the order
/// the tokens always had: `typ`, `alg`, `kid`).
fn encoded_header(typ: &str, kid: &str) -> Result<String, AuthError> {
    let json = |v: &str| {
        serde_json::to_string(v).map_err(|e| AuthError::Internal(format!("JOSE header: {e}")))
    };
    let header = format!(
        r#"{{"typ":{},"alg":"ES256","kid":{}}}"#,
        json(typ)?,
        json(kid)?
    );
    Ok(URL_SAFE_NO_PAD.encode(header))
}

/// The token types signed often enough to keep their encoded header.
const COMMON_TYPES: [&str; 2] = ["at+jwt", "JWT"];

/// The signing keys: the first signs, all verify. ES256 by `ring` (the crypto the TLS stack
/// already uses): the active key pair is parsed once, and each signature is the JWS compact
/// form of RFC 7515 with the 64-byte `r || s` of RFC 7518 §3.4.
pub struct KeyRing {
    kid: String,
    created: Option<i64>,
    signing: EcdsaKeyPair,
    random: SigningRandom,
    /// `(typ, encoded header)` of [`COMMON_TYPES`].
    headers: Vec<(&'static str, String)>,
    keys: Vec<VerifyingKey>,
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
    /// Builds the ring from the loaded keys; signatures draw their nonces from `random`.
    pub fn new(keys: &[SigningKey], random: SigningRandom) -> Result<Self, AuthError> {
        let active = keys
            .first()
            .ok_or_else(|| AuthError::Internal("no signing key".into()))?;
        let public_point = |key: &SigningKey| {
            key.secret
                .public_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec()
        };
        let signing = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &active.secret.to_bytes(),
            &public_point(active),
            random.system(),
        )
        .map_err(|e| AuthError::Internal(format!("signing key {}: {e}", active.kid)))?;
        let headers = COMMON_TYPES
            .iter()
            .map(|typ| Ok((*typ, encoded_header(typ, &active.kid)?)))
            .collect::<Result<_, AuthError>>()?;
        let verifying = keys
            .iter()
            .map(|key| VerifyingKey {
                kid: key.kid.clone(),
                created: key.created,
                public: UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_point(key)),
            })
            .collect();
        let public: Vec<serde_json::Value> = keys.iter().map(SigningKey::public_jwk).collect();
        Ok(Self {
            kid: active.kid.clone(),
            created: active.created,
            signing,
            random,
            headers,
            keys: verifying,
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

    /// `(kid, created)` of every key in the ring, the active (signing) one first; `created` is
    /// Unix seconds when the key's JWK records it. No key material.
    pub fn key_ids(&self) -> Vec<(String, Option<i64>)> {
        self.keys
            .iter()
            .map(|k| (k.kid.clone(), k.created))
            .collect()
    }

    /// `kid` of the active key.
    pub fn active_kid(&self) -> &str {
        &self.kid
    }

    /// Signs claims with the active key; `typ` is the JOSE header type (`at+jwt`, `JWT`).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, AuthError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| AuthError::Internal(format!("claims encoding: {e}")))?;
        let computed;
        let header = match self.headers.iter().find(|(t, _)| *t == typ) {
            Some((_, header)) => header.as_str(),
            None => {
                computed = encoded_header(typ, &self.kid)?;
                computed.as_str()
            }
        };
        // header . payload . signature: 86 characters of base64url for 64 bytes.
        let mut token = String::with_capacity(header.len() + payload.len().div_ceil(3) * 4 + 88);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self
            .signing
            .sign(self.random.system(), token.as_bytes())
            .map_err(|_| AuthError::Internal("signing failed".into()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// The header and payload of a compact JWS whose ES256 signature a known key verifies.
    fn verified(&self, token: &str) -> Result<(JoseHeader, Vec<u8>), AuthError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(AuthError::Unauthenticated)?;
        let (header, payload) = signed.split_once('.').ok_or(AuthError::Unauthenticated)?;
        if payload.contains('.') {
            return Err(AuthError::Unauthenticated);
        }
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| AuthError::Unauthenticated)
        };
        let header: JoseHeader =
            serde_json::from_slice(&decode(header)?).map_err(|_| AuthError::Unauthenticated)?;
        if header.alg != "ES256" {
            return Err(AuthError::Unauthenticated);
        }
        let kid = header.kid.as_deref().ok_or(AuthError::Unauthenticated)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(AuthError::Unauthenticated)?;
        key.public
            .verify(signed.as_bytes(), &decode(signature)?)
            .map_err(|_| AuthError::Unauthenticated)?;
        Ok((header, decode(payload)?))
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
        let (header, payload) = self.verified(token)?;
        if !is_access_typ(header.typ.as_deref()) {
            return Err(AuthError::Unauthenticated);
        }
        let claims: AccessClaims =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Unauthenticated)?;
        let now = now.unix_timestamp();
        if claims.iss != issuer || claims.aud != audience || now >= claims.exp || now < claims.nbf {
            return Err(AuthError::Unauthenticated);
        }
        Ok(claims)
    }

    /// Verifies an ID token this realm issued, as a logout's `id_token_hint` is checked: ES256,
    /// a known `kid`, the signature and the issuer, **not** its expiry (RP-Initiated Logout
    /// §2 accepts an expired hint). An access token (`typ` `at+jwt`) is never an ID token.
    pub fn verify_id_token_hint(&self, token: &str, issuer: &str) -> Result<IdClaims, AuthError> {
        let (header, payload) = self.verified(token)?;
        if is_access_typ(header.typ.as_deref()) {
            return Err(AuthError::Unauthenticated);
        }
        let claims: IdClaims =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Unauthenticated)?;
        if claims.iss != issuer {
            return Err(AuthError::Unauthenticated);
        }
        Ok(claims)
    }
}

/// What an access token is about: whose, which session and grant, for which client, what
/// scope.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    /// The user.
    pub user: Uuid,
    /// Public id of the session the token belongs to.
    pub sid: &'a str,
    /// The grant (refresh-token family), when the token has one.
    pub gid: Option<&'a str>,
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
        sid: Some(grant.sid.to_owned()),
        gid: grant.gid.map(str::to_owned),
        client_id: grant.client_id.map(str::to_owned),
        scope: grant.scope.to_owned(),
        auth_time: None,
        acr: None,
        amr: Vec::new(),
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

    fn ring_of(signer: &SigningKey) -> KeyRing {
        KeyRing::new(
            std::slice::from_ref(signer),
            crate::wiring::signing_random(),
        )
        .unwrap()
    }

    fn new_ring(random: &Random) -> KeyRing {
        KeyRing::new(&[key(random)], crate::wiring::signing_random()).unwrap()
    }

    fn claims(now: OffsetDateTime, ttl: u64) -> AccessClaims {
        let grant = Grant {
            user: Uuid::nil(),
            sid: "sid",
            gid: None,
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
        let old_ring =
            KeyRing::new(std::slice::from_ref(&old), crate::wiring::signing_random()).unwrap();
        let rotated =
            KeyRing::new(&[new.clone(), old.clone()], crate::wiring::signing_random()).unwrap();
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

    #[test]
    fn a_signed_token_verifies_with_an_independent_jwt_implementation_and_keeps_its_header() {
        let random = random();
        let signer = key(&random);
        let ring = ring_of(&signer);
        let claims = claims(at(1_000_000), 600);
        let t = ring.sign("at+jwt", &claims).unwrap();
        let header = URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"typ":"at+jwt","alg":"ES256","kid":"{}"}}"#, signer.kid)
        );
        assert_eq!(t.rsplit('.').next().unwrap().len(), 86, "64-byte r || s");
        let jwk = signer.public_jwk();
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://auth.example.com"]);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<AccessClaims>(&t, &decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        assert_eq!(decoded.header.kid.as_deref(), Some(signer.kid.as_str()));
        assert_eq!(decoded.header.typ.as_deref(), Some("at+jwt"));
        let id = ring.sign("JWT", &claims).unwrap();
        let header = jsonwebtoken::decode_header(&id).unwrap();
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn a_token_an_independent_implementation_signed_with_our_key_verifies() {
        use p256::pkcs8::EncodePrivateKey;
        let random = random();
        let signer = key(&random);
        let ring = ring_of(&signer);
        let der = signer.secret.to_pkcs8_der().unwrap();
        let claims = claims(at(1_000_000), 600);
        let signed_as = |typ: &str| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some(signer.kid.clone());
            header.typ = Some(typ.into());
            let key = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        };
        let iss = "https://auth.example.com";
        let t = signed_as("at+jwt");
        assert_eq!(
            ring.verify_access(&t, iss, iss, at(1_000_001)).unwrap(),
            claims
        );
        assert!(
            ring.verify_access(&signed_as("JWT"), iss, iss, at(1_000_001))
                .is_err(),
            "typ JWT is not an access token"
        );
    }

    #[test]
    fn at_hash_is_the_base64url_left_half_of_the_access_tokens_sha256() {
        // OpenID Connect Core, appendix A.4.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    fn id_token(ring: &KeyRing, now: OffsetDateTime) -> (String, IdClaims) {
        let amr = vec!["pwd".to_owned()];
        let context = IdContext {
            auth_time: Some(at(999_000)),
            nonce: Some("n-0S6_WzA2Mj"),
            access_token: Some("the-access-token"),
            amr: &amr,
            acr: Some("urn:portcullis:acr:pwd"),
            sid: Some("sid-1"),
        };
        let claims = id_claims(
            "https://auth.example.com",
            "shop-web",
            Uuid::nil(),
            &context,
            now,
            Duration::from_secs(600),
        );
        (ring.sign("JWT", &claims).unwrap(), claims)
    }

    #[test]
    fn an_id_token_carries_nonce_at_hash_auth_time_amr_acr_and_sid() {
        let ring = new_ring(&random());
        let (token, claims) = id_token(&ring, at(1_000_000));
        let read = ring
            .verify_id_token_hint(&token, "https://auth.example.com")
            .unwrap();
        assert_eq!(read, claims);
        assert_eq!(read.aud, "shop-web");
        assert_eq!(read.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
        assert_eq!(read.at_hash, Some(at_hash("the-access-token")));
        assert_eq!((read.auth_time, read.exp), (999_000, 1_000_600));
        assert_eq!(read.amr, ["pwd"]);
        assert_eq!(read.acr.as_deref(), Some("urn:portcullis:acr:pwd"));
        assert_eq!(read.sid.as_deref(), Some("sid-1"));
    }

    #[test]
    fn an_expired_id_token_is_still_a_hint_but_not_from_another_issuer_or_key() {
        let random = random();
        let ring = new_ring(&random);
        let (token, _) = id_token(&ring, at(1));
        assert!(
            ring.verify_id_token_hint(&token, "https://auth.example.com")
                .is_ok()
        );
        assert!(
            ring.verify_id_token_hint(&token, "https://other.example.com")
                .is_err()
        );
        let other = new_ring(&random);
        assert!(
            other
                .verify_id_token_hint(&token, "https://auth.example.com")
                .is_err()
        );
    }

    #[test]
    fn an_access_token_is_never_an_id_token_and_an_id_token_never_an_access_token() {
        let ring = new_ring(&random());
        let iss = "https://auth.example.com";
        let access = token(&ring, at(1_000_000));
        assert!(ring.verify_id_token_hint(&access, iss).is_err());
        let (id, _) = id_token(&ring, at(1_000_000));
        assert!(
            ring.verify_access(&id, iss, "shop-web", at(1_000_001))
                .is_err()
        );
    }

    #[test]
    fn the_access_token_typ_is_matched_as_a_media_type() {
        let ring = new_ring(&random());
        let iss = "https://auth.example.com";
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let t = ring.sign(typ, &claims(at(1_000_000), 600)).unwrap();
            assert!(
                ring.verify_access(&t, iss, iss, at(1_000_001)).is_ok(),
                "{typ}"
            );
        }
        let jwt = ring.sign("JWT", &claims(at(1_000_000), 600)).unwrap();
        assert!(ring.verify_access(&jwt, iss, iss, at(1_000_001)).is_err());
    }
}
