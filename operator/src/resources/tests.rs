//! Builder specifications, from the samples in `config/samples/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use portcullis_crds::{RealmManifests, RealmSettings, parse_manifests};

use super::meta::{annotations, labels};
use super::*;

pub(crate) const REALM_FULL: &str = include_str!("../../../config/samples/realm-full.yaml");
pub(crate) const REALM_MINIMAL: &str = include_str!("../../../config/samples/realm-minimal.yaml");
pub(crate) const RATE_LIMIT: &str = include_str!("../../../config/samples/ratelimitpolicy.yaml");
pub(crate) const RETENTION: &str = include_str!("../../../config/samples/retentionpolicy.yaml");
pub(crate) const AUTH_CLIENTS: &str = include_str!("../../../config/samples/authclients.yaml");

/// A sample as it exists in a cluster: with uids.
pub(crate) struct Fixture {
    pub manifests: RealmManifests,
    pub settings: RealmSettings,
    pub keys: KeyMaterial,
}

pub(crate) fn fixture(yaml: &str) -> Fixture {
    let mut manifests = parse_manifests(yaml).unwrap();
    manifests.realms[0].metadata.uid = Some("realm-uid".to_owned());
    for policy in &mut manifests.retention_policies {
        policy.metadata.uid = Some("retention-uid".to_owned());
    }
    let settings = RealmSettings::derive(
        &manifests.realms[0],
        &manifests.rate_limit_policies,
        &manifests.retention_policies,
        &manifests.clients,
    )
    .unwrap();
    let mut data = BTreeMap::from([
        ("signing-keys.json".to_owned(), "{\"keys\":[]}".to_owned()),
        ("admin-token".to_owned(), "admin".to_owned()),
    ]);
    for client in &settings.spec.clients {
        data.insert(
            secrets::client_secret_key(&client.client_id),
            format!("secret-of-{}", client.client_id),
        );
    }
    Fixture {
        manifests,
        settings,
        keys: KeyMaterial {
            data,
            annotations: BTreeMap::new(),
        },
    }
}

pub(crate) fn full() -> Fixture {
    fixture(&format!(
        "{REALM_FULL}---\n{RATE_LIMIT}---\n{RETENTION}---\n{AUTH_CLIENTS}"
    ))
}

pub(crate) fn minimal() -> Fixture {
    fixture(REALM_MINIMAL)
}

impl Fixture {
    pub(crate) fn sources(&self, capabilities: Capabilities) -> Sources<'_> {
        Sources {
            realm: &self.manifests.realms[0],
            rate_limit_policies: &self.manifests.rate_limit_policies,
            retention_policies: &self.manifests.retention_policies,
            clients: &self.manifests.clients,
            settings: &self.settings,
            keys: &self.keys,
            referenced_digest: "referenced".to_owned(),
            tls: None,
            capabilities,
        }
    }

    pub(crate) fn children(&self) -> RealmChildren {
        build(&Inputs::new(self.sources(Capabilities::ALL)).unwrap()).unwrap()
    }
}

fn pod(children: &RealmChildren) -> PodSpec {
    children
        .deployment
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap()
}

fn pod_annotations(children: &RealmChildren) -> BTreeMap<String, String> {
    children
        .deployment
        .spec
        .clone()
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()
}

/// Metadata of every child the realm owns, with its kind.
fn owned_metadata(children: &RealmChildren) -> Vec<(String, ObjectMeta)> {
    children
        .manifests(true)
        .unwrap()
        .into_iter()
        .map(|m| {
            let kind = m["kind"].as_str().unwrap().to_owned();
            let meta: ObjectMeta = serde_json::from_value(m["metadata"].clone()).unwrap();
            (kind, meta)
        })
        .collect()
}

