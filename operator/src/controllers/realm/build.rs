//! Build: key material (generated where missing, rotated), TLS material and every child,
//! from the fetched state, the settings, the time and a CSPRNG. No API calls.

use k8s_openapi::jiff::Timestamp;
use portcullis_crds::{AuthRealm, RealmSettings};
use rand::CryptoRng;

use super::fetch::Fetched;
use crate::resources::{self, BuildError, Inputs, RealmChildren, Sources, TlsMaterial};
use crate::secrets::{self, Ensured, SecretsError};

/// What the build step produced.
#[derive(Clone, Debug)]
pub struct Built {
    /// The children.
    pub children: RealmChildren,
    /// Key material and the rotation step.
    pub ensured: Ensured,
    /// Self-signed TLS material in use.
    pub tls: Option<TlsMaterial>,
    /// Whether TLS material was generated in this step.
    pub tls_generated: bool,
}

/// What the build step can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BuildStepError {
    /// Key material.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Children.
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl BuildStepError {
    /// Stable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Secrets(e) => e.reason(),
            Self::Build(e) => e.reason(),
        }
    }
}

/// Builds everything the apply step writes.
pub fn build(
    realm: &AuthRealm,
    settings: &RealmSettings,
    fetched: &Fetched,
    now: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<Built, BuildStepError> {
    let ensured = secrets::ensure(&fetched.keys, settings, now, rng)?;
    let retention = fetched
        .retention_policies
        .first()
        .map(std::slice::from_ref)
        .unwrap_or_default();
    let mut sources = Sources {
        realm,
        rate_limit_policies: &fetched.rate_limit_policies,
        retention_policies: retention,
        clients: &fetched.clients,
        settings,
        keys: &ensured.keys,
        referenced_digest: fetched.referenced_digest.clone(),
        tls: None,
        capabilities: fetched.capabilities,
    };
    let self_signed = settings
        .spec
        .tls
        .as_ref()
        .is_some_and(|t| t.self_signed.is_some());
    let (tls, tls_generated) = match (&fetched.tls, self_signed) {
        (_, false) => (None, false),
        (Some(existing), true) if !existing.needs_renewal(now) => (Some(existing.clone()), false),
        (_, true) => {
            let hosts = resources::tls::serving_hosts(&Inputs::new(sources.clone())?);
            (
                Some(resources::tls::generate_self_signed(
                    &settings.name,
                    &hosts,
                    now,
                )?),
                true,
            )
        }
    };
    sources.tls = tls.as_ref();
    let children = resources::build(&Inputs::new(sources)?)?;
    Ok(Built {
        children,
        ensured,
        tls,
        tls_generated,
    })
}
