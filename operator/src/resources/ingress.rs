//! The Ingress in front of the realm, with NGINX rate-limit and TLS annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::Inputs;
use super::meta::names;
use super::tls::tls_secret_name;

/// NGINX Ingress annotation prefix.
const NGINX: &str = "nginx.ingress.kubernetes.io";

/// The host the Ingress serves: `ingress.host`, else the issuer's host without its port.
pub fn ingress_host(inputs: &Inputs<'_>) -> String {
    let spec = &inputs.settings.spec;
    spec.ingress.host.clone().unwrap_or_else(|| {
        let host = &inputs.settings.issuer_host;
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host.clone(), |(h, _)| h.to_owned())
    })
}

/// The NGINX annotations: TLS 1.2+ only, HTTPS redirect, and the merged proxy limits of the
/// attached RateLimitPolicies. Annotations from the spec are kept unless they name one of
/// these (the security settings win).
pub fn nginx_annotations(inputs: &Inputs<'_>) -> BTreeMap<String, String> {
    let spec = &inputs.settings.spec;
    let mut annotations = spec.ingress.annotations.clone();
    // With `tls.issuerRef` the operator's Certificate is the one source of the TLS Secret;
    // cert-manager's ingress-shim would otherwise issue a second one for the same Secret.
    if spec.tls.as_ref().is_some_and(|t| t.issuer_ref.is_some()) {
        annotations.retain(|key, _| !key.starts_with("cert-manager.io/"));
    }
    let mut set = |key: &str, value: String| {
        annotations.insert(format!("{NGINX}/{key}"), value);
    };
    set("ssl-protocols", "TLSv1.2 TLSv1.3".to_owned());
    set("ssl-redirect", "true".to_owned());
    set("force-ssl-redirect", "true".to_owned());
    // The pods serve TLS when the realm has a certificate: NGINX talks HTTPS to them, and
    // verifies the operator's self-signed certificate against its CA (a certificate from
    // cert-manager or the platform team carries no CA the operator can rely on).
    match spec.tls.as_ref() {
        None => set("backend-protocol", "HTTP".to_owned()),
        Some(tls) => {
            set("backend-protocol", "HTTPS".to_owned());
            if tls.self_signed.is_some()
                && let (Some(namespace), Some(secret)) = (
                    inputs.owner.namespace.as_ref(),
                    super::tls::tls_secret_name(inputs),
                )
            {
                set("proxy-ssl-secret", format!("{namespace}/{secret}"));
                set("proxy-ssl-verify", "on".to_owned());
                set("proxy-ssl-name", ingress_host(inputs));
                set("proxy-ssl-server-name", "on".to_owned());
                set("proxy-ssl-protocols", "TLSv1.2 TLSv1.3".to_owned());
            }
        }
    }
    set("proxy-body-size", "64k".to_owned());
    if let Some(nginx) = &inputs.settings.rate_limits.nginx {
        // The same plan `nginx-config` writes into its configuration.
        for (key, value) in super::nginx::annotations(&super::nginx::plan(nginx)) {
            set(key, value);
        }
    }
    annotations
}

/// The Ingress, when `ingress.enabled`.
pub fn ingress(inputs: &Inputs<'_>) -> Option<Ingress> {
    let spec = &inputs.settings.spec;
    if !spec.ingress.enabled {
        return None;
    }
    let owner = &inputs.owner;
    let host = ingress_host(inputs);
    let mut metadata = owner.meta(names::server(&owner.realm), "ingress");
    metadata.annotations = Some(nginx_annotations(inputs));
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(spec.ingress.class_name.clone()),
            tls: tls_secret_name(inputs).map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(secret),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: names::server(&owner.realm),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    number: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}