#[test]
fn the_full_sample_yields_every_child() {
    let children = full().children();
    let kinds: Vec<String> = owned_metadata(&children)
        .into_iter()
        .map(|(kind, meta)| format!("{kind}/{}", meta.name.unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount/acme",
            "Secret/acme-keys",
            "ConfigMap/acme-config",
            "ConfigMap/acme-dashboard",
            "Service/acme",
            "NetworkPolicy/acme-default-deny",
            "NetworkPolicy/acme-ingress",
            "NetworkPolicy/acme-egress",
            "PodDisruptionBudget/acme",
            "Deployment/acme",
            "Certificate/acme-tls",
            "Ingress/acme",
            "ServiceMonitor/acme",
            "PrometheusRule/acme",
            "CronJob/acme-gdpr-retention",
        ]
    );
}

#[test]
fn the_minimal_sample_yields_only_what_it_asks_for() {
    let children = minimal().children();
    assert!(children.ingress.is_none());
    assert!(children.certificate.is_none());
    assert!(children.tls_secret.is_none());
    assert!(children.retention_cron_job.is_none());
    assert_eq!(
        children.network_policies.len(),
        3,
        "network policies are on by default"
    );
    assert!(
        children.service_monitor.is_some(),
        "monitoring is on by default"
    );
}

#[test]
fn every_child_carries_the_standard_labels() {
    for (kind, meta) in owned_metadata(&full().children()) {
        let labels = meta.labels.unwrap();
        for key in [
            labels::NAME,
            labels::INSTANCE,
            labels::COMPONENT,
            labels::MANAGED_BY,
            labels::PART_OF,
        ] {
            assert!(labels.contains_key(key), "{kind} lacks {key}");
        }
        assert_eq!(labels[labels::INSTANCE], "acme", "{kind}");
        assert_eq!(labels[labels::MANAGED_BY], "portcullis-operator", "{kind}");
    }
}

#[test]
fn children_in_the_realm_namespace_are_controlled_by_the_realm() {
    for (kind, meta) in owned_metadata(&full().children()) {
        let name = meta.name.clone().unwrap();
        if meta.namespace.as_deref() != Some("identity") {
            assert!(
                meta.owner_references.is_none(),
                "{kind}/{name} crosses namespaces"
            );
            continue;
        }
        if kind == "Secret" && name == "acme-keys" {
            // deletionPolicy: Retain (the sample's): the key material outlives the realm.
            assert!(
                meta.owner_references.is_none(),
                "the retained keys are owned"
            );
            continue;
        }
        let refs = meta.owner_references.unwrap();
        assert_eq!(refs.len(), 1, "{kind}/{name}");
        let expected = if kind == "CronJob" {
            ("RetentionPolicy", "acme-gdpr", "retention-uid")
        } else {
            ("AuthRealm", "acme", "realm-uid")
        };
        assert_eq!(
            (
                refs[0].kind.as_str(),
                refs[0].name.as_str(),
                refs[0].uid.as_str()
            ),
            expected,
            "{kind}/{name}"
        );
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true), "{kind}/{name}");
        assert_eq!(refs[0].api_version, "portcullis.dev/v1alpha1");
    }
}

#[test]
fn the_keys_are_owned_by_the_realm_only_under_deletion_policy_delete() {
    let keys_owner = |yaml: &str| {
        owned_metadata(&fixture(yaml).children())
            .into_iter()
            .find(|(kind, meta)| kind == "Secret" && meta.name.as_deref() == Some("demo-keys"))
            .map(|(_, meta)| meta.owner_references)
            .unwrap()
    };
    assert_eq!(keys_owner(REALM_MINIMAL), None, "Retain is the default");
    let delete = REALM_MINIMAL.replace("spec:\n", "spec:\n  deletionPolicy: Delete\n");
    let refs = keys_owner(&delete).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].kind, "AuthRealm");
}

#[test]
fn the_pod_is_hardened() {
    let pod = pod(&full().children());
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name.as_deref(), Some("acme"));
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = &pod.containers[0];
    let sc = container.security_context.clone().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
}

#[test]
fn the_service_account_mounts_no_token() {
    let sa = full().children().service_account;
    assert_eq!(sa.automount_service_account_token, Some(false));
}

