//! TLS for the realm: a cert-manager Certificate (as a dynamic object), or a self-signed CA
//! and serving certificate generated with rcgen, or a Secret the platform team provides.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde::{Deserialize, Serialize};

use super::ingress::ingress_host;
use super::meta::{Owner, annotations, names};
use super::{BuildError, Inputs};

/// Component label of TLS children.
const COMPONENT: &str = "tls";
/// Lifetime of a generated serving certificate.
pub const SELF_SIGNED_VALIDITY: SignedDuration = SignedDuration::from_hours(90 * 24);
/// A generated certificate is renewed this long before it expires.
pub const SELF_SIGNED_RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The cert-manager Certificate kind.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ))
}

/// A generated CA and serving certificate, PEM encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsMaterial {
    /// Serving certificate followed by the CA certificate.
    pub cert_chain_pem: String,
    /// Private key of the serving certificate (PKCS#8).
    pub key_pem: String,
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// Expiry of the serving certificate.
    pub not_after: Timestamp,
}

impl TlsMaterial {
    /// Whether the certificate must be renewed at `now`.
    pub fn needs_renewal(&self, now: Timestamp) -> bool {
        now + SELF_SIGNED_RENEW_BEFORE >= self.not_after
    }

    /// Reads the material back from the Secret the operator wrote.
    pub fn from_secret(secret: &Secret) -> Option<TlsMaterial> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let not_after = secret
            .metadata
            .annotations
            .as_ref()?
            .get(annotations::CERT_NOT_AFTER)?
            .parse()
            .ok()?;
        Some(TlsMaterial {
            cert_chain_pem: text("tls.crt")?,
            key_pem: text("tls.key")?,
            ca_pem: text("ca.crt")?,
            not_after,
        })
    }
}

fn offset(at: Timestamp) -> Result<time::OffsetDateTime, BuildError> {
    time::OffsetDateTime::from_unix_timestamp(at.as_second())
        .map_err(|e| BuildError::Tls(e.to_string()))
}

/// Generates a CA and a serving certificate for `hosts`, valid from `now`.
pub fn generate_self_signed(
    realm: &str,
    hosts: &[String],
    now: Timestamp,
) -> Result<TlsMaterial, BuildError> {
    let tls = |e: rcgen::Error| BuildError::Tls(e.to_string());
    let not_after = now + SELF_SIGNED_VALIDITY;

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(tls)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{realm} portcullis CA"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = offset(now)?;
    // The CA outlives one serving certificate so renewals keep the same trust anchor time.
    ca_params.not_after = offset(now + SELF_SIGNED_VALIDITY * 4)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(tls)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(tls)?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = offset(now)?;
    params.not_after = offset(not_after)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls)?;

    Ok(TlsMaterial {
        cert_chain_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
        ca_pem: ca_cert.pem(),
        not_after,
    })
}

/// DNS names of the serving certificate: the public host and the in-cluster Service names.
pub fn serving_hosts(inputs: &Inputs<'_>) -> Vec<String> {
    let owner = &inputs.owner;
    let mut hosts = vec![ingress_host(inputs)];
    if let Some(namespace) = &owner.namespace {
        hosts.push(format!("{}.{namespace}.svc", owner.realm));
        hosts.push(format!("{}.{namespace}.svc.cluster.local", owner.realm));
    }
    hosts
}

/// The Secret holding the TLS certificate the Ingress serves, if any.
pub fn tls_secret_name(inputs: &Inputs<'_>) -> Option<String> {
    let tls = inputs.settings.spec.tls.as_ref()?;
    match &tls.secret_name {
        Some(name) => Some(name.clone()),
        None => Some(names::tls(&inputs.owner.realm)),
    }
}

/// The `kubernetes.io/tls` Secret holding generated self-signed material.
pub fn self_signed_secret(owner: &Owner, material: &TlsMaterial) -> Secret {
    let mut metadata = owner.meta(names::tls(&owner.realm), COMPONENT);
    metadata.annotations = Some(BTreeMap::from([(
        annotations::CERT_NOT_AFTER.to_owned(),
        material.not_after.to_string(),
    )]));
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), bytes(&material.cert_chain_pem)),
            ("tls.key".to_owned(), bytes(&material.key_pem)),
            ("ca.crt".to_owned(), bytes(&material.ca_pem)),
        ])),
        ..Default::default()
    }
}

/// `spec` of a cert-manager Certificate (the fields the operator sets).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Secret cert-manager writes.
    pub secret_name: String,
    /// Names on the certificate.
    pub dns_names: Vec<String>,
    /// Issuer to ask.
    pub issuer_ref: CertificateIssuerRef,
    /// Key algorithm and rotation.
    pub private_key: CertificatePrivateKey,
    /// Lifetime.
    pub duration: String,
    /// Renew this long before expiry.
    pub renew_before: String,
}

/// `spec.issuerRef` of a Certificate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CertificateIssuerRef {
    /// Issuer name.
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
    /// Always `cert-manager.io`.
    pub group: String,
}

/// `spec.privateKey` of a Certificate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePrivateKey {
    /// `ECDSA`.
    pub algorithm: String,
    /// 256.
    pub size: u32,
    /// `Always`: a new key at every renewal.
    pub rotation_policy: String,
}

/// The cert-manager Certificate, when the realm names an issuer.
pub fn certificate(inputs: &Inputs<'_>) -> Result<Option<DynamicObject>, BuildError> {
    let Some(issuer) = inputs
        .settings
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.issuer_ref.as_ref())
    else {
        return Ok(None);
    };
    let owner = &inputs.owner;
    let spec = CertificateSpec {
        secret_name: names::tls(&owner.realm),
        // Only the public name: a public ACME issuer cannot validate in-cluster names.
        dns_names: vec![ingress_host(inputs)],
        issuer_ref: CertificateIssuerRef {
            name: issuer.name.clone(),
            kind: format!("{:?}", issuer.kind),
            group: "cert-manager.io".to_owned(),
        },
        private_key: CertificatePrivateKey {
            algorithm: "ECDSA".to_owned(),
            size: 256,
            rotation_policy: "Always".to_owned(),
        },
        duration: "2160h".to_owned(),
        renew_before: "360h".to_owned(),
    };
    super::dynamic_object(
        &certificate_resource(),
        owner.meta(names::tls(&owner.realm), COMPONENT),
        &spec,
    )
    .map(Some)
}
