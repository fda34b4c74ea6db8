//! Pure builders: every child object of a realm, typed, from its validated settings and the
//! key material passed in. No API calls, no clock, no randomness.

pub mod config;
pub mod ingress;
pub mod meta;
pub mod monitoring;
pub mod network;
pub mod nginx;
pub mod retention;
pub mod secrets;
pub mod tls;
pub mod workload;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use kube::api::{ApiResource, DynamicObject};
use portcullis_crds::{AuthClient, AuthRealm, RateLimitPolicy, RealmSettings, RetentionPolicy};
use serde::Serialize;
use serde_json::Value;

pub use meta::Owner;
pub use secrets::KeyMaterial;
pub use tls::TlsMaterial;

/// What a build step can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The realm manifests could not be serialized into the ConfigMap.
    #[error("cannot render the realm configuration: {0}")]
    Config(String),
    /// TLS material could not be generated.
    #[error("cannot generate the TLS certificate: {0}")]
    Tls(String),
    /// The shared alert rules could not be read.
    #[error("cannot build monitoring objects: {0}")]
    Monitoring(String),
    /// An object could not be turned into a manifest.
    #[error("cannot serialize {0}")]
    Serialize(String),
}

impl BuildError {
    /// Stable reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "ConfigRenderFailed",
            Self::Tls(_) => "TlsGenerationFailed",
            Self::Monitoring(_) => "MonitoringBuildFailed",
            Self::Serialize(_) => "SerializeFailed",
        }
    }
}

/// Which optional APIs the cluster serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `certificates.cert-manager.io` exists.
    pub cert_manager: bool,
    /// `servicemonitors.monitoring.coreos.com` and `prometheusrules.monitoring.coreos.com`
    /// exist.
    pub prometheus_operator: bool,
}

impl Capabilities {
    /// Everything installed: what `render` assumes.
    pub const ALL: Capabilities = Capabilities {
        cert_manager: true,
        prometheus_operator: true,
    };
}

/// Checksums stamped on the pod template so a change rolls the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksums {
    /// SHA-256 of `realm.yaml`.
    pub config: String,
    /// SHA-256 of the keys Secret data and of the referenced Secrets' contents.
    pub secrets: String,
}

/// What the builders read.
#[derive(Clone, Debug)]
pub struct Sources<'a> {
    /// The realm.
    pub realm: &'a AuthRealm,
    /// RateLimitPolicies attached to it.
    pub rate_limit_policies: &'a [RateLimitPolicy],
    /// Its RetentionPolicy (at most one once validated).
    pub retention_policies: &'a [RetentionPolicy],
    /// The AuthClients it admitted.
    pub clients: &'a [AuthClient],
    /// Effective settings (validated).
    pub settings: &'a RealmSettings,
    /// Generated key material.
    pub keys: &'a KeyMaterial,
    /// A digest of the referenced Secrets (database, Redis, social, SMTP, webhook) so a
    /// change in one rolls the pods; empty when unknown (offline render).
    pub referenced_digest: String,
    /// Self-signed TLS material, when the realm asks for it.
    pub tls: Option<&'a TlsMaterial>,
    /// Which optional APIs exist.
    pub capabilities: Capabilities,
}

/// Sources plus what is derived once from them: the owner, the config YAML and checksums.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// Realm name, namespace and owner reference.
    pub owner: Owner,
    /// The realm.
    pub realm: &'a AuthRealm,
    /// RateLimitPolicies attached to it.
    pub rate_limit_policies: &'a [RateLimitPolicy],
    /// Its RetentionPolicy.
    pub retention_policies: &'a [RetentionPolicy],
    /// The AuthClients it admitted.
    pub clients: &'a [AuthClient],
    /// Effective settings.
    pub settings: &'a RealmSettings,
    /// Generated key material.
    pub keys: &'a KeyMaterial,
    /// Self-signed TLS material.
    pub tls: Option<&'a TlsMaterial>,
    /// Which optional APIs exist.
    pub capabilities: Capabilities,
    /// `realm.yaml`.
    pub config_yaml: String,
    /// Pod template checksums.
    pub checksums: Checksums,
}