#[test]
fn the_server_runs_the_documented_command_line() {
    let pod = pod(&full().children());
    let container = &pod.containers[0];
    assert_eq!(
        container.command.clone().unwrap(),
        ["/usr/local/bin/portcullis-authserver"]
    );
    assert_eq!(
        container.args.clone().unwrap(),
        [
            "serve",
            "--config",
            "/etc/portcullis/realm.yaml",
            "--secrets-dir",
            "/var/run/portcullis/secrets",
            "--listen",
            "0.0.0.0:8080",
            "--admin-listen",
            "0.0.0.0:9090",
            "--tls-cert",
            "/var/run/portcullis/tls/tls.crt",
            "--tls-key",
            "/var/run/portcullis/tls/tls.key"
        ]
    );
    let tls = container
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| m.name == "tls")
        .expect("the certificate is mounted");
    assert_eq!(tls.mount_path, "/var/run/portcullis/tls");
    assert!(
        tls.sub_path.is_none(),
        "a renewed certificate must reach the pod"
    );
    let volume = pod
        .volumes
        .clone()
        .unwrap()
        .into_iter()
        .find(|v| v.name == "tls")
        .unwrap();
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("acme-tls")
    );
    let ports: Vec<(String, i32)> = container
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_owned(), 8080),
            ("admin".to_owned(), 9090),
            ("metrics".to_owned(), 9091)
        ]
    );
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/portcullis-dev/portcullis:0.1.0")
    );
    let env: Vec<(String, String, String)> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| {
            let r = e.value_from.unwrap().secret_key_ref.unwrap();
            (e.name, r.name, r.key)
        })
        .collect();
    assert_eq!(
        env,
        [
            ("DATABASE_URL".into(), "acme-postgres".into(), "url".into()),
            ("REDIS_URL".into(), "acme-redis".into(), "url".into())
        ]
    );
}

#[test]
fn probes_hit_the_admin_listener() {
    let pod = pod(&full().children());
    let container = &pod.containers[0];
    for (probe, path) in [
        (container.liveness_probe.clone(), "/healthz"),
        (container.readiness_probe.clone(), "/readyz"),
    ] {
        let get = probe.unwrap().http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("admin".to_owned()));
    }
    let admin = container
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("admin"))
        .unwrap();
    assert_eq!(admin.container_port, 9090);
}

#[test]
fn the_secrets_dir_projects_referenced_secrets_under_their_file_names() {
    let pod = pod(&full().children());
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "secrets")
        .unwrap();
    let files: Vec<(String, String)> = volume
        .projected
        .unwrap()
        .sources
        .unwrap()
        .into_iter()
        .map(|s| s.secret.unwrap())
        .map(|s| {
            let path = s
                .items
                .map_or("*".to_owned(), |items| items[0].path.clone());
            (s.name, path)
        })
        .collect();
    assert_eq!(
        files,
        [
            ("acme-keys".into(), "*".into()),
            ("acme-social".into(), "social-github-client-secret".into()),
            ("acme-social".into(), "social-google-client-secret".into()),
            ("acme-social".into(), "social-corp-sso-client-secret".into()),
            ("acme-smtp".into(), "smtp-url".into()),
            ("acme-security-webhook".into(), "webhook-url".into()),
        ]
    );
}

#[test]
fn pods_spread_over_nodes_by_default() {
    let pod = pod(&minimal().children());
    let spread = pod.topology_spread_constraints.unwrap();
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
    assert_eq!(spread[0].max_skew, 1);
    let selector = spread[0]
        .label_selector
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(selector[labels::INSTANCE], "demo");
}

#[test]
fn pod_overrides_from_the_spec_are_applied() {
    let children = full().children();
    let pod_labels = children
        .deployment
        .spec
        .clone()
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(pod_labels["team"], "identity");
    assert_eq!(
        pod_annotations(&children)["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "true"
    );
    let pod = pod(&children);
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("identity-critical")
    );
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert_eq!(
        pod.tolerations.unwrap()[0].value.as_deref(),
        Some("identity")
    );
    assert!(pod.affinity.unwrap().node_affinity.is_some());
    let spread = pod.topology_spread_constraints.unwrap();
    assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
    let limits = pod.containers[0].resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["memory"].0, "256Mi");
    assert_eq!(children.deployment.spec.unwrap().replicas, Some(3));
}

