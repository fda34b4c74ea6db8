//! Key material specifications.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::resources::tests::{full, minimal};

fn at(days: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + days * 86_400).unwrap()
}

/// A seeded generator, a different seed at every call (as a CSPRNG would differ).
fn rng() -> StdRng {
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(7);
    StdRng::seed_from_u64(SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn jwks(keys: &KeyMaterial) -> JwkSet {
    serde_json::from_str(&keys.data[files::SIGNING_KEYS]).unwrap()
}

#[test]
fn an_empty_secret_gets_every_file() {
    let f = full();
    let ensured = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    let names: Vec<&str> = ensured.keys.data.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "admin-token",
            "audit-key",
            "client-secret-billing-worker",
            "client-secret-shop-web",
            "cookie-key",
            "fernet-keys",
            "pepper",
            "signing-keys.json",
            "webhook-secret"
        ],
        "public clients get no secret"
    );
    assert!(ensured.rotation.published.is_some());
}

#[test]
fn generated_values_have_the_documented_formats() {
    let keys = ensure(
        &KeyMaterial::default(),
        &minimal().settings,
        at(0),
        &mut rng(),
    )
    .unwrap()
    .keys;
    let fernet = keys.data[files::FERNET_KEYS].lines().next().unwrap();
    assert_eq!(
        URL_SAFE.decode(fernet).unwrap().len(),
        32,
        "Fernet key: 32 bytes"
    );
    let pepper = keys.data[files::PEPPER].lines().next().unwrap();
    let (version, value) = pepper.split_once(':').unwrap();
    assert_eq!(version, "1");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(&keys.data[files::ADMIN_TOKEN])
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn the_audit_key_is_a_versioned_32_byte_key_like_the_pepper() {
    let keys = ensure(
        &KeyMaterial::default(),
        &minimal().settings,
        at(0),
        &mut rng(),
    )
    .unwrap()
    .keys;
    let text = &keys.data[files::AUDIT_KEY];
    assert!(text.ends_with('\n'), "one line per version: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "a single current key");
    let (version, value) = lines[0].split_once(':').unwrap();
    assert_eq!(version, "1");
    let key = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap();
    assert_eq!(key.len(), 32, "HMAC-SHA256 key: 32 bytes");
    assert_ne!(
        text,
        &keys.data[files::PEPPER],
        "the audit key is not the pepper"
    );
}

#[test]
fn an_existing_audit_key_with_several_versions_is_kept_as_it_is() {
    let mut existing = KeyMaterial::default();
    let rotated = "2:bmV3LWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzIQ==\n1:b2xkLWF1ZGl0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzIQ==\n";
    existing
        .data
        .insert(files::AUDIT_KEY.to_owned(), rotated.to_owned());
    let ensured = ensure(&existing, &minimal().settings, at(0), &mut rng()).unwrap();
    assert_eq!(ensured.keys.data[files::AUDIT_KEY], rotated);
    assert!(
        !ensured.generated.iter().any(|g| g == files::AUDIT_KEY),
        "{:?}",
        ensured.generated
    );
}

#[test]
fn the_signing_key_is_a_consistent_es256_jwk() {
    let keys = ensure(
        &KeyMaterial::default(),
        &minimal().settings,
        at(0),
        &mut rng(),
    )
    .unwrap()
    .keys;
    let set = jwks(&keys);
    assert_eq!(set.keys.len(), 1);
    let jwk = &set.keys[0];
    assert_eq!(
        (
            jwk.kty.as_str(),
            jwk.crv.as_str(),
            jwk.alg.as_str(),
            jwk.use_.as_str()
        ),
        ("EC", "P-256", "ES256", "sig")
    );
    assert!(jwk.kid.starts_with("20270115-"), "{}", jwk.kid);
    let d = URL_SAFE_NO_PAD.decode(&jwk.d).unwrap();
    let secret = p256::SecretKey::from_slice(&d).unwrap();
    let point = secret.public_key().as_affine().to_encoded_point(false);
    assert_eq!(URL_SAFE_NO_PAD.encode(&point.as_bytes()[1..33]), jwk.x);
    assert_eq!(URL_SAFE_NO_PAD.encode(&point.as_bytes()[33..]), jwk.y);
}

#[test]
fn existing_values_are_never_overwritten() {
    let f = full();
    let mut existing = KeyMaterial::default();
    existing
        .data
        .insert(files::ADMIN_TOKEN.into(), "kept-token".into());
    existing
        .data
        .insert("client-secret-shop-web".into(), "kept-client".into());
    let ensured = ensure(&existing, &f.settings, at(0), &mut rng()).unwrap();
    assert_eq!(ensured.keys.data[files::ADMIN_TOKEN], "kept-token");
    assert_eq!(ensured.keys.data["client-secret-shop-web"], "kept-client");
    assert!(!ensured.generated.contains(&files::ADMIN_TOKEN.to_owned()));
    assert!(
        ensured
            .generated
            .contains(&"client-secret-billing-worker".to_owned())
    );
}

#[test]
fn a_complete_secret_is_left_as_it_is() {
    let f = full();
    let first = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    let second = ensure(
        &first.keys,
        &f.settings,
        at(1),
        &mut StdRng::seed_from_u64(99),
    )
    .unwrap();
    assert_eq!(second.keys, first.keys);
    assert!(second.generated.is_empty());
}

#[test]
fn a_removed_clients_secret_is_dropped() {
    let mut f = full();
    let first = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    f.settings
        .spec
        .clients
        .retain(|c| c.client_id != "billing-worker");
    let second = ensure(&first.keys, &f.settings, at(0), &mut rng()).unwrap();
    assert!(
        !second
            .keys
            .data
            .contains_key("client-secret-billing-worker")
    );
    assert!(second.keys.data.contains_key("client-secret-shop-web"));
}

#[test]
fn two_generations_never_share_a_value() {
    let f = minimal();
    let a = ensure(
        &KeyMaterial::default(),
        &f.settings,
        at(0),
        &mut rand::rng(),
    )
    .unwrap();
    let b = ensure(
        &KeyMaterial::default(),
        &f.settings,
        at(0),
        &mut rand::rng(),
    )
    .unwrap();
    for (name, value) in &a.keys.data {
        assert_ne!(value, &b.keys.data[name], "{name}");
    }
}

#[test]
fn signing_keys_rotate_through_the_secret_over_time() {
    let f = minimal(); // 10m access tokens, rotation every 30d, keep 2
    let day0 = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    let k1 = jwks(&day0.keys).keys[0].kid.clone();

    let day30 = ensure(&day0.keys, &f.settings, at(30), &mut rng()).unwrap();
    let set = jwks(&day30.keys);
    assert_eq!(set.keys.len(), 2);
    assert_eq!(
        set.keys[0].kid, k1,
        "the old key signs until the new one has matured"
    );
    let k2 = set.keys[1].kid.clone();

    let later = at(30) + SignedDuration::from_mins(10);
    let matured = ensure(&day30.keys, &f.settings, later, &mut rng()).unwrap();
    let kids: Vec<String> = jwks(&matured.keys)
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, [k2, k1]);
}

#[test]
fn the_fernet_ring_grows_by_one_key_that_encrypts_after_one_token_lifetime() {
    let f = minimal();
    let day0 = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    let ring = |k: &KeyMaterial| -> Vec<String> {
        k.data[files::FERNET_KEYS]
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let first = ring(&day0.keys);
    assert_eq!(first.len(), 1);

    let day29 = ensure(&day0.keys, &f.settings, at(29), &mut rng()).unwrap();
    assert_eq!(
        ring(&day29.keys),
        first,
        "nothing changes before the rotation is due"
    );

    let day30 = ensure(&day0.keys, &f.settings, at(30), &mut rng()).unwrap();
    let published = ring(&day30.keys);
    assert_eq!(published.len(), 2);
    assert_eq!(published[0], first[0], "the old key still encrypts");
    assert!(day30.generated.contains(&files::FERNET_KEYS.to_owned()));

    let later = at(30) + SignedDuration::from_mins(10);
    let promoted = ring(
        &ensure(&day30.keys, &f.settings, later, &mut rng())
            .unwrap()
            .keys,
    );
    assert_eq!(
        promoted,
        [published[1].clone(), first[0].clone()],
        "the new key encrypts, the old decrypts"
    );

    // Keys are never dropped: data encrypted with them must stay readable.
    let mut keys = day30.keys;
    for month in 2..8 {
        let now = at(30 * month) + SignedDuration::from_mins(10);
        keys = ensure(&keys, &f.settings, now, &mut rng()).unwrap().keys;
    }
    assert_eq!(ring(&keys).len(), 8);
}

#[test]
fn keys_without_a_recorded_creation_time_are_kept() {
    let f = minimal();
    let day0 = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    let mut stripped = day0.keys.clone();
    stripped.annotations.clear();
    let mut set = jwks(&stripped);
    set.keys.iter_mut().for_each(|k| k.iat = None);
    stripped.data.insert(
        files::SIGNING_KEYS.to_owned(),
        serde_json::to_string(&set).unwrap(),
    );
    let again = ensure(&stripped, &f.settings, at(40), &mut rng()).unwrap();
    assert_eq!(again.rotation.published, None, "treated as created now");
    let kids = |keys: &KeyMaterial| {
        jwks(keys)
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect::<Vec<_>>()
    };
    assert_eq!(kids(&again.keys), kids(&day0.keys));
    assert_eq!(
        jwks(&again.keys).keys[0].iat,
        Some(at(40).as_second()),
        "and stamped now"
    );
}

#[test]
fn a_corrupt_key_set_is_refused_not_replaced() {
    let mut existing = KeyMaterial::default();
    existing
        .data
        .insert(files::SIGNING_KEYS.into(), "not json".into());
    let err = ensure(&existing, &minimal().settings, at(0), &mut rng()).unwrap_err();
    assert_eq!(err.reason(), "CorruptSigningKeys");
}

#[test]
fn only_es256_keys_are_generated() {
    let mut f = minimal();
    f.settings.spec.tokens.signing_algorithm = SigningAlgorithm::RS256;
    let err = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap_err();
    assert_eq!(err.reason(), "UnsupportedSigningAlgorithm");
}

#[test]
fn each_signing_key_carries_its_creation_time() {
    let f = minimal();
    let day0 = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    assert_eq!(jwks(&day0.keys).keys[0].iat, Some(at(0).as_second()));
    let day30 = ensure(&day0.keys, &f.settings, at(30), &mut rng()).unwrap();
    let times: Vec<Option<i64>> = jwks(&day30.keys).keys.iter().map(|k| k.iat).collect();
    assert_eq!(times, [Some(at(0).as_second()), Some(at(30).as_second())]);
}

#[test]
fn a_key_whose_annotation_is_lost_keeps_its_own_creation_time() {
    let f = minimal();
    let day0 = ensure(&KeyMaterial::default(), &f.settings, at(0), &mut rng()).unwrap();
    let mut stripped = day0.keys.clone();
    stripped.annotations.clear();
    let day40 = ensure(&stripped, &f.settings, at(40), &mut rng()).unwrap();
    assert!(
        day40.rotation.published.is_some(),
        "40 days old by its iat: due for rotation"
    );
}