impl<'a> Inputs<'a> {
    /// Derives the owner, the configuration and the checksums.
    pub fn new(sources: Sources<'a>) -> Result<Inputs<'a>, BuildError> {
        let owner = Owner {
            realm: sources.settings.name.clone(),
            namespace: sources.settings.namespace.clone(),
            reference: meta::controller_reference(sources.realm),
        };
        let mut inputs = Inputs {
            owner,
            realm: sources.realm,
            rate_limit_policies: sources.rate_limit_policies,
            retention_policies: sources.retention_policies,
            clients: sources.clients,
            settings: sources.settings,
            keys: sources.keys,
            tls: sources.tls,
            capabilities: sources.capabilities,
            config_yaml: String::new(),
            checksums: Checksums {
                config: String::new(),
                secrets: String::new(),
            },
        };
        inputs.config_yaml = config::realm_yaml(&inputs)?;
        let mut secret_bytes = Vec::new();
        for (key, value) in &sources.keys.data {
            secret_bytes.extend_from_slice(key.as_bytes());
            secret_bytes.push(0);
            secret_bytes.extend_from_slice(value.as_bytes());
            secret_bytes.push(0);
        }
        secret_bytes.extend_from_slice(sources.referenced_digest.as_bytes());
        inputs.checksums = Checksums {
            config: config::sha256_hex(inputs.config_yaml.as_bytes()),
            secrets: config::sha256_hex(&secret_bytes),
        };
        Ok(inputs)
    }

    /// The owner of a RetentionPolicy's children: the realm's labels, the policy's reference.
    pub fn retention_owner(&self, policy: &RetentionPolicy) -> Owner {
        Owner {
            reference: meta::controller_reference(policy),
            ..self.owner.clone()
        }
    }
}

/// A dynamic object of `resource` with typed `spec`.
pub fn dynamic_object<T: Serialize>(
    resource: &ApiResource,
    metadata: ObjectMeta,
    spec: &T,
) -> Result<DynamicObject, BuildError> {
    let spec = serde_json::to_value(spec).map_err(|e| BuildError::Serialize(e.to_string()))?;
    let mut data = serde_json::Map::new();
    data.insert("spec".to_owned(), spec);
    let name = metadata.name.clone().unwrap_or_default();
    let mut object = DynamicObject::new(&name, resource);
    object.metadata = metadata;
    object.data = Value::Object(data);
    Ok(object)
}

/// Every child of a realm.
#[derive(Clone, Debug, PartialEq)]
pub struct RealmChildren {
    /// ServiceAccount of the pods.
    pub service_account: ServiceAccount,
    /// Generated key material (the secrets dir).
    pub keys_secret: Secret,
    /// Self-signed TLS Secret.
    pub tls_secret: Option<Secret>,
    /// `realm.yaml`.
    pub config_map: ConfigMap,
    /// Grafana dashboard.
    pub dashboard: Option<ConfigMap>,
    /// Service.
    pub service: Service,
    /// NetworkPolicies.
    pub network_policies: Vec<NetworkPolicy>,
    /// PodDisruptionBudget.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// The auth server.
    pub deployment: Deployment,
    /// cert-manager Certificate.
    pub certificate: Option<DynamicObject>,
    /// Ingress.
    pub ingress: Option<Ingress>,
    /// prometheus-operator ServiceMonitor.
    pub service_monitor: Option<DynamicObject>,
    /// prometheus-operator PrometheusRule.
    pub prometheus_rule: Option<DynamicObject>,
    /// Retention CronJob (owned by the RetentionPolicy).
    pub retention_cron_job: Option<CronJob>,
}

/// Builds every child of the realm.
pub fn build(inputs: &Inputs<'_>) -> Result<RealmChildren, BuildError> {
    let owner = &inputs.owner;
    let spec = &inputs.settings.spec;
    let self_signed = spec.tls.as_ref().is_some_and(|t| t.self_signed.is_some());
    let certificate = if inputs.capabilities.cert_manager {
        tls::certificate(inputs)?
    } else {
        None
    };
    let retention_cron_job = inputs.retention_policies.first().and_then(|policy| {
        let name = policy.metadata.name.clone().unwrap_or_default();
        retention::cron_job(inputs, &inputs.retention_owner(policy), &name)
    });
    Ok(RealmChildren {
        service_account: workload::service_account(owner),
        keys_secret: secrets::keys_secret(inputs),
        tls_secret: inputs
            .tls
            .filter(|_| self_signed)
            .map(|m| tls::self_signed_secret(owner, m)),
        config_map: config::config_map(owner, &inputs.config_yaml),
        dashboard: monitoring::dashboard(inputs),
        service: workload::service(owner),
        network_policies: network::network_policies(inputs),
        pod_disruption_budget: workload::pod_disruption_budget(owner),
        deployment: workload::deployment(inputs),
        certificate,
        ingress: ingress::ingress(inputs),
        service_monitor: monitoring::service_monitor(inputs)?,
        prometheus_rule: monitoring::prometheus_rule(inputs)?,
        retention_cron_job,
    })
}

fn to_value<T: Serialize>(object: &T) -> Result<Value, BuildError> {
    serde_json::to_value(object).map_err(|e| BuildError::Serialize(e.to_string()))
}

impl RealmChildren {
    /// Every child as a JSON manifest in apply order: identity and secrets first, then
    /// configuration, the Service and the NetworkPolicies (so no pod ever starts unfenced),
    /// then the workload and what fronts and watches it. Secrets only when asked for.
    pub fn manifests(&self, include_secrets: bool) -> Result<Vec<Value>, BuildError> {
        let mut out = vec![to_value(&self.service_account)?];
        if include_secrets {
            out.push(to_value(&self.keys_secret)?);
            if let Some(tls) = &self.tls_secret {
                out.push(to_value(tls)?);
            }
        }
        out.push(to_value(&self.config_map)?);
        if let Some(dashboard) = &self.dashboard {
            out.push(to_value(dashboard)?);
        }
        out.push(to_value(&self.service)?);
        for policy in &self.network_policies {
            out.push(to_value(policy)?);
        }
        out.push(to_value(&self.pod_disruption_budget)?);
        out.push(to_value(&self.deployment)?);
        if let Some(certificate) = &self.certificate {
            out.push(to_value(certificate)?);
        }
        if let Some(ingress) = &self.ingress {
            out.push(to_value(ingress)?);
        }
        for object in [&self.service_monitor, &self.prometheus_rule]
            .into_iter()
            .flatten()
        {
            out.push(to_value(object)?);
        }
        if let Some(cron_job) = &self.retention_cron_job {
            out.push(to_value(cron_job)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;