#[test]
fn the_config_map_holds_the_manifests_without_server_fields() {
    let mut f = full();
    f.manifests.realms[0].metadata.resource_version = Some("42".to_owned());
    f.manifests.realms[0].status = Some(Default::default());
    let children = f.children();
    let yaml = &children.config_map.data.unwrap()["realm.yaml"];
    assert!(!yaml.contains("resourceVersion"), "{yaml}");
    assert!(!yaml.contains("uid"), "{yaml}");
    assert!(!yaml.contains("status"), "{yaml}");
    let parsed = parse_manifests(yaml).unwrap();
    assert_eq!(parsed.realms[0].spec, f.manifests.realms[0].spec);
    assert_eq!(
        parsed.rate_limit_policies[0].spec,
        f.manifests.rate_limit_policies[0].spec
    );
    assert_eq!(
        parsed.retention_policies[0].spec,
        f.manifests.retention_policies[0].spec
    );
}

#[test]
fn a_config_change_changes_the_config_checksum_only() {
    let before = full();
    let mut after = full();
    after.manifests.realms[0].spec.lockout.max_failures = 7;
    let (a, b) = (before.children(), after.children());
    let (a, b) = (pod_annotations(&a), pod_annotations(&b));
    assert_ne!(
        a[annotations::CONFIG_CHECKSUM],
        b[annotations::CONFIG_CHECKSUM]
    );
    assert_eq!(
        a[annotations::SECRETS_CHECKSUM],
        b[annotations::SECRETS_CHECKSUM]
    );
}

#[test]
fn labels_and_annotations_of_the_manifests_do_not_restart_the_server() {
    let before = full();
    let mut after = full();
    let meta = &mut after.manifests.realms[0].metadata;
    meta.labels = Some([("argocd.argoproj.io/instance".into(), "auth".into())].into());
    meta.annotations = Some([("kubectl.kubernetes.io/restartedAt".into(), "now".into())].into());
    meta.resource_version = Some("999".into());
    after.manifests.retention_policies[0].metadata.annotations =
        Some([("portcullis.dev/run-now".into(), "2027-01-01".into())].into());
    let (a, b) = (
        pod_annotations(&before.children()),
        pod_annotations(&after.children()),
    );
    assert_eq!(
        a[annotations::CONFIG_CHECKSUM],
        b[annotations::CONFIG_CHECKSUM]
    );
}

#[test]
fn a_key_change_changes_the_secrets_checksum_only() {
    let before = full();
    let mut after = full();
    after
        .keys
        .data
        .insert("admin-token".to_owned(), "rotated".to_owned());
    let (a, b) = (
        pod_annotations(&before.children()),
        pod_annotations(&after.children()),
    );
    assert_ne!(
        a[annotations::SECRETS_CHECKSUM],
        b[annotations::SECRETS_CHECKSUM]
    );
    assert_eq!(
        a[annotations::CONFIG_CHECKSUM],
        b[annotations::CONFIG_CHECKSUM]
    );
}

#[test]
fn a_referenced_secret_change_changes_the_secrets_checksum() {
    let f = full();
    let mut sources = f.sources(Capabilities::ALL);
    let a = build(&Inputs::new(sources.clone()).unwrap()).unwrap();
    sources.referenced_digest = "database password rotated".to_owned();
    let b = build(&Inputs::new(sources).unwrap()).unwrap();
    assert_ne!(
        pod_annotations(&a)[annotations::SECRETS_CHECKSUM],
        pod_annotations(&b)[annotations::SECRETS_CHECKSUM]
    );
}

#[test]
fn the_same_inputs_build_the_same_children() {
    assert_eq!(full().children(), full().children());
}

fn ports(rule_ports: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>) -> Vec<i32> {
    rule_ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| match p.port.unwrap() {
            IntOrString::Int(n) => n,
            IntOrString::String(s) => panic!("named port {s}"),
        })
        .collect()
}

