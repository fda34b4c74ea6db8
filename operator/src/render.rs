//! `render`: validate and build offline, print the manifests in apply order. GitOps pipelines
//! review and diff this output; Secrets appear only when asked for, with fresh CSPRNG values.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use portcullis_crds::{RealmManifests, RealmSettings, parse_manifests};
use rand::CryptoRng;

use crate::resources::{self, BuildError, Capabilities, Inputs, KeyMaterial, Sources};
use crate::secrets::{self, SecretsError};

/// What rendering can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file could not be read or parsed.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The manifests hold no AuthRealm.
    #[error("no AuthRealm in the given files")]
    NoRealm,
    /// A policy targets a realm that is not among the files.
    #[error("{kind} {name:?} targets realm {target:?}, which is not among the given files")]
    OrphanPolicy {
        /// Kind of the policy.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The realm it names.
        target: String,
    },
    /// A realm's settings are invalid.
    #[error("AuthRealm {realm:?} is invalid:\n  {}", .errors.join("\n  "))]
    Invalid {
        /// The realm.
        realm: String,
        /// Every problem.
        errors: Vec<String>,
    },
    /// Key material could not be generated.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Building failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// YAML output failed.
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

/// Reads and merges the manifests of several files.
pub fn read_files(files: &[(String, String)]) -> Result<RealmManifests, RenderError> {
    let mut all = RealmManifests::default();
    for (file, text) in files {
        let manifests = parse_manifests(text).map_err(|e| RenderError::File {
            file: file.clone(),
            message: e.to_string(),
        })?;
        all.realms.extend(manifests.realms);
        all.rate_limit_policies
            .extend(manifests.rate_limit_policies);
        all.retention_policies.extend(manifests.retention_policies);
    }
    Ok(all)
}

fn same_place<K: ResourceExt>(
    policy: &K,
    target: &str,
    realm: &portcullis_crds::AuthRealm,
) -> bool {
    target == realm.name_any()
        && policy
            .namespace()
            .zip(realm.namespace())
            .is_none_or(|(a, b)| a == b)
}

/// Every manifest of every realm in `manifests`, in apply order.
pub fn render_values(
    manifests: &RealmManifests,
    include_secrets: bool,
    now: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<Vec<serde_json::Value>, RenderError> {
    if manifests.realms.is_empty() {
        return Err(RenderError::NoRealm);
    }
    for policy in &manifests.rate_limit_policies {
        let target = &policy.spec.target_ref.name;
        if !manifests
            .realms
            .iter()
            .any(|r| same_place(policy, target, r))
        {
            return Err(RenderError::OrphanPolicy {
                kind: "RateLimitPolicy",
                name: policy.name_any(),
                target: target.clone(),
            });
        }
    }
    for policy in &manifests.retention_policies {
        let target = &policy.spec.target_ref.name;
        if !manifests
            .realms
            .iter()
            .any(|r| same_place(policy, target, r))
        {
            return Err(RenderError::OrphanPolicy {
                kind: "RetentionPolicy",
                name: policy.name_any(),
                target: target.clone(),
            });
        }
    }

    let mut out = Vec::new();
    for realm in &manifests.realms {
        let rate_limits: Vec<_> = manifests
            .rate_limit_policies
            .iter()
            .filter(|p| same_place(*p, &p.spec.target_ref.name, realm))
            .cloned()
            .collect();
        let retention: Vec<_> = manifests
            .retention_policies
            .iter()
            .filter(|p| same_place(*p, &p.spec.target_ref.name, realm))
            .cloned()
            .collect();
        let clients: Vec<_> = manifests
            .clients
            .iter()
            .filter(|c| c.targets(&realm.name_any(), realm.namespace().as_deref()))
            .cloned()
            .collect();
        let settings =
            RealmSettings::derive(realm, &rate_limits, &retention, &clients).map_err(|e| {
                RenderError::Invalid {
                    realm: realm.name_any(),
                    errors: e.0.iter().map(ToString::to_string).collect(),
                }
            })?;
        let keys = if include_secrets {
            secrets::ensure(&KeyMaterial::default(), &settings, now, rng)?.keys
        } else {
            KeyMaterial::default()
        };
        let self_signed = settings
            .spec
            .tls
            .as_ref()
            .is_some_and(|t| t.self_signed.is_some());
        let mut sources = Sources {
            realm,
            rate_limit_policies: &rate_limits,
            retention_policies: &retention,
            clients: &clients,
            settings: &settings,
            keys: &keys,
            referenced_digest: String::new(),
            tls: None,
            capabilities: Capabilities::ALL,
        };
        let material = if include_secrets && self_signed {
            let inputs = Inputs::new(sources.clone())?;
            Some(resources::tls::generate_self_signed(
                &settings.name,
                &resources::tls::serving_hosts(&inputs),
                now,
            )?)
        } else {
            None
        };
        sources.tls = material.as_ref();
        let children = resources::build(&Inputs::new(sources)?)?;
        out.extend(children.manifests(include_secrets)?);
    }
    Ok(out)
}

/// The manifests as one multi-document YAML stream.
pub fn to_yaml(values: &[serde_json::Value]) -> Result<String, RenderError> {
    let mut yaml = String::new();
    for value in values {
        yaml.push_str("---\n");
        yaml.push_str(
            &serde_saphyr::to_string(value).map_err(|e| RenderError::Yaml(e.to_string()))?,
        );
    }
    Ok(yaml)
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
