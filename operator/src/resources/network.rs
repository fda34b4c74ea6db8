//! NetworkPolicies: default deny for every realm pod, then the few flows a realm needs.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Inputs;
use super::meta::Owner;
use super::workload::{ADMIN_PORT, HTTP_PORT, METRICS_PORT, SERVER};

/// NodeLocal DNSCache's usual link-local address.
const NODE_LOCAL_DNS: &str = "169.254.20.10/32";

/// Component label of the NetworkPolicies.
const COMPONENT: &str = "network-policy";

fn port(number: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    }
}

fn namespace_peer(namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_owned(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn all_realm_pods(owner: &Owner) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(owner.selector_labels()),
        ..Default::default()
    })
}

fn policy(owner: &Owner, suffix: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: owner.meta(format!("{}-{suffix}", owner.realm), COMPONENT),
        spec: Some(spec),
    }
}

/// The realm's NetworkPolicies (none when `networkPolicy.enabled` is false): a default deny
/// for every realm pod, ingress to the server, egress of every realm pod.
pub fn network_policies(inputs: &Inputs<'_>) -> Vec<NetworkPolicy> {
    let owner = &inputs.owner;
    let spec = &inputs.settings.spec;
    let np = &spec.network_policy;
    if !np.enabled {
        return Vec::new();
    }

    let deny = policy(
        owner,
        "default-deny",
        NetworkPolicySpec {
            pod_selector: all_realm_pods(owner),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ..Default::default()
        },
    );

    let mut ingress = vec![
        NetworkPolicyIngressRule {
            from: Some(vec![namespace_peer(&np.ingress_controller_namespace)]),
            ports: Some(vec![port(HTTP_PORT, "TCP")]),
        },
        // Prometheus reaches the metrics listener only; the admin API and health only from
        // inside the realm's namespace (API.md).
        NetworkPolicyIngressRule {
            from: Some(vec![namespace_peer(&np.prometheus_namespace)]),
            ports: Some(vec![port(METRICS_PORT, "TCP")]),
        },
        NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector::default()),
                ..Default::default()
            }]),
            ports: Some(vec![port(ADMIN_PORT, "TCP")]),
        },
    ];
    if !np.ingress_from.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(np.ingress_from.clone()),
            ports: Some(vec![port(HTTP_PORT, "TCP")]),
        });
    }
    let allow_ingress = policy(
        owner,
        "ingress",
        NetworkPolicySpec {
            pod_selector: Some(owner.component_selector(SERVER)),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            ..Default::default()
        },
    );

    // DNS: whichever pods serve it (CoreDNS as kube-dns or under its own labels, OpenShift's
    // dns-default on 5353 behind the Service's 53) and NodeLocal DNSCache on its link-local
    // address; nothing else on those ports.
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![
            NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(LabelSelector::default()),
                ..Default::default()
            },
            NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: NODE_LOCAL_DNS.to_owned(),
                    except: None,
                }),
                ..Default::default()
            },
        ]),
        ports: Some(vec![
            port(53, "UDP"),
            port(53, "TCP"),
            port(5353, "UDP"),
            port(5353, "TCP"),
        ]),
    };
    // A service's port, to the peers the realm names (any address when it names none).
    let to = |peers: &[NetworkPolicyPeer], ports: Vec<NetworkPolicyPort>| NetworkPolicyEgressRule {
        to: (!peers.is_empty()).then(|| peers.to_vec()),
        ports: Some(ports),
    };
    let mut egress = vec![dns, to(&np.database_peers, vec![port(5432, "TCP")])];
    if spec.redis.is_some() {
        egress.push(to(&np.redis_peers, vec![port(6379, "TCP")]));
    }
    if spec
        .notifications
        .as_ref()
        .is_some_and(|n| n.smtp.is_some())
    {
        egress.push(to(&np.smtp_peers, vec![port(587, "TCP"), port(465, "TCP")]));
    }
    if np.allow_external_https {
        let public = |cidr: &str, except: &[&str]| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.to_owned(),
                except: Some(except.iter().map(|c| (*c).to_owned()).collect()),
            }),
            ..Default::default()
        };
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![
                public(
                    "0.0.0.0/0",
                    &[
                        "10.0.0.0/8",
                        "172.16.0.0/12",
                        "192.168.0.0/16",
                        "169.254.0.0/16",
                        "100.64.0.0/10",
                        "127.0.0.0/8",
                    ],
                ),
                public("::/0", &["fc00::/7", "fe80::/10", "::1/128"]),
            ]),
            ports: Some(vec![port(443, "TCP")]),
        });
    }
    egress.extend(np.egress_to.iter().cloned());
    let allow_egress = policy(
        owner,
        "egress",
        NetworkPolicySpec {
            pod_selector: all_realm_pods(owner),
            policy_types: Some(vec!["Egress".to_owned()]),
            egress: Some(egress),
            ..Default::default()
        },
    );

    vec![deny, allow_ingress, allow_egress]
}