#[test]
fn network_policies_deny_by_default_and_admit_the_ingress_controller_and_prometheus() {
    let policies = full().children().network_policies;
    let deny = policies[0].spec.clone().unwrap();
    assert_eq!(deny.policy_types.unwrap(), ["Ingress", "Egress"]);
    assert!(deny.ingress.is_none() && deny.egress.is_none());
    assert_eq!(
        deny.pod_selector.unwrap().match_labels.unwrap()[labels::INSTANCE],
        "acme"
    );

    let ingress = policies[1].spec.clone().unwrap().ingress.unwrap();
    let namespace_of = |i: usize| {
        ingress[i].from.clone().unwrap()[0]
            .namespace_selector
            .clone()
            .unwrap()
            .match_labels
            .unwrap()["kubernetes.io/metadata.name"]
            .clone()
    };
    assert_eq!(
        (namespace_of(0), ports(ingress[0].ports.clone())),
        ("ingress-nginx".to_owned(), vec![8080])
    );
    assert_eq!(
        (namespace_of(1), ports(ingress[1].ports.clone())),
        ("monitoring".to_owned(), vec![9091]),
        "Prometheus reaches the metrics port only"
    );
    let own_namespace = &ingress[2].from.clone().unwrap()[0];
    assert!(
        own_namespace.namespace_selector.is_none()
            && own_namespace.pod_selector == Some(Default::default()),
        "the admin port only from the realm's own namespace"
    );
    assert_eq!(ports(ingress[2].ports.clone()), [9090]);
    assert_eq!(
        ports(ingress[3].ports.clone()),
        [8080],
        "spec ingressFrom reaches the public port"
    );
    assert_eq!(ingress.len(), 4);
}

#[test]
fn egress_allows_dns_database_redis_smtp_https_and_the_spec_rules() {
    let policies = full().children().network_policies;
    let egress = policies[2].spec.clone().unwrap().egress.unwrap();
    let all: Vec<Vec<i32>> = egress.iter().map(|r| ports(r.ports.clone())).collect();
    assert_eq!(
        all,
        [
            vec![53, 53, 5353, 5353],
            vec![5432],
            vec![6379],
            vec![587, 465],
            vec![443],
            vec![8200]
        ]
    );
    let to = |i: usize| egress[i].to.clone().unwrap_or_default();
    assert_eq!(
        to(1)[0].ip_block.as_ref().unwrap().cidr,
        "10.20.0.0/16",
        "the database only where the realm says it is"
    );
    assert!(to(2)[0].namespace_selector.is_some(), "redis narrowed");
    assert_eq!(to(3)[0].ip_block.as_ref().unwrap().cidr, "192.0.2.25/32");
    let https: Vec<String> = to(4)
        .iter()
        .map(|p| p.ip_block.as_ref().unwrap().cidr.clone())
        .collect();
    assert_eq!(https, ["0.0.0.0/0", "::/0"], "HTTPS over IPv4 and IPv6");
    let dns = to(0);
    assert!(
        dns.iter().any(|p| p
            .ip_block
            .as_ref()
            .is_some_and(|b| b.cidr == "169.254.20.10/32")),
        "NodeLocal DNSCache"
    );
    assert!(
        dns.iter()
            .any(|p| p.pod_selector == Some(Default::default())),
        "any DNS pod, whatever its labels (OpenShift, CoreDNS)"
    );
}

#[test]
fn egress_narrows_with_the_spec() {
    let mut f = minimal();
    f.settings.spec.network_policy.allow_external_https = false;
    f.settings.spec.notifications = None;
    let egress = f.children().network_policies[2]
        .spec
        .clone()
        .unwrap()
        .egress
        .unwrap();
    let all: Vec<Vec<i32>> = egress.iter().map(|r| ports(r.ports.clone())).collect();
    assert_eq!(
        all,
        [vec![53, 53, 5353, 5353], vec![5432]],
        "no redis, no smtp, no https"
    );
    assert!(
        egress[1].to.is_none(),
        "without databasePeers: any address on 5432"
    );
}

