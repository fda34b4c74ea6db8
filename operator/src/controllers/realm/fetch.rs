//! Fetch: everything a realm reconcile reads from the API, before anything is decided.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::{Client, ResourceExt};
use portcullis_crds::{AuthClient, AuthRealm, RateLimitPolicy, RetentionPolicy};

use crate::controllers::{ReconcileError, get_opt};
use crate::resources::meta::names;
use crate::resources::{Capabilities, KeyMaterial, TlsMaterial, config::sha256_hex};

/// A referenced Secret (or one of its keys) that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSecret {
    /// Secret name.
    pub name: String,
    /// The key, when the Secret exists but lacks it.
    pub key: Option<String>,
}

impl std::fmt::Display for MissingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "Secret {:?} has no key {key:?}", self.name),
            None => write!(f, "Secret {:?} does not exist", self.name),
        }
    }
}

/// What the realm reconcile read.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// RateLimitPolicies targeting the realm and acceptable on their own, by name.
    pub rate_limit_policies: Vec<RateLimitPolicy>,
    /// The RetentionPolicy in force (at most one).
    pub retention_policies: Vec<RetentionPolicy>,
    /// The AuthClients the realm admits (see [`crate::controllers::client::admission`]).
    pub clients: Vec<AuthClient>,
    /// Referenced Secrets that are missing.
    pub missing: Vec<MissingSecret>,
    /// Digest of the referenced Secrets' data.
    pub referenced_digest: String,
    /// The existing key material (empty when the keys Secret does not exist).
    pub keys: KeyMaterial,
    /// The existing self-signed TLS material.
    pub tls: Option<TlsMaterial>,
    /// Which optional APIs exist (only probed when the realm needs them).
    pub capabilities: Capabilities,
}

/// Every `(secret, key)` the realm references.
pub fn referenced_secrets(realm: &AuthRealm) -> Vec<(String, String)> {
    let spec = &realm.spec;
    let mut refs = vec![(
        spec.database.secret_ref.name.clone(),
        spec.database.secret_ref.key.clone(),
    )];
    if let Some(redis) = &spec.redis {
        refs.push((redis.secret_ref.name.clone(), redis.secret_ref.key.clone()));
    }
    for provider in &spec.social_providers {
        refs.push((
            provider.client_secret_ref.name.clone(),
            provider.client_secret_ref.key.clone(),
        ));
    }
    if let Some(notifications) = &spec.notifications {
        if let Some(smtp) = &notifications.smtp {
            refs.push((smtp.secret_ref.name.clone(), smtp.secret_ref.key.clone()));
        }
        if let Some(webhook) = &notifications.webhook {
            refs.push((
                webhook.url_secret_ref.name.clone(),
                webhook.url_secret_ref.key.clone(),
            ));
        }
    }
    if let Some(offline) = &spec.password_policy.breach_check.offline_list_ref
        && spec.password_policy.breach_check.mode
            == portcullis_crds::realm::BreachCheckMode::Offline
    {
        refs.push((offline.name.clone(), offline.key.clone()));
    }
    refs
}

async fn crd_exists(client: &Client, name: &str) -> Result<bool, ReconcileError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(get_opt(&api, name).await?.is_some())
}

/// Which third-party APIs the cluster serves (cert-manager, prometheus-operator).
pub async fn installed_capabilities(client: &Client) -> Result<Capabilities, ReconcileError> {
    Ok(Capabilities {
        cert_manager: crd_exists(client, "certificates.cert-manager.io").await?,
        prometheus_operator: crd_exists(client, "servicemonitors.monitoring.coreos.com").await?
            && crd_exists(client, "prometheusrules.monitoring.coreos.com").await?,
    })
}

/// Reads the policies, the AuthClients it admits, referenced Secrets, existing key material
/// and cluster capabilities. `scope` is the one namespace the operator watches, if any.
pub async fn fetch(
    client: &Client,
    scope: Option<&str>,
    realm: &AuthRealm,
) -> Result<Fetched, ReconcileError> {
    let namespace = realm.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = realm.name_any();

    let mut rate_limit_policies: Vec<RateLimitPolicy> =
        crate::controllers::tolerant::list::<RateLimitPolicy>(client, Some(&namespace))
            .await?
            .into_iter()
            .filter(|p| p.spec.target_ref.name == name)
            .collect();
    rate_limit_policies.sort_by_key(ResourceExt::name_any);
    let rate_limit_policies = super::validate::rate_limits_in_force(realm, &rate_limit_policies);

    let all_retention: Vec<RetentionPolicy> =
        crate::controllers::tolerant::list(client, Some(&namespace)).await?;
    let retention_policies = super::validate::retention_in_force(realm, &all_retention);

    let candidates = crate::controllers::client::fetch::clients_of(client, scope, realm).await?;
    let namespaces =
        crate::controllers::client::fetch::admitted_namespaces(client, scope, realm, &candidates)
            .await?;
    let clients = crate::controllers::client::admission::admitted(
        &crate::controllers::client::admission::decide(realm, &candidates, &namespaces),
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut missing = Vec::new();
    let mut fetched: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    let mut digest = Vec::new();
    for (secret_name, key) in referenced_secrets(realm) {
        if !fetched.contains_key(&secret_name) {
            let secret = get_opt(&secrets, &secret_name).await?;
            fetched.insert(secret_name.clone(), secret);
        }
        match fetched.get(&secret_name).and_then(Option::as_ref) {
            None => missing.push(MissingSecret {
                name: secret_name,
                key: None,
            }),
            Some(secret) => match secret.data.as_ref().and_then(|d| d.get(&key)) {
                Some(value) => {
                    digest.extend_from_slice(format!("{secret_name}/{key}=").as_bytes());
                    digest.extend_from_slice(&value.0);
                    digest.push(0);
                }
                None => missing.push(MissingSecret {
                    name: secret_name,
                    key: Some(key),
                }),
            },
        }
    }
    missing.dedup();

    let keys = get_opt(&secrets, &names::keys(&name))
        .await?
        .map(KeyMaterial::from_secret)
        .unwrap_or_default();
    let tls_spec = realm.spec.tls.as_ref();
    let tls = if tls_spec.is_some_and(|t| t.self_signed.is_some()) {
        get_opt(&secrets, &names::tls(&name))
            .await?
            .as_ref()
            .and_then(TlsMaterial::from_secret)
    } else {
        None
    };

    // Probed whether or not the realm uses them: a Certificate, ServiceMonitor or
    // PrometheusRule left from before the realm stopped using it is pruned only while its
    // kind is known to exist.
    let capabilities = installed_capabilities(client).await?;

    Ok(Fetched {
        rate_limit_policies,
        retention_policies,
        clients,
        missing,
        referenced_digest: sha256_hex(&digest),
        keys,
        tls,
        capabilities,
    })
}
