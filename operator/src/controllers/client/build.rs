//! Build (pure): the credentials Secret of an admitted AuthClient.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use portcullis_crds::client::{ClientType, secret_keys};
use portcullis_crds::{AuthClient, AuthRealm};

use crate::resources::meta::{MANAGED_BY, PART_OF, controller_reference, labels};

/// `app.kubernetes.io/name` of a client's credentials Secret. Not the realm children's
/// `portcullis`: a realm never prunes an AuthClient's Secret, even in its own namespace.
pub const APP_NAME: &str = "portcullis-client";
/// `app.kubernetes.io/component` of a client's credentials Secret.
pub const COMPONENT: &str = "client-credentials";

/// Whether `secret` is the credentials Secret of `client`: its controller is this very
/// AuthClient (by uid). Anything else under the name is not the operator's to touch.
pub fn is_owned_by(secret: &ObjectMeta, client: &AuthClient) -> bool {
    let uid = client.metadata.uid.as_deref();
    uid.is_some()
        && secret.owner_references.iter().flatten().any(|r| {
            r.controller == Some(true) && Some(r.uid.as_str()) == uid && r.kind == "AuthClient"
        })
}

/// The credentials Secret: `client_id`, `client_secret` (Confidential clients),
/// `issuer`, `discovery_url`; owned by the AuthClient, so the garbage collector removes it
/// with the client. `None` for a Confidential client whose secret the realm has not
/// generated yet.
pub fn credentials_secret(
    client: &AuthClient,
    realm: &AuthRealm,
    client_secret: Option<&str>,
) -> Option<Secret> {
    let issuer = realm.spec.issuer.clone();
    let mut data = BTreeMap::from([
        (secret_keys::CLIENT_ID.to_owned(), client.client_id()),
        (
            secret_keys::DISCOVERY_URL.to_owned(),
            format!("{issuer}/.well-known/openid-configuration"),
        ),
        (secret_keys::ISSUER.to_owned(), issuer),
    ]);
    if client.spec.client_type == ClientType::Confidential {
        data.insert(
            secret_keys::CLIENT_SECRET.to_owned(),
            client_secret?.to_owned(),
        );
    }
    let labels = BTreeMap::from([
        (labels::NAME.to_owned(), APP_NAME.to_owned()),
        (labels::INSTANCE.to_owned(), client.name_any()),
        (labels::COMPONENT.to_owned(), COMPONENT.to_owned()),
        (labels::MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (labels::PART_OF.to_owned(), PART_OF.to_owned()),
    ]);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(client.secret_name()),
            namespace: client.namespace(),
            labels: Some(labels),
            owner_references: controller_reference(client).map(|r| vec![r]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn client(kind: &str) -> AuthClient {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthClient",
            "metadata": {"name": "web", "namespace": "shop", "uid": "client-uid"},
            "spec": {"realmRef": {"name": "demo", "namespace": "auth"}, "type": kind,
                "redirectUris": ["https://shop.example.com/cb"]}
        }))
        .unwrap()
    }

    fn realm() -> AuthRealm {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthRealm",
            "metadata": {"name": "demo", "namespace": "auth", "uid": "realm-uid"},
            "spec": {"issuer": "https://a.example.com", "database": {"secretRef": {"name": "db"}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_confidential_client_gets_its_secret_next_to_it_owned_by_it() {
        let c = client("Confidential");
        assert!(
            credentials_secret(&c, &realm(), None).is_none(),
            "waits for the realm"
        );
        let secret = credentials_secret(&c, &realm(), Some("s3cret")).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("web-oidc"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("shop"));
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["client_id"].0, b"shop-web");
        assert_eq!(data["client_secret"].0, b"s3cret");
        assert_eq!(data["issuer"].0, b"https://a.example.com");
        assert_eq!(
            data["discovery_url"].0,
            b"https://a.example.com/.well-known/openid-configuration"
        );
        assert!(is_owned_by(&secret.metadata, &c));
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_ne!(
            labels[labels::NAME],
            crate::resources::meta::APP_NAME,
            "never pruned by a realm"
        );
    }

    #[test]
    fn a_public_client_gets_no_secret_value_and_a_foreign_secret_is_not_ours() {
        let c = client("Public");
        let secret = credentials_secret(&c, &realm(), None).unwrap();
        assert!(!secret.data.as_ref().unwrap().contains_key("client_secret"));
        assert!(!is_owned_by(&ObjectMeta::default(), &c));
        let mut other = client("Public");
        other.metadata.uid = Some("another-uid".into());
        assert!(!is_owned_by(&secret.metadata, &other));
    }
}