#[test]
fn network_policies_can_be_turned_off() {
    let mut f = minimal();
    f.settings.spec.network_policy.enabled = false;
    assert!(f.children().network_policies.is_empty());
}

#[test]
fn the_ingress_carries_nginx_limits_and_tls_settings() {
    let ingress = full().children().ingress.unwrap();
    let annotations = ingress.metadata.annotations.unwrap();
    let get = |k: &str| annotations[&format!("nginx.ingress.kubernetes.io/{k}")].as_str();
    assert_eq!(get("limit-rps"), "20");
    assert_eq!(get("limit-burst-multiplier"), "2");
    assert_eq!(get("limit-connections"), "20");
    assert_eq!(get("ssl-protocols"), "TLSv1.2 TLSv1.3");
    assert_eq!(get("force-ssl-redirect"), "true");
    assert_eq!(get("backend-protocol"), "HTTPS", "the pods serve TLS");
    assert!(
        !annotations.contains_key("cert-manager.io/cluster-issuer"),
        "the operator's Certificate is the only one for acme-tls"
    );
    let spec = ingress.spec.unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let tls = &spec.tls.unwrap()[0];
    assert_eq!(tls.secret_name.as_deref(), Some("acme-tls"));
    assert_eq!(tls.hosts.clone().unwrap(), ["login.acme.example"]);
    let rule = &spec.rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("login.acme.example"));
}

#[test]
fn ingress_annotations_from_the_spec_are_kept() {
    let mut f = full();
    f.settings.spec.tls = None;
    let annotations = f.children().ingress.unwrap().metadata.annotations.unwrap();
    assert_eq!(
        annotations["cert-manager.io/cluster-issuer"],
        "letsencrypt-prod"
    );
}

#[test]
fn without_rate_limit_policies_the_ingress_has_no_proxy_limits() {
    let f = fixture(REALM_FULL);
    let annotations = f.children().ingress.unwrap().metadata.annotations.unwrap();
    assert!(!annotations.contains_key("nginx.ingress.kubernetes.io/limit-rps"));
}

#[test]
fn an_issuer_ref_yields_a_cert_manager_certificate() {
    let cert = full().children().certificate.unwrap();
    let types = cert.types.unwrap();
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("cert-manager.io/v1", "Certificate")
    );
    let spec: tls::CertificateSpec = serde_json::from_value(cert.data["spec"].clone()).unwrap();
    assert_eq!(spec.secret_name, "acme-tls");
    assert_eq!(spec.issuer_ref.kind, "ClusterIssuer");
    assert_eq!(spec.issuer_ref.name, "letsencrypt-prod");
    assert_eq!(
        spec.dns_names,
        ["login.acme.example"],
        "only names a public CA can validate"
    );
}

#[test]
fn without_cert_manager_no_certificate_is_built() {
    let f = full();
    let caps = Capabilities {
        cert_manager: false,
        prometheus_operator: true,
    };
    let children = build(&Inputs::new(f.sources(caps)).unwrap()).unwrap();
    assert!(children.certificate.is_none());
}

