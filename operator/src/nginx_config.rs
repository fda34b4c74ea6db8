//! `nginx-config`: the NGINX configuration of a realm run outside Kubernetes, from the same
//! files `render` reads and the same mapping as the Ingress annotations
//! ([`crate::resources::nginx`]), so the two cannot drift. Offline and pure; the command line
//! reads and writes the files.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use portcullis_crds::RealmSettings;

use crate::render::{RenderError, read_files};
use crate::resources::nginx::{ConfOptions, plan, render_conf, trust_warning};

/// What `nginx-config` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NginxConfigError {
    /// The files could not be read or hold no valid realm.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The realm's settings are invalid.
    #[error("the realm is invalid:\n  {0}")]
    Invalid(String),
    /// No RateLimitPolicy enables `proxy.nginx`.
    #[error(
        "no RateLimitPolicy among the files enables proxy.nginx for realm {0:?}: there are no limits to write"
    )]
    NoLimits(String),
}

/// A generated configuration and what the operator should hear about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The http-context snippet.
    pub conf: String,
    /// Warnings: a burst rounded up, an NGINX address the realm does not trust.
    pub warnings: Vec<String>,
}

/// The address the auth server sees NGINX connect from, when the upstream tells: NGINX on the
/// same host connects from loopback.
fn nginx_address(upstream: &str) -> Option<IpAddr> {
    let address: SocketAddr = upstream.parse().ok()?;
    let ip = address.ip();
    ip.is_loopback().then_some(match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        v6 => v6,
    })
}

/// The configuration for the one realm in `files` (`(name, text)` pairs, multi-document YAML)
/// with its RateLimitPolicies' merged `proxy.nginx` limits.
pub fn generate(
    files: &[(String, String)],
    options: &ConfOptions,
) -> Result<Generated, NginxConfigError> {
    let manifests = read_files(files)?;
    let settings = RealmSettings::from_manifests(&manifests)
        .map_err(|e| NginxConfigError::Invalid(e.to_string()))?;
    let limits = settings
        .rate_limits
        .nginx
        .as_ref()
        .ok_or_else(|| NginxConfigError::NoLimits(settings.name.clone()))?;
    let plan = plan(limits);
    let mut warnings: Vec<String> = plan.rounding_warning().into_iter().collect();
    if let Some(address) = nginx_address(&options.upstream) {
        warnings.extend(trust_warning(&settings, address));
    }
    Ok(Generated {
        conf: render_conf(&settings, &plan, options),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::resources::tests::{RATE_LIMIT, REALM_FULL, REALM_MINIMAL};

    fn files(texts: &[&str]) -> Vec<(String, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("f{i}.yaml"), (*t).to_owned()))
            .collect()
    }

    /// `config/nginx/portcullis.conf` is what `make generate` writes; `make lint` checks it.
    #[test]
    fn the_committed_configuration_is_the_generated_one() {
        let generated = generate(&files(&[REALM_FULL, RATE_LIMIT]), &ConfOptions::default())
            .unwrap()
            .conf;
        let committed = include_str!("../../config/nginx/portcullis.conf");
        assert_eq!(
            committed, generated,
            "config/nginx/portcullis.conf is stale: run `make generate`"
        );
    }

    #[test]
    fn nginx_on_loopback_that_the_realm_does_not_trust_is_warned_about() {
        let generated =
            generate(&files(&[REALM_FULL, RATE_LIMIT]), &ConfOptions::default()).unwrap();
        assert_eq!(generated.warnings.len(), 1, "{:?}", generated.warnings);
        assert!(generated.warnings[0].contains("127.0.0.1"));
        let remote = ConfOptions {
            upstream: "10.0.0.7:8080".to_owned(),
            ..ConfOptions::default()
        };
        assert!(
            generate(&files(&[REALM_FULL, RATE_LIMIT]), &remote)
                .unwrap()
                .warnings
                .is_empty(),
            "NGINX's address is unknown for a remote upstream"
        );
    }

    #[test]
    fn a_realm_without_nginx_limits_is_refused() {
        let error = generate(&files(&[REALM_MINIMAL]), &ConfOptions::default()).unwrap_err();
        assert!(
            matches!(&error, NginxConfigError::NoLimits(realm) if realm == "demo"),
            "{error}"
        );
    }
}
