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
use super::workload::{ADMIN_PORT, HTTP_PORT, SERVER};

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
        NetworkPolicyIngressRule {
            from: Some(vec![namespace_peer(&np.prometheus_namespace)]),
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

    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "k8s-app".to_owned(),
                    "kube-dns".to_owned(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
    };
    let by_port = |ports: Vec<NetworkPolicyPort>| NetworkPolicyEgressRule {
        to: None,
        ports: Some(ports),
    };
    let mut egress = vec![dns, by_port(vec![port(5432, "TCP")])];
    if spec.redis.is_some() {
        egress.push(by_port(vec![port(6379, "TCP")]));
    }
    if spec
        .notifications
        .as_ref()
        .is_some_and(|n| n.smtp.is_some())
    {
        egress.push(by_port(vec![port(587, "TCP"), port(465, "TCP")]));
    }
    if np.allow_external_https {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: "0.0.0.0/0".to_owned(),
                    except: Some(vec![
                        "10.0.0.0/8".to_owned(),
                        "172.16.0.0/12".to_owned(),
                        "192.168.0.0/16".to_owned(),
                        "169.254.0.0/16".to_owned(),
                    ]),
                }),
                ..Default::default()
            }]),
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
