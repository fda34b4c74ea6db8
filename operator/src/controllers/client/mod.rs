//! The AuthClient controller: fetch (the realm, its clients, admitted namespaces, the keys
//! Secret, the Secret under the client's name) -> admission (pure) -> build (pure) -> apply
//! the credentials Secret next to the client -> status. The realm controller admits the
//! same clients (same function) and generates their secrets in its keys Secret.
//!
//! The operator writes only the client's own Secret, in the client's namespace, owned by the
//! client; a Secret of that name it did not create for this client is never adopted,
//! overwritten or deleted.

pub mod admission;
pub mod build;
pub mod fetch;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use portcullis_crds::conditions::types;
use portcullis_crds::{AuthClient, AuthRealm};

use super::skeleton::{announce, apply_status, delete_if_present, observed};
use super::{Context, ReconcileError, get_opt};
use crate::resources::meta::{FIELD_MANAGER, names};
use crate::resources::secrets::client_secret_key;
use admission::Verdict;
use status::SecretState;

/// Kind label of metrics.
pub const KIND: &str = "AuthClient";

/// Reconciles one AuthClient, recording metrics.
pub async fn reconcile(
    client: Arc<AuthClient>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    observed(KIND, client.as_ref(), &ctx, apply_client(&client, &ctx)).await
}

/// The realm's verdict on `client`.
async fn verdict(
    kube: &Client,
    scope: Option<&str>,
    client: &AuthClient,
    realm: Option<&AuthRealm>,
) -> Result<Verdict, ReconcileError> {
    let Some(realm) = realm else {
        return Ok(Verdict::RealmNotFound);
    };
    let clients = fetch::clients_of(kube, scope, realm).await?;
    let namespaces = fetch::admitted_namespaces(kube, scope, realm, &clients).await?;
    let uid = client.metadata.uid.as_deref();
    Ok(admission::decide(realm, &clients, &namespaces)
        .into_iter()
        .find(|(c, _)| c.metadata.uid.as_deref() == uid)
        .map_or(Verdict::RealmNotFound, |(_, verdict)| verdict))
}

async fn apply_client(
    client: &AuthClient,
    ctx: &Context,
) -> Result<(Action, &'static str), ReconcileError> {
    let namespace = client.namespace().ok_or(ReconcileError::NoNamespace)?;
    let realm_namespace = client.realm_namespace().unwrap_or_default();
    let realm: Option<AuthRealm> = crate::controllers::tolerant::get_opt(
        &ctx.client,
        &realm_namespace,
        &client.spec.realm_ref.name,
    )
    .await?;
    let verdict = verdict(
        &ctx.client,
        ctx.namespace.as_deref(),
        client,
        realm.as_ref(),
    )
    .await?;

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let metas: Api<PartialObjectMeta<Secret>> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = client.secret_name();
    // A Secret this client wrote under a name it no longer uses is removed.
    if let Some(previous) = client.status.as_ref().and_then(|s| s.secret_name.clone())
        && previous != name
    {
        remove_own_secret(&metas, &secrets, &previous, client).await?;
    }
    let existing = get_opt(&metas, &name).await?;
    let ours = existing
        .as_ref()
        .is_none_or(|s| build::is_owned_by(&s.metadata, client));
    let state = match (&verdict, realm.as_ref()) {
        (Verdict::Admitted, Some(realm)) if ours => {
            let value =
                if client.spec.client_type == portcullis_crds::client::ClientType::Confidential {
                    let keys: Api<Secret> = Api::namespaced(ctx.client.clone(), &realm_namespace);
                    get_opt(&keys, &names::keys(&realm.name_any()))
                        .await?
                        .and_then(|s| s.data)
                        .and_then(|d| d.get(&client_secret_key(&client.client_id())).cloned())
                        .and_then(|v| String::from_utf8(v.0).ok())
                } else {
                    None
                };
            match build::credentials_secret(client, realm, value.as_deref()) {
                Some(secret) => {
                    secrets
                        .patch(
                            &name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&secret),
                        )
                        .await
                        .map_err(ReconcileError::api(format!("apply Secret {name}")))?;
                    SecretState::Written
                }
                None => SecretState::WaitingForRealm,
            }
        }
        (Verdict::Admitted, _) => SecretState::NameTaken,
        _ => {
            // Not (or no longer) admitted: credentials it may have had are withdrawn.
            if ours {
                remove_own_secret(&metas, &secrets, &name, client).await?;
            }
            SecretState::NotWritten
        }
    };

    let endpoint = realm.as_ref().map(|r| r.spec.issuer.clone());
    let next = status::next_status(client, &verdict, &state, endpoint.as_deref(), (ctx.clock)());
    let previous = client.status.as_ref();
    apply_status(ctx, client, previous, &next).await?;
    let before = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    announce(
        ctx,
        client,
        before,
        &next.conditions,
        &[types::ACCEPTED, types::READY],
        &[],
    )
    .await;
    let reason = match (&verdict, &state) {
        (Verdict::Admitted, SecretState::Written) => "Reconciled",
        (Verdict::Admitted, SecretState::WaitingForRealm) => "WaitingForRealm",
        (Verdict::Admitted, _) => "SecretNameTaken",
        (other, _) => other.reason(),
    };
    // The realm's keys Secret, the realm and the other clients are watched; a wait for the
    // realm's secret is also retried, as a safety net.
    let action = if state == SecretState::WaitingForRealm {
        Action::requeue(Duration::from_secs(30))
    } else {
        Action::requeue(Duration::from_secs(600))
    };
    Ok((action, reason))
}

/// Deletes the Secret `name` only if it is this client's (its controller reference), with the
/// uid as precondition.
async fn remove_own_secret(
    metas: &Api<PartialObjectMeta<Secret>>,
    secrets: &Api<Secret>,
    name: &str,
    client: &AuthClient,
) -> Result<(), ReconcileError> {
    if let Some(existing) = get_opt(metas, name).await?
        && build::is_owned_by(&existing.metadata, client)
    {
        delete_if_present(secrets, name, existing.metadata.uid.clone()).await?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