#[test]
fn self_signed_tls_yields_a_tls_secret_the_ingress_serves() {
    let mut f = full();
    let tls = f.settings.spec.tls.as_mut().unwrap();
    tls.issuer_ref = None;
    tls.self_signed = Some(Default::default());
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let material =
        tls::generate_self_signed("acme", &["login.acme.example".to_owned()], now).unwrap();
    let mut sources = f.sources(Capabilities::ALL);
    sources.tls = Some(&material);
    let children = build(&Inputs::new(sources).unwrap()).unwrap();
    assert!(children.certificate.is_none());
    let secret: Secret = children.tls_secret.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().unwrap();
    let crt = String::from_utf8(data["tls.crt"].0.clone()).unwrap();
    assert_eq!(crt.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA");
    assert!(
        String::from_utf8(data["tls.key"].0.clone())
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(TlsMaterial::from_secret(&secret), Some(material));
}

#[test]
fn a_self_signed_certificate_is_renewed_thirty_days_before_expiry() {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let material =
        tls::generate_self_signed("demo", &["auth.demo.example.com".to_owned()], now).unwrap();
    assert_eq!(material.not_after, now + tls::SELF_SIGNED_VALIDITY);
    assert!(!material.needs_renewal(now + k8s_openapi::jiff::SignedDuration::from_hours(59 * 24)));
    assert!(material.needs_renewal(now + k8s_openapi::jiff::SignedDuration::from_hours(60 * 24)));
}

#[test]
fn nginx_verifies_the_pods_self_signed_certificate() {
    let mut f = full();
    f.settings.spec.tls = Some(portcullis_crds::realm::TlsSpec {
        issuer_ref: None,
        self_signed: Some(Default::default()),
        secret_name: None,
    });
    let annotations = f.children().ingress.unwrap().metadata.annotations.unwrap();
    let get = |k: &str| annotations[&format!("nginx.ingress.kubernetes.io/{k}")].as_str();
    assert_eq!(get("backend-protocol"), "HTTPS");
    assert_eq!(get("proxy-ssl-secret"), "identity/acme-tls");
    assert_eq!(get("proxy-ssl-verify"), "on");
    assert_eq!(get("proxy-ssl-name"), "login.acme.example");
    let mut plain = minimal();
    plain.settings.spec.ingress.enabled = true;
    let annotations = plain
        .children()
        .ingress
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/backend-protocol"], "HTTP",
        "no certificate, no TLS to the pods"
    );
}

#[test]
fn the_service_monitor_scrapes_the_metrics_port() {
    let monitor = full().children().service_monitor.unwrap();
    let spec: monitoring::ServiceMonitorSpec =
        serde_json::from_value(monitor.data["spec"].clone()).unwrap();
    assert_eq!(spec.endpoints[0].port, "metrics");
    assert_eq!(spec.endpoints[0].path, "/metrics");
    assert_eq!(spec.endpoints[0].interval, "30s");
}

#[test]
fn the_prometheus_rule_is_narrowed_to_the_realm_with_its_thresholds() {
    let mut f = full();
    f.settings
        .spec
        .monitoring
        .alert_thresholds
        .failed_logins_per_minute = 80;
    let rule = f.children().prometheus_rule.unwrap();
    let spec: monitoring::RuleFile = serde_json::from_value(rule.data["spec"].clone()).unwrap();
    let rules = &spec.groups[0].rules;
    assert_eq!(
        rules.len(),
        monitoring::shared_rules().unwrap().groups[0].rules.len()
    );
    let failed = rules
        .iter()
        .find(|r| r.alert == "PortcullisFailedLoginSpike")
        .unwrap();
    assert!(failed.expr.ends_with("> 80"), "{}", failed.expr);
    assert!(
        failed.expr.contains("namespace=\"identity\", job=\"acme\""),
        "{}",
        failed.expr
    );
    assert!(!failed.annotations.contains_key("portcullis_threshold"));
    let cert = rules
        .iter()
        .find(|r| r.alert == "PortcullisCertificateExpiring")
        .unwrap();
    assert!(cert.expr.ends_with("< 1209600"), "{}", cert.expr);
    assert!(
        cert.expr.contains("portcullis_operator_certificate_not_after_seconds{realm_namespace=\"identity\", realm=\"acme\"}"),
        "narrowed to the realm: {}",
        cert.expr
    );
    let rotation = rules
        .iter()
        .find(|r| r.alert == "PortcullisSigningKeyRotationOverdue")
        .unwrap();
    assert!(
        rotation.expr.ends_with("> 2678400"),
        "30d + 1d: {}",
        rotation.expr
    );
    for rule in rules {
        assert!(!rule.expr.contains("job=\"portcullis\""), "{}", rule.expr);
        assert!(!rule.expr.contains("realm=\"portcullis\""), "{}", rule.expr);
    }
}

/// The four abuse thresholds of `alertThresholds` reach the realm's PrometheusRule: each
/// alert ends with the realm's number, not the one written in alerts.yaml.
#[test]
fn a_realms_abuse_thresholds_reach_its_prometheus_rule() {
    let mut f = full();
    let thresholds = &mut f.settings.spec.monitoring.alert_thresholds;
    thresholds.rate_limited_per_minute = 321;
    thresholds.password_spray_identifiers = 77;
    thresholds.breached_logins_per_hour = 4;
    thresholds.breach_check_error_percent = 25;
    let rule = f.children().prometheus_rule.unwrap();
    let spec: monitoring::RuleFile = serde_json::from_value(rule.data["spec"].clone()).unwrap();
    let expr = |alert: &str| {
        spec.groups[0]
            .rules
            .iter()
            .find(|r| r.alert == alert)
            .unwrap_or_else(|| panic!("no {alert}"))
            .clone()
    };
    for (alert, ending) in [
        ("PortcullisRateLimitRejections", "* 60 > 321"),
        ("PortcullisPasswordSpraying", "> 77"),
        ("PortcullisBreachedPasswordLogins", "> 4"),
        ("PortcullisBreachCheckFailing", "> 25"),
    ] {
        let rule = expr(alert);
        assert!(rule.expr.ends_with(ending), "{alert}: {}", rule.expr);
        assert!(
            !rule.annotations.contains_key("portcullis_threshold"),
            "{alert}: the annotation is consumed"
        );
    }
    // Spraying compares a ratio first: only the final number is the realm's.
    assert!(
        expr("PortcullisPasswordSpraying").expr.contains("< 2 and"),
        "{}",
        expr("PortcullisPasswordSpraying").expr
    );
}

#[test]
fn without_prometheus_operator_no_monitoring_objects_but_the_dashboard() {
    let f = full();
    let caps = Capabilities {
        cert_manager: true,
        prometheus_operator: false,
    };
    let children = build(&Inputs::new(f.sources(caps)).unwrap()).unwrap();
    assert!(children.service_monitor.is_none());
    assert!(children.prometheus_rule.is_none());
    let dashboard = children.dashboard.unwrap();
    assert_eq!(dashboard.metadata.labels.unwrap()["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(&dashboard.data.unwrap()["portcullis.json"]).unwrap();
    assert_eq!(json["uid"], "portcullis");
}

#[test]
fn the_config_carries_the_admitted_clients_by_client_id() {
    let f = full();
    let yaml = Inputs::new(f.sources(Capabilities::ALL))
        .unwrap()
        .config_yaml;
    let read = parse_manifests(&yaml).unwrap();
    let ids: Vec<String> = read.clients.iter().map(|c| c.client_id()).collect();
    assert_eq!(ids, ["billing-worker", "shop-shop-spa", "shop-web"]);
    assert!(
        read.clients
            .iter()
            .all(|c| c.status.is_none() && c.metadata.uid.is_none()),
        "stripped like the other documents"
    );
}

#[test]
fn the_pdb_allows_one_pod_down() {
    let pdb = full().children().pod_disruption_budget.spec.unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector.unwrap().match_labels.unwrap()[labels::COMPONENT],
        "server"
    );
}

#[test]
fn the_retention_cron_job_runs_the_retention_command_on_the_schedule() {
    let cron = full().children().retention_cron_job.unwrap();
    let spec = cron.spec.unwrap();
    assert_eq!(spec.schedule, "30 2 * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].args.clone().unwrap(),
        [
            "retention",
            "run",
            "--config",
            "/etc/portcullis/realm.yaml",
            "--secrets-dir",
            "/var/run/portcullis/secrets",
            "--termination-log",
            "/dev/termination-log"
        ]
    );
    assert_eq!(
        pod.containers[0].termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.containers[0]
            .security_context
            .clone()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    assert!(pod.containers[0].readiness_probe.is_none());
}

#[test]
fn a_run_now_value_names_one_job() {
    let a = retention::run_now_job_name("gdpr", "2026-11-28T01:00");
    assert_eq!(a, retention::run_now_job_name("gdpr", "2026-11-28T01:00"));
    assert_ne!(a, retention::run_now_job_name("gdpr", "again"));
    assert!(a.starts_with("gdpr-run-") && a.len() == "gdpr-run-".len() + 10);
}
