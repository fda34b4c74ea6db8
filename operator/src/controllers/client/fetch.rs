//! Fetch: the AuthClients that name a realm and the namespaces the realm admits (the API).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use portcullis_crds::{AuthClient, AuthRealm};

use super::admission::selector_string;
use crate::controllers::ReconcileError;

/// Every AuthClient that names `realm`, in every namespace (in `scope` only, when the
/// operator watches one namespace).
pub async fn clients_of(
    client: &Client,
    scope: Option<&str>,
    realm: &AuthRealm,
) -> Result<Vec<AuthClient>, ReconcileError> {
    let api: Api<AuthClient> = match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let name = realm.name_any();
    let namespace = realm.namespace();
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(ReconcileError::api("list AuthClients"))?
        .items
        .into_iter()
        .filter(|c| c.targets(&name, namespace.as_deref()))
        .collect())
}

/// The namespaces whose clients `realm` admits, as far as `clients` need to know: the realm's
/// own, plus those its `clientNamespaces` selects (listed only when a client lives elsewhere).
/// An operator watching one namespace (`scope`) admits clients of that namespace only.
pub async fn admitted_namespaces(
    client: &Client,
    scope: Option<&str>,
    realm: &AuthRealm,
    clients: &[AuthClient],
) -> Result<BTreeSet<String>, ReconcileError> {
    let own = realm.namespace().unwrap_or_default();
    let mut admitted = BTreeSet::from([own.clone()]);
    let Some(selector) = realm
        .spec
        .client_namespaces
        .as_ref()
        .filter(|_| scope.is_none())
    else {
        return Ok(admitted);
    };
    if clients
        .iter()
        .all(|c| c.namespace().as_deref() == Some(own.as_str()))
    {
        return Ok(admitted);
    }
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let listed = api
        .list_metadata(&ListParams::default().labels(&selector_string(selector)))
        .await
        .map_err(ReconcileError::api("list Namespaces"))?;
    admitted.extend(listed.items.iter().map(ResourceExt::name_any));
    Ok(admitted)
}
